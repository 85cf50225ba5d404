//! What gateways call with their gateway token: the policy long-poll,
//! approvals held by gateways run apart, and their audit records.

use std::time::Duration;

use hyper::{Method, StatusCode};
use onecli_policy::audit::{AuditRecord, AuditSink};
use serde::Deserialize;
use serde_json::json;

use super::{json_response, no_content, not_found, ok, response, Api, ApiResult, Call};
use crate::approvals::{RegisterError, RemoteStatus};
use onecli_policy::approval::ApprovalRequest;
use onecli_policy::seal::approval_context;

const MAX_WAIT: Duration = Duration::from_secs(25);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    id: String,
    request: ApprovalRequest,
}

pub async fn dispatch(api: &Api, call: &Call) -> ApiResult {
    let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    match (&call.method, segments.as_slice()) {
        (&Method::GET, ["gateway", "policy"]) => {
            let after = call
                .query("after")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Ok(api.policy_for_gateway(after).await)
        }
        (&Method::POST, ["gateway", "approvals"]) => {
            let registration: Registration = call.json()?;
            if registration.id.is_empty() || registration.id.len() > 64 {
                return Err(super::ApiError::BadRequest(
                    "id must be 1 to 64 characters.".into(),
                ));
            }
            match api
                .approvals
                .register_remote(&registration.id, registration.request)
            {
                Ok(()) => Ok(json_response(
                    StatusCode::CREATED,
                    &json!({ "id": registration.id }),
                )),
                Err(RegisterError::Exists) => Ok(json_response(
                    StatusCode::CONFLICT,
                    &json!({ "error": "approval_exists" }),
                )),
                Err(RegisterError::Full) => Ok(json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({ "error": "approvals_full" }),
                )),
            }
        }
        (&Method::GET, ["gateway", "approvals", id]) => {
            let wait = call
                .query("wait")
                .and_then(|w| w.parse().ok())
                .map_or(MAX_WAIT, |s: u64| Duration::from_secs(s).min(MAX_WAIT));
            match api.approvals.remote_decision(id, wait).await {
                // Sealed and bound to the id: nobody on the way can forge an approval.
                RemoteStatus::Decided(decision) => {
                    let body = json!({ "decision": decision }).to_string();
                    let sealed = api
                        .subscriptions
                        .seal(&approval_context(id), body.as_bytes())
                        .map_err(|_| super::ApiError::Internal)?;
                    Ok(response(StatusCode::OK, "application/octet-stream", sealed))
                }
                RemoteStatus::Pending => Ok(response(
                    StatusCode::NO_CONTENT,
                    "application/json",
                    bytes::Bytes::new(),
                )),
                RemoteStatus::Gone => Ok(json_response(
                    StatusCode::GONE,
                    &json!({ "error": "approval_expired" }),
                )),
            }
        }
        (&Method::DELETE, ["gateway", "approvals", id]) => {
            onecli_policy::approval::ApprovalBroker::withdraw(api.approvals.as_ref(), id);
            no_content()
        }
        (&Method::POST, ["gateway", "audit"]) => {
            let records: Vec<AuditRecord> = call.json()?;
            let accepted = records
                .into_iter()
                .filter(|r| api.audit.record(r.clone()))
                .count();
            ok(&json!({ "accepted": accepted }))
        }
        _ => Err(not_found(call)),
    }
}
