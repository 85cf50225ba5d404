//! Shared pieces of the benchmarks: the fast TLS origin (also the origin of
//! the end-to-end tests).

pub mod origin;
