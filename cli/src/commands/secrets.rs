//! `onecli secrets …`: values come from --value, --value-file or stdin, and
//! are never printed.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{exit, CliError, Target};
use crate::client::{encode, ApiArgs};
use crate::output::{Columns, DryRunArg, ListArgs, Out};

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// List secrets (masked previews only).
    List(ListArgs),
    /// Store a secret; the value is read from stdin unless given.
    Create {
        /// A display name.
        #[arg(long)]
        name: String,
        /// anthropic and openai know how their service takes the key (openai: an API key, or
        /// Codex's auth.json for a ChatGPT login, e.g. --value-file ~/.codex/auth.json);
        /// aws signs requests with the key (--access-key-id; the value is the secret access key);
        /// generic needs --header, --param, --path-template or --path-regex.
        #[arg(long = "type", value_parser = ["anthropic", "openai", "generic", "aws"])]
        kind: String,
        /// Host pattern: api.example.com, *.example.com, optional :port.
        #[arg(long, visible_alias = "host-pattern")]
        host: String,
        #[command(flatten)]
        fields: SecretFields,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Change a secret; only what is given changes.
    Update {
        #[command(flatten)]
        secret: Target,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, visible_alias = "host-pattern")]
        host: Option<String>,
        #[command(flatten)]
        fields: SecretFields,
        /// Read the new value from stdin.
        #[arg(long)]
        value_stdin: bool,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Delete a secret.
    Delete {
        #[command(flatten)]
        secret: Target,
        #[command(flatten)]
        dry: DryRunArg,
    },
}

#[derive(Debug, Args)]
pub struct SecretFields {
    /// Path pattern (default *).
    #[arg(long, visible_alias = "path-pattern")]
    path: Option<String>,
    /// The value (prefer --value-file or stdin: shells keep history).
    #[arg(long, conflicts_with = "value_file")]
    value: Option<String>,
    /// Read the value from this file.
    #[arg(long, visible_alias = "file")]
    value_file: Option<PathBuf>,
    /// generic: the header to set, with --format (default {value}).
    #[arg(long, visible_alias = "header-name", conflicts_with_all = ["param", "path_template", "path_regex"])]
    header: Option<String>,
    /// The header's value, with {value} where the secret goes (e.g. "Bearer {value}").
    #[arg(long, visible_alias = "value-format", requires = "header")]
    format: Option<String>,
    /// generic: the query parameter to set, with --param-format.
    #[arg(long, visible_alias = "param-name", conflicts_with_all = ["path_template", "path_regex"])]
    param: Option<String>,
    /// The parameter's value, with {value} where the secret goes.
    #[arg(long, requires = "param")]
    param_format: Option<String>,
    /// generic: the secret goes into the path, e.g. /bot{value} (the agent's
    /// /botPLACEHOLDER/getMe goes out as /bot<secret>/getMe).
    #[arg(long, conflicts_with = "path_regex")]
    path_template: Option<String>,
    /// generic: the first match of this regex in the path is replaced by
    /// --path-replacement.
    #[arg(long, requires = "path_replacement")]
    path_regex: Option<String>,
    /// What --path-regex's match becomes: $1… for its captures, {value} for the secret.
    #[arg(long, requires = "path_regex")]
    path_replacement: Option<String>,
    /// aws: the access key id (AKIA…, ASIA…); the value is its secret access key.
    #[arg(long, conflicts_with_all = ["header", "param", "path_template", "path_regex"])]
    access_key_id: Option<String>,
    /// aws: read the session token of temporary credentials from this file.
    #[arg(long, requires = "access_key_id")]
    session_token_file: Option<PathBuf>,
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

    fn apply(&self, body: &mut Map<String, Value>) -> Result<(), CliError> {
        if let Some(id) = &self.access_key_id {
            let mut config = json!({ "accessKeyId": id });
            if let Some(file) = &self.session_token_file {
                let token = std::fs::read_to_string(file).map_err(|e| {
                    CliError::new(exit::GENERAL, format!("cannot read the session token: {e}"))
                })?;
                config["sessionToken"] = json!(token.trim());
            }
            body.insert("injectionConfig".into(), config);
        }
        if let Some(p) = &self.path {
            body.insert("pathPattern".into(), json!(p));
        }
        if let Some(h) = &self.header {
            body.insert("injectionConfig".into(), json!({ "headerName": h, "valueFormat": self.format.clone().unwrap_or_else(|| "{value}".into()) }));
        }
        if let Some(p) = &self.param {
            body.insert("injectionConfig".into(), json!({ "paramName": p, "paramFormat": self.param_format.clone().unwrap_or_else(|| "{value}".into()) }));
        }
        if let Some(t) = &self.path_template {
            body.insert("injectionConfig".into(), json!({ "pathTemplate": t }));
        }
        if let (Some(r), Some(with)) = (&self.path_regex, &self.path_replacement) {
            body.insert(
                "injectionConfig".into(),
                json!({ "pathRegex": r, "pathReplacement": with }),
            );
        }
        if let Some(allow) = self.allow_plaintext {
            body.insert("allowPlaintext".into(), json!(allow));
        }
        Ok(())
    }
}

const COLUMNS: Columns = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("TYPE", "type"),
    ("HOST", "hostPattern"),
    ("PATH", "pathPattern"),
    ("PLAINTEXT", "allowPlaintext"),
    ("PREVIEW", "preview"),
];

/// A request body as a dry run shows it: the value masked.
fn masked(body: &Map<String, Value>) -> Value {
    let mut shown = body.clone();
    if shown.contains_key("value") {
        shown.insert("value".into(), json!("***"));
    }
    Value::Object(shown)
}

pub fn run(command: SecretsCommand, api: &ApiArgs, out: Out) -> Result<(), CliError> {
    let api = api.client()?;
    match command {
        SecretsCommand::List(list) => {
            let secrets = api.call("GET", "/v1/secrets", None)?;
            let hint = format!("Manage your secrets → {}/connections", api.host);
            out.list(&secrets, COLUMNS, &list, &hint)?;
        }
        SecretsCommand::Create {
            name,
            kind,
            host,
            fields,
            dry,
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
            fields.apply(&mut body)?;
            let created = api.change(
                dry.dry_run,
                "POST",
                "/v1/secrets",
                Some(&Value::Object(body.clone())),
            )?;
            if dry.dry_run {
                out.dry_run("Would create secret", masked(&body), created);
            } else {
                out.done(
                    &created,
                    &format!(
                        "stored secret {name} ({}), shown as {}",
                        created["id"].as_str().unwrap_or(""),
                        created["preview"].as_str().unwrap_or("")
                    ),
                );
            }
        }
        SecretsCommand::Update {
            secret,
            name,
            host,
            fields,
            value_stdin,
            dry,
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
            fields.apply(&mut body)?;
            let id = secret.get();
            let result = api.change(
                dry.dry_run,
                "PATCH",
                &format!("/v1/secrets/{}", encode(id)),
                Some(&Value::Object(body.clone())),
            )?;
            if dry.dry_run {
                out.dry_run(
                    "Would update secret",
                    json!({ "id": id, "input": masked(&body) }),
                    result,
                );
            } else {
                out.done(
                    &json!({ "status": "updated", "id": id }),
                    &format!("updated secret {id}"),
                );
            }
        }
        SecretsCommand::Delete { secret, dry } => {
            let id = secret.get();
            let result = api.change(
                dry.dry_run,
                "DELETE",
                &format!("/v1/secrets/{}", encode(id)),
                None,
            )?;
            if dry.dry_run {
                out.dry_run("Would delete secret", json!({ "id": id }), result);
            } else {
                out.done(
                    &json!({ "status": "deleted", "id": id }),
                    &format!("deleted secret {id}"),
                );
            }
        }
    }
    Ok(())
}
