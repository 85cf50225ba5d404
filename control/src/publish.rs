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
        for sink in &self.sinks {
            sink.install(doc.clone());
        }
    }
}
