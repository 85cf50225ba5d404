//! `onecli rules …`

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::CliError;
use crate::client::ApiArgs;
use crate::output::{done, print};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    List,
    /// Create a rule.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        host: String,
        #[arg(long, value_parser = ["block", "allow", "rate_limit", "manual_approval"])]
        action: String,
        #[command(flatten)]
        fields: RuleFields,
    },
    /// Change a rule; only what is given changes.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long, value_parser = ["block", "allow", "rate_limit", "manual_approval"])]
        action: Option<String>,
        #[arg(long, conflicts_with = "disabled")]
        enabled: bool,
        #[command(flatten)]
        fields: RuleFields,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct RuleFields {
    /// Path pattern (default *).
    #[arg(long)]
    path: Option<String>,
    /// A method the rule applies to (repeatable; none: all methods).
    #[arg(long = "method")]
    methods: Vec<String>,
    /// The agent (id) the rule applies to (default: all agents).
    #[arg(long)]
    agent: Option<String>,
    /// rate_limit: requests allowed per window.
    #[arg(long)]
    limit: Option<u32>,
    #[arg(long, value_parser = ["minute", "hour", "day"])]
    window: Option<String>,
    #[arg(long)]
    disabled: bool,
}

impl RuleFields {
    fn apply(&self, body: &mut Map<String, Value>) {
        if let Some(p) = &self.path {
            body.insert("pathPattern".into(), json!(p));
        }
        if !self.methods.is_empty() {
            body.insert("methods".into(), json!(self.methods));
        }
        if let Some(a) = &self.agent {
            body.insert("agentId".into(), json!(a));
        }
        if let Some(l) = self.limit {
            body.insert("rateLimit".into(), json!(l));
        }
        if let Some(w) = &self.window {
            body.insert("rateLimitWindow".into(), json!(w));
        }
        if self.disabled {
            body.insert("enabled".into(), json!(false));
        }
    }
}

pub fn run(command: RulesCommand, api: &ApiArgs, json: bool) -> Result<(), CliError> {
    let api = api.client()?;
    match command {
        RulesCommand::List => {
            let rules = api.call("GET", "/v1/rules", None)?;
            print(
                json,
                &rules,
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("ACTION", "action"),
                    ("HOST", "hostPattern"),
                    ("PATH", "pathPattern"),
                    ("METHODS", "methods"),
                    ("AGENT", "agentId"),
                    ("ENABLED", "enabled"),
                ],
            );
        }
        RulesCommand::Create {
            name,
            host,
            action,
            fields,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("hostPattern".into(), json!(host));
            body.insert("action".into(), json!(action));
            body.insert("enabled".into(), json!(true));
            fields.apply(&mut body);
            let created = api.call("POST", "/v1/rules", Some(&Value::Object(body)))?;
            done(
                json,
                &created,
                &format!(
                    "created rule {name} ({})",
                    created["id"].as_str().unwrap_or("")
                ),
            );
        }
        RulesCommand::Update {
            id,
            name,
            host,
            action,
            enabled,
            fields,
        } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(h) = host {
                body.insert("hostPattern".into(), json!(h));
            }
            if let Some(a) = action {
                body.insert("action".into(), json!(a));
            }
            if enabled {
                body.insert("enabled".into(), json!(true));
            }
            fields.apply(&mut body);
            let updated = api.call(
                "PATCH",
                &format!("/v1/rules/{}", crate::client::encode(&id)),
                Some(&Value::Object(body)),
            )?;
            done(json, &updated, &format!("updated rule {id}"));
        }
        RulesCommand::Delete { id } => {
            api.call(
                "DELETE",
                &format!("/v1/rules/{}", crate::client::encode(&id)),
                None,
            )?;
            done(
                json,
                &json!({ "deleted": id }),
                &format!("deleted rule {id}"),
            );
        }
    }
    Ok(())
}
