//! The command table. Each subcommand lives in its own module.

pub(crate) mod control;
pub(crate) mod gateway;
mod run;
mod serve;

use clap::{Parser, Subcommand};

use crate::client::ApiArgs;
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
    /// Machine-readable output, and errors as {"error","code"} on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command (an agent) behind the gateway: `onecli run -- claude`.
    Run(run::RunArgs),
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
    /// Anything not listed below.
    pub const GENERAL: i32 = 1;
    /// The configuration or a file it names is invalid.
    pub const CONFIG: i32 = 3;
    /// A server could not start (a port is taken, permissions…).
    pub const STARTUP: i32 = 4;
    /// The control service cannot be reached.
    pub const UNREACHABLE: i32 = 5;
    /// No API key, or the control service rejected it.
    pub const AUTH: i32 = 6;
    /// The agent, secret, rule or approval does not exist.
    pub const NOT_FOUND: i32 = 7;
    /// The control service refused the request as invalid.
    pub const REFUSED: i32 = 8;
    /// The command to run was not found.
    pub const NO_COMMAND: i32 = 9;
}

impl CliError {
    pub fn new(exit_code: i32, message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            exit_code,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(exit::CONFIG, message)
    }

    /// The error's short code for `--json`.
    pub fn code(&self) -> &'static str {
        match self.exit_code {
            exit::CONFIG => "invalid_config",
            exit::STARTUP => "startup_failed",
            exit::UNREACHABLE => "unreachable",
            exit::AUTH => "unauthorized",
            exit::NOT_FOUND => "not_found",
            exit::REFUSED => "refused",
            exit::NO_COMMAND => "command_not_found",
            _ => "error",
        }
    }
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run(args) => run::run(args, &cli.api),
        Command::Serve(args) => serve::run(args),
        Command::Control(args) => control::run(args),
        Command::Gateway(args) => gateway::run(args),
    }
}
