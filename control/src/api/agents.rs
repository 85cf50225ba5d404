//! `/v1/agents`: agents, their tokens, secret assignment and modes.

use hyper::{Method, StatusCode};
use onecli_policy::model::{PolicyMode, SecretMode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{json_response, no_content, not_found, ok, success, Api, ApiError, ApiResult, Call};
use crate::store::{AgentRecord, Scoped, StoreError};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentView {
    id: String,
    name: String,
    identifier: String,
    access_token: String,
    is_default: bool,
    secret_mode: SecretMode,
    policy_mode: PolicyMode,
    created_at: String,
}

fn view(store: &Scoped<'_>, a: AgentRecord) -> Result<AgentView, StoreError> {
    Ok(AgentView {
        access_token: store.agent_token(&a)?.to_string(),
        id: a.id,
        name: a.name,
        identifier: a.identifier,
        is_default: a.is_default,
        secret_mode: a.secret_mode,
        policy_mode: a.policy_mode,
        created_at: a.created_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAgent {
    name: String,
    identifier: String,
    /// Sent by the SDK for sub-agents; there is one level of agents here.
    #[serde(default, rename = "parentIdentifier")]
    _parent_identifier: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSecretMode {
    mode: SecretMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPolicyMode {
    mode: PolicyMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SetSecrets {
    secret_ids: Vec<String>,
}

/// An agent by id, or by identifier for people typing commands.
fn find(store: &Scoped<'_>, key: &str) -> Result<AgentRecord, StoreError> {
    match store.agent(key) {
        Err(StoreError::NotFound(_)) => store
            .agent_by_identifier(key)?
            .ok_or(StoreError::NotFound("agent")),
        other => other,
    }
}

pub async fn dispatch(api: &Api, call: &Call, segments: &[&str]) -> ApiResult {
    match (&call.method, segments) {
        (&Method::GET, ["agents"]) => {
            let agents = api
                .read(&call.scope, |s| {
                    s.agents()?
                        .into_iter()
                        .map(|a| view(s, a))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
            ok(&agents)
        }
        (&Method::POST, ["agents"]) => {
            let body: CreateAgent = call.json()?;
            let a = api
                .write(&call.scope, move |s| {
                    s.create_agent(body.name.trim(), &body.identifier, false)
                })
                .await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({ "id": a.id, "name": a.name, "identifier": a.identifier, "createdAt": a.created_at }),
            ))
        }
        (&Method::GET, ["agents", "default"]) => {
            let agent = api
                .read(&call.scope, |s| {
                    // The agent container config falls back to as well: an
                    // agent named `default` where none is marked default.
                    let agents = s.agents()?;
                    let default = agents
                        .iter()
                        .position(|a| a.is_default)
                        .or_else(|| agents.iter().position(|a| a.identifier == "default"));
                    match default {
                        Some(i) => view(s, agents[i].clone()).map(Some),
                        None => Ok(None),
                    }
                })
                .await?;
            match agent {
                Some(a) => ok(&a),
                None => Err(ApiError::NotFound("No default agent.".into())),
            }
        }
        (&Method::GET, ["agents", id]) => {
            let id = id.to_string();
            ok(&api
                .read(&call.scope, move |s| view(s, find(s, &id)?))
                .await?)
        }
        (&Method::PATCH, ["agents", id]) => {
            let body: Rename = call.json()?;
            update(api, call, id, move |a| {
                a.name = body.name.trim().to_owned();
            })
            .await
        }
        (&Method::DELETE, ["agents", id]) => {
            let id = id.to_string();
            let agent_id = api
                .write(&call.scope, move |s| {
                    let agent_id = find(s, &id)?.id;
                    s.delete_agent(&agent_id)?;
                    Ok(agent_id)
                })
                .await?;
            // What it left waiting for a human can no longer be approved.
            if !call.dry_run {
                api.approvals.deny_agent(&agent_id);
            }
            no_content()
        }
        (&Method::POST, ["agents", id, "regenerate-token"]) => {
            let id = id.to_string();
            let (agent_id, token) = api
                .write(&call.scope, move |s| {
                    let agent_id = find(s, &id)?.id;
                    let token = s.regenerate_token(&agent_id)?;
                    Ok((agent_id, token))
                })
                .await?;
            // Requests sent with the old token are not approved either.
            if !call.dry_run {
                api.approvals.deny_agent(&agent_id);
            }
            ok(&json!({ "accessToken": token.as_str() }))
        }
        (&Method::PATCH, ["agents", id, "secret-mode"]) => {
            let body: SetSecretMode = call.json()?;
            update(api, call, id, move |a| a.secret_mode = body.mode).await
        }
        (&Method::PATCH, ["agents", id, "policy-mode"]) => {
            let body: SetPolicyMode = call.json()?;
            update(api, call, id, move |a| a.policy_mode = body.mode).await
        }
        (&Method::GET, ["agents", id, "secrets"]) => {
            let id = id.to_string();
            ok(&api
                .read(&call.scope, move |s| Ok(find(s, &id)?.secret_ids))
                .await?)
        }
        (&Method::PUT, ["agents", id, "secrets"]) => {
            let body: SetSecrets = call.json()?;
            update(api, call, id, move |a| a.secret_ids = body.secret_ids).await
        }
        _ => Err(not_found(call)),
    }
}

async fn update(
    api: &Api,
    call: &Call,
    id: &str,
    change: impl FnOnce(&mut AgentRecord) + Send + 'static,
) -> ApiResult {
    let id = id.to_owned();
    api.write(&call.scope, move |s| {
        let agent = find(s, &id)?;
        s.update_agent(&agent.id, |a| {
            change(a);
            Ok(())
        })
    })
    .await?;
    success()
}
