//! `onecli rules …`, with OneCLI's CLI flags accepted beside ours.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{CliError, Target};
use crate::client::{encode, ApiArgs};
use crate::output::{Columns, DryRunArg, GetArgs, ListArgs, Out};

const ACTIONS: [&str; 4] = ["block", "allow", "rate_limit", "manual_approval"];

const COLUMNS: Columns = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("ACTION", "action"),
    ("HOST", "hostPattern"),
    ("PATH", "pathPattern"),
    ("METHODS", "methods"),
    ("AGENT", "agentId"),
    ("ENABLED", "enabled"),
];

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List rules.
    List(ListArgs),
    /// One rule.
    Get {
        #[command(flatten)]
        rule: Target,
        #[command(flatten)]
        show: GetArgs,
    },
    /// Create a rule.
    Create {
        /// A display name.
        #[arg(long)]
        name: String,
        /// Host pattern: api.example.com, *.example.com, optional :port.
        #[arg(long, visible_alias = "host-pattern")]
        host: String,
        /// What the rule does to the requests it matches.
        #[arg(long, value_parser = ACTIONS)]
        action: String,
        #[command(flatten)]
        fields: RuleFields,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Change a rule; only what is given changes.
    Update {
        #[command(flatten)]
        rule: Target,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, visible_alias = "host-pattern")]
        host: Option<String>,
        #[arg(long, value_parser = ACTIONS)]
        action: Option<String>,
        #[command(flatten)]
        fields: RuleFields,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Delete a rule.
    Delete {
        #[command(flatten)]
        rule: Target,
        #[command(flatten)]
        dry: DryRunArg,
    },
}

#[derive(Debug, Args)]
pub struct RuleFields {
    /// Path pattern (default *).
    #[arg(long, visible_alias = "path-pattern")]
    path: Option<String>,
    /// A method the rule applies to (repeatable; none: all methods).
    #[arg(long = "method")]
    methods: Vec<String>,
    /// The agent (id) the rule applies to (default: all agents).
    #[arg(long, visible_alias = "agent-id")]
    agent: Option<String>,
    /// rate_limit: requests allowed per window.
    #[arg(long, visible_alias = "rate-limit")]
    limit: Option<u32>,
    /// rate_limit: the window.
    #[arg(long, visible_alias = "rate-limit-window", value_parser = ["minute", "hour", "day"])]
    window: Option<String>,
    /// Enable the rule, or with =false disable it (new rules start enabled).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "true|false", conflicts_with = "disabled")]
    enabled: Option<bool>,
    /// Disable the rule (--enabled=false).
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
        } else if let Some(enabled) = self.enabled {
            body.insert("enabled".into(), json!(enabled));
        }
    }
}

pub fn run(command: RulesCommand, api: &ApiArgs, out: Out) -> Result<(), CliError> {
    let api = api.client()?;
    let at = |rule: &Target| format!("/v1/rules/{}", encode(rule.get()));
    match command {
        RulesCommand::List(list) => {
            let rules = api.call("GET", "/v1/rules", None)?;
            let hint = format!("Manage your policy rules → {}/rules", api.host);
            out.list(&rules, COLUMNS, &list, &hint)?;
        }
        RulesCommand::Get { rule, show } => {
            out.item(&api.call("GET", &at(&rule), None)?, COLUMNS, &show)?;
        }
        RulesCommand::Create {
            name,
            host,
            action,
            fields,
            dry,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("hostPattern".into(), json!(host));
            body.insert("action".into(), json!(action));
            body.insert("enabled".into(), json!(true));
            fields.apply(&mut body);
            let body = Value::Object(body);
            let created = api.change(dry.dry_run, "POST", "/v1/rules", Some(&body))?;
            if dry.dry_run {
                out.dry_run("Would create rule", body, created);
            } else {
                out.done(
                    &created,
                    &format!(
                        "created rule {name} ({})",
                        created["id"].as_str().unwrap_or("")
                    ),
                );
            }
        }
        RulesCommand::Update {
            rule,
            name,
            host,
            action,
            fields,
            dry,
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
            fields.apply(&mut body);
            let body = Value::Object(body);
            let updated = api.change(dry.dry_run, "PATCH", &at(&rule), Some(&body))?;
            let id = rule.get();
            if dry.dry_run {
                out.dry_run(
                    "Would update rule",
                    json!({ "id": id, "input": body }),
                    updated,
                );
            } else {
                out.done(&updated, &format!("updated rule {id}"));
            }
        }
        RulesCommand::Delete { rule, dry } => {
            let result = api.change(dry.dry_run, "DELETE", &at(&rule), None)?;
            let id = rule.get();
            if dry.dry_run {
                out.dry_run("Would delete rule", json!({ "id": id }), result);
            } else {
                out.done(
                    &json!({ "status": "deleted", "id": id }),
                    &format!("deleted rule {id}"),
                );
            }
        }
    }
    Ok(())
}
