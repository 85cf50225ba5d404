//! The approvals hub (SPEC §4.4, COMPAT.md §approvals): requests held by
//! gateways wait here for a human, who lists them (`GET
//! /v1/approvals/pending`, a long poll) and decides (`POST
//! /v1/approvals/:id/decision`). Gateways in the same process are told
//! through a callback; gateways run apart fetch the decision by id.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use onecli_policy::approval::{ApprovalBroker, ApprovalDecision, ApprovalOutcome, ApprovalRequest};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

/// Finished ids remembered so that a late decision answers 410, not 404.
const FINISHED_MEMORY: usize = 10_000;
/// Requests waiting at once; past it, new ones fail closed.
const MAX_PENDING: usize = 10_000;
/// Requests of one project waiting at once: no project fills the hub for
/// the others.
const MAX_PENDING_PER_PROJECT: usize = 1_000;
/// The longest a request may ask to wait.
const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

type Decided = Box<dyn FnOnce(ApprovalOutcome) + Send>;

enum Holder {
    /// A gateway in this process: told at once.
    Local(Decided),
    /// A gateway run apart: fetches the decision.
    Remote,
}

struct Pending {
    /// The agent's project: only its keys list and decide the request.
    project: String,
    view: Value,
    holder: Holder,
    /// Past this, the holder has given up: the entry is swept.
    expires: Instant,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending>,
    /// Arrival order of pending ids.
    order: Vec<String>,
    /// Finished ids and their projects.
    finished: HashMap<String, String>,
    finished_order: VecDeque<String>,
    /// Decisions for remote holders, kept as long as the id is remembered.
    remote_decisions: HashMap<String, ApprovalDecision>,
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
        self.finished.insert(id.to_owned(), pending.project.clone());
        self.finished_order.push_back(id.to_owned());
        Some(pending)
    }

    /// Whether `id` waits for a decision (`Ok`), was finished (`Expired`)
    /// or is unknown, as `project` (every project with `None`) sees it:
    /// another project's request, waiting or finished, is unknown.
    fn status(&self, project: Option<&str>, id: &str) -> Result<(), DecideError> {
        let owner = match (self.pending.get(id), self.finished.get(id)) {
            (Some(pending), _) => Some((&pending.project, Ok(()))),
            (None, Some(owner)) => Some((owner, Err(DecideError::Expired))),
            (None, None) => None,
        };
        match owner {
            Some((owner, status)) if project.is_none_or(|p| p == owner) => status,
            _ => Err(DecideError::NotFound),
        }
    }

    /// Drops entries whose holders have stopped waiting.
    fn sweep(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.expires < now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.finish(&id);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecideError {
    NotFound,
    Expired,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The id is taken or was used.
    Exists,
    /// Too many requests already wait.
    Full,
}

/// Where a remote gateway's request stands.
#[derive(Debug, PartialEq, Eq)]
pub enum RemoteStatus {
    Decided(ApprovalDecision),
    Pending,
    Gone,
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

    /// `project`'s pending requests not in `exclude`, oldest first; waits
    /// up to `wait` for one when there are none.
    pub async fn pending(&self, project: &str, exclude: &HashSet<String>, wait: Duration) -> Value {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            rx.borrow_and_update();
            let requests: Vec<Value> = {
                let mut state = self.lock();
                state.sweep(Instant::now());
                state
                    .order
                    .iter()
                    .filter(|id| !exclude.contains(*id))
                    .filter_map(|id| state.pending.get(id))
                    .filter(|p| p.project == project)
                    .map(|p| p.view.clone())
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

    /// Decides `project`'s request `id`; another project's request is as
    /// unknown as a missing one.
    pub fn decide(
        &self,
        project: &str,
        id: &str,
        decision: ApprovalDecision,
    ) -> Result<(), DecideError> {
        self.decide_in(Some(project), id, decision)
    }

    /// Decides `id` if it is `project`'s (any project's with `None`), with
    /// one look at the state.
    fn decide_in(
        &self,
        project: Option<&str>,
        id: &str,
        decision: ApprovalDecision,
    ) -> Result<(), DecideError> {
        let local = {
            let mut state = self.lock();
            state.status(project, id)?;
            let pending = state.finish(id).ok_or(DecideError::NotFound)?;
            match pending.holder {
                Holder::Local(decided) => Some(decided),
                // Recorded with the same lock that finished it: a poller
                // never sees the request gone without its decision.
                Holder::Remote => {
                    state.remote_decisions.insert(id.to_owned(), decision);
                    None
                }
            }
        };
        self.bump();
        crate::metrics::metrics().decided(match decision {
            ApprovalDecision::Approve => "approve",
            ApprovalDecision::Deny => "deny",
        });
        if let Some(decided) = local {
            decided(ApprovalOutcome::Decided(decision));
        }
        Ok(())
    }

    /// Whether `id` waits for a decision now, as [`decide`](Self::decide)
    /// would find it, deciding nothing.
    pub fn check(&self, project: &str, id: &str) -> Result<(), DecideError> {
        self.lock().status(Some(project), id)
    }

    /// How many of `project`'s requests wait for a human now.
    pub fn pending_in(&self, project: &str) -> usize {
        self.lock()
            .pending
            .values()
            .filter(|p| p.project == project)
            .count()
    }

    /// How many requests wait for a human now.
    pub fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }

    /// Denies every request `agent_id` has waiting: the agent was deleted or
    /// its token replaced, so nothing it sent before may be approved, and
    /// its requests leave the list. Returns how many there were.
    pub fn deny_agent(&self, agent_id: &str) -> usize {
        let ids: Vec<String> = {
            let state = self.lock();
            state
                .order
                .iter()
                .filter(|id| {
                    state
                        .pending
                        .get(*id)
                        .is_some_and(|p| p.view["agent"]["id"] == agent_id)
                })
                .cloned()
                .collect()
        };
        ids.iter()
            .filter(|id| self.decide_in(None, id, ApprovalDecision::Deny).is_ok())
            .count()
    }

    /// Registers a remote gateway's request under the id it chose.
    pub fn register_remote(&self, id: &str, request: ApprovalRequest) -> Result<(), RegisterError> {
        {
            let state = self.lock();
            if state.pending.contains_key(id) || state.finished.contains_key(id) {
                return Err(RegisterError::Exists);
            }
        }
        self.register(id.to_owned(), request, Holder::Remote)
    }

    /// Waits up to `wait` for the decision on a remote gateway's request.
    /// The decision stays readable, so a lost answer can be fetched again.
    pub async fn remote_decision(&self, id: &str, wait: Duration) -> RemoteStatus {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            rx.borrow_and_update();
            {
                let state = self.lock();
                if let Some(decision) = state.remote_decisions.get(id) {
                    return RemoteStatus::Decided(*decision);
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

    fn register(
        &self,
        id: String,
        request: ApprovalRequest,
        holder: Holder,
    ) -> Result<(), RegisterError> {
        let timeout_secs = request.timeout_secs.min(MAX_TIMEOUT_SECS);
        let project = request.project;
        let now = time::OffsetDateTime::now_utc();
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let expires = now
            .checked_add(time::Duration::seconds(timeout_secs as i64))
            .unwrap_or(now);
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
            let at = Instant::now();
            state.sweep(at);
            let of_project = state
                .pending
                .values()
                .filter(|p| p.project == project)
                .count();
            if state.pending.len() >= MAX_PENDING || of_project >= MAX_PENDING_PER_PROJECT {
                return Err(RegisterError::Full);
            }
            // A little grace past the holder's own timeout, so it withdraws first.
            let expires = at + Duration::from_secs(timeout_secs) + Duration::from_secs(30);
            state.pending.insert(
                id.clone(),
                Pending {
                    project,
                    view,
                    holder,
                    expires,
                },
            );
            state.order.push(id);
        }
        self.bump();
        Ok(())
    }
}

impl ApprovalBroker for ApprovalsHub {
    fn submit(&self, request: ApprovalRequest, decided: Decided) -> String {
        let id = crate::ids::new_id();
        // The callback must outlive a refusal to register: keep it aside.
        let slot = std::sync::Arc::new(Mutex::new(Some(decided)));
        let taken = slot.clone();
        let holder = Holder::Local(Box::new(move |outcome| {
            if let Some(decided) = taken.lock().ok().and_then(|mut d| d.take()) {
                decided(outcome);
            }
        }));
        if self.register(id.clone(), request, holder).is_err() {
            if let Some(decided) = slot.lock().ok().and_then(|mut d| d.take()) {
                decided(ApprovalOutcome::Unavailable);
            }
        }
        id
    }

    fn withdraw(&self, id: &str) {
        let removed = self.lock().finish(id).is_some();
        if removed {
            self.bump();
            // Nobody decided in time, or the agent went away.
            crate::metrics::metrics().decided("withdrawn");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn request(path: &str) -> ApprovalRequest {
        ApprovalRequest {
            project: onecli_policy::model::default_project(),
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
            .pending("default", &HashSet::new(), Duration::from_millis(10))
            .await;
        assert_eq!(listed["requests"][0]["id"], id.as_str());
        assert_eq!(listed["requests"][0]["agent"]["externalId"], "agent");
        assert_eq!(listed["timeoutSeconds"], 180);
        assert_eq!(
            hub.decide("default", &id, ApprovalDecision::Approve),
            Ok(())
        );
        assert_eq!(
            rx.await.expect("decided"),
            ApprovalOutcome::Decided(ApprovalDecision::Approve)
        );
        assert_eq!(
            hub.decide("default", &id, ApprovalDecision::Deny),
            Err(DecideError::Expired)
        );
        assert_eq!(
            hub.decide("default", "unknown", ApprovalDecision::Deny),
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
            .pending("default", &HashSet::new(), Duration::from_millis(10))
            .await;
        assert_eq!(listed["requests"], json!([]));
        assert_eq!(
            hub.decide("default", &id, ApprovalDecision::Approve),
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
            tokio::spawn(async move {
                hub.pending("default", &exclude, Duration::from_secs(10))
                    .await
            })
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

    #[tokio::test]
    async fn remote_decisions_are_recorded_with_the_decision_and_kept() {
        let hub = ApprovalsHub::new(180);
        hub.register_remote("r1", request("/r"))
            .expect("registered");
        assert_eq!(
            hub.register_remote("r1", request("/r")),
            Err(RegisterError::Exists)
        );
        assert_eq!(
            hub.remote_decision("r1", Duration::from_millis(10)).await,
            RemoteStatus::Pending
        );
        hub.decide("default", "r1", ApprovalDecision::Approve)
            .expect("decide");
        for _ in 0..2 {
            assert_eq!(
                hub.remote_decision("r1", Duration::from_millis(10)).await,
                RemoteStatus::Decided(ApprovalDecision::Approve)
            );
        }
        assert_eq!(
            hub.remote_decision("never", Duration::from_millis(10))
                .await,
            RemoteStatus::Gone
        );
    }

    #[tokio::test]
    async fn huge_timeouts_are_clamped_not_a_panic() {
        let hub = ApprovalsHub::new(180);
        let mut r = request("/x");
        r.timeout_secs = u64::MAX;
        hub.register_remote("big", r).expect("registered");
        let listed = hub
            .pending("default", &HashSet::new(), Duration::from_millis(10))
            .await;
        assert!(listed["requests"][0]["expiresAt"]
            .as_str()
            .is_some_and(|t| !t.is_empty()));
    }

    #[tokio::test]
    async fn projects_see_and_decide_only_their_own_requests() {
        let hub = Arc::new(ApprovalsHub::new(300));
        let mut theirs = request("/theirs");
        theirs.project = "p2".into();
        let (tx, rx) = std::sync::mpsc::channel();
        let id = hub.submit(theirs, Box::new(move |o| tx.send(o).expect("send")));
        let mine = hub
            .pending("default", &HashSet::new(), Duration::from_millis(10))
            .await;
        assert_eq!(mine["requests"].as_array().map(Vec::len), Some(0));
        assert_eq!(
            hub.decide("default", &id, ApprovalDecision::Deny),
            Err(DecideError::NotFound)
        );
        assert_eq!(hub.check("default", &id), Err(DecideError::NotFound));
        let listed = hub
            .pending("p2", &HashSet::new(), Duration::from_millis(10))
            .await;
        assert_eq!(listed["requests"][0]["id"], id.as_str());
        assert_eq!(hub.decide("p2", &id, ApprovalDecision::Approve), Ok(()));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).expect("decided"),
            ApprovalOutcome::Decided(ApprovalDecision::Approve)
        );
        // Finished, it is still unknown to other projects (not "expired").
        assert_eq!(
            hub.decide("default", &id, ApprovalDecision::Deny),
            Err(DecideError::NotFound)
        );
        assert_eq!(
            hub.decide("p2", &id, ApprovalDecision::Deny),
            Err(DecideError::Expired)
        );
    }

    #[test]
    fn one_project_cannot_fill_the_hub_for_the_others() {
        let hub = ApprovalsHub::new(300);
        let mut flood = request("/flood");
        flood.project = "p2".into();
        for i in 0..MAX_PENDING_PER_PROJECT {
            hub.register_remote(&format!("f{i}"), flood.clone())
                .expect("registered");
        }
        assert_eq!(
            hub.register_remote("one-more", flood),
            Err(RegisterError::Full)
        );
        hub.register_remote("mine", request("/mine"))
            .expect("another project still gets in");
    }
}
