//! `onecli secrets …`: values come from --value, --value-file or stdin, and
//! are never printed.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{exit, CliError};
use crate::client::ApiArgs;
use crate::output::{done, print};

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// List secrets (masked previews only).
    List,
    /// Store a secret; the value is read from stdin unless given.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long = "type", value_parser = ["anthropic", "openai", "generic"])]
        kind: String,
        /// Host pattern: api.example.com, *.example.com, optional :port.
        #[arg(long)]
        host: String,
        #[command(flatten)]
        fields: SecretFields,
    },
    /// Change a secret; only what is given changes.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        host: Option<String>,
        #[command(flatten)]
        fields: SecretFields,
        /// Read the new value from stdin.
        #[arg(long)]
        value_stdin: bool,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct SecretFields {
    /// Path pattern (default *).
    #[arg(long)]
    path: Option<String>,
    /// The value (prefer --value-file or stdin: shells keep history).
    #[arg(long, conflicts_with = "value_file")]
    value: Option<String>,
    #[arg(long)]
    value_file: Option<PathBuf>,
    /// generic: the header to set, with --format (default {value}).
    #[arg(long, conflicts_with = "param")]
    header: Option<String>,
    #[arg(long, requires = "header")]
    format: Option<String>,
    /// generic: the query parameter to set, with --param-format.
    #[arg(long)]
    param: Option<String>,
    #[arg(long, requires = "param")]
    param_format: Option<String>,
    /// Also inject into plain-HTTP requests (never on port 443). Off by
    /// default: credentials travel over TLS only.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "true|false")]
    allow_plaintext: Option<bool>,
}

impl SecretFields {
    fn value(&self, stdin: bool) -> Result<Option<String>, CliError> {
        let read_err =
            |e: std::io::Error| CliError::new(exit::GENERAL, format!("cannot read the value: {e}"));
        let value = match (&self.value, &self.value_file, stdin) {
            (Some(v), _, _) => Some(v.clone()),
            (None, Some(file), _) => Some(std::fs::read_to_string(file).map_err(read_err)?),
            (None, None, true) => {
                let mut v = String::new();
                std::io::stdin().read_to_string(&mut v).map_err(read_err)?;
                Some(v)
            }
            (None, None, false) => None,
        };
        Ok(value.map(|v| v.trim_end_matches(['\n', '\r']).to_owned()))
    }

    fn apply(&self, body: &mut Map<String, Value>) {
        if let Some(p) = &self.path {
            body.insert("pathPattern".into(), json!(p));
        }
        if let Some(h) = &self.header {
            body.insert("injectionConfig".into(), json!({ "headerName": h, "valueFormat": self.format.clone().unwrap_or_else(|| "{value}".into()) }));
        }
        if let Some(p) = &self.param {
            body.insert("injectionConfig".into(), json!({ "paramName": p, "paramFormat": self.param_format.clone().unwrap_or_else(|| "{value}".into()) }));
        }
        if let Some(allow) = self.allow_plaintext {
            body.insert("allowPlaintext".into(), json!(allow));
        }
    }
}

pub fn run(command: SecretsCommand, api: &ApiArgs, json: bool) -> Result<(), CliError> {
    let api = api.client()?;
    match command {
        SecretsCommand::List => {
            let secrets = api.call("GET", "/v1/secrets", None)?;
            print(
                json,
                &secrets,
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("TYPE", "type"),
                    ("HOST", "hostPattern"),
                    ("PATH", "pathPattern"),
                    ("PLAINTEXT", "allowPlaintext"),
                    ("PREVIEW", "preview"),
                ],
            );
        }
        SecretsCommand::Create {
            name,
            kind,
            host,
            fields,
        } => {
            let value = fields
                .value(true)?
                .filter(|v| !v.is_empty())
                .ok_or_else(|| CliError::new(exit::REFUSED, "the secret value is empty"))?;
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("type".into(), json!(kind));
            body.insert("value".into(), json!(value));
            body.insert("hostPattern".into(), json!(host));
            fields.apply(&mut body);
            let created = api.call("POST", "/v1/secrets", Some(&Value::Object(body)))?;
            done(
                json,
                &created,
                &format!(
                    "stored secret {name} ({}), shown as {}",
                    created["id"].as_str().unwrap_or(""),
                    created["preview"].as_str().unwrap_or("")
                ),
            );
        }
        SecretsCommand::Update {
            id,
            name,
            host,
            fields,
            value_stdin,
        } => {
            let mut body = Map::new();
            if let Some(v) = fields.value(value_stdin)? {
                body.insert("value".into(), json!(v));
            }
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(h) = host {
                body.insert("hostPattern".into(), json!(h));
            }
            fields.apply(&mut body);
            api.call(
                "PATCH",
                &format!("/v1/secrets/{}", crate::client::encode(&id)),
                Some(&Value::Object(body)),
            )?;
            done(
                json,
                &json!({ "success": true }),
                &format!("updated secret {id}"),
            );
        }
        SecretsCommand::Delete { id } => {
            api.call(
                "DELETE",
                &format!("/v1/secrets/{}", crate::client::encode(&id)),
                None,
            )?;
            done(
                json,
                &json!({ "deleted": id }),
                &format!("deleted secret {id}"),
            );
        }
    }
    Ok(())
}
