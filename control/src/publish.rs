//! After every committed change the control service compiles the policy
//! document and hands it to its sinks: in `onecli serve`, the gateway in the
//! same process; for remote gateways, the subscription endpoint.

use std::sync::Arc;

use onecli_policy::PolicyDoc;
use tokio::sync::Mutex;

use crate::store::Store;

/// Takes each new policy version. Must not block for long: it runs on the
/// request that made the change.
pub trait PolicySink: Send + Sync {
    fn install(&self, doc: PolicyDoc);
}

#[derive(Default)]
pub struct Publisher {
    sinks: Vec<Arc<dyn PolicySink>>,
    /// The last version handed out: publications never go backwards.
    last: Mutex<Option<u64>>,
}

impl Publisher {
    pub fn new(sinks: Vec<Arc<dyn PolicySink>>) -> Self {
        Publisher {
            sinks,
            last: Mutex::new(None),
        }
    }

    /// Compiles the store's current document and installs it everywhere,
    /// unless a newer one already went out.
    pub async fn publish(&self, store: &Arc<Store>) {
        let mut last = self.last.lock().await;
        let store = store.clone();
        let started = std::time::Instant::now();
        let doc = match tokio::task::spawn_blocking(move || store.policy_doc()).await {
            Ok(Ok(doc)) => doc,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot compile the policy; gateways keep the previous one");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "policy compile task failed");
                return;
            }
        };
        if last.is_some_and(|v| v >= doc.version) {
            return;
        }
        *last = Some(doc.version);
        crate::metrics::metrics().published(doc.version, started.elapsed());
        for sink in &self.sinks {
            sink.install(doc.clone());
        }
    }
}

/// The latest policy for gateways that long-poll for changes: the encoded
/// envelope, sealed afresh for each answer with the time it leaves.
pub struct EncodedPolicy {
    pub version: u64,
    /// When it was handed to the subscriptions (push latency).
    pub published_at: std::time::Instant,
    envelope: zeroize::Zeroizing<Vec<u8>>,
}

pub struct Subscriptions {
    key: onecli_policy::seal::SealingKey,
    latest: tokio::sync::watch::Sender<Option<Arc<EncodedPolicy>>>,
}

impl Subscriptions {
    pub fn new(key: onecli_policy::seal::SealingKey) -> Self {
        Subscriptions {
            key,
            latest: tokio::sync::watch::Sender::new(None),
        }
    }

    /// Gateways run apart that are waiting for the next policy now.
    pub fn listening(&self) -> usize {
        self.latest.receiver_count()
    }

    /// The first policy newer than `after`, waiting up to `wait` for one.
    pub async fn next_after(
        &self,
        after: u64,
        wait: std::time::Duration,
    ) -> Option<Arc<EncodedPolicy>> {
        let mut rx = self.latest.subscribe();
        let newer = |p: &Option<Arc<EncodedPolicy>>| p.as_ref().is_some_and(|p| p.version > after);
        let found = match tokio::time::timeout(wait, rx.wait_for(newer)).await {
            Ok(Ok(p)) => p.clone(),
            _ => None,
        };
        found
    }

    /// The policy sealed for the wire, issued now.
    pub fn seal_policy(
        &self,
        policy: &EncodedPolicy,
    ) -> Result<Vec<u8>, crate::crypto::CryptoError> {
        let mut nonce = [0u8; onecli_policy::seal::NONCE_LEN];
        rand::Rng::fill(&mut rand::rng(), &mut nonce);
        self.key
            .seal_policy(nonce, crate::ids::now_unix_ms(), &policy.envelope)
            .map_err(|_| crate::crypto::CryptoError::Encrypt)
    }

    /// Seals a message for gateways (approval decisions).
    pub fn seal(
        &self,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, crate::crypto::CryptoError> {
        crate::crypto::seal(&self.key, context, plaintext)
    }
}

impl PolicySink for Subscriptions {
    fn install(&self, doc: PolicyDoc) {
        let version = doc.version;
        match onecli_policy::wire::encode(&doc) {
            Ok(envelope) => {
                let envelope = zeroize::Zeroizing::new(envelope);
                self.latest.send_replace(Some(Arc::new(EncodedPolicy {
                    version,
                    published_at: std::time::Instant::now(),
                    envelope,
                })));
            }
            Err(error) => tracing::error!(%error, version, "cannot encode the policy for gateways"),
        }
    }
}
