//! `onecli agents …`. Every command takes the agent as an argument or as
//! `--id`, by id or identifier; OneCLI's CLI flags are accepted beside ours.

use clap::{Args, Subcommand};
use serde_json::json;

use super::{CliError, Target};
use crate::client::{encode, Api, ApiArgs};
use crate::output::{Columns, DryRunArg, GetArgs, ListArgs, Out};

const COLUMNS: Columns = &[
    ("ID", "id"),
    ("IDENTIFIER", "identifier"),
    ("NAME", "name"),
    ("DEFAULT", "isDefault"),
    ("SECRETS", "secretMode"),
    ("POLICY", "policyMode"),
];

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents (with their tokens in JSON).
    List(ListArgs),
    /// One agent.
    Get {
        #[command(flatten)]
        agent: Target,
        #[command(flatten)]
        show: GetArgs,
    },
    /// The default agent (the one `onecli run` and container-config use when none is named).
    GetDefault(GetArgs),
    /// Create an agent.
    Create {
        /// A display name.
        #[arg(value_name = "NAME", required_unless_present = "name_flag")]
        name: Option<String>,
        /// The name, as a flag.
        #[arg(long = "name", value_name = "NAME", conflicts_with = "name")]
        name_flag: Option<String>,
        /// ^[a-z0-9][a-z0-9-]{0,49}$ (default: from the name).
        #[arg(long)]
        identifier: Option<String>,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Delete an agent.
    Delete {
        #[command(flatten)]
        agent: Target,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Rename an agent: `rename AGENT NAME`, or `rename --id ID --name NAME`.
    Rename {
        #[command(flatten)]
        agent: Target,
        /// The new name.
        #[arg(value_name = "NAME", required_unless_present = "name_flag")]
        name: Option<String>,
        /// The new name, as a flag.
        #[arg(long = "name", value_name = "NAME", conflicts_with = "name")]
        name_flag: Option<String>,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Issue a new proxy token; the old one stops working.
    RegenerateToken {
        #[command(flatten)]
        agent: Target,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// The secret ids assigned to an agent.
    Secrets {
        #[command(flatten)]
        agent: Target,
    },
    /// Give an agent exactly these secrets, and only them (selective mode).
    SetSecrets(SetSecrets),
    /// all: every secret; selective: only the assigned ones.
    SetSecretMode {
        #[command(flatten)]
        agent: Target,
        #[command(flatten)]
        mode: Mode<SecretModes>,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// allow: everything not blocked; deny: only hosts an allow rule names.
    SetPolicyMode {
        #[command(flatten)]
        agent: Target,
        #[command(flatten)]
        mode: Mode<PolicyModes>,
        #[command(flatten)]
        dry: DryRunArg,
    },
}

#[derive(Debug, Args)]
pub struct SetSecrets {
    #[command(flatten)]
    agent: Target,
    /// The secret ids.
    #[arg(value_name = "SECRET_ID")]
    secret_ids: Vec<String>,
    /// The same, comma-separated.
    #[arg(
        long = "secret-ids",
        value_delimiter = ',',
        value_name = "ID,…",
        conflicts_with = "secret_ids"
    )]
    secret_ids_flag: Option<Vec<String>>,
    /// Give it no secrets at all (an empty list is refused otherwise: an
    /// empty variable would cut the agent off).
    #[arg(long, conflicts_with_all = ["secret_ids", "secret_ids_flag"])]
    none: bool,
    #[command(flatten)]
    dry: DryRunArg,
}

/// The values a mode takes.
pub trait Modes {
    const VALUES: [&'static str; 2];
}

#[derive(Debug)]
pub struct SecretModes;
impl Modes for SecretModes {
    const VALUES: [&'static str; 2] = ["all", "selective"];
}

#[derive(Debug)]
pub struct PolicyModes;
impl Modes for PolicyModes {
    const VALUES: [&'static str; 2] = ["allow", "deny"];
}

/// A mode, as an argument or as `--mode`.
#[derive(Debug, Args)]
pub struct Mode<M: Modes + Send + Sync + 'static> {
    /// The mode.
    #[arg(value_name = "MODE", value_parser = M::VALUES, required_unless_present = "mode_flag")]
    mode: Option<String>,
    /// The same, as a flag.
    #[arg(long = "mode", value_name = "MODE", value_parser = M::VALUES, conflicts_with = "mode")]
    mode_flag: Option<String>,
    #[arg(skip)]
    _values: std::marker::PhantomData<M>,
}

impl<M: Modes + Send + Sync + 'static> Mode<M> {
    fn get(&self) -> &str {
        self.mode
            .as_deref()
            .or(self.mode_flag.as_deref())
            .unwrap_or_default()
    }
}

pub fn run(command: AgentsCommand, api: &ApiArgs, out: Out) -> Result<(), CliError> {
    let api = api.client()?;
    let hint = format!("Manage your agents → {}/agents", api.host);
    let at = |agent: &Target| format!("/v1/agents/{}", encode(agent.get()));
    match command {
        AgentsCommand::List(list) => {
            let agents = api.call("GET", "/v1/agents", None)?;
            out.list(&agents, COLUMNS, &list, &hint)?;
        }
        AgentsCommand::Get { agent, show } => {
            out.item(&api.call("GET", &at(&agent), None)?, COLUMNS, &show)?;
        }
        AgentsCommand::GetDefault(show) => {
            out.item(
                &api.call("GET", "/v1/agents/default", None)?,
                COLUMNS,
                &show,
            )?;
        }
        AgentsCommand::Create {
            name,
            name_flag,
            identifier,
            dry,
        } => {
            let name = name.or(name_flag).unwrap_or_default();
            let identifier = identifier.unwrap_or_else(|| slug(&name));
            let body = json!({ "name": name, "identifier": identifier });
            let created = api.change(dry.dry_run, "POST", "/v1/agents", Some(&body))?;
            if dry.dry_run {
                out.dry_run("Would create agent", body, created);
            } else {
                out.done(
                    &created,
                    &format!(
                        "created agent {identifier} ({})",
                        created["id"].as_str().unwrap_or("")
                    ),
                );
            }
        }
        AgentsCommand::Delete { agent, dry } => {
            let result = api.change(dry.dry_run, "DELETE", &at(&agent), None)?;
            let id = agent.get();
            if dry.dry_run {
                out.dry_run("Would delete agent", json!({ "id": id }), result);
            } else {
                out.done(
                    &json!({ "status": "deleted", "id": id }),
                    &format!("deleted agent {id}"),
                );
            }
        }
        AgentsCommand::Rename {
            agent,
            name,
            name_flag,
            dry,
        } => {
            let name = name.or(name_flag).unwrap_or_default();
            let body = json!({ "name": name });
            let result = api.change(dry.dry_run, "PATCH", &at(&agent), Some(&body))?;
            let id = agent.get();
            if dry.dry_run {
                out.dry_run(
                    "Would rename agent",
                    json!({ "id": id, "name": name }),
                    result,
                );
            } else {
                out.done(
                    &json!({ "status": "renamed", "id": id, "name": name }),
                    &format!("renamed agent {id}"),
                );
            }
        }
        AgentsCommand::RegenerateToken { agent, dry } => {
            let path = format!("{}/regenerate-token", at(&agent));
            let token = api.change(dry.dry_run, "POST", &path, None)?;
            if dry.dry_run {
                // The would-be token is not worth showing: it never works.
                out.dry_run(
                    "Would regenerate agent token",
                    json!({ "id": agent.get() }),
                    json!({ "success": true }),
                );
            } else {
                out.done(
                    &token,
                    "issued a new token (see it with `onecli agents list --json`)",
                );
            }
        }
        AgentsCommand::Secrets { agent } => {
            let ids = api.call("GET", &format!("{}/secrets", at(&agent)), None)?;
            if out.json {
                out.show(&ids, &[]);
            } else {
                for id in ids.as_array().into_iter().flatten() {
                    crate::output::line(id.as_str().unwrap_or_default());
                }
            }
        }
        AgentsCommand::SetSecrets(args) => set_secrets(&api, args, out)?,
        AgentsCommand::SetSecretMode { agent, mode, dry } => {
            let (id, mode) = (agent.get(), mode.get());
            let sentence = format!("{id} now sees {mode} secrets");
            set_mode(&api, out, id, "secret", mode, dry, &sentence)?;
        }
        AgentsCommand::SetPolicyMode { agent, mode, dry } => {
            let (id, mode) = (agent.get(), mode.get());
            let sentence = format!("{id} is now in {mode} mode");
            set_mode(&api, out, id, "policy", mode, dry, &sentence)?;
        }
    }
    Ok(())
}

/// `PATCH /v1/agents/ID/{kind}-mode`, or its dry run.
fn set_mode(
    api: &Api,
    out: Out,
    id: &str,
    kind: &str,
    mode: &str,
    dry: DryRunArg,
    sentence: &str,
) -> Result<(), CliError> {
    let path = format!("/v1/agents/{}/{kind}-mode", encode(id));
    let result = api.change(dry.dry_run, "PATCH", &path, Some(&json!({ "mode": mode })))?;
    let value = json!({ "status": "updated", "id": id, "mode": mode });
    if dry.dry_run {
        out.dry_run(&format!("Would set agent {kind} mode"), value, result);
    } else {
        out.done(&value, sentence);
    }
    Ok(())
}

/// Assigns the secrets, then switches the agent to selective mode: in `all`
/// mode an assignment would change nothing, and whoever names an agent's
/// secrets means it to have those only.
fn set_secrets(api: &Api, args: SetSecrets, out: Out) -> Result<(), CliError> {
    let ids: Vec<String> = args
        .secret_ids_flag
        .unwrap_or(args.secret_ids)
        .into_iter()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .collect();
    if ids.is_empty() && !args.none {
        return Err(CliError::new(
            crate::commands::exit::REFUSED,
            "no secret ids given: name them, or pass --none to give the agent no secrets",
        ));
    }
    let id = args.agent.get();
    let at = format!("/v1/agents/{}", encode(id));
    let dry = args.dry.dry_run;
    let assigned = api.change(
        dry,
        "PUT",
        &format!("{at}/secrets"),
        Some(&json!({ "secretIds": ids })),
    )?;
    api.change(
        dry,
        "PATCH",
        &format!("{at}/secret-mode"),
        Some(&json!({ "mode": "selective" })),
    )?;
    let value =
        json!({ "status": "updated", "id": id, "secret_ids": ids, "secret_mode": "selective" });
    if dry {
        out.dry_run(
            "Would set agent secrets and switch to selective mode",
            value,
            assigned,
        );
    } else {
        out.done(
            &value,
            &format!("{id} now has {} secret(s), and only those", ids.len()),
        );
    }
    Ok(())
}

/// `My Agent 2` → `my-agent-2`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').chars().take(50).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs() {
        assert_eq!(super::slug("My Agent 2"), "my-agent-2");
        assert_eq!(super::slug("  Claude  Code!! "), "claude-code");
    }
}
