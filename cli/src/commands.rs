//! The command table. Each subcommand lives in its own module.

mod control;
mod gateway;
mod serve;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "onecli",
    version,
    about = "Credential and policy gateway for AI agents"
)]
pub struct Cli {
    /// Log format for the servers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Debug logging (ONECLI_LOG overrides the filter).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control service and the gateway together (the embedded default).
    Serve(serve::ServeArgs),
    /// Run the control service (API, store) alone, for gateways that subscribe to it.
    Control(control::ControlArgs),
    /// Run the gateway (data plane) alone.
    Gateway(gateway::GatewayArgs),
}

/// A failure to report: one sentence on stderr and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub exit_code: i32,
}

/// Exit codes, documented in the README.
pub mod exit {
    /// The configuration or a file it names is invalid.
    pub const CONFIG: i32 = 3;
    /// A server could not start (a port is taken, permissions…).
    pub const STARTUP: i32 = 4;
}

impl CliError {
    pub fn config(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            exit_code: exit::CONFIG,
        }
    }
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Control(args) => control::run(args),
        Command::Gateway(args) => gateway::run(args),
    }
}
