//! The audit log's intake: gateways hand records to a bounded queue (never
//! blocking a request; a full queue drops and the gateway counts it), and
//! one writer drains it into the store in batches.

use std::sync::Arc;

use onecli_policy::audit::{AuditRecord, AuditSink};
use tokio::sync::mpsc;

use crate::store::{Store, AUDIT_RETENTION};

const QUEUE: usize = 10_000;
const BATCH: usize = 1_000;

pub struct AuditLog {
    tx: mpsc::Sender<AuditRecord>,
}

/// Drains the queue into the store; run it on the service's runtime.
pub struct AuditWriter {
    rx: mpsc::Receiver<AuditRecord>,
    store: Arc<Store>,
}

impl AuditLog {
    pub fn new(store: Arc<Store>) -> (Arc<AuditLog>, AuditWriter) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Arc::new(AuditLog { tx }), AuditWriter { rx, store })
    }
}

impl AuditSink for AuditLog {
    fn record(&self, record: AuditRecord) -> bool {
        self.tx.try_send(record).is_ok()
    }
}

/// How long the writer waits after its disk failed before writing again
/// (records meanwhile wait in the queue, or are dropped and counted).
const DISK_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

impl AuditWriter {
    pub async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
            let store = self.store.clone();
            let count = batch.len();
            let written =
                tokio::task::spawn_blocking(move || store.append_audit(&batch, AUDIT_RETENTION))
                    .await;
            let ok = matches!(written, Ok(Ok(())));
            crate::metrics::metrics().audit_written(count, ok);
            if !ok {
                tracing::error!("audit records could not be written; they are lost");
            }
            if let Ok(Err(crate::store::StoreError::Disk { .. })) = written {
                // A full or failing disk: each failed commit costs the store
                // a reopen, which readers wait for. Give it room.
                tokio::time::sleep(DISK_BACKOFF).await;
            }
        }
    }
}
