//! The audit record of one request decision (SPEC §3.7): who, what, which
//! rule, which secrets by id, the answer. Never a value, a token or a query
//! string.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// RFC 3339, UTC.
    pub time: String,
    /// The same instant, for filtering.
    pub unix_ms: u64,
    pub agent_id: String,
    /// The agent's project: whose log the record is in.
    #[serde(default = "crate::model::default_project")]
    pub project: String,
    /// The agent's identifier.
    pub agent: String,
    pub method: String,
    pub host: String,
    /// Without the query string.
    pub path: String,
    pub rule_id: Option<String>,
    pub rule_name: Option<String>,
    /// `forwarded`, `blocked_by_policy`, `rate_limited`, `approved`, …
    pub outcome: String,
    /// Ids of the secrets injected.
    pub injected: Vec<String>,
    /// The status the agent got; 0 when it went away first.
    pub status: u16,
    pub duration_ms: u64,
}

/// Where gateways send audit records. Must never block: a full queue drops
/// the record and says so, and the request goes on.
pub trait AuditSink: Send + Sync {
    /// `false` when the record was dropped.
    fn record(&self, record: AuditRecord) -> bool;
}
