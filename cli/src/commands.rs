//! The command table. Each subcommand lives in its own module.

mod agents;
mod approvals;
mod auth;
pub(crate) mod control;
mod dashboard;
mod doctor;
pub(crate) mod gateway;
mod logs;
mod rules;
pub(crate) mod run;
mod secrets;
mod serve;
mod settings;

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
    /// Agents: their tokens, secret assignment and modes.
    #[command(subcommand)]
    Agents(agents::AgentsCommand),
    /// Secrets: stored encrypted, never shown again.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Rules: block, allow, rate_limit, manual_approval.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Requests held for a human's decision.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// The audit log.
    Logs(logs::LogsArgs),
    /// The API key this command line uses.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Settings in ~/.onecli/config.json.
    #[command(subcommand)]
    Config(settings::ConfigCommand),
    /// Check the control service, the key, the gateway and the CA.
    Doctor {
        /// The gateway as this machine reaches it (default: the API host, port 10255).
        #[arg(long, env = "ONECLI_GATEWAY")]
        gateway: Option<String>,
    },
    /// Open the web dashboard with a one-time sign-in link.
    Dashboard {
        /// Print the link instead of opening a browser.
        #[arg(long)]
        print: bool,
    },
    /// Shell completions.
    Completions { shell: clap_complete::Shell },
    /// Print the version.
    Version,
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
    let json = cli.json;
    match cli.command {
        Command::Run(args) => run::run(args, &cli.api),
        Command::Agents(c) => agents::run(c, &cli.api, json),
        Command::Secrets(c) => secrets::run(c, &cli.api, json),
        Command::Rules(c) => rules::run(c, &cli.api, json),
        Command::Approvals(c) => approvals::run(c, &cli.api, json),
        Command::Logs(args) => logs::run(args, &cli.api, json),
        Command::Auth(c) => auth::run(c, &cli.api, json),
        Command::Config(c) => settings::run(c, json),
        Command::Doctor { gateway } => doctor::run(&cli.api, gateway.as_deref(), json),
        Command::Dashboard { print } => dashboard::run(&cli.api, print, json),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "onecli", &mut script);
            crate::output::line(String::from_utf8_lossy(&script).trim_end());
            Ok(())
        }
        Command::Version => {
            let version = env!("CARGO_PKG_VERSION");
            crate::output::done(
                json,
                &serde_json::json!({ "version": version }),
                &format!("onecli {version}"),
            );
            Ok(())
        }
        Command::Serve(args) => serve::run(args),
        Command::Control(args) => control::run(args),
        Command::Gateway(args) => gateway::run(args),
    }
}
