//! Shared pieces of the benchmarks: the fast TLS origin (also the origin of
//! the end-to-end tests) and the load driver.

pub mod load;

pub mod origin;
