//! The gateway's integration tests: real servers on 127.0.0.1.

mod redis_server;
mod shared_limits;
