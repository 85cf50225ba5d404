//! The command table. Each subcommand lives in its own module.

mod agents;
mod approvals;
mod auth;
pub(crate) mod control;
mod dashboard;
mod doctor;
pub(crate) mod gateway;
mod healthcheck;
mod help;
mod logs;
mod projects;
mod rules;
pub(crate) mod run;
mod secrets;
mod serve;
mod settings;

use clap::{Args, Parser, Subcommand};

use crate::client::ApiArgs;
use crate::logging::LogArgs;
use crate::output::OutputArgs;

#[derive(Debug, Parser)]
#[command(
    name = "onecli",
    version,
    about = "Credential and policy gateway for AI agents",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// `onecli --json agents list`, as earlier versions took it.
    #[arg(long, hide = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// A command group that talks to the control service: each of its commands
/// takes the API host and key, and prints JSON or tables.
#[derive(Debug, Args)]
pub struct Managed<T: Subcommand> {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: T,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command (an agent) behind the gateway: `onecli run -- claude`.
    Run(run::RunArgs),
    /// Agents: their tokens, secret assignment and modes.
    Agents(Managed<agents::AgentsCommand>),
    /// Secrets: stored encrypted, never shown again.
    Secrets(Managed<secrets::SecretsCommand>),
    /// Rules: block, allow, rate_limit, manual_approval.
    Rules(Managed<rules::RulesCommand>),
    /// Requests held for a human's decision.
    Approvals(Managed<approvals::ApprovalsCommand>),
    /// The audit log.
    Logs(logs::LogsArgs),
    /// Projects: a scope each for teams sharing one gateway.
    Projects(Managed<projects::ProjectsCommand>),
    /// API keys: admin keys, and keys for one project.
    ApiKeys(Managed<projects::ApiKeysCommand>),
    /// The API key this command line uses.
    Auth(Managed<auth::AuthCommand>),
    /// Settings in ~/.onecli/config.json.
    Config(settings::ConfigArgs),
    /// Check the control service, the key, the gateway and the CA.
    Doctor(doctor::DoctorArgs),
    /// Open the web dashboard with a one-time sign-in link.
    Dashboard(dashboard::DashboardArgs),
    /// Exit 0 when the local control API and gateway are up and ready (a container's HEALTHCHECK).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Shell completions.
    Completions { shell: clap_complete::Shell },
    /// Print the version.
    Version {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Describe the commands (JSON when standard output is not a terminal).
    Help(help::HelpArgs),
    /// Run the control service and the gateway together (the embedded default).
    #[command(after_help = SERVER_ENV)]
    Serve(serve::ServeArgs),
    /// Run the control service (API, store) alone, for gateways that subscribe to it.
    #[command(after_help = SERVER_ENV)]
    Control(control::ControlArgs),
    /// Run the gateway (data plane) alone.
    #[command(after_help = SERVER_ENV)]
    Gateway(gateway::GatewayArgs),
}

/// What the servers read from the environment beside their flags' variables.
const SERVER_ENV: &str = "Environment:
  ONECLI_SECRET_KEY       the key that seals secrets and policies (32 bytes, base64);
                          default: <data-dir>/secret.key, generated on first start
  ONECLI_SECRET_KEY_FILE  a file holding that key instead (a container secret)
  ONECLI_LOG              the log filter (tracing syntax, e.g. debug)";

impl Cli {
    /// The servers' logging flags; the defaults for every other command.
    pub fn log_args(&self) -> LogArgs {
        match &self.command {
            Command::Serve(a) => a.log.clone(),
            Command::Control(a) => a.log.clone(),
            Command::Gateway(a) => a.log.clone(),
            _ => LogArgs::default(),
        }
    }

    /// The output flags of the command, if it prints.
    fn output(&mut self) -> Option<&mut OutputArgs> {
        match &mut self.command {
            Command::Agents(m) => Some(&mut m.output),
            Command::Secrets(m) => Some(&mut m.output),
            Command::Rules(m) => Some(&mut m.output),
            Command::Approvals(m) => Some(&mut m.output),
            Command::Projects(m) => Some(&mut m.output),
            Command::ApiKeys(m) => Some(&mut m.output),
            Command::Auth(m) => Some(&mut m.output),
            Command::Logs(a) => Some(&mut a.output),
            Command::Config(a) => Some(&mut a.output),
            Command::Doctor(a) => Some(&mut a.output),
            Command::Version { output } => Some(output),
            _ => None,
        }
    }

    /// Applies a `--json` given before the command.
    pub fn resolve(mut self) -> Cli {
        if self.json {
            if let Some(output) = self.output() {
                output.json = true;
                output.table = false;
            }
            if let Command::Dashboard(a) = &mut self.command {
                a.json = true;
            }
        }
        self
    }

    /// Whether errors are printed as JSON.
    pub fn json_errors(&mut self) -> bool {
        if self.json {
            return true;
        }
        if let Command::Dashboard(a) = &self.command {
            return a.json;
        }
        self.output().is_some_and(|o| o.json())
    }
}

/// What a command acts on: an id as its argument, or `--id ID` as
/// OneCLI's CLI takes it. Agents are also found by identifier.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Its id (an agent also by identifier).
    #[arg(
        value_name = "ID",
        required_unless_present = "id",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    target: Option<String>,
    /// The same, as a flag.
    #[arg(
        long = "id",
        value_name = "ID",
        conflicts_with = "target",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    id: Option<String>,
}

impl Target {
    pub fn get(&self) -> &str {
        self.target
            .as_deref()
            .or(self.id.as_deref())
            .unwrap_or_default()
    }
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
        Command::Run(args) => run::run(args),
        Command::Agents(m) => agents::run(m.command, &m.api, m.output.out()),
        Command::Secrets(m) => secrets::run(m.command, &m.api, m.output.out()),
        Command::Rules(m) => rules::run(m.command, &m.api, m.output.out()),
        Command::Approvals(m) => approvals::run(m.command, &m.api, m.output.out()),
        Command::Logs(args) => logs::run(args),
        Command::Projects(m) => projects::run_projects(m.command, &m.api, m.output.out()),
        Command::ApiKeys(m) => projects::run_api_keys(m.command, &m.api, m.output.out()),
        Command::Auth(m) => auth::run(m.command, &m.api, m.output.out()),
        Command::Config(args) => settings::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Dashboard(args) => dashboard::run(args),
        Command::Healthcheck(args) => healthcheck::run(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "onecli", &mut script);
            crate::output::line(String::from_utf8_lossy(&script).trim_end());
            Ok(())
        }
        Command::Version { output } => {
            let version = env!("CARGO_PKG_VERSION");
            output.out().done(
                &serde_json::json!({ "version": version }),
                &format!("onecli {version}"),
            );
            Ok(())
        }
        Command::Help(args) => help::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Control(args) => control::run(args),
        Command::Gateway(args) => gateway::run(args),
    }
}
