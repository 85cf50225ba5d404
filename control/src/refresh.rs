//! Keeps ChatGPT logins (Codex's `auth.json`, stored as `openai` secrets)
//! fresh: before an access token expires, the control service refreshes it
//! at the token endpoint with the real refresh token, stores the new tokens
//! sealed, and publishes, so that gateways inject the new access token.
//! Agents hold a placeholder login whose refreshes the gateway answers;
//! only this service ever sends the real refresh token anywhere.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use boring::ssl::{SslConnector, SslMethod};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use onecli_policy::credential::{ChatgptLogin, CODEX_CLIENT_ID};
use zeroize::Zeroizing;

use crate::api::Api;

/// Where and how often.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// The OAuth token endpoint (`https://auth.openai.com/oauth/token`).
    pub token_url: String,
    /// A CA to trust beside the system's (a test's, a corporate proxy's).
    pub extra_ca: Option<PathBuf>,
    /// How often logins are looked at.
    pub every: Duration,
    /// A login is refreshed once its access token has less than this left.
    pub ahead: Duration,
}

pub const DEFAULT_TOKEN_URL: &str = "https://auth.openai.com/oauth/token";
/// Without an expiry in the access token: Codex's own rule, eight days.
const REFRESH_AFTER: Duration = Duration::from_secs(8 * 24 * 3600);
const TIMEOUT: Duration = Duration::from_secs(20);
/// The most of a token endpoint's answer read.
const MAX_ANSWER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("token endpoint URL {0:?} is not https://HOST[:PORT]/PATH")]
    BadUrl(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot reach the token endpoint: {0}")]
    Connect(String),
    #[error("the token endpoint answered {0}")]
    Status(u16),
    #[error("the token endpoint's answer holds no access token")]
    BadAnswer,
    #[error("the token endpoint did not answer within {0:?}")]
    Timeout(Duration),
}

struct Endpoint {
    host: String,
    port: u16,
    path: String,
}

fn endpoint(url: &str) -> Result<Endpoint, RefreshError> {
    let bad = || RefreshError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
        None => (authority, 443),
    };
    if host.is_empty() || host.contains(['@', '[', ' ']) {
        return Err(bad());
    }
    Ok(Endpoint {
        host: host.to_owned(),
        port,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    })
}

/// Refreshes due logins every `config.every`, until the process ends.
pub async fn run(api: Arc<Api>, config: RefreshConfig) {
    let client = match Client::new(&config) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "ChatGPT logins will not be refreshed");
            return;
        }
    };
    let mut failing = Failing::default();
    loop {
        refresh_due(&api, &client, &config, &mut failing).await;
        tokio::time::sleep(config.every).await;
    }
}

/// Logins whose refresh failed, by secret id: retried later and later, and
/// a refused one (400/401) not again until its value changes, so that no
/// login (a tenant's junk included) costs every pass a round trip.
#[derive(Default)]
pub struct Failing(std::collections::HashMap<String, Failure>);

struct Failure {
    /// Which refresh token failed: a new one is tried at once.
    refresh_sha256: [u8; 32],
    next: std::time::Instant,
    failures: u32,
    refused: bool,
}

/// The longest wait between two tries of a failing login.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

impl Failing {
    fn skip(&self, id: &str, login: &ChatgptLogin) -> bool {
        self.0.get(id).is_some_and(|f| {
            f.refresh_sha256 == onecli_policy::token_sha256(&login.refresh_token)
                && (f.refused || std::time::Instant::now() < f.next)
        })
    }

    fn failed(&mut self, id: &str, login: &ChatgptLogin, every: Duration, refused: bool) {
        let sha = onecli_policy::token_sha256(&login.refresh_token);
        let failures = match self.0.get(id) {
            Some(f) if f.refresh_sha256 == sha => f.failures + 1,
            _ => 1,
        };
        let wait = every
            .saturating_mul(1u32 << failures.min(16))
            .min(MAX_BACKOFF);
        self.0.insert(
            id.to_owned(),
            Failure {
                refresh_sha256: sha,
                next: std::time::Instant::now() + wait,
                failures,
                refused,
            },
        );
    }
}

/// One pass: every login whose access token is about to expire.
pub async fn refresh_due(
    api: &Api,
    client: &Client,
    config: &RefreshConfig,
    failing: &mut Failing,
) {
    let logins = match api.read_store(|store| store.chatgpt_logins()).await {
        Ok(logins) => logins,
        Err(error) => {
            tracing::warn!(error = %error.message(), "cannot read the ChatGPT logins");
            return;
        }
    };
    let now = unix_now();
    let known: std::collections::HashSet<&str> =
        logins.iter().map(|(id, _, _)| id.as_str()).collect();
    failing.0.retain(|id, _| known.contains(id.as_str()));
    for (id, name, login) in logins {
        if !due(&login, now, config.ahead) || failing.skip(&id, &login) {
            continue;
        }
        match client.refresh(&login).await {
            Ok(fresh) => {
                failing.0.remove(&id);
                let old_refresh = login.refresh_token.clone();
                let stored = api
                    .write_store(move |store| store.refreshed_login(&id, &old_refresh, &fresh))
                    .await;
                match stored {
                    Ok(true) => {
                        crate::metrics::metrics().login_refreshed("ok");
                        tracing::info!(secret = %name, "ChatGPT login refreshed");
                    }
                    // Replaced or deleted while it was being refreshed.
                    Ok(false) => {}
                    Err(error) => {
                        crate::metrics::metrics().login_refreshed("store_failed");
                        tracing::warn!(secret = %name, error = %error.message(), "cannot store a refreshed ChatGPT login");
                    }
                }
            }
            Err(error) => {
                crate::metrics::metrics().login_refreshed("failed");
                let refused = matches!(error, RefreshError::Status(400 | 401));
                failing.failed(&id, &login, config.every, refused);
                match error {
                    RefreshError::Status(400 | 401) => tracing::error!(
                        secret = %name, %error,
                        "the ChatGPT login was refused: store a new auth.json (codex login, then onecli secrets update)"
                    ),
                    error => {
                        tracing::warn!(secret = %name, %error, "ChatGPT login refresh failed; trying again later")
                    }
                }
            }
        }
    }
}

/// Whether a login's access token expires within `ahead` (or, when it
/// does not say, was last refreshed long ago).
pub fn due(login: &ChatgptLogin, now: u64, ahead: Duration) -> bool {
    match login.access_expires_at() {
        Some(exp) => exp <= now + ahead.as_secs(),
        None => {
            let last = login
                .last_refresh
                .as_deref()
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| t.unix_timestamp().max(0) as u64);
            last.is_none_or(|last| last + REFRESH_AFTER.as_secs() <= now)
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// HTTPS to the token endpoint: verified TLS, HTTP/1.1, one request a
/// connection.
pub struct Client {
    endpoint: Endpoint,
    tls: SslConnector,
}

impl Client {
    pub fn new(config: &RefreshConfig) -> Result<Client, RefreshError> {
        let endpoint = endpoint(&config.token_url)?;
        let tls = |e: boring::error::ErrorStack| RefreshError::Tls(e.to_string());
        let mut builder = SslConnector::builder(SslMethod::tls()).map_err(tls)?;
        builder.set_default_verify_paths().map_err(tls)?;
        if let Some(ca) = &config.extra_ca {
            builder.load_verify_locations(Some(ca), None).map_err(tls)?;
        }
        builder.set_alpn_protos(b"\x08http/1.1").map_err(tls)?;
        Ok(Client {
            endpoint,
            tls: builder.build(),
        })
    }

    /// The login with new tokens; the refresh token rotates when the
    /// endpoint sends a new one.
    pub async fn refresh(&self, login: &ChatgptLogin) -> Result<ChatgptLogin, RefreshError> {
        tokio::time::timeout(TIMEOUT, self.exchange(login))
            .await
            .map_err(|_| RefreshError::Timeout(TIMEOUT))?
    }

    async fn exchange(&self, login: &ChatgptLogin) -> Result<ChatgptLogin, RefreshError> {
        let e = &self.endpoint;
        let connect = |err: String| RefreshError::Connect(err);
        let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(|err| connect(err.to_string()))?;
        let config = self
            .tls
            .configure()
            .map_err(|err| RefreshError::Tls(err.to_string()))?;
        let stream = tokio_boring::connect(config, &e.host, tcp)
            .await
            .map_err(|err| RefreshError::Tls(err.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| connect(err.to_string()))?;
        tokio::spawn(connection);
        let body = Zeroizing::new(
            serde_json::json!({
                "client_id": CODEX_CLIENT_ID,
                "grant_type": "refresh_token",
                "refresh_token": login.refresh_token.as_str(),
                "scope": "openid profile email",
            })
            .to_string(),
        );
        let authority = if e.port == 443 {
            e.host.clone()
        } else {
            format!("{}:{}", e.host, e.port)
        };
        let request = hyper::Request::post(e.path.as_str())
            .header("host", authority)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header("user-agent", concat!("onecli/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body.as_bytes().to_vec())))
            .map_err(|_| RefreshError::BadUrl(e.path.clone()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| connect(err.to_string()))?;
        let status = response.status().as_u16();
        // The answer holds tokens: never quoted, never logged.
        let answer = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| RefreshError::BadAnswer)?
            .to_bytes();
        let answer = Zeroizing::new(answer.to_vec());
        if status != 200 {
            return Err(RefreshError::Status(status));
        }
        let tokens: serde_json::Value =
            serde_json::from_slice(&answer).map_err(|_| RefreshError::BadAnswer)?;
        let token = |name: &str| {
            tokens
                .get(name)
                .and_then(|v| v.as_str())
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
                .map(|t| Zeroizing::new(t.to_owned()))
        };
        let access_token = token("access_token").ok_or(RefreshError::BadAnswer)?;
        Ok(ChatgptLogin {
            access_token,
            refresh_token: token("refresh_token").unwrap_or_else(|| login.refresh_token.clone()),
            id_token: token("id_token").unwrap_or_else(|| login.id_token.clone()),
            account_id: login.account_id.clone(),
            last_refresh: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(exp: Option<u64>, last_refresh: Option<&str>) -> ChatgptLogin {
        use base64::Engine;
        let claims = match exp {
            Some(exp) => serde_json::json!({ "exp": exp }),
            None => serde_json::json!({}),
        };
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        ChatgptLogin {
            access_token: Zeroizing::new(format!(
                "{}.{}.sig",
                b64(b"{}"),
                b64(claims.to_string().as_bytes())
            )),
            refresh_token: Zeroizing::new("rt".into()),
            id_token: Zeroizing::new(String::new()),
            account_id: "acct".into(),
            last_refresh: last_refresh.map(str::to_owned),
        }
    }

    #[test]
    fn logins_are_due_before_they_expire() {
        let hour = Duration::from_secs(3600);
        let now = 1_800_000_000;
        assert!(due(&login(Some(now + 60), None), now, hour));
        assert!(!due(&login(Some(now + 7200), None), now, hour));
        // No expiry: eight days after the last refresh, or now if unknown.
        assert!(due(&login(None, None), now, hour));
        assert!(due(&login(None, Some("2020-01-01T00:00:00Z")), now, hour));
        let recent = time::OffsetDateTime::from_unix_timestamp(now as i64 - 3600)
            .expect("time")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format");
        assert!(!due(&login(None, Some(&recent)), now, hour));
    }

    #[test]
    fn failing_logins_wait_longer_and_refused_ones_until_they_change() {
        let every = Duration::from_millis(100);
        let mut failing = Failing::default();
        let a = login(None, None);
        assert!(!failing.skip("a", &a));
        failing.failed("a", &a, every, false);
        assert!(failing.skip("a", &a), "waits after a failure");
        assert!(failing.0["a"].next > std::time::Instant::now() + every);
        failing.failed("a", &a, every, false);
        assert_eq!(failing.0["a"].failures, 2);
        // Refused: not again, however long, until the refresh token changes.
        failing.failed("a", &a, Duration::ZERO, true);
        assert!(failing.skip("a", &a));
        let mut changed = login(None, None);
        changed.refresh_token = Zeroizing::new("rt-new".into());
        assert!(!failing.skip("a", &changed));
    }

    #[test]
    fn token_urls_are_https_only() {
        let e = endpoint("https://auth.openai.com/oauth/token").expect("url");
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("auth.openai.com", 443, "/oauth/token")
        );
        let e = endpoint("https://localhost:8443/t").expect("url");
        assert_eq!((e.host.as_str(), e.port), ("localhost", 8443));
        assert!(endpoint("http://auth.openai.com/oauth/token").is_err());
        assert!(endpoint("https://user@host/x").is_err());
    }
}
