//! The web dashboard (SPEC §4.5), served by the control service beside the
//! API: server-rendered pages, one stylesheet and one small script, all in
//! the binary.
//!
//! Guards, in the order a request meets them:
//! - its `Host` must be one this service answers to (its listen address,
//!   `localhost` or `127.0.0.1` on its port, the public URL's host), so a
//!   DNS-rebinding page cannot drive it;
//! - a POST whose `Origin` is another site's is refused;
//! - every page but sign-in and the assets needs a session (a server-side
//!   record behind an `HttpOnly`, `SameSite=Strict` cookie);
//! - every state-changing form carries the session's CSRF token;
//! - answers forbid framing and carry a strict Content-Security-Policy
//!   (scripts and styles from this origin only, nothing inline).

mod pages;
mod session;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, COOKIE, HOST, LOCATION, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use maud::{html, Markup};
use zeroize::Zeroizing;

use crate::api::{parse_query, Api, Body, Scope};
use crate::store::{Scoped, SecretInput};
pub use session::Sessions;

const COOKIE_NAME: &str = "onecli_session";
const MAX_FORM: usize = 64 * 1024;
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const APP_CSS: &str = include_str!("dashboard/assets/app.css");
const APP_JS: &str = include_str!("dashboard/assets/app.js");

/// Whether `path` is the dashboard's (everything outside `/v1` and `/api`).
pub fn owns(path: &str) -> bool {
    !(path.starts_with("/v1/") || path.starts_with("/api/") || path == "/v1" || path == "/api")
}

/// A one-time sign-in link for `onecli dashboard`.
pub fn sign_in_link(api: &Api, scope: Scope) -> (String, u64) {
    let token = api.sessions.new_link(scope);
    let url = format!(
        "{}/sign-in/link?token={}",
        api.config.public_url.trim_end_matches('/'),
        token.as_str()
    );
    (url, session::LINK_TTL.as_secs())
}

struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

pub async fn route(api: &Api, req: Request<Incoming>) -> Response<Body> {
    if !host_allowed(api, &req) {
        return html_response(
            StatusCode::MISDIRECTED_REQUEST,
            pages::message(
                "Wrong address",
                "This OneCLI dashboard answers only at its own address.",
            ),
        );
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(parse_query).unwrap_or_default();
    if method == Method::POST && !same_origin(&req) {
        return html_response(
            StatusCode::FORBIDDEN,
            pages::message("Refused", "A form from another site cannot change OneCLI."),
        );
    }
    match (&method, path.as_str()) {
        (&Method::GET, "/assets/app.css") => return asset("text/css; charset=utf-8", APP_CSS),
        (&Method::GET, "/assets/app.js") => return asset("text/javascript; charset=utf-8", APP_JS),
        _ => {}
    }
    let cookie = session_cookie(&req);
    let session = cookie.as_deref().and_then(|c| api.sessions.get(c));
    let secure = api.config.public_url.starts_with("https://");

    match (&method, path.as_str()) {
        (&Method::GET, "/sign-in") => {
            if session.is_some() {
                return redirect("/");
            }
            let next = local_path(Form(query.clone()).get("next"));
            return html_response(StatusCode::OK, pages::sign_in(None, &next));
        }
        (&Method::POST, "/sign-in") => {
            let Ok(form) = read_form(req).await else {
                return bad_form();
            };
            let next = local_path(form.get("next"));
            if api.sessions.throttled() {
                return html_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    pages::sign_in(Some("Too many failed sign-ins. Wait a minute."), &next),
                );
            }
            let key = Zeroizing::new(form.get("key").trim().to_owned());
            let store = api.store.clone();
            let found = match key.is_empty() {
                true => None,
                false => tokio::task::spawn_blocking(move || store.verify_api_key(&key))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten(),
            };
            let Some(found) = found else {
                api.sessions.failed();
                return html_response(
                    StatusCode::UNAUTHORIZED,
                    pages::sign_in(Some("That API key is not valid."), &next),
                );
            };
            return signed_in(api, &next, secure, Scope::of_key(&found));
        }
        (&Method::GET, "/sign-in/link") => {
            let token = Form(query).get("token").to_owned();
            if api.sessions.throttled() {
                return html_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    pages::message(
                        "Too many tries",
                        "Wait a minute, then ask `onecli dashboard` for a new link.",
                    ),
                );
            }
            let Some(scope) = api.sessions.redeem_link(&token) else {
                api.sessions.failed();
                return html_response(
                    StatusCode::UNAUTHORIZED,
                    pages::message(
                        "This link does not work",
                        "Sign-in links work once and for five minutes. Run `onecli dashboard` for a new one.",
                    ),
                );
            };
            return signed_in(api, "/", secure, scope);
        }
        _ => {}
    }

    let (Some(cookie), Some(session)) = (cookie, session) else {
        if method == Method::GET {
            let here = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            return redirect(&format!("/sign-in?next={}", encode(&here)));
        }
        return html_response(
            StatusCode::UNAUTHORIZED,
            pages::message("Signed out", "Sign in again to continue."),
        );
    };
    // A link for a project (the gateway's links for an agent outside the
    // default project say which): an admin's session switches to it; a
    // session of another project's key refuses rather than act in its own.
    let mut session = session;
    let wanted = Form(query.clone()).get("project").to_owned();
    if method == Method::GET && !wanted.is_empty() {
        let store = api.store.clone();
        let found = tokio::task::spawn_blocking(move || store.project(&wanted))
            .await
            .ok()
            .and_then(Result::ok);
        match found {
            Some(p) if p.id == session.scope.project => {}
            Some(p) if session.scope.admin => {
                api.sessions.switch_project(&cookie, &p.id);
                session.scope.project = p.id;
            }
            _ => {
                return html_response(
                    StatusCode::NOT_FOUND,
                    pages::message(
                        "Another project",
                        "This link is for a project this sign-in cannot reach. Sign in with that project's API key, or an admin key.",
                    ),
                )
            }
        }
    }
    // Everything a session does, it does in its project.
    SCOPE
        .scope(
            session.scope.clone(),
            in_session(api, req, method, path, query, cookie, session, secure),
        )
        .await
}

tokio::task_local! {
    /// The project of the session being served: [`read`] and [`write`]
    /// work in it, and only in it.
    static SCOPE: Scope;
}

/// The session's scope; outside one, a scope that matches no project, so
/// that a call that escaped [`SCOPE`] finds nothing and writes nothing.
fn scope() -> Scope {
    SCOPE.try_with(Scope::clone).unwrap_or(Scope {
        project: String::new(),
        admin: false,
        key_id: String::new(),
    })
}

async fn read<T: Send + 'static>(
    api: &Api,
    f: impl FnOnce(&Scoped<'_>) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, crate::api::ApiError> {
    api.read(&scope(), f).await
}

async fn write<T: Send + 'static>(
    api: &Api,
    f: impl FnOnce(&Scoped<'_>) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, crate::api::ApiError> {
    api.write(&scope(), f).await
}

/// A call across projects (keys, the policy version), for admins only.
async fn admin<T: Send + 'static>(
    api: &Api,
    f: impl FnOnce(&crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, crate::api::ApiError> {
    scope().require_admin("manage keys")?;
    // Keys do not change what gateways enforce: nothing to publish.
    api.read_store(f).await
}

#[allow(clippy::too_many_arguments)]
async fn in_session(
    api: &Api,
    req: Request<Incoming>,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    cookie: String,
    session: session::Session,
    secure: bool,
) -> Response<Body> {
    if method == Method::POST {
        let Ok(form) = read_form(req).await else {
            return bad_form();
        };
        if !constant_time_eq(form.get("csrf").as_bytes(), session.csrf.as_bytes()) {
            return html_response(
                StatusCode::FORBIDDEN,
                pages::message(
                    "Refused",
                    "The form was stale or forged. Reload the page and try again.",
                ),
            );
        }
        return match path.as_str() {
            "/project" => {
                let wanted = form.get("project").to_owned();
                let store = api.store.clone();
                let found = tokio::task::spawn_blocking(move || store.project(&wanted))
                    .await
                    .ok()
                    .and_then(Result::ok);
                if let Some(project) = found {
                    api.sessions.switch_project(&cookie, &project.id);
                }
                redirect("/")
            }
            "/sign-out" => {
                api.sessions.end(&cookie);
                let mut r = redirect("/sign-in");
                set_cookie(&mut r, "", 0, secure);
                r
            }
            "/connections" => save_connection(api, &form, &session.csrf, None).await,
            p if p.starts_with("/connections/") && p.matches('/').count() == 2 => {
                let id = p["/connections/".len()..].to_owned();
                save_connection(api, &form, &session.csrf, Some(id)).await
            }
            "/agents" | "/rules" => manage(api, &path, &form, &session.csrf).await,
            p if p.starts_with("/settings/") => settings_change(api, p, &form, &session.csrf).await,
            p if p.starts_with("/agents/")
                || p.starts_with("/rules/")
                || p.starts_with("/connections/") =>
            {
                manage(api, p, &form, &session.csrf).await
            }
            p if p.starts_with("/approvals/") => {
                let rest = &p["/approvals/".len()..];
                let decision = match rest.rsplit_once('/') {
                    Some((id, "approve")) => {
                        Some((id, onecli_policy::approval::ApprovalDecision::Approve))
                    }
                    Some((id, "deny")) => {
                        Some((id, onecli_policy::approval::ApprovalDecision::Deny))
                    }
                    _ => None,
                };
                match decision {
                    // Decided already, or gone: the list shows what is left.
                    Some((id, decision)) => {
                        let _ = api.approvals.decide(&session.scope.project, id, decision);
                        redirect("/approvals")
                    }
                    None => framed(
                        api,
                        &session.csrf,
                        pages::Section::Overview,
                        "Not found",
                        StatusCode::NOT_FOUND,
                        pages::not_found(),
                    ),
                }
            }
            _ => framed(
                api,
                &session.csrf,
                pages::Section::Overview,
                "Not found",
                StatusCode::NOT_FOUND,
                pages::not_found(),
            ),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return html_response(
            StatusCode::METHOD_NOT_ALLOWED,
            pages::message("Not allowed", "The dashboard takes GET and POST only."),
        );
    }
    let query = Form(query);
    let csrf = session.csrf.as_str();
    match path.as_str() {
        "/" => overview(api, csrf).await,
        "/approvals" => {
            let pending = pending_requests(api).await;
            framed(
                api,
                csrf,
                pages::Section::Approvals,
                "Approvals",
                StatusCode::OK,
                pages::approvals(&pending, csrf),
            )
        }
        "/approvals/feed" => {
            let pending = pending_requests(api).await;
            let mut r = crate::api::json_response(
                StatusCode::OK,
                &serde_json::json!({ "requests": pending }),
            );
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            secure_headers(&mut r);
            r
        }
        p if p.starts_with("/agents/") && p.ends_with("/token") => {
            // The proxy token, fetched by the Reveal button: never in a page.
            let id = p["/agents/".len()..p.len() - "/token".len()].to_owned();
            let token = read(api, move |s| {
                let agent = s.agent(&id)?;
                s.agent_token(&agent).map(|t| t.to_string())
            })
            .await;
            let mut r = match token {
                Ok(token) => crate::api::json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "token": token }),
                ),
                Err(_) => crate::api::json_response(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({ "error": "not_found" }),
                ),
            };
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            secure_headers(&mut r);
            r
        }
        p if p.starts_with("/rules/") && p.ends_with("/edit") => {
            let id = p["/rules/".len()..p.len() - "/edit".len()].to_owned();
            let found = read(api, move |s| {
                Ok((s.rules()?.into_iter().find(|r| r.id == id), s.agents()?))
            })
            .await;
            match found {
                Ok((Some(rule), agents)) => {
                    let content = html! {
                        h1 { "Edit " (rule.name) }
                        (pages::rule_form(Some(&rule), &agents, csrf))
                    };
                    framed(
                        api,
                        csrf,
                        pages::Section::Rules,
                        "Edit a rule",
                        StatusCode::OK,
                        content,
                    )
                }
                _ => framed(
                    api,
                    csrf,
                    pages::Section::Rules,
                    "Not found",
                    StatusCode::NOT_FOUND,
                    pages::not_found(),
                ),
            }
        }
        "/settings" => {
            let error = Some(query.get("error")).filter(|e| !e.is_empty());
            settings_page(api, csrf, None, error).await
        }
        "/activity" => {
            let filter = activity_filter(&query);
            let records = activity_records(api, &filter).await;
            framed(
                api,
                csrf,
                pages::Section::Activity,
                "Activity",
                StatusCode::OK,
                pages::activity(&records, &filter),
            )
        }
        "/activity/feed" => {
            let records = activity_records(api, &activity_filter(&query)).await;
            let mut r = crate::api::json_response(StatusCode::OK, &records);
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            secure_headers(&mut r);
            r
        }
        "/agents" => {
            let (agents, secrets) = read(api, |s| Ok((s.agents()?, s.secrets()?)))
                .await
                .unwrap_or_default();
            let manage = query.get("manage");
            let manage = (!manage.is_empty()).then_some(manage);
            framed(
                api,
                csrf,
                pages::Section::Agents,
                "Agents",
                StatusCode::OK,
                pages::agents(
                    &agents,
                    &secrets,
                    manage,
                    csrf,
                    Some(query.get("error")).filter(|e| !e.is_empty()),
                    &api.config.container_gateway,
                ),
            )
        }
        "/connections" => {
            let secrets = read(api, |s| s.secrets()).await.unwrap_or_default();
            let notice = match query.get("saved") {
                "" => None,
                name => Some(match query.get("agent_name") {
                    "" => pages::notice(true, html! { "Saved " strong { (name) } "." }),
                    agent => pages::notice(
                        true,
                        html! {
                            "Saved " strong { (name) } ". Tell " strong { (agent) } " it can retry its request now."
                        },
                    ),
                }),
            };
            let notice = notice.or_else(|| match query.get("error") {
                "" => None,
                error => Some(pages::notice(false, html! { (error) })),
            });
            framed(
                api,
                csrf,
                pages::Section::Connections,
                "Connections",
                StatusCode::OK,
                pages::connections(&secrets, notice, csrf),
            )
        }
        p if p.starts_with("/connections/") && p.ends_with("/edit") => {
            let id = p["/connections/".len()..p.len() - "/edit".len()].to_owned();
            match read(api, move |s| s.secret(&id)).await {
                Ok(secret) => {
                    let form = edit_form(&secret);
                    framed(
                        api,
                        csrf,
                        pages::Section::Connections,
                        "Edit a connection",
                        StatusCode::OK,
                        pages::connect(&form, csrf, None),
                    )
                }
                Err(_) => framed(
                    api,
                    csrf,
                    pages::Section::Connections,
                    "Not found",
                    StatusCode::NOT_FOUND,
                    pages::not_found(),
                ),
            }
        }
        "/connections/custom" | "/connections/new" => {
            let form = connect_form_from(&query);
            framed(
                api,
                csrf,
                pages::Section::Connections,
                "Add a connection",
                StatusCode::OK,
                pages::connect(&form, csrf, None),
            )
        }
        "/rules" => {
            let (rules, agents) = read(api, |s| Ok((s.rules()?, s.agents()?)))
                .await
                .unwrap_or_default();
            framed(
                api,
                csrf,
                pages::Section::Rules,
                "Rules",
                StatusCode::OK,
                pages::rules(
                    &rules,
                    &agents,
                    csrf,
                    Some(query.get("error")).filter(|e| !e.is_empty()),
                ),
            )
        }
        _ => framed(
            api,
            csrf,
            pages::Section::Overview,
            "Not found",
            StatusCode::NOT_FOUND,
            pages::not_found(),
        ),
    }
}

fn activity_filter(query: &Form) -> pages::ActivityFilter {
    pages::ActivityFilter {
        agent: query.get("agent").trim().to_owned(),
        host: query.get("host").trim().to_ascii_lowercase(),
        outcome: query.get("outcome").trim().to_owned(),
    }
}

/// The newest 200 audit records that pass the filter.
async fn activity_records(
    api: &Api,
    filter: &pages::ActivityFilter,
) -> Vec<onecli_policy::audit::AuditRecord> {
    let agent = (!filter.agent.is_empty()).then(|| filter.agent.clone());
    let records = read(api, move |s| s.audit(agent.as_deref(), None, 1_000))
        .await
        .unwrap_or_default();
    records
        .into_iter()
        .filter(|r| filter.host.is_empty() || r.host == filter.host)
        .filter(|r| filter.outcome.is_empty() || r.outcome == filter.outcome)
        .take(200)
        .collect()
}

/// The changes the agents, rules and connections pages make. Each answers
/// with a redirect back to its list, or the list with what went wrong.
async fn manage(api: &Api, path: &str, form: &Form, csrf: &str) -> Response<Body> {
    use crate::store::RuleInput;
    use onecli_policy::model::PolicyMode;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let id = segments.get(1).map(|s| s.to_string()).unwrap_or_default();
    let field = |name: &str| form.get(name).trim().to_owned();
    let (back, outcome): (&str, Result<(), crate::api::ApiError>) = match segments.as_slice() {
        ["agents"] => {
            let (name, identifier) = (field("name"), field("identifier"));
            (
                "/agents",
                write(api, move |s| {
                    s.create_agent(&name, &identifier, false).map(|_| ())
                })
                .await,
            )
        }
        ["agents", _, "delete"] => {
            let agent_id = id.clone();
            let done = write(api, move |s| s.delete_agent(&agent_id)).await;
            if done.is_ok() {
                api.approvals.deny_agent(&id);
            }
            ("/agents", done)
        }
        ["agents", _, "regenerate"] if form.get("confirm") == "yes" => {
            let agent_id = id.clone();
            let done = write(api, move |s| s.regenerate_token(&agent_id).map(|_| ())).await;
            if done.is_ok() {
                api.approvals.deny_agent(&id);
            }
            ("/agents", done)
        }
        ["agents", _, "regenerate"] => (
            "/agents",
            Err(crate::api::ApiError::BadRequest(
                "Tick the box to confirm: the old token stops working.".into(),
            )),
        ),
        ["agents", _, "rename"] => {
            let name = field("name");
            ("/agents", edit_agent(api, id, move |a| a.name = name).await)
        }
        ["agents", _, "secrets"] => {
            use onecli_policy::model::SecretMode;
            let mode = if form.get("mode") == "selective" {
                SecretMode::Selective
            } else {
                SecretMode::All
            };
            let ids: Vec<String> = form
                .0
                .iter()
                .filter(|(k, _)| k == "secret")
                .map(|(_, v)| v.clone())
                .collect();
            let edit = edit_agent(api, id, move |a| {
                a.secret_mode = mode;
                a.secret_ids = ids;
            });
            ("/agents", edit.await)
        }
        ["agents", _, "policy-mode"] => {
            let mode = if form.get("mode") == "deny" {
                PolicyMode::Deny
            } else {
                PolicyMode::Allow
            };
            (
                "/agents",
                edit_agent(api, id, move |a| a.policy_mode = mode).await,
            )
        }
        ["rules"] => {
            let done = match rule_input(form) {
                Ok(input) => write(api, move |s| s.create_rule(input).map(|_| ())).await,
                Err(e) => Err(e),
            };
            ("/rules", done)
        }
        ["rules", _] => {
            let done = match rule_input(form) {
                Ok(input) => write(api, move |s| s.update_rule(&id, input).map(|_| ())).await,
                Err(e) => Err(e),
            };
            ("/rules", done)
        }
        ["rules", _, "toggle"] => {
            let enabled = form.get("enabled") == "true";
            let input = RuleInput {
                enabled: Some(enabled),
                ..RuleInput::default()
            };
            (
                "/rules",
                write(api, move |s| s.update_rule(&id, input).map(|_| ())).await,
            )
        }
        ["rules", _, "delete"] => ("/rules", write(api, move |s| s.delete_rule(&id)).await),
        ["connections", _, "delete"] => (
            "/connections",
            write(api, move |s| s.delete_secret(&id)).await,
        ),
        _ => {
            return framed(
                api,
                csrf,
                pages::Section::Overview,
                "Not found",
                StatusCode::NOT_FOUND,
                pages::not_found(),
            );
        }
    };
    match outcome {
        Ok(()) => redirect(back),
        Err(error) => redirect(&format!("{back}?error={}", encode(&error.message()))),
    }
}

async fn settings_page(
    api: &Api,
    csrf: &str,
    created: Option<(&str, &str)>,
    error: Option<&str>,
) -> Response<Body> {
    // Keys are an admin's business: a project's session lists none.
    let (api_keys, gateway_tokens) = admin(api, |s| Ok((s.api_keys()?, s.gateway_tokens()?)))
        .await
        .unwrap_or_default();
    let fingerprint = std::fs::read_to_string(&api.config.ca_cert)
        .ok()
        .and_then(|pem| ca_fingerprint(&pem))
        .unwrap_or_else(|| "unavailable".to_owned());
    let content = pages::settings(
        &pages::Settings {
            api_keys: &api_keys,
            gateway_tokens: &gateway_tokens,
            created,
            error,
            ca_fingerprint: &fingerprint,
            version: env!("CARGO_PKG_VERSION"),
        },
        csrf,
    );
    framed(
        api,
        csrf,
        pages::Section::Settings,
        "Settings",
        StatusCode::OK,
        content,
    )
}

/// New keys (shown once, on the answer itself, never in a URL) and
/// revocations. Revoking an API key ends every dashboard session, since a
/// session does not remember which key opened it.
async fn settings_change(api: &Api, path: &str, form: &Form, csrf: &str) -> Response<Body> {
    let name = form.get("name").trim().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["settings", kind @ ("api-keys" | "gateway-tokens")] => {
            if name.is_empty() {
                return settings_page(api, csrf, None, Some("Give it a name.")).await;
            }
            let api_key = *kind == "api-keys";
            let key = admin(api, move |s| {
                if api_key {
                    s.create_api_key(&name, None).map(|(_, key)| key)
                } else {
                    s.create_gateway_token(&name)
                }
            })
            .await;
            match key {
                Ok(key) => {
                    let what = if api_key { "API key" } else { "gateway token" };
                    settings_page(api, csrf, Some((what, key.as_str())), None).await
                }
                Err(e) => settings_page(api, csrf, None, Some(&e.message())).await,
            }
        }
        ["settings", kind @ ("api-keys" | "gateway-tokens"), id, "revoke"] => {
            let (api_key, id) = (*kind == "api-keys", id.to_string());
            let revoked = id.clone();
            let done = admin(api, move |s| {
                if api_key {
                    s.revoke_api_key(&id)
                } else {
                    s.revoke_gateway_token(&id)
                }
            })
            .await;
            match done {
                // Every session and link the key opened ends with it.
                Ok(()) if api_key => {
                    api.sessions.end_key(&revoked);
                    if revoked == scope().key_id {
                        redirect("/sign-in")
                    } else {
                        redirect("/settings")
                    }
                }
                Ok(()) => redirect("/settings"),
                Err(e) => redirect(&format!("/settings?error={}", encode(&e.message()))),
            }
        }
        _ => framed(
            api,
            csrf,
            pages::Section::Settings,
            "Not found",
            StatusCode::NOT_FOUND,
            pages::not_found(),
        ),
    }
}

/// Changes one agent's record as `change` says.
async fn edit_agent(
    api: &Api,
    id: String,
    change: impl FnOnce(&mut crate::store::AgentRecord) + Send + 'static,
) -> Result<(), crate::api::ApiError> {
    write(api, move |s| {
        s.update_agent(&id, |a| {
            change(a);
            Ok(())
        })
        .map(|_| ())
    })
    .await
}

/// A rule as its form describes it.
fn rule_input(form: &Form) -> Result<crate::store::RuleInput, crate::api::ApiError> {
    use onecli_policy::model::{RateWindow, RuleAction};
    let field = |name: &str| form.get(name).trim().to_owned();
    let action = match form.get("action") {
        "block" => RuleAction::Block,
        "allow" => RuleAction::Allow,
        "manual_approval" => RuleAction::ManualApproval,
        "rate_limit" => {
            let window = match form.get("window") {
                "minute" => RateWindow::Minute,
                "day" => RateWindow::Day,
                _ => RateWindow::Hour,
            };
            let limit = form.get("limit").trim().parse::<u32>().map_err(|_| {
                crate::api::ApiError::BadRequest("A rate limit needs a number of requests.".into())
            })?;
            RuleAction::RateLimit { limit, window }
        }
        _ => return Err(crate::api::ApiError::BadRequest("Choose an action.".into())),
    };
    let methods: Vec<String> = form
        .get("methods")
        .split([',', ' '])
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect();
    let agent = field("agent");
    Ok(crate::store::RuleInput {
        name: Some(field("name")),
        host_pattern: Some(field("host")),
        path_pattern: Some(match field("path") {
            p if p.is_empty() => "*".to_owned(),
            p => p,
        }),
        methods: Some(methods),
        agent_id: Some((!agent.is_empty()).then_some(agent)),
        action: Some(action),
        enabled: None,
    })
}

/// What waits for a human now, oldest first.
async fn pending_requests(api: &Api) -> Vec<serde_json::Value> {
    let listed = api
        .approvals
        .pending(
            &scope().project,
            &Default::default(),
            std::time::Duration::ZERO,
        )
        .await;
    listed["requests"].as_array().cloned().unwrap_or_default()
}

/// The form for an existing connection: everything but its value.
fn edit_form(s: &crate::store::SecretRecord) -> pages::ConnectForm {
    use onecli_policy::model::{InjectionDoc, SecretKind};
    let mut form = pages::ConnectForm {
        kind: match s.kind {
            SecretKind::Anthropic => "anthropic",
            SecretKind::Openai => "openai",
            SecretKind::Generic => "generic",
            SecretKind::Aws => "aws",
        }
        .to_owned(),
        name: s.name.clone(),
        host: s.host_pattern.clone(),
        path: s.path_pattern.clone(),
        inject: "header".to_owned(),
        editing: Some(s.id.clone()),
        ..pages::ConnectForm::default()
    };
    match &s.injection {
        Some(InjectionDoc::Header { name, format }) => {
            form.header = name.clone();
            form.format = format.clone();
        }
        Some(InjectionDoc::Query { name, format }) => {
            form.inject = "param".to_owned();
            form.param = name.clone();
            form.param_format = format.clone();
        }
        Some(InjectionDoc::PathTemplate { template }) => {
            form.inject = "path".to_owned();
            form.path_template = template.clone();
        }
        // Edited through the API or the CLI; the form keeps it as it is.
        Some(InjectionDoc::PathRegex { .. }) => form.inject = "keep".to_owned(),
        Some(InjectionDoc::Aws { access_key_id }) => form.access_key_id = access_key_id.clone(),
        None => {}
    }
    form
}

/// The create form as a connect link (`secret_url`) prefills it.
fn connect_form_from(query: &Form) -> pages::ConnectForm {
    let kind = match query.get("create") {
        k @ ("anthropic" | "openai" | "aws") => k.to_owned(),
        _ => "generic".to_owned(),
    };
    let host = query.get("host").to_owned();
    let path = match query.get("path") {
        "" => "*".to_owned(),
        p => p.to_owned(),
    };
    let name = match query.get("name") {
        "" => host.clone(),
        n => n.to_owned(),
    };
    let agent_name = match (query.get("source"), query.get("agent_name")) {
        ("agent", name) if !name.is_empty() => Some(name.to_owned()),
        ("agent", _) => Some("an agent".to_owned()),
        _ => None,
    };
    pages::ConnectForm {
        kind,
        name,
        host,
        path,
        inject: if !query.get("param").is_empty() {
            "param"
        } else if !query.get("path_template").is_empty() {
            "path"
        } else {
            "header"
        }
        .to_owned(),
        header: query.get("header").to_owned(),
        format: query.get("format").to_owned(),
        param: query.get("param").to_owned(),
        param_format: String::new(),
        path_template: query.get("path_template").to_owned(),
        access_key_id: String::new(),
        agent_name,
        editing: None,
    }
}

/// Creates a connection, or with `editing` changes one (an empty value
/// keeps the stored one).
async fn save_connection(
    api: &Api,
    form: &Form,
    csrf: &str,
    editing: Option<String>,
) -> Response<Body> {
    let kind = match form.get("type") {
        "anthropic" => onecli_policy::model::SecretKind::Anthropic,
        "openai" => onecli_policy::model::SecretKind::Openai,
        "aws" => onecli_policy::model::SecretKind::Aws,
        _ => onecli_policy::model::SecretKind::Generic,
    };
    let or = |v: &str, default: &str| {
        if v.trim().is_empty() {
            default.to_owned()
        } else {
            v.trim().to_owned()
        }
    };
    let injection = match kind {
        onecli_policy::model::SecretKind::Generic if form.get("inject") == "keep" => None,
        onecli_policy::model::SecretKind::Generic if form.get("inject") == "path" => {
            Some(Some(onecli_policy::model::InjectionDoc::PathTemplate {
                template: form.get("path_template").trim().to_owned(),
            }))
        }
        onecli_policy::model::SecretKind::Generic if form.get("inject") == "param" => {
            Some(Some(onecli_policy::model::InjectionDoc::Query {
                name: form.get("param").trim().to_owned(),
                format: or(form.get("param_format"), "{value}"),
            }))
        }
        onecli_policy::model::SecretKind::Generic => {
            Some(Some(onecli_policy::model::InjectionDoc::Header {
                name: or(form.get("header"), "Authorization"),
                format: or(form.get("format"), "{value}"),
            }))
        }
        onecli_policy::model::SecretKind::Aws => {
            Some(Some(onecli_policy::model::InjectionDoc::Aws {
                access_key_id: form.get("access_key_id").trim().to_owned(),
            }))
        }
        _ => None,
    };
    // Empty keeps the stored token when editing.
    let session_token = match form.get("session_token").trim() {
        "" if editing.is_some() => None,
        "" => Some(None),
        token => Some(Some(Zeroizing::new(token.to_owned()))),
    };
    let name = form.get("name").trim().to_owned();
    let agent_name = form.get("agent_name").to_owned();
    let input = SecretInput {
        name: Some(name.clone()),
        kind: Some(kind),
        value: match form.get("value") {
            "" if editing.is_some() => None,
            value => Some(Zeroizing::new(value.to_owned())),
        },
        host_pattern: Some(form.get("host").trim().to_owned()),
        path_pattern: Some(or(form.get("path"), "*")),
        injection,
        allow_plaintext: None,
        session_token: session_token.filter(|_| kind == onecli_policy::model::SecretKind::Aws),
    };
    let target = editing.clone();
    let saved = write(api, move |s| match target {
        Some(id) => s.update_secret(&id, input),
        None => s.create_secret(input),
    })
    .await;
    match saved {
        Ok(_) => {
            let mut to = format!("/connections?saved={}", encode(&name));
            if !agent_name.is_empty() {
                to.push_str(&format!("&agent_name={}", encode(&agent_name)));
            }
            redirect(&to)
        }
        Err(error) => {
            // The form comes back as it was sent, the value excepted.
            let again = pages::ConnectForm {
                kind: form.get("type").to_owned(),
                name,
                host: form.get("host").to_owned(),
                path: form.get("path").to_owned(),
                inject: form.get("inject").to_owned(),
                header: form.get("header").to_owned(),
                format: form.get("format").to_owned(),
                param: form.get("param").to_owned(),
                param_format: form.get("param_format").to_owned(),
                path_template: form.get("path_template").to_owned(),
                access_key_id: form.get("access_key_id").to_owned(),
                agent_name: (!agent_name.is_empty()).then_some(agent_name),
                editing,
            };
            let message = error.message();
            framed(
                api,
                csrf,
                pages::Section::Connections,
                "Add a connection",
                StatusCode::BAD_REQUEST,
                pages::connect(&again, csrf, Some(&message)),
            )
        }
    }
}

async fn overview(api: &Api, csrf: &str) -> Response<Body> {
    let counts = read(api, |s| {
        Ok((
            s.policy_version()?,
            s.agents()?.len(),
            s.secrets()?.len(),
            s.rules()?.len(),
        ))
    })
    .await
    .unwrap_or_default();
    let fingerprint = std::fs::read_to_string(&api.config.ca_cert)
        .ok()
        .and_then(|pem| ca_fingerprint(&pem))
        .unwrap_or_else(|| "unavailable".to_owned());
    let since = crate::ids::now_unix_ms().saturating_sub(3_600_000);
    let records = read(api, move |s| s.audit(None, Some(since), 100_000))
        .await
        .unwrap_or_default();
    let mut by_outcome: std::collections::BTreeMap<String, usize> = Default::default();
    for r in records {
        *by_outcome.entry(r.outcome).or_default() += 1;
    }
    let mut last_hour: Vec<(String, usize)> = by_outcome.into_iter().collect();
    last_hour.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let content = pages::overview(&pages::Overview {
        last_hour,
        remote_gateways: api.subscriptions.listening(),
        policy_version: counts.0,
        agents: counts.1,
        connections: counts.2,
        rules: counts.3,
        pending_approvals: api.approvals.pending_in(&scope().project),
        api_url: api.config.public_url.trim_end_matches('/'),
        ca_fingerprint: &fingerprint,
    });
    framed(
        api,
        csrf,
        pages::Section::Overview,
        "Overview",
        StatusCode::OK,
        content,
    )
}

/// SHA-256 of the first certificate's DER, as colon-separated hex.
fn ca_fingerprint(pem: &str) -> Option<String> {
    let cert = boring::x509::X509::from_pem(pem.as_bytes()).ok()?;
    let digest = cert.digest(boring::hash::MessageDigest::sha256()).ok()?;
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn framed(
    api: &Api,
    csrf: &str,
    section: pages::Section,
    title: &str,
    status: StatusCode,
    content: Markup,
) -> Response<Body> {
    let scope = scope();
    // The project switcher: every project for an admin, its own otherwise.
    let projects = api
        .store
        .projects()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| scope.admin || p.id == scope.project)
        .map(|p| (p.id, p.name))
        .collect::<Vec<_>>();
    let frame = pages::Frame {
        section,
        title,
        csrf,
        pending_approvals: api.approvals.pending_in(&scope.project),
        projects: &projects,
        project: &scope.project,
    };
    html_response(status, pages::page(&frame, content))
}

fn signed_in(api: &Api, next: &str, secure: bool, scope: Scope) -> Response<Body> {
    let cookie = api.sessions.start(scope);
    let mut r = redirect(next);
    set_cookie(&mut r, &cookie, session::SESSION_TTL.as_secs(), secure);
    r
}

fn set_cookie(r: &mut Response<Body>, value: &str, max_age: u64, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(hyper::header::SET_COOKIE, v);
    }
}

fn session_cookie(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// The `Host` header names this service: its listen port on `localhost`,
/// `127.0.0.1` or `[::1]`, the listen address itself, or the public URL's
/// authority.
fn host_allowed(api: &Api, req: &Request<Incoming>) -> bool {
    let Some(host) = req.headers().get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let public = api
        .config
        .public_url
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if host == public {
        return true;
    }
    let Some(listen) = api.config.listen else {
        return false;
    };
    let port = listen.port();
    host == listen.to_string()
        || ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .any(|name| host == format!("{name}:{port}"))
}

/// A POST's `Origin`, when the browser sent one, must be this service.
fn same_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let Some(host) = req.headers().get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let origin = origin.trim().to_ascii_lowercase();
    origin == format!("http://{}", host.to_ascii_lowercase())
        || origin == format!("https://{}", host.to_ascii_lowercase())
}

/// A local path to return to after sign-in; anything else is `/`.
fn local_path(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

async fn read_form(req: Request<Incoming>) -> Result<Form, ()> {
    let body = Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .map_err(|_| ())?
        .to_bytes();
    let text = std::str::from_utf8(&body).map_err(|_| ())?;
    Ok(Form(parse_query(text)))
}

fn bad_form() -> Response<Body> {
    html_response(
        StatusCode::BAD_REQUEST,
        pages::message("Bad form", "The form could not be read."),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn secure_headers(r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it a browser sends `Origin: null` on our own forms.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn html_response(status: StatusCode, markup: Markup) -> Response<Body> {
    let mut r = crate::api::response(status, "text/html; charset=utf-8", markup.into_string());
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_headers(&mut r);
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut r = crate::api::response(
        StatusCode::OK,
        content_type,
        Bytes::from_static(body.as_bytes()),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    secure_headers(&mut r);
    r
}

fn redirect(to: &str) -> Response<Body> {
    let mut r = crate::api::response(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Bytes::new(),
    );
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_headers(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_come_back_after_sign_in() {
        assert_eq!(
            local_path("/connections/custom?host=a"),
            "/connections/custom?host=a"
        );
        for bad in [
            "//evil.test/x",
            "https://evil.test",
            "/\\evil.test",
            "",
            "evil",
        ] {
            assert_eq!(local_path(bad), "/", "{bad}");
        }
    }

    #[test]
    fn the_dashboard_owns_what_the_api_does_not() {
        assert!(owns("/"));
        assert!(owns("/connections/custom"));
        assert!(!owns("/v1/agents"));
        assert!(!owns("/api/agents"));
    }

    #[test]
    fn csrf_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
