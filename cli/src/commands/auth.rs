//! `onecli auth login|logout|status`: the API key in
//! `~/.onecli/credentials/api-key` (0600).

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use clap::Subcommand;
use serde_json::json;

use super::{exit, CliError};
use crate::client::{credentials_path, ApiArgs};
use crate::output::{DryRunArg, Out};

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Check an API key against the control service and keep it (from --api-key or stdin).
    Login {
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Forget the kept API key.
    Logout {
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Where the key comes from, and whether the control service takes it.
    Status,
}

pub fn run(command: AuthCommand, api: &ApiArgs, out: Out) -> Result<(), CliError> {
    match command {
        AuthCommand::Login { dry } => {
            let key = match api.api_key.as_deref().filter(|k| !k.trim().is_empty()) {
                Some(k) => k.to_owned(),
                None => {
                    let mut k = String::new();
                    std::io::stdin()
                        .read_to_string(&mut k)
                        .map_err(|e| CliError::new(exit::GENERAL, e.to_string()))?;
                    k
                }
            };
            let key = key.trim().to_owned();
            if key.is_empty() {
                return Err(CliError::new(
                    exit::AUTH,
                    "no API key given: pass --api-key, or the key on stdin",
                ));
            }
            let checked = ApiArgs {
                api_host: api.api_host.clone(),
                api_key: Some(key.clone()),
                project: api.project.clone(),
            };
            checked.client()?.call("GET", "/v1/agents", None)?;
            let path = credentials_path();
            if dry.dry_run {
                out.dry_run(
                    "Would keep the API key",
                    json!({ "path": path, "apiHost": checked.host() }),
                    json!({ "valid": true }),
                );
                return Ok(());
            }
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            let io = |e: std::io::Error| {
                CliError::new(
                    exit::GENERAL,
                    format!("cannot write {}: {e}", path.display()),
                )
            };
            std::fs::create_dir_all(dir).map_err(io)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            std::io::Write::write_all(&mut f, format!("{key}\n").as_bytes()).map_err(io)?;
            out.done(
                &json!({ "status": "ok", "loggedIn": true, "apiHost": checked.host() }),
                &format!("logged in to {}", checked.host()),
            );
        }
        AuthCommand::Logout { dry } => {
            let path = credentials_path();
            if dry.dry_run {
                out.dry_run(
                    "Would forget the API key",
                    json!({ "path": path }),
                    json!({ "kept": path.exists() }),
                );
                return Ok(());
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(CliError::new(
                        exit::GENERAL,
                        format!("cannot remove {}: {e}", path.display()),
                    ))
                }
            }
            out.done(&json!({ "status": "ok", "loggedIn": false }), "logged out");
        }
        AuthCommand::Status => {
            let host = api.host();
            let source = if api.api_key.as_deref().is_some_and(|k| !k.trim().is_empty()) {
                "--api-key / ONECLI_API_KEY"
            } else if credentials_path().exists() {
                "~/.onecli/credentials/api-key"
            } else {
                "the local onecli serve's data dir"
            };
            let valid = api
                .client()
                .and_then(|c| c.call("GET", "/v1/agents", None))
                .is_ok();
            out.done(
                &json!({ "authenticated": valid, "apiHost": host, "keySource": source, "valid": valid }),
                &format!(
                    "{host}: key from {source}, {}",
                    if valid { "accepted" } else { "not accepted" }
                ),
            );
            if !valid {
                return Err(CliError::new(
                    exit::AUTH,
                    "the API key is missing or rejected",
                ));
            }
        }
    }
    Ok(())
}
