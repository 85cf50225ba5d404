//! End-to-end tests: the real `onecli` binary, a TLS origin we start, and
//! real clients (curl, Python `requests`, raw sockets).

mod approvals;
mod compat;
mod control;
mod dashboard;
mod fleet;
mod gateway;
mod harness;
mod hostile;
mod load;
mod manage;
mod quickstart;
mod run;
mod served;
