//! `onecli config get|set`: `~/.onecli/config.json` (`api-host`, `agent`).

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{exit, CliError};
use crate::client::{config_path, read_config};
use crate::output::{DryRunArg, OutputArgs};

const KEYS: [&str; 2] = ["api-host", "agent"];

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print one setting, or all.
    Get { key: Option<String> },
    /// Change a setting: api-host (the control service's URL) or agent (the one `onecli run` uses).
    Set {
        #[arg(value_parser = KEYS)]
        key: String,
        value: String,
        #[command(flatten)]
        dry: DryRunArg,
    },
}

pub fn run(args: ConfigArgs) -> Result<(), CliError> {
    let out = args.output.out();
    let mut config = read_config();
    match args.command {
        ConfigCommand::Get { key: None } => out.done(
            &Value::Object(config.clone()),
            &serde_json::to_string_pretty(&config).unwrap_or_default(),
        ),
        ConfigCommand::Get { key: Some(key) } => {
            let value = config
                .get(&key)
                .cloned()
                .ok_or_else(|| CliError::new(exit::NOT_FOUND, format!("{key} is not set")))?;
            out.done(
                &json!({ "key": key, "value": value }),
                value.as_str().unwrap_or_default(),
            );
        }
        ConfigCommand::Set { key, value, dry } => {
            let value = value.trim().to_owned();
            if value.is_empty() {
                return Err(CliError::config(format!("{key} cannot be empty")));
            }
            if key == "api-host" && !(value.starts_with("http://") || value.starts_with("https://"))
            {
                return Err(CliError::config(format!(
                    "api-host {value:?}: give the control service's URL, e.g. http://127.0.0.1:10254"
                )));
            }
            let path = config_path();
            let result = json!({ "status": "ok", "key": key, "value": value });
            if dry.dry_run {
                out.dry_run(
                    &format!("Would set {key} in {}", path.display()),
                    json!({ "key": key, "value": value }),
                    result,
                );
                return Ok(());
            }
            config.insert(key.clone(), Value::String(value.clone()));
            let io = |e: std::io::Error| {
                CliError::new(
                    exit::GENERAL,
                    format!("cannot write {}: {e}", path.display()),
                )
            };
            std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))
                .map_err(io)?;
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&config).unwrap_or_default(),
            )
            .map_err(io)?;
            out.done(&result, &format!("{key} = {value}"));
        }
    }
    Ok(())
}
