//! End-to-end tests: the real `onecli` binary, a TLS origin we start, and
//! real clients (curl, Python `requests`, raw sockets).

mod approvals;
mod aws;
mod compat;
mod containers;
mod control;
mod credentials;
mod dashboard;
mod deploy;
mod faults;
mod fleet;
mod floods;
mod gateway;
mod harness;
mod hostile;
mod load;
mod logins;
mod manage;
mod projects;
mod quickstart;
mod run;
mod served;
mod shared_limits;
