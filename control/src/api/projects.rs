//! `/v1/projects` and `/v1/api-keys`: scopes for teams sharing one
//! gateway, and the keys that reach them. Admin keys manage both; a
//! project key sees only its own project.

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{json_response, no_content, not_found, ok, Api, ApiResult, Call};
use crate::store::{KeyRecord, ProjectRecord, StoreError};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProjectView {
    id: String,
    name: String,
    identifier: String,
    created_at: String,
}

fn project_view(p: ProjectRecord) -> ProjectView {
    ProjectView {
        id: p.id,
        name: p.name,
        identifier: p.identifier,
        created_at: p.created_at,
    }
}

/// An API key as listed: never the key itself, which only its creator saw.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyView {
    id: String,
    name: String,
    /// The project's identifier; `null` for an admin key.
    project: Option<String>,
    created_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProject {
    name: String,
    identifier: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    /// A project's identifier (or id); absent: an admin key.
    #[serde(default)]
    project: Option<String>,
}

pub async fn dispatch(api: &Api, call: &Call, segments: &[&str]) -> ApiResult {
    match (&call.method, segments) {
        (&Method::GET, ["projects"]) => {
            let scope = call.scope.clone();
            let projects = api
                .read_store(move |s| {
                    let mut projects = s.projects()?;
                    if !scope.admin {
                        projects.retain(|p| p.id == scope.project);
                    }
                    Ok(projects)
                })
                .await?;
            ok(&projects.into_iter().map(project_view).collect::<Vec<_>>())
        }
        (&Method::GET, ["projects", key]) => {
            let key = key.to_string();
            let scope = call.scope.clone();
            let project = api.read_store(move |s| s.project(&key)).await?;
            if !scope.admin && project.id != scope.project {
                return Err(StoreError::NotFound("project").into());
            }
            ok(&project_view(project))
        }
        (&Method::POST, ["projects"]) => {
            call.scope.require_admin("create projects")?;
            let body: CreateProject = call.json()?;
            let project = api
                .write_store(move |s| s.create_project(body.name.trim(), &body.identifier))
                .await?;
            Ok(json_response(StatusCode::CREATED, &project_view(project)))
        }
        (&Method::DELETE, ["projects", key]) => {
            call.scope.require_admin("delete projects")?;
            let key = key.to_string();
            let (project, revoked) = api
                .write_store(move |s| {
                    let project = s.project(&key)?;
                    let revoked = s.delete_project(&project.id)?;
                    Ok((project.id, revoked))
                })
                .await?;
            if !call.dry_run {
                for key in &revoked {
                    api.sessions.end_key(key);
                }
                api.sessions.project_gone(&project);
            }
            no_content()
        }
        (&Method::GET, ["api-keys"]) => {
            call.scope.require_admin("list API keys")?;
            let keys = api
                .read_store(|s| {
                    let projects = s.projects()?;
                    Ok(s.api_keys()?
                        .into_iter()
                        .map(|k| key_view(k, &projects))
                        .collect::<Vec<_>>())
                })
                .await?;
            ok(&keys)
        }
        (&Method::POST, ["api-keys"]) => {
            call.scope.require_admin("create API keys")?;
            let body: CreateKey = call.json()?;
            let (view, key) = api
                .write_store(move |s| {
                    let project = body.project.map(|p| s.project(&p)).transpose()?;
                    let (record, key) = s.create_api_key(
                        body.name.trim(),
                        project.as_ref().map(|p| p.id.as_str()),
                    )?;
                    Ok((key_view(record, &s.projects()?), key))
                })
                .await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({
                    "id": view.id,
                    "name": view.name,
                    "project": view.project,
                    "createdAt": view.created_at,
                    // Shown this once: only its hash is kept.
                    "key": if call.dry_run { "***" } else { key.as_str() },
                }),
            ))
        }
        (&Method::DELETE, ["api-keys", id]) => {
            call.scope.require_admin("revoke API keys")?;
            let id = id.to_string();
            let revoked = id.clone();
            api.write_store(move |s| s.revoke_api_key(&id)).await?;
            // The dashboard sessions and sign-in links it opened end too.
            if !call.dry_run {
                api.sessions.end_key(&revoked);
            }
            no_content()
        }
        _ => Err(not_found(call)),
    }
}

fn key_view(k: KeyRecord, projects: &[ProjectRecord]) -> KeyView {
    let project = k.project.map(|id| {
        projects
            .iter()
            .find(|p| p.id == id)
            .map_or(id, |p| p.identifier.clone())
    });
    KeyView {
        id: k.id,
        name: k.name,
        project,
        created_at: k.created_at,
    }
}
