//! `onecli agents …`

use clap::Subcommand;
use serde_json::json;

use super::CliError;
use crate::client::ApiArgs;
use crate::output::{done, print};

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents (with their tokens under --json).
    List,
    /// Create an agent.
    Create {
        name: String,
        /// ^[a-z0-9][a-z0-9-]{0,49}$ (default: from the name).
        #[arg(long)]
        identifier: Option<String>,
    },
    /// Delete an agent (by id or identifier).
    Delete {
        agent: String,
    },
    Rename {
        agent: String,
        name: String,
    },
    /// Issue a new proxy token; the old one stops working.
    RegenerateToken {
        agent: String,
    },
    /// The secret ids assigned to an agent in selective mode.
    Secrets {
        agent: String,
    },
    /// Assign exactly these secrets.
    SetSecrets {
        agent: String,
        secret_ids: Vec<String>,
    },
    /// all: every secret; selective: only the assigned ones.
    SetSecretMode {
        agent: String,
        #[arg(value_parser = ["all", "selective"])]
        mode: String,
    },
    /// allow: everything not blocked; deny: only hosts an allow rule names.
    SetPolicyMode {
        agent: String,
        #[arg(value_parser = ["allow", "deny"])]
        mode: String,
    },
}

pub fn run(command: AgentsCommand, api: &ApiArgs, json: bool) -> Result<(), CliError> {
    let api = api.client()?;
    let enc = |s: &str| crate::client::encode(s);
    match command {
        AgentsCommand::List => {
            let agents = api.call("GET", "/v1/agents", None)?;
            print(
                json,
                &agents,
                &[
                    ("ID", "id"),
                    ("IDENTIFIER", "identifier"),
                    ("NAME", "name"),
                    ("DEFAULT", "isDefault"),
                    ("SECRETS", "secretMode"),
                    ("POLICY", "policyMode"),
                ],
            );
        }
        AgentsCommand::Create { name, identifier } => {
            let identifier = identifier.unwrap_or_else(|| slug(&name));
            let created = api.call(
                "POST",
                "/v1/agents",
                Some(&json!({ "name": name, "identifier": identifier })),
            )?;
            done(
                json,
                &created,
                &format!(
                    "created agent {identifier} ({})",
                    created["id"].as_str().unwrap_or("")
                ),
            );
        }
        AgentsCommand::Delete { agent } => {
            api.call("DELETE", &format!("/v1/agents/{}", enc(&agent)), None)?;
            done(
                json,
                &json!({ "deleted": agent }),
                &format!("deleted agent {agent}"),
            );
        }
        AgentsCommand::Rename { agent, name } => {
            api.call(
                "PATCH",
                &format!("/v1/agents/{}", enc(&agent)),
                Some(&json!({ "name": name })),
            )?;
            done(
                json,
                &json!({ "success": true }),
                &format!("renamed agent {agent}"),
            );
        }
        AgentsCommand::RegenerateToken { agent } => {
            let token = api.call(
                "POST",
                &format!("/v1/agents/{}/regenerate-token", enc(&agent)),
                None,
            )?;
            done(
                json,
                &token,
                "issued a new token (see it with `onecli agents list --json`)",
            );
        }
        AgentsCommand::Secrets { agent } => {
            let ids = api.call("GET", &format!("/v1/agents/{}/secrets", enc(&agent)), None)?;
            if json {
                print(true, &ids, &[]);
            } else {
                for id in ids.as_array().into_iter().flatten() {
                    crate::output::line(format_args!("{}", id.as_str().unwrap_or_default()));
                }
            }
        }
        AgentsCommand::SetSecrets { agent, secret_ids } => {
            api.call(
                "PUT",
                &format!("/v1/agents/{}/secrets", enc(&agent)),
                Some(&json!({ "secretIds": secret_ids })),
            )?;
            done(
                json,
                &json!({ "success": true }),
                &format!("assigned {} secret(s) to {agent}", secret_ids.len()),
            );
        }
        AgentsCommand::SetSecretMode { agent, mode } => {
            api.call(
                "PATCH",
                &format!("/v1/agents/{}/secret-mode", enc(&agent)),
                Some(&json!({ "mode": mode })),
            )?;
            done(
                json,
                &json!({ "success": true }),
                &format!("{agent} now sees {mode} secrets"),
            );
        }
        AgentsCommand::SetPolicyMode { agent, mode } => {
            api.call(
                "PATCH",
                &format!("/v1/agents/{}/policy-mode", enc(&agent)),
                Some(&json!({ "mode": mode })),
            )?;
            done(
                json,
                &json!({ "success": true }),
                &format!("{agent} is now in {mode} mode"),
            );
        }
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
