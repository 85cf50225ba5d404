//! `/v1/approvals`: the SDK's `configureManualApproval` long-polls pending
//! requests and posts decisions here.

use std::collections::HashSet;
use std::time::Duration;

use hyper::{Method, StatusCode};
use onecli_policy::approval::ApprovalDecision;
use serde::Deserialize;
use serde_json::json;

use super::{json_response, not_found, ok, success, Api, ApiResult, Call};
use crate::approvals::DecideError;

/// COMPAT: the server holds a poll up to 30 s (the SDK waits 35 s).
const POLL_WAIT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: DecisionName,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum DecisionName {
    Approve,
    Deny,
}

pub async fn dispatch(api: &Api, call: &Call, segments: &[&str]) -> ApiResult {
    match (&call.method, segments) {
        (&Method::GET, ["approvals", "pending"]) => {
            let exclude: HashSet<String> = call
                .query("exclude")
                .map(|e| {
                    e.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            // `wait` (seconds, at most 30) is ours: `0` lists without waiting.
            let wait = call
                .query("wait")
                .and_then(|w| w.parse().ok())
                .map_or(POLL_WAIT, |s: u64| Duration::from_secs(s).min(POLL_WAIT));
            ok(&api
                .approvals
                .pending(&call.scope.project, &exclude, wait)
                .await)
        }
        (&Method::POST, ["approvals", id, "decision"]) => {
            let body: DecisionBody = call.json()?;
            let decision = match body.decision {
                DecisionName::Approve => ApprovalDecision::Approve,
                DecisionName::Deny => ApprovalDecision::Deny,
            };
            let decided = if call.dry_run {
                api.approvals.check(&call.scope.project, id)
            } else {
                api.approvals.decide(&call.scope.project, id, decision)
            };
            match decided {
                Ok(()) => success(),
                Err(DecideError::NotFound) => Ok(json_response(
                    StatusCode::NOT_FOUND,
                    &json!({ "error": "approval_not_found" }),
                )),
                Err(DecideError::Expired) => Ok(json_response(
                    StatusCode::GONE,
                    &json!({ "error": "approval_expired" }),
                )),
            }
        }
        _ => Err(not_found(call)),
    }
}
