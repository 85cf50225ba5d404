//! `onecli config get|set`: `~/.onecli/config.json` (`api-host`, `agent`).

use clap::Subcommand;
use serde_json::{json, Value};

use super::{exit, CliError};
use crate::client::{config_path, read_config};
use crate::output::done;

const KEYS: [&str; 2] = ["api-host", "agent"];

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print one setting, or all.
    Get { key: Option<String> },
    Set {
        #[arg(value_parser = KEYS)]
        key: String,
        value: String,
    },
}

pub fn run(command: ConfigCommand, json: bool) -> Result<(), CliError> {
    let mut config = read_config();
    match command {
        ConfigCommand::Get { key: None } => done(
            json,
            &Value::Object(config.clone()),
            &serde_json::to_string_pretty(&config).unwrap_or_default(),
        ),
        ConfigCommand::Get { key: Some(key) } => {
            let value = config
                .get(&key)
                .cloned()
                .ok_or_else(|| CliError::new(exit::NOT_FOUND, format!("{key} is not set")))?;
            done(
                json,
                &json!({ key.clone(): value }),
                value.as_str().unwrap_or_default(),
            );
        }
        ConfigCommand::Set { key, value } => {
            config.insert(key.clone(), Value::String(value.clone()));
            let path = config_path();
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
            done(
                json,
                &json!({ key.clone(): value }),
                &format!("{key} = {value}"),
            );
        }
    }
    Ok(())
}
