//! A gateway run apart from its control service reaches the approvals hub
//! and the audit log over HTTP, with its gateway token.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onecli_policy::approval::{ApprovalBroker, ApprovalDecision, ApprovalOutcome, ApprovalRequest};
use onecli_policy::audit::{AuditRecord, AuditSink};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::control_client::ControlClient;
use onecli_policy::seal::{approval_context, SealingKey};

/// What a gateway registers with the hub.
#[derive(Serialize, Deserialize)]
pub struct RemoteApproval {
    pub id: String,
    pub request: ApprovalRequest,
}

#[derive(Deserialize)]
struct DecisionAnswer {
    decision: ApprovalDecision,
}

const WAIT: Duration = Duration::from_secs(25);
const SMALL: usize = 64 * 1024;

/// Held requests wait in the control service's hub.
pub struct RemoteApprovals {
    client: Arc<ControlClient>,
    /// Decisions come sealed with the shared key, bound to their id.
    key: SealingKey,
}

impl RemoteApprovals {
    pub fn new(client: Arc<ControlClient>, key: SealingKey) -> Self {
        RemoteApprovals { client, key }
    }
}

impl ApprovalBroker for RemoteApprovals {
    fn submit(
        &self,
        request: ApprovalRequest,
        decided: Box<dyn FnOnce(ApprovalOutcome) + Send>,
    ) -> String {
        let mut bytes = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        let id = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let client = self.client.clone();
        let key = self.key.clone();
        let registration = RemoteApproval {
            id: id.clone(),
            request,
        };
        tokio::spawn(async move {
            let body = serde_json::to_vec(&registration).unwrap_or_default();
            let registered = client
                .request("POST", "/v1/gateway/approvals", Some(&body), WAIT, SMALL)
                .await;
            if !matches!(&registered, Ok(a) if a.status == 201) {
                tracing::warn!("cannot register an approval with the control service; the request fails closed");
                decided(ApprovalOutcome::Unavailable);
                return;
            }
            let path = format!(
                "/v1/gateway/approvals/{}?wait={}",
                registration.id,
                WAIT.as_secs()
            );
            loop {
                match client
                    .request("GET", &path, None, WAIT + Duration::from_secs(10), SMALL)
                    .await
                {
                    Ok(answer) if answer.status == 200 => {
                        let opened = key.open(&approval_context(&registration.id), &answer.body);
                        match opened
                            .ok()
                            .and_then(|b| serde_json::from_slice::<DecisionAnswer>(&b[..]).ok())
                        {
                            Some(d) => decided(ApprovalOutcome::Decided(d.decision)),
                            None => {
                                tracing::warn!("an approval decision did not open with the shared key; the request is denied");
                                decided(ApprovalOutcome::Decided(ApprovalDecision::Deny));
                            }
                        }
                        return;
                    }
                    Ok(answer) if answer.status == 204 => continue,
                    // Withdrawn or expired: the gateway stopped waiting.
                    Ok(_) => return,
                    Err(error) => {
                        tracing::warn!(%error, "approval poll failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        id
    }

    fn withdraw(&self, id: &str) {
        let client = self.client.clone();
        let path = format!("/v1/gateway/approvals/{id}");
        tokio::spawn(async move {
            let _ = client.request("DELETE", &path, None, WAIT, SMALL).await;
        });
    }
}

const AUDIT_QUEUE: usize = 10_000;
const AUDIT_BATCH: usize = 500;

/// Audit records queue here and leave in batches; a full queue drops.
pub struct RemoteAudit {
    tx: mpsc::Sender<AuditRecord>,
}

impl AuditSink for RemoteAudit {
    fn record(&self, record: AuditRecord) -> bool {
        self.tx.try_send(record).is_ok()
    }
}

/// Sends queued audit records to the control service.
pub struct RemoteAuditSender {
    rx: tokio::sync::Mutex<mpsc::Receiver<AuditRecord>>,
    client: Arc<ControlClient>,
}

pub fn remote_audit(client: Arc<ControlClient>) -> (RemoteAudit, RemoteAuditSender) {
    let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
    (
        RemoteAudit { tx },
        RemoteAuditSender {
            rx: tokio::sync::Mutex::new(rx),
            client,
        },
    )
}

#[async_trait]
impl BackgroundService for RemoteAuditSender {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut rx = self.rx.lock().await;
        loop {
            let first = tokio::select! {
                _ = shutdown.changed() => return,
                first = rx.recv() => match first {
                    Some(record) => record,
                    None => return,
                },
            };
            let mut batch = vec![first];
            while batch.len() < AUDIT_BATCH {
                match rx.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
            let body = serde_json::to_vec(&batch).unwrap_or_default();
            match self
                .client
                .request("POST", "/v1/gateway/audit", Some(&body), WAIT, SMALL)
                .await
            {
                Ok(answer) if answer.status == 200 => {}
                Ok(answer) => tracing::warn!(
                    status = answer.status,
                    lost = batch.len(),
                    "the control service refused audit records"
                ),
                Err(error) => {
                    tracing::warn!(%error, lost = batch.len(), "audit records could not be sent")
                }
            }
        }
    }
}
