//! Talking to the control service from the command line: where it is, the
//! API key, and one call that maps every failure to a clear sentence and an
//! exit code.
//!
//! The API host comes from `--api-host`, `ONECLI_API_HOST`, then
//! `~/.onecli/config.json` (`api-host`), then the local `onecli serve`
//! (`http://127.0.0.1:10254`). The key comes from `--api-key`,
//! `ONECLI_API_KEY`, `~/.onecli/credentials/api-key`, then the local serve's
//! `api-key` in the data directory the servers default to
//! (`ONECLI_DATA_DIR`, else `~/.onecli/data`), when readable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use onecli_gateway::control_client::ControlClient;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::commands::{exit, CliError};

pub const DEFAULT_API_HOST: &str = "http://127.0.0.1:10254";
const TIMEOUT: Duration = Duration::from_secs(40);
const MAX_BODY: usize = 64 * 1024 * 1024;

/// `~/.onecli`.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".onecli")
}

/// `~/.onecli/config.json`: `{"api-host": …, "agent": …}`.
pub fn config_path() -> PathBuf {
    home_dir().join("config.json")
}

pub fn credentials_path() -> PathBuf {
    home_dir().join("credentials").join("api-key")
}

/// Where a key is read from when none is given: `onecli auth login`'s, then
/// the one a local `onecli serve` writes into its (default) data directory.
fn key_files() -> [PathBuf; 2] {
    [
        credentials_path(),
        crate::commands::gateway::default_data_dir().join("api-key"),
    ]
}

pub fn read_config() -> serde_json::Map<String, Value> {
    std::fs::read_to_string(config_path())
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

pub fn config_value(key: &str) -> Option<String> {
    read_config()
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Flags every API command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The control service (default: ~/.onecli/config.json, else the local onecli serve).
    #[arg(long, global = true, env = "ONECLI_API_HOST")]
    pub api_host: Option<String>,
    /// The API key (default: ONECLI_API_KEY, ~/.onecli/credentials/api-key, else the local serve's).
    #[arg(long, global = true, env = "ONECLI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The project to work in (id or identifier), for an admin key; a
    /// project's own key works in its project (sent as X-Project-Id).
    #[arg(long, global = true, env = "ONECLI_PROJECT")]
    pub project: Option<String>,
}

impl ApiArgs {
    pub fn host(&self) -> String {
        self.api_host
            .clone()
            .filter(|h| !h.trim().is_empty())
            .or_else(|| config_value("api-host"))
            .unwrap_or_else(|| DEFAULT_API_HOST.to_owned())
            .trim_end_matches('/')
            .to_owned()
    }

    /// The key given, else the first key file found. An empty
    /// `ONECLI_API_KEY=` counts as unset.
    pub fn key(&self) -> Option<Zeroizing<String>> {
        if let Some(k) = self.api_key.as_deref().filter(|k| !k.trim().is_empty()) {
            return Some(Zeroizing::new(k.trim().to_owned()));
        }
        key_files()
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|k| Zeroizing::new(k.trim().to_owned()))
            .filter(|k| !k.is_empty())
    }

    pub fn client(&self) -> Result<Api, CliError> {
        let host = self.host();
        let key = self.key().ok_or_else(|| {
            let looked: Vec<String> = key_files().iter().map(|p| p.display().to_string()).collect();
            CliError::new(
                exit::AUTH,
                format!(
                    "no API key (looked in {}; an `onecli serve --data-dir DIR` keeps it in DIR/api-key): \
                     run `onecli auth login`, set ONECLI_API_KEY, or pass --api-key",
                    looked.join(" and ")
                ),
            )
        })?;
        let mut client = ControlClient::new(&host, key).map_err(|e| {
            CliError::new(
                exit::CONFIG,
                format!("{e} (set it with `onecli config set api-host URL`)"),
            )
        })?;
        if let Some(project) = self
            .project
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            client = client
                .with_project(project)
                .map_err(|e| CliError::config(e.to_string()))?;
        }
        Ok(Api {
            client: Arc::new(client),
            host,
        })
    }
}

pub struct Api {
    client: Arc<ControlClient>,
    pub host: String,
}

impl Api {
    /// A call whose 2xx answer is JSON (or empty); anything else is an error.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let text = self.call_text(method, path, body)?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|_| {
            CliError::new(
                exit::GENERAL,
                format!("the control service sent something that is not JSON for {path}"),
            )
        })
    }

    /// A change, or with `dry_run` the same change checked by the control
    /// service and rolled back (`/v1/dry-run/…`; a server without dry runs
    /// answers 404 and changes nothing either).
    pub fn change(
        &self,
        dry_run: bool,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        if !dry_run {
            return self.call(method, path, body);
        }
        let path = path
            .strip_prefix("/v1/")
            .map(|rest| format!("/v1/dry-run/{rest}"))
            .unwrap_or_else(|| path.to_owned());
        self.call(method, &path, body)
    }

    pub fn call_text(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<String, CliError> {
        let body = body.map(|b| b.to_string());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::new(exit::GENERAL, e.to_string()))?;
        let answer = runtime
            .block_on(self.client.request(
                method,
                path,
                body.as_deref().map(str::as_bytes),
                TIMEOUT,
                MAX_BODY,
            ))
            .map_err(|e| {
                CliError::new(
                    exit::UNREACHABLE,
                    format!("cannot reach the control service at {}: {e}", self.host),
                )
            })?;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        match answer.status {
            200..=299 => Ok(text),
            status => Err(status_error(status, &text)),
        }
    }
}

/// The API's error, as a sentence and an exit code.
fn status_error(status: u16, body: &str) -> CliError {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let message = parsed["error"]["message"]
        .as_str()
        .or_else(|| parsed["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("the control service answered {status}"));
    let code = match status {
        401 | 403 => {
            return CliError::new(
                exit::AUTH,
                "the API key was rejected: run `onecli auth login` with a valid key",
            )
        }
        404 | 410 => exit::NOT_FOUND,
        400 | 409 | 413 | 422 => exit::REFUSED,
        _ => exit::GENERAL,
    };
    CliError::new(code, message)
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_map_to_exit_codes() {
        assert_eq!(status_error(401, "").exit_code, exit::AUTH);
        let e = status_error(
            409,
            r#"{"error":{"message":"An agent with identifier \"x\" already exists.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            (e.exit_code, e.message.as_str()),
            (
                exit::REFUSED,
                "An agent with identifier \"x\" already exists."
            )
        );
        let e = status_error(404, r#"{"error":"approval_not_found"}"#);
        assert_eq!(
            (e.exit_code, e.message.as_str()),
            (exit::NOT_FOUND, "approval_not_found")
        );
        assert_eq!(status_error(500, "oops").exit_code, exit::GENERAL);
    }
}
