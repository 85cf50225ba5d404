//! A gateway fed by a control service (SPEC §4.3): it long-polls
//! `GET /v1/gateway/policy?after=VERSION` with its gateway token, opens the
//! sealed envelope with the shared key, validates it, swaps it in, and keeps
//! the last good one on disk (still sealed) so that after a restart it
//! serves while the control service is down.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onecli_policy::seal::{SealingKey, POLICY_FRESHNESS_MS};
use onecli_policy::wire;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::ca::write_atomic;
use crate::control_client::ControlClient;
use crate::policy_source::PolicyHandle;

/// Longer than the control service's long-poll wait.
const POLL_TIMEOUT: Duration = Duration::from_secs(35);
const MAX_RETRY: Duration = Duration::from_secs(5);
const SEALED_FILE: &str = "policy.sealed";

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("cannot reach the control service: {0}")]
    Unreachable(String),
    #[error("the control service refused the gateway token")]
    Unauthorized,
    #[error("the control service answered {0}")]
    Status(u16),
    #[error(
        "the policy does not open: the gateway's secret key differs from the control service's"
    )]
    WrongKey,
    #[error("the policy is invalid: {0}")]
    Invalid(String),
    #[error("the policy was issued too long ago (a replay, or clocks far apart)")]
    Stale,
}

/// Where a sealed policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Network,
    Disk,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct ControlSubscriber {
    client: Arc<ControlClient>,
    key: SealingKey,
    handle: Arc<PolicyHandle>,
    persisted: PathBuf,
}

impl ControlSubscriber {
    /// The last good policy is kept in `state_dir`.
    pub fn new(
        client: Arc<ControlClient>,
        key: SealingKey,
        handle: Arc<PolicyHandle>,
        state_dir: PathBuf,
    ) -> Self {
        ControlSubscriber {
            client,
            key,
            handle,
            persisted: state_dir.join(SEALED_FILE),
        }
    }

    /// Installs the policy kept on disk, if there is a valid one.
    pub fn load_persisted(&self) -> bool {
        let Ok(sealed) = std::fs::read(&self.persisted) else {
            return false;
        };
        match self.accept(&sealed, Origin::Disk) {
            Ok(version) => {
                tracing::info!(
                    version,
                    "serving the last policy received, until the control service answers"
                );
                true
            }
            Err(error) => {
                tracing::warn!(%error, "the policy kept on disk is unusable");
                false
            }
        }
    }

    /// Opens, decodes, validates and installs a sealed policy. One that
    /// came over the network must be fresh (a captured one cannot be
    /// replayed); the one kept on disk was checked when it arrived.
    pub fn accept(&self, sealed: &[u8], from: Origin) -> Result<u64, SubscribeError> {
        let rejected = |e| {
            self.handle.rejected();
            e
        };
        let (issued_ms, bytes) = self
            .key
            .open_policy(sealed)
            .map_err(|_| rejected(SubscribeError::WrongKey))?;
        if from == Origin::Network && now_ms().abs_diff(issued_ms) > POLICY_FRESHNESS_MS {
            return Err(rejected(SubscribeError::Stale));
        }
        let doc =
            wire::decode(&bytes).map_err(|e| rejected(SubscribeError::Invalid(e.to_string())))?;
        let version = doc.version;
        if self.handle.install_doc(doc) {
            Ok(version)
        } else {
            Err(SubscribeError::Invalid(format!(
                "version {version} was rejected (see above)"
            )))
        }
    }

    /// One long-poll: `Some(sealed)` when a newer policy came.
    async fn poll(&self, after: u64) -> Result<Option<Vec<u8>>, SubscribeError> {
        let path = format!("/v1/gateway/policy?after={after}");
        let answer = self
            .client
            .request("GET", &path, None, POLL_TIMEOUT, wire::MAX_PAYLOAD + 1024)
            .await
            .map_err(|e| SubscribeError::Unreachable(e.to_string()))?;
        match answer.status {
            200 => Ok(Some(answer.body)),
            204 => Ok(None),
            401 => Err(SubscribeError::Unauthorized),
            other => Err(SubscribeError::Status(other)),
        }
    }
}

#[async_trait]
impl BackgroundService for ControlSubscriber {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut retry = Duration::from_millis(100);
        loop {
            let after = self.handle.current().map_or(0, |s| s.version());
            let outcome = tokio::select! {
                _ = shutdown.changed() => return,
                outcome = self.poll(after) => outcome,
            };
            let failure = match outcome {
                Ok(None) => None,
                Ok(Some(sealed)) => match self.accept(&sealed, Origin::Network) {
                    Ok(version) => {
                        if let Err(error) = write_atomic(&self.persisted, &sealed, 0o600) {
                            tracing::warn!(%error, "cannot keep the policy on disk");
                        }
                        tracing::info!(version, "policy received from the control service");
                        None
                    }
                    Err(error) => Some(error),
                },
                Err(error) => Some(error),
            };
            match failure {
                None => retry = Duration::from_millis(100),
                Some(error) => {
                    tracing::warn!(%error, retry_ms = retry.as_millis() as u64, "policy subscription failed; keeping the current policy");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::GatewayMetrics;
    use onecli_policy::PolicyDoc;
    use zeroize::Zeroizing;

    fn subscriber(dir: PathBuf) -> ControlSubscriber {
        let handle = Arc::new(PolicyHandle::new(Arc::new(
            GatewayMetrics::new().expect("metrics"),
        )));
        let client = Arc::new(
            ControlClient::new("http://127.0.0.1:1", Zeroizing::new("ogw_x".into())).expect("url"),
        );
        ControlSubscriber::new(client, SealingKey::from_bytes([3; 32]), handle, dir)
    }

    #[test]
    fn only_sealed_fresh_valid_newer_policies_are_installed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = subscriber(dir.path().to_owned());
        let sealed = |key: &SealingKey, version: u64, issued: u64| {
            let bytes = wire::encode(&PolicyDoc {
                version,
                ..PolicyDoc::default()
            })
            .expect("encode");
            key.seal_policy([version as u8; 12], issued, &bytes)
                .expect("seal")
        };
        let key = SealingKey::from_bytes([3; 32]);
        assert_eq!(
            s.accept(&sealed(&key, 5, now_ms()), Origin::Network)
                .expect("installs"),
            5
        );
        assert!(matches!(
            s.accept(
                &sealed(&SealingKey::from_bytes([4; 32]), 6, now_ms()),
                Origin::Network
            ),
            Err(SubscribeError::WrongKey)
        ));
        assert!(
            matches!(
                s.accept(&sealed(&key, 4, now_ms()), Origin::Network),
                Err(SubscribeError::Invalid(_))
            ),
            "older"
        );
        let hour_ago = now_ms() - 3_600_000;
        assert!(
            matches!(
                s.accept(&sealed(&key, 7, hour_ago), Origin::Network),
                Err(SubscribeError::Stale)
            ),
            "replayed"
        );
        assert_eq!(
            s.accept(&sealed(&key, 7, hour_ago), Origin::Disk)
                .expect("from disk"),
            7
        );
        let garbage = key
            .seal_policy([9; 12], now_ms(), b"not an envelope")
            .expect("seal");
        assert!(matches!(
            s.accept(&garbage, Origin::Network),
            Err(SubscribeError::Invalid(_))
        ));
        assert_eq!(s.handle.current().map(|p| p.version()), Some(7));
    }
}
