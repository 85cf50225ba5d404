//! The approvals hub (SPEC §4.4, COMPAT.md §approvals): requests held by
//! gateways wait here for a human, who lists them (`GET
//! /v1/approvals/pending`, a long poll) and decides (`POST
//! /v1/approvals/:id/decision`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use onecli_policy::approval::{ApprovalBroker, ApprovalDecision, ApprovalOutcome, ApprovalRequest};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

/// Finished ids remembered so that a late decision answers 410, not 404.
const FINISHED_MEMORY: usize = 10_000;

type Decided = Box<dyn FnOnce(ApprovalOutcome) + Send>;

struct Pending {
    view: Value,
    decided: Decided,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending>,
    /// Decisions on remote gateways' requests, until those gateways fetch them.
    remote_decisions: HashMap<String, ApprovalDecision>,
    /// Arrival order of pending ids.
    order: Vec<String>,
    finished: HashSet<String>,
    finished_order: VecDeque<String>,
}

impl State {
    fn finish(&mut self, id: &str) -> Option<Pending> {
        let pending = self.pending.remove(id)?;
        self.order.retain(|p| p != id);
        if self.finished_order.len() >= FINISHED_MEMORY {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
                self.remote_decisions.remove(&old);
            }
        }
        self.finished.insert(id.to_owned());
        self.finished_order.push_back(id.to_owned());
        Some(pending)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecideError {
    NotFound,
    Expired,
}

pub struct ApprovalsHub {
    state: Mutex<State>,
    /// Bumped on every change, to wake long polls.
    changed: watch::Sender<u64>,
    /// The `timeoutSeconds` the SDK is told.
    default_timeout_secs: u64,
}

impl ApprovalsHub {
    pub fn new(default_timeout_secs: u64) -> Self {
        ApprovalsHub {
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(0),
            default_timeout_secs,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Pending requests not in `exclude`, oldest first; waits up to `wait`
    /// for one when there are none.
    pub async fn pending(&self, exclude: &HashSet<String>, wait: Duration) -> Value {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            rx.borrow_and_update();
            let requests: Vec<Value> = {
                let state = self.lock();
                state
                    .order
                    .iter()
                    .filter(|id| !exclude.contains(*id))
                    .filter_map(|id| state.pending.get(id).map(|p| p.view.clone()))
                    .collect()
            };
            if !requests.is_empty() {
                return json!({ "requests": requests, "timeoutSeconds": self.default_timeout_secs });
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return json!({ "requests": [], "timeoutSeconds": self.default_timeout_secs });
            }
        }
    }

    pub fn decide(&self, id: &str, decision: ApprovalDecision) -> Result<(), DecideError> {
        let pending = {
            let mut state = self.lock();
            match state.finish(id) {
                Some(p) => p,
                None if state.finished.contains(id) => return Err(DecideError::Expired),
                None => return Err(DecideError::NotFound),
            }
        };
        self.bump();
        (pending.decided)(ApprovalOutcome::Decided(decision));
        Ok(())
    }
}

/// Where a remote gateway's request stands.
#[derive(Debug, PartialEq, Eq)]
pub enum RemoteStatus {
    Decided(ApprovalDecision),
    Pending,
    Gone,
}

impl ApprovalsHub {
    /// Registers a remote gateway's request under the id it chose; its
    /// decision waits for [`ApprovalsHub::remote_decision`].
    pub fn register_remote(
        self: &std::sync::Arc<Self>,
        id: &str,
        request: ApprovalRequest,
    ) -> Result<(), DecideError> {
        {
            let state = self.lock();
            if state.pending.contains_key(id) || state.finished.contains(id) {
                return Err(DecideError::Expired);
            }
        }
        let hub = std::sync::Arc::downgrade(self);
        let key = id.to_owned();
        self.register(
            id.to_owned(),
            request,
            Box::new(move |outcome| {
                if let (Some(hub), ApprovalOutcome::Decided(decision)) = (hub.upgrade(), outcome) {
                    hub.lock().remote_decisions.insert(key, decision);
                    hub.bump();
                }
            }),
        );
        Ok(())
    }

    /// Waits up to `wait` for the decision on a remote gateway's request.
    pub async fn remote_decision(&self, id: &str, wait: Duration) -> RemoteStatus {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            rx.borrow_and_update();
            {
                let mut state = self.lock();
                if let Some(decision) = state.remote_decisions.remove(id) {
                    return RemoteStatus::Decided(decision);
                }
                if !state.pending.contains_key(id) {
                    return RemoteStatus::Gone;
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return RemoteStatus::Pending;
            }
        }
    }

    fn register(&self, id: String, request: ApprovalRequest, decided: Decided) {
        let now = time::OffsetDateTime::now_utc();
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let expires = now
            + time::Duration::seconds(i64::try_from(request.timeout_secs).unwrap_or(i64::MAX / 2));
        let headers: Map<String, Value> = request
            .headers
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let view = json!({
            "id": id,
            "method": request.method,
            "url": request.url,
            "host": request.host,
            "path": request.path,
            "headers": headers,
            "bodyPreview": request.body_preview,
            "agent": { "id": request.agent_id, "name": request.agent_name, "externalId": request.agent_identifier },
            "createdAt": fmt(now),
            "expiresAt": fmt(expires),
        });
        {
            let mut state = self.lock();
            state.pending.insert(id.clone(), Pending { view, decided });
            state.order.push(id.clone());
        }
        self.bump();
    }
}

impl ApprovalBroker for ApprovalsHub {
    fn submit(&self, request: ApprovalRequest, decided: Decided) -> String {
        let id = crate::ids::new_id();
        self.register(id.clone(), request, decided);
        id
    }

    fn withdraw(&self, id: &str) {
        let removed = self.lock().finish(id).is_some();
        if removed {
            self.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn request(path: &str) -> ApprovalRequest {
        ApprovalRequest {
            method: "POST".into(),
            url: format!("https://api.test{path}"),
            host: "api.test".into(),
            path: path.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body_preview: Some("{}".into()),
            agent_id: "a1".into(),
            agent_name: "Agent".into(),
            agent_identifier: "agent".into(),
            timeout_secs: 180,
        }
    }

    #[tokio::test]
    async fn a_decision_reaches_the_holder_once() {
        let hub = ApprovalsHub::new(180);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let id = hub.submit(
            request("/x"),
            Box::new(move |d| {
                let _ = tx.send(d);
            }),
        );
        let listed = hub
            .pending(&HashSet::new(), Duration::from_millis(10))
            .await;
        assert_eq!(listed["requests"][0]["id"], id.as_str());
        assert_eq!(listed["requests"][0]["agent"]["externalId"], "agent");
        assert_eq!(listed["timeoutSeconds"], 180);
        assert_eq!(hub.decide(&id, ApprovalDecision::Approve), Ok(()));
        assert_eq!(
            rx.await.expect("decided"),
            ApprovalOutcome::Decided(ApprovalDecision::Approve)
        );
        assert_eq!(
            hub.decide(&id, ApprovalDecision::Deny),
            Err(DecideError::Expired)
        );
        assert_eq!(
            hub.decide("unknown", ApprovalDecision::Deny),
            Err(DecideError::NotFound)
        );
    }

    #[tokio::test]
    async fn withdrawn_requests_leave_the_list_and_answer_410() {
        let hub = ApprovalsHub::new(180);
        let id = hub.submit(
            request("/x"),
            Box::new(|_| panic!("no decision after withdrawal")),
        );
        hub.withdraw(&id);
        let listed = hub
            .pending(&HashSet::new(), Duration::from_millis(10))
            .await;
        assert_eq!(listed["requests"], json!([]));
        assert_eq!(
            hub.decide(&id, ApprovalDecision::Approve),
            Err(DecideError::Expired)
        );
    }

    #[tokio::test]
    async fn a_long_poll_wakes_for_a_new_request_and_honours_exclude() {
        let hub = Arc::new(ApprovalsHub::new(180));
        let first = hub.submit(request("/first"), Box::new(|_| {}));
        let exclude: HashSet<String> = [first.clone()].into();
        let waiter = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.pending(&exclude, Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        let second = hub.submit(request("/second"), Box::new(|_| {}));
        let listed = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woke")
            .expect("task");
        let ids: Vec<&str> = listed["requests"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(ids, [second.as_str()]);
    }
}
