//! `/v1/rules`: block, allow, rate_limit and manual_approval rules.

use hyper::{Method, StatusCode};
use onecli_policy::model::{RateWindow, RuleAction};
use serde::{Deserialize, Deserializer, Serialize};

use super::{json_response, no_content, not_found, ok, Api, ApiError, ApiResult, Call};
use crate::store::{RuleInput, RuleRecord};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleView {
    id: String,
    name: String,
    host_pattern: String,
    path_pattern: String,
    /// COMPAT's single method: the first, or null for all methods.
    method: Option<String>,
    methods: Vec<String>,
    action: &'static str,
    enabled: bool,
    agent_id: Option<String>,
    rate_limit: Option<u32>,
    rate_limit_window: Option<RateWindow>,
    created_at: String,
}

fn view(r: RuleRecord) -> RuleView {
    let (action, rate_limit, rate_limit_window) = match r.action {
        RuleAction::Block => ("block", None, None),
        RuleAction::Allow => ("allow", None, None),
        RuleAction::ManualApproval => ("manual_approval", None, None),
        RuleAction::RateLimit { limit, window } => ("rate_limit", Some(limit), Some(window)),
    };
    RuleView {
        method: r.methods.first().cloned(),
        id: r.id,
        name: r.name,
        host_pattern: r.host_pattern,
        path_pattern: r.path_pattern,
        methods: r.methods,
        action,
        enabled: r.enabled,
        agent_id: r.agent_id,
        rate_limit,
        rate_limit_window,
        created_at: r.created_at,
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ActionName {
    Block,
    Allow,
    RateLimit,
    ManualApproval,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleBody {
    name: Option<String>,
    host_pattern: Option<String>,
    path_pattern: Option<String>,
    method: Option<String>,
    methods: Option<Vec<String>>,
    action: Option<ActionName>,
    enabled: Option<bool>,
    /// Absent: unchanged; `null` or `""`: all agents.
    #[serde(default, deserialize_with = "present")]
    agent_id: Option<Option<String>>,
    rate_limit: Option<u32>,
    rate_limit_window: Option<RateWindow>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl RuleBody {
    /// `existing` is the rule being updated, if any: its rate limit fills in
    /// what a partial update leaves out.
    fn into_input(self, existing: Option<&RuleRecord>) -> Result<RuleInput, ApiError> {
        let methods = match (self.method, self.methods) {
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "Send method or methods, not both.".into(),
                ))
            }
            (Some(m), None) if m.trim().is_empty() || m == "*" => Some(Vec::new()),
            (Some(m), None) => Some(vec![m.trim().to_ascii_uppercase()]),
            (None, Some(ms)) => Some(ms.iter().map(|m| m.trim().to_ascii_uppercase()).collect()),
            (None, None) => None,
        };
        let (old_limit, old_window) = match existing.map(|r| &r.action) {
            Some(RuleAction::RateLimit { limit, window }) => (Some(*limit), Some(*window)),
            _ => (None, None),
        };
        let current = existing.map(|r| match r.action {
            RuleAction::Block => ActionName::Block,
            RuleAction::Allow => ActionName::Allow,
            RuleAction::ManualApproval => ActionName::ManualApproval,
            RuleAction::RateLimit { .. } => ActionName::RateLimit,
        });
        let touches_limit = self.rate_limit.is_some() || self.rate_limit_window.is_some();
        let action = match self.action.or(if touches_limit { current } else { None }) {
            None => None,
            Some(ActionName::RateLimit) => {
                let (Some(limit), Some(window)) = (
                    self.rate_limit.or(old_limit),
                    self.rate_limit_window.or(old_window),
                ) else {
                    return Err(ApiError::BadRequest("A rate_limit rule needs rateLimit and rateLimitWindow (minute, hour or day).".into()));
                };
                Some(RuleAction::RateLimit { limit, window })
            }
            Some(_) if touches_limit => {
                return Err(ApiError::BadRequest(
                    "rateLimit and rateLimitWindow belong to rate_limit rules.".into(),
                ))
            }
            Some(ActionName::Block) => Some(RuleAction::Block),
            Some(ActionName::Allow) => Some(RuleAction::Allow),
            Some(ActionName::ManualApproval) => Some(RuleAction::ManualApproval),
        };
        Ok(RuleInput {
            name: self.name.map(|n| n.trim().to_owned()),
            host_pattern: self.host_pattern,
            path_pattern: self.path_pattern,
            methods,
            agent_id: self.agent_id.map(|a| a.filter(|id| !id.is_empty())),
            action,
            enabled: self.enabled,
        })
    }
}

pub async fn dispatch(api: &Api, call: &Call, segments: &[&str]) -> ApiResult {
    match (&call.method, segments) {
        (&Method::GET, ["rules"]) => ok(&api
            .read(&call.scope, |s| {
                Ok(s.rules()?.into_iter().map(view).collect::<Vec<_>>())
            })
            .await?),
        (&Method::POST, ["rules"]) => {
            let input = call.json::<RuleBody>()?.into_input(None)?;
            let rule = api
                .write(&call.scope, move |s| s.create_rule(input))
                .await?;
            Ok(json_response(StatusCode::CREATED, &view(rule)))
        }
        (&Method::GET, ["rules", id]) => {
            let id = id.to_string();
            ok(&view(api.read(&call.scope, move |s| s.rule(&id)).await?))
        }
        (&Method::PATCH, ["rules", id]) => {
            let body: RuleBody = call.json()?;
            let key = id.to_string();
            let existing = api.read(&call.scope, move |s| s.rule(&key)).await?;
            let input = body.into_input(Some(&existing))?;
            let id = id.to_string();
            ok(&view(
                api.write(&call.scope, move |s| s.update_rule(&id, input))
                    .await?,
            ))
        }
        (&Method::DELETE, ["rules", id]) => {
            let id = id.to_string();
            api.write(&call.scope, move |s| s.delete_rule(&id)).await?;
            no_content()
        }
        _ => Err(not_found(call)),
    }
}

/// The fuzz target's way in: a body parsed and checked as `POST` does.
pub(crate) fn fuzz_body(data: &[u8]) {
    if let Ok(body) = serde_json::from_slice::<RuleBody>(data) {
        let _ = body.into_input(None);
    }
}
