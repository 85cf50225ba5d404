//! `onecli projects …` and `onecli api-keys …`: projects give teams that
//! share one gateway a scope each, and project keys reach only theirs.

use clap::Subcommand;
use serde_json::json;

use super::{CliError, Target};
use crate::client::{encode, ApiArgs};
use crate::output::{Columns, DryRunArg, GetArgs, ListArgs, Out};

const PROJECT_COLUMNS: Columns = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("IDENTIFIER", "identifier"),
    ("CREATED", "createdAt"),
];

const KEY_COLUMNS: Columns = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("PROJECT", "project"),
    ("CREATED", "createdAt"),
];

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// List projects (a project's key sees its own).
    List(ListArgs),
    /// One project, by id or identifier.
    Get {
        #[command(flatten)]
        project: Target,
        #[command(flatten)]
        show: GetArgs,
    },
    /// Create a project (admin keys).
    Create {
        /// A display name.
        #[arg(long)]
        name: String,
        /// A short name: lower-case letters, digits and dashes.
        #[arg(long)]
        identifier: String,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Delete an empty project and revoke its keys (admin keys).
    Delete {
        #[command(flatten)]
        project: Target,
        #[command(flatten)]
        dry: DryRunArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// List API keys (never the keys themselves).
    List(ListArgs),
    /// Create an API key, shown this once (admin keys).
    Create {
        /// A display name.
        #[arg(long)]
        name: String,
        /// The project the key works in (id or identifier); without it, an
        /// admin key for every project.
        #[arg(long = "for-project", value_name = "PROJECT")]
        for_project: Option<String>,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Revoke an API key (admin keys).
    Delete {
        #[command(flatten)]
        key: Target,
        #[command(flatten)]
        dry: DryRunArg,
    },
}

pub fn run_projects(command: ProjectsCommand, api: &ApiArgs, out: Out) -> Result<(), CliError> {
    let api = api.client()?;
    let at = |project: &Target| format!("/v1/projects/{}", encode(project.get()));
    match command {
        ProjectsCommand::List(list) => {
            let projects = api.call("GET", "/v1/projects", None)?;
            let hint = "Work in one with --project IDENTIFIER (or ONECLI_PROJECT)";
            out.list(&projects, PROJECT_COLUMNS, &list, hint)?;
        }
        ProjectsCommand::Get { project, show } => {
            out.item(
                &api.call("GET", &at(&project), None)?,
                PROJECT_COLUMNS,
                &show,
            )?;
        }
        ProjectsCommand::Create {
            name,
            identifier,
            dry,
        } => {
            let body = json!({ "name": name, "identifier": identifier });
            let created = api.change(dry.dry_run, "POST", "/v1/projects", Some(&body))?;
            if dry.dry_run {
                out.dry_run("Would create project", body, created);
            } else {
                out.done(
                    &created,
                    &format!(
                        "created project {identifier} ({})",
                        created["id"].as_str().unwrap_or("")
                    ),
                );
            }
        }
        ProjectsCommand::Delete { project, dry } => {
            let result = api.change(dry.dry_run, "DELETE", &at(&project), None)?;
            let id = project.get();
            if dry.dry_run {
                out.dry_run("Would delete project", json!({ "id": id }), result);
            } else {
                out.done(
                    &json!({ "status": "deleted", "id": id }),
                    &format!("deleted project {id}"),
                );
            }
        }
    }
    Ok(())
}

pub fn run_api_keys(command: ApiKeysCommand, api: &ApiArgs, out: Out) -> Result<(), CliError> {
    let api = api.client()?;
    match command {
        ApiKeysCommand::List(list) => {
            let keys = api.call("GET", "/v1/api-keys", None)?;
            let hint = "A key with no project is an admin key";
            out.list(&keys, KEY_COLUMNS, &list, hint)?;
        }
        ApiKeysCommand::Create {
            name,
            for_project,
            dry,
        } => {
            let body = json!({ "name": name, "project": for_project });
            let created = api.change(dry.dry_run, "POST", "/v1/api-keys", Some(&body))?;
            if dry.dry_run {
                out.dry_run("Would create API key", body, created);
            } else {
                // The key goes to stdout alone at a terminal too: it is
                // shown this once.
                let key = created["key"].as_str().unwrap_or("");
                out.done(
                    &created,
                    &format!("created API key {name} (shown once, keep it now):\n{key}"),
                );
            }
        }
        ApiKeysCommand::Delete { key, dry } => {
            let path = format!("/v1/api-keys/{}", encode(key.get()));
            let result = api.change(dry.dry_run, "DELETE", &path, None)?;
            let id = key.get();
            if dry.dry_run {
                out.dry_run("Would revoke API key", json!({ "id": id }), result);
            } else {
                out.done(
                    &json!({ "status": "deleted", "id": id }),
                    &format!("revoked API key {id}"),
                );
            }
        }
    }
    Ok(())
}
