//! The OneCLI REST API (COMPAT.md, SPEC §4.2) on hyper: every `/v1/...`
//! route also answers at `/api/...`; everything but health and the CA needs
//! `Authorization: Bearer oc_…`. Handlers are thin: parse, call the store,
//! shape the answer; every write is followed by a published snapshot.

mod agents;
mod approvals;
mod config;
mod gateways;
mod logs;
mod projects;
mod rules;
mod secrets;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::approvals::ApprovalsHub;
use crate::publish::{Publisher, Subscriptions};
use crate::store::{DiskFault, KeyRecord, Scoped, Store, StoreError};

const MAX_BODY: usize = 1024 * 1024;

/// What the API needs to answer container-config, skill and CA requests.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `host:port` agents in containers use to reach the gateway.
    pub container_gateway: String,
    /// Where the SDK polls approvals and where links point: this service.
    pub public_url: String,
    /// The gateway CA certificate (PEM) handed to agents.
    pub ca_cert: PathBuf,
    /// The gateway API is served on a listener of its own
    /// (`--gateway-api-listen`), and not on the main one.
    pub gateway_api_apart: bool,
    /// Hosts agents reach directly, not through the gateway (`NO_PROXY`),
    /// beside loopback: the operator's MCP and other local services.
    pub no_proxy: Vec<String>,
    /// The address the service listens on: the dashboard answers requests
    /// for it (and `localhost` on its port), and no other `Host`.
    pub listen: Option<SocketAddr>,
    /// Time a client has to send a request head (no slowloris).
    pub header_timeout: std::time::Duration,
}

pub struct Api {
    pub store: Arc<Store>,
    pub publisher: Publisher,
    pub subscriptions: Arc<Subscriptions>,
    pub approvals: Arc<ApprovalsHub>,
    /// Where remote gateways' audit records go.
    pub audit: Arc<crate::audit::AuditLog>,
    pub config: ApiConfig,
    /// Dashboard sessions and one-time sign-in links.
    pub sessions: crate::dashboard::Sessions,
}

/// How long a gateway's long-poll waits for a newer policy.
const POLICY_WAIT: std::time::Duration = std::time::Duration::from_secs(25);

pub type Body = Full<Bytes>;

/// An API failure, answered in COMPAT.md's shapes.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden(String),
    BadRequest(String),
    /// A body over the limit (413).
    TooLarge(String),
    NotFound(String),
    Conflict(String),
    Unavailable(String),
    /// The data directory's disk is full (507).
    InsufficientStorage(String),
    /// The path exists, for these methods only (405 with `Allow`).
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: Vec<&'static str>,
    },
    Internal,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                ApiError::NotFound(format!("{} not found.", capitalize(what)))
            }
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            StoreError::Disk { fault, detail } => {
                tracing::error!(error = %detail, "the store could not use its disk");
                match fault {
                    DiskFault::Full => ApiError::InsufficientStorage(
                        "The data directory's disk has no space left: nothing was changed. Free some space; the service goes on by itself.".into(),
                    ),
                    DiskFault::ReadOnly => ApiError::Unavailable(
                        "The data directory is on a read-only filesystem: nothing was changed. Make it writable; the service goes on by itself.".into(),
                    ),
                    DiskFault::Failed => ApiError::Unavailable(
                        "The data directory could not be read or written: nothing was changed. Retry shortly.".into(),
                    ),
                }
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Internal
            }
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

impl ApiError {
    /// What an agent or a person is told.
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthorized => "Invalid API key or token.".to_owned(),
            ApiError::BadRequest(m)
            | ApiError::TooLarge(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m)
            | ApiError::InsufficientStorage(m) => m.clone(),
            ApiError::MethodNotAllowed {
                method,
                path,
                allowed,
            } => format!("{path} takes {}, not {method}.", allowed.join(", ")),
            ApiError::Internal => "Internal error.".to_owned(),
        }
    }

    fn into_response(self) -> Response<Body> {
        let allow = match &self {
            ApiError::MethodNotAllowed { allowed, .. } => Some(allowed.join(", ")),
            _ => None,
        };
        let (status, kind, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "Invalid API key or token.".to_owned(),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request_error", m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "permission_error", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found_error", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "invalid_request_error", m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "api_error", m),
            ApiError::InsufficientStorage(m) => (StatusCode::INSUFFICIENT_STORAGE, "api_error", m),
            e @ ApiError::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                e.message(),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "Internal error.".to_owned(),
            ),
        };
        let mut response = json_response(
            status,
            &json!({ "error": { "message": message, "type": kind } }),
        );
        if let Some(allow) = allow.and_then(|a| hyper::header::HeaderValue::from_str(&a).ok()) {
            response.headers_mut().insert(hyper::header::ALLOW, allow);
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"onecli\""),
            );
        }
        response
    }
}

pub type ApiResult = Result<Response<Body>, ApiError>;

pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    response(status, "application/json", body)
}

pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

pub fn ok(value: &impl Serialize) -> ApiResult {
    Ok(json_response(StatusCode::OK, value))
}

pub fn success() -> ApiResult {
    ok(&json!({ "success": true }))
}

pub fn no_content() -> ApiResult {
    Ok(response(
        StatusCode::NO_CONTENT,
        "application/json",
        Bytes::new(),
    ))
}

/// Whose objects a request sees and changes: its API key's project, or
/// for an admin key the one `X-Project-Id` names (the default project when
/// it names none).
#[derive(Debug, Clone)]
pub struct Scope {
    /// The project's id.
    pub project: String,
    /// An admin key: may manage projects and API keys.
    pub admin: bool,
    /// The API key's id (empty for routes that take none): the dashboard
    /// sessions and links it opens end when it is revoked.
    pub key_id: String,
}

impl Scope {
    /// The single-user scope: the default project, as an admin.
    pub fn default_admin() -> Scope {
        Scope {
            project: onecli_policy::model::DEFAULT_PROJECT.to_owned(),
            admin: true,
            key_id: String::new(),
        }
    }

    /// What `key` may see when it names no project.
    pub fn of_key(key: &KeyRecord) -> Scope {
        Scope {
            project: key
                .project
                .clone()
                .unwrap_or_else(|| onecli_policy::model::DEFAULT_PROJECT.to_owned()),
            admin: key.project.is_none(),
            key_id: key.id.clone(),
        }
    }

    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "This API key belongs to one project: only an admin key can {what}."
            )))
        }
    }
}

/// A parsed request: method, path segments after `/v1` (or `/api`), query.
pub struct Call {
    pub scope: Scope,
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
    /// Sent to `/v1/dry-run/…`: checked and answered as usual, changing nothing.
    pub dry_run: bool,
}

impl Call {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON body as `T`; unknown fields and bad types are a clear 400.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::BadRequest("A JSON body is required.".into()));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::BadRequest(format!("Invalid request body: {e}")))
    }
}

/// What a listener of the control service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The API and the dashboard; the gateway API too, unless it has a
    /// listener of its own.
    Main,
    /// Only what gateways call (`/v1/gateway/policy|approvals|audit`) and
    /// `/v1/health`: a port a network policy can open to gateways alone.
    Gateways,
    /// Only `GET /metrics`.
    Metrics,
}

impl Api {
    /// Serves the API and the dashboard until `shutdown` resolves;
    /// connections in flight are finished.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        self.serve_on(listener, shutdown, Surface::Main).await;
    }

    /// Serves one surface until `shutdown` resolves.
    pub async fn serve_on(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
        surface: Surface,
    ) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let api = self.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.handle(req, surface).await) }
                    });
                    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // A client has this long to send its request head (no slowloris).
                    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(self.config.header_timeout);
                    let conn = builder.serve_connection(TokioIo::new(tcp), service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    }

    pub async fn handle(&self, req: Request<Incoming>, surface: Surface) -> Response<Body> {
        if surface == Surface::Metrics {
            return if req.uri().path() == "/metrics" {
                response(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics_text(),
                )
            } else {
                ApiError::NotFound("Only /metrics here.".into()).into_response()
            };
        }
        let started = std::time::Instant::now();
        let route = crate::metrics::route_label(req.uri().path());
        let answer = match self.route(req, surface).await {
            Ok(r) | Err(r) => r,
        };
        crate::metrics::metrics().api_request(route, answer.status().as_u16(), started.elapsed());
        answer
    }

    /// The control metrics in Prometheus' text format, gauges read now.
    pub fn metrics_text(&self) -> Vec<u8> {
        crate::metrics::metrics().render(
            self.subscriptions.listening(),
            self.approvals.pending_count(),
        )
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        surface: Surface,
    ) -> Result<Response<Body>, Response<Body>> {
        let fail = |e: ApiError| e.into_response();
        let path = req.uri().path().to_owned();
        if surface == Surface::Gateways
            && !(path.starts_with("/v1/gateway/") || path.starts_with("/api/gateway/"))
            && !matches!(path.as_str(), "/v1/health" | "/api/health")
        {
            return Err(fail(ApiError::NotFound(format!(
                "No route for {path} on the gateway API's port."
            ))));
        }
        if crate::dashboard::owns(&path) {
            return Ok(crate::dashboard::route(self, req).await);
        }
        let rest = path
            .strip_prefix("/v1/")
            .or_else(|| path.strip_prefix("/api/"))
            .ok_or_else(|| fail(ApiError::NotFound(format!("No route for {path}."))))?;
        let segments: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let query = req.uri().query().map(parse_query).unwrap_or_default();
        let method = req.method().clone();
        let route = segments_str(&segments);
        let public_path = matches!(
            route.as_slice(),
            ["health"] | ["openapi.json"] | ["gateway", "ca"]
        );
        if public_path && method != Method::GET {
            return Err(fail(no_route(&method, &segments)));
        }
        let public = public_path && method == Method::GET;
        // What gateways call, with their gateway token.
        let for_gateways = matches!(
            route.as_slice(),
            ["gateway", "policy" | "approvals" | "audit", ..]
        );
        if for_gateways && surface == Surface::Main && self.config.gateway_api_apart {
            return Err(fail(ApiError::NotFound(format!(
                "The gateway API has a port of its own: no route for {path} here."
            ))));
        }
        if for_gateways {
            if !self.gateway_authorized(req.headers()).await {
                return Err(fail(ApiError::Unauthorized));
            }
            let body = Limited::new(req.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|_| {
                    fail(ApiError::TooLarge(format!(
                        "The request body exceeds {MAX_BODY} bytes."
                    )))
                })?
                .to_bytes();
            let call = Call {
                scope: Scope::default_admin(),
                method,
                segments,
                query,
                body,
                dry_run: false,
            };
            return gateways::dispatch(self, &call).await.map_err(fail);
        }
        let scope = if public {
            Scope::default_admin()
        } else {
            let Some(key) = self.api_key(req.headers()).await else {
                return Err(fail(ApiError::Unauthorized));
            };
            let asked = match req.headers().get("x-project-id").map(|v| v.to_str()) {
                None => None,
                Some(Ok(v)) => Some(v.trim().to_owned()).filter(|v| !v.is_empty()),
                Some(Err(_)) => {
                    return Err(fail(ApiError::BadRequest(
                        "X-Project-Id must be a project id or identifier.".into(),
                    )))
                }
            };
            self.scope(key, asked).await.map_err(fail)?
        };
        let body = Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| {
                fail(ApiError::TooLarge(format!(
                    "The request body exceeds {MAX_BODY} bytes."
                )))
            })?
            .to_bytes();
        // `/v1/dry-run/<route>`: a change checked as if made, then rolled
        // back. A server without it answers 404, so a dry run sent to one
        // never changes anything either.
        let mut segments = segments;
        let dry_run = segments.first().is_some_and(|s| s == "dry-run");
        if dry_run {
            segments.remove(0);
            if method == Method::GET || !dry_runs(&segments_str(&segments)) {
                let mut asked = vec!["dry-run".to_owned()];
                asked.extend(segments.iter().cloned());
                return Err(fail(match no_route(&method, &asked) {
                    ApiError::NotFound(_) => ApiError::NotFound(format!(
                        "{method} /v1/{} cannot be dry-run.",
                        segments.join("/")
                    )),
                    other => other,
                }));
            }
        }
        let call = Call {
            scope,
            method,
            segments,
            query,
            body,
            dry_run,
        };
        if !dry_run {
            return self.dispatch(&call).await.map_err(fail);
        }
        let mut answer = DRY_RUN
            .scope(true, self.dispatch(&call))
            .await
            .map_err(fail)?;
        answer.headers_mut().insert(
            "x-onecli-dry-run",
            hyper::header::HeaderValue::from_static("true"),
        );
        Ok(answer)
    }

    async fn dispatch(&self, call: &Call) -> ApiResult {
        let segments = segments_str(&call.segments);
        match segments.first().copied() {
            Some("health")
            | Some("openapi.json")
            | Some("gateway")
            | Some("gateway-url")
            | Some("container-config")
            | Some("skill") => config::dispatch(self, call, &segments).await,
            Some("agents") => agents::dispatch(self, call, &segments).await,
            Some("approvals") => approvals::dispatch(self, call, &segments).await,
            Some("secrets") => secrets::dispatch(self, call, &segments).await,
            Some("rules") => rules::dispatch(self, call, &segments).await,
            Some("logs") => logs::dispatch(self, call, &segments).await,
            Some("projects") | Some("api-keys") => projects::dispatch(self, call, &segments).await,
            Some("dashboard") => match (&call.method, segments.as_slice()) {
                // A one-time sign-in link, for `onecli dashboard`.
                (&Method::POST, ["dashboard", "links"]) => {
                    let (url, expires_in) =
                        crate::dashboard::sign_in_link(self, call.scope.clone());
                    Ok(json_response(
                        StatusCode::CREATED,
                        &json!({ "url": url, "expiresInSeconds": expires_in }),
                    ))
                }
                _ => Err(not_found(call)),
            },
            _ => Err(not_found(call)),
        }
    }

    /// The valid API key the request presents, if any.
    async fn api_key(&self, headers: &hyper::HeaderMap) -> Option<KeyRecord> {
        let token = bearer(headers)?;
        let store = self.store.clone();
        blocking(move || store.verify_api_key(&token))
            .await
            .ok()
            .flatten()
    }

    /// What a request with `key` may see: its project, or for an admin key
    /// the project it asks for (by id or identifier). Asking a project key
    /// for another project answers 404, as for any object it cannot see.
    pub async fn scope(&self, key: KeyRecord, asked: Option<String>) -> Result<Scope, ApiError> {
        let store = self.store.clone();
        blocking(move || {
            let project = match (&key.project, asked) {
                (_, None) => return Ok(Scope::of_key(&key)),
                (Some(own), Some(asked)) => {
                    let project = store.project(&asked)?;
                    if &project.id != own {
                        return Err(StoreError::NotFound("project"));
                    }
                    project
                }
                (None, Some(asked)) => match store.project(&asked) {
                    Ok(project) => project,
                    // A single-user installation, which has never had a
                    // project besides the default one: SDKs configured
                    // with a OneCLI project id keep working, as before
                    // projects (COMPAT: accept and ignore). Once a project
                    // has been created, an unknown one is an error, never
                    // a guess, even after the others are deleted.
                    Err(StoreError::NotFound(_)) if !store.projects_used()? => {
                        tracing::debug!("X-Project-Id names no project; single-user installation");
                        return Ok(Scope::of_key(&key));
                    }
                    Err(e) => return Err(e),
                },
            };
            Ok(Scope {
                project: project.id,
                ..Scope::of_key(&key)
            })
        })
        .await
        .map_err(ApiError::from)
    }

    /// Whether the request presents a valid gateway token.
    async fn gateway_authorized(&self, headers: &hyper::HeaderMap) -> bool {
        let Some(token) = bearer(headers) else {
            return false;
        };
        let store = self.store.clone();
        blocking(move || store.verify_gateway_token(&token))
            .await
            .unwrap_or(false)
    }

    /// A gateway's long-poll: the sealed policy newer than `after`, or 204
    /// when none came within the wait.
    pub(super) async fn policy_for_gateway(&self, after: u64) -> Response<Body> {
        let asked = std::time::Instant::now();
        match self.subscriptions.next_after(after, POLICY_WAIT).await {
            Some(policy) => {
                // A push: published while this gateway waited. A gateway that
                // starts behind gets the current policy at once, and its wait
                // would say nothing about propagation.
                if policy.published_at >= asked {
                    crate::metrics::metrics().pushed(policy.published_at.elapsed());
                }
                let Ok(sealed) = self.subscriptions.seal_policy(&policy) else {
                    return ApiError::Internal.into_response();
                };
                let mut r = response(StatusCode::OK, "application/octet-stream", sealed);
                r.headers_mut().insert(
                    "x-onecli-policy-version",
                    hyper::header::HeaderValue::from(policy.version),
                );
                r
            }
            None => response(
                StatusCode::NO_CONTENT,
                "application/octet-stream",
                Bytes::new(),
            ),
        }
    }

    /// Runs a store call for `scope`'s project off the async workers and
    /// publishes the new policy if it wrote. In a dry run the writes are
    /// rolled back and nothing is published.
    pub async fn write<T: Send + 'static>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&Scoped<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let project = scope.project.clone();
        self.write_store(move |store| f(&store.scoped(&project)))
            .await
    }

    /// [`Api::write`] across projects (projects and API keys themselves).
    pub async fn write_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        if DRY_RUN.try_with(|d| *d).unwrap_or(false) {
            return Ok(blocking(move || crate::store::dry_run(|| f(&store))).await?);
        }
        let out = blocking(move || f(&store)).await?;
        self.publisher.publish(&self.store).await;
        Ok(out)
    }

    pub async fn read<T: Send + 'static>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&Scoped<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let project = scope.project.clone();
        self.read_store(move |store| f(&store.scoped(&project)))
            .await
    }

    pub async fn read_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        Ok(blocking(move || f(&store)).await?)
    }
}

tokio::task_local! {
    /// Set while a `/v1/dry-run/…` call is answered.
    static DRY_RUN: bool;
}

/// The changes that can be dry-run: those of agents, secrets and rules, and
/// approval decisions. Any other (a sign-in link, say) is refused rather
/// than made.
fn dry_runs(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["agents" | "secrets" | "rules" | "projects" | "api-keys", ..]
            | ["approvals", _, "decision"]
    )
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Db(e.to_string()))?
}

/// No route answers this call.
pub fn not_found(call: &Call) -> ApiError {
    no_route(&call.method, &call.segments)
}

/// 405 when the path takes other methods (as docs/openapi.yaml describes
/// them), else 404.
fn no_route(method: &Method, segments: &[String]) -> ApiError {
    let path = format!("/v1/{}", segments.join("/"));
    let allowed = config::methods_of(segments);
    if allowed.is_empty() {
        ApiError::NotFound(format!("No route for {method} {path}."))
    } else {
        ApiError::MethodNotAllowed {
            method: method.to_string(),
            path,
            allowed,
        }
    }
}

fn segments_str(segments: &[String]) -> Vec<&str> {
    segments.iter().map(String::as_str).collect()
}

pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Entry point of the fuzz target `api_bodies` (and the replay of its
/// corpus): the JSON bodies the API checks beyond their shape.
#[doc(hidden)]
pub fn fuzz_bodies(data: &[u8]) {
    secrets::fuzz_body(data);
    rules::fuzz_body(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query("agent=my-agent&x=a%20b+c&flag"),
            vec![
                ("agent".to_owned(), "my-agent".to_owned()),
                ("x".to_owned(), "a b c".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert_eq!(percent_decode("%2F%2A"), "/*");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn disk_failures_are_answered_507_or_503_without_their_detail() {
        let answer = |fault| {
            let e = StoreError::Disk {
                fault,
                detail: "/secret/path: os error".into(),
            };
            let response = ApiError::from(e).into_response();
            let status = response.status().as_u16();
            let body = format!("{:?}", response.into_body());
            assert!(!body.contains("/secret/path"), "{body}");
            (status, body)
        };
        let (status, body) = answer(DiskFault::Full);
        assert_eq!(status, 507);
        assert!(body.contains("no space left"), "{body}");
        let (status, body) = answer(DiskFault::ReadOnly);
        assert_eq!(status, 503);
        assert!(body.contains("read-only"), "{body}");
        assert_eq!(answer(DiskFault::Failed).0, 503);
    }
}
