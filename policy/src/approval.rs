//! Human approval (SPEC §4.4): what a gateway holding a request tells the
//! approvals hub, and how the answer comes back. A callback, not a future:
//! this crate stays free of async runtimes.

/// A held request as a reviewer sees it. Headers never include credentials
/// or the proxy token; the body preview is at most [`BODY_PREVIEW`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApprovalRequest {
    pub method: String,
    pub url: String,
    pub host: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_preview: Option<String>,
    pub agent_id: String,
    pub agent_name: String,
    pub agent_identifier: String,
    /// The agent's project: only its keys see and decide the request.
    #[serde(default = "crate::model::default_project")]
    pub project: String,
    /// How long the gateway holds the request before it gives up.
    pub timeout_secs: u64,
}

pub const BODY_PREVIEW: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalDecision {
    Approve,
    Deny,
}

/// How a held request ends, as its holder learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    Decided(ApprovalDecision),
    /// The hub could not be reached: nobody can decide, the request fails closed.
    Unavailable,
}

/// Where held requests wait for a human: the control service's hub.
pub trait ApprovalBroker: Send + Sync {
    /// Registers the request; `decided` is called once if a human decides
    /// before the request is withdrawn, or if the hub cannot be reached.
    /// Returns the approval id.
    fn submit(
        &self,
        request: ApprovalRequest,
        decided: Box<dyn FnOnce(ApprovalOutcome) + Send>,
    ) -> String;

    /// The gateway stopped waiting (timeout, or the agent went away): the
    /// request leaves the pending list; a later decision answers 410.
    fn withdraw(&self, id: &str);
}
