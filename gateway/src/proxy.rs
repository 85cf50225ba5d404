//! The per-request phases, on Pingora's `HttpProxy`. Each phase is a short
//! dispatcher into the synchronous pieces: who is asking (`auth`, tunnel
//! facts), where to (`egress`), what to add (`inject`), what went wrong
//! (`errors`).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use onecli_policy::audit::AuditRecord;
use onecli_policy::model::RuleAction;
use onecli_policy::{
    canonical::METHOD_OVERRIDE_HEADERS, normalize_host, Ambiguous, CanonicalRequest, Decision,
    SecretPresence, Snapshot, TokenHash,
};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::authority::{raw_target_authority, RawTargetAuthority};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::egress::EgressError;
use crate::errors::Refusal;
use crate::front_door::TunnelFacts;
use crate::head::parse_authority;
use crate::{approval, auth, direct, guidance, inject, Shared};
use onecli_policy::credential;

pub struct GatewayProxy {
    shared: Arc<Shared>,
}

impl GatewayProxy {
    pub fn new(shared: Arc<Shared>) -> Self {
        GatewayProxy { shared }
    }
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// Normalized host (lowercase, no brackets).
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Target {
    /// The `Host` header value for the upstream request.
    pub(crate) fn authority(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

pub struct RequestCtx {
    started: Instant,
    snapshot: Option<Arc<Snapshot>>,
    token: Option<TokenHash>,
    target: Option<Target>,
    /// Set by a phase that fails, read by `fail_to_proxy`.
    refusal: Option<Refusal>,
    injected: inject::Injected,
    /// Set when the upstream's refusal is to be replaced by guidance.
    rewrite: Option<guidance::BodyRewrite>,
    /// Set when the request was signed: the signature never comes back.
    scrub: Option<inject::BodyScrub>,
    /// The rule that decided, for the audit log: (id, name).
    rule: Option<(String, String)>,
    /// The request's canonical form, which every decision judges.
    canonical: Option<CanonicalRequest>,
    outcome: &'static str,
    /// When the request head went upstream (time to first byte).
    sent_upstream: Option<Instant>,
}

impl RequestCtx {
    /// Target, snapshot and agent token, which `request_filter` settled
    /// for every request that goes on.
    fn resolved(&self) -> Result<(Target, Arc<Snapshot>, TokenHash)> {
        match (&self.target, &self.snapshot, self.token) {
            (Some(target), Some(snapshot), Some(token)) => {
                Ok((target.clone(), snapshot.clone(), token))
            }
            _ => Err(Error::explain(
                ErrorType::InternalError,
                "request context incomplete",
            )),
        }
    }
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            token: None,
            target: None,
            refusal: None,
            injected: inject::Injected::default(),
            rewrite: None,
            scrub: None,
            rule: None,
            canonical: None,
            outcome: "forwarded",
            sent_upstream: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let facts = tunnel_facts(session);
        let (token, target) = match facts {
            Some(facts) => {
                if let Some(refusal) = misdirected(session.req_header(), facts) {
                    return self.answer(session, ctx, refusal).await;
                }
                let target = Target {
                    host: facts.host.clone(),
                    port: facts.port,
                    tls: facts.tls,
                };
                (Some(facts.token), target)
            }
            None => match absolute_target(session.req_header()) {
                Ok(Some(target)) => {
                    let token = session
                        .req_header()
                        .headers
                        .get("proxy-authorization")
                        .and_then(|v| auth::token_hash(v.as_bytes()));
                    (token, target)
                }
                Ok(None) => return self.own_api(session, ctx).await,
                Err(refusal) => return self.answer(session, ctx, refusal).await,
            },
        };
        let Some(snapshot) = self.shared.policy.current() else {
            return self.answer(session, ctx, Refusal::NotReady).await;
        };
        let Some(token) = token.filter(|t| snapshot.agent_by_token_hash(t).is_some()) else {
            return self.answer(session, ctx, Refusal::ProxyAuthRequired).await;
        };
        let canonical = match canonical_request(session.req_header_mut()) {
            Ok(canonical) => canonical,
            Err(refusal) => return self.answer(session, ctx, refusal).await,
        };
        let verdict = enforce_rules(
            &self.shared,
            &snapshot,
            &token,
            &target,
            &canonical,
            &mut ctx.rule,
        )
        .await;
        ctx.snapshot = Some(snapshot);
        ctx.token = Some(token);
        ctx.target = Some(target);
        ctx.canonical = Some(canonical);
        match verdict {
            Verdict::Refuse(refusal) => self.answer(session, ctx, refusal).await,
            Verdict::Hold => self.approve(session, ctx).await,
            Verdict::Proceed if session.is_upgrade_req() => self.upgrade(session, ctx).await,
            Verdict::Proceed if self.needs_body(session, ctx) => self.with_body(session, ctx).await,
            Verdict::Proceed if is_login_refresh(session.req_header(), ctx) => {
                self.login_refresh(session, ctx).await
            }
            Verdict::Proceed => Ok(false),
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(target) = ctx.target.as_ref() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no target for request",
            ));
        };
        let addr = match self.shared.egress.resolve(&target.host, target.port).await {
            Ok(addr) => addr,
            Err(error) => {
                let refusal = match error {
                    EgressError::Refused { .. } => Refusal::EgressBlocked {
                        host: target.host.clone(),
                    },
                    EgressError::Unresolvable(_) => Refusal::BadGateway {
                        message: format!("OneCLI gateway could not resolve {}.", target.host),
                    },
                };
                return Err(self.fail(ctx, refusal));
            }
        };
        let mut peer = HttpPeer::new(addr, target.tls, target.host.clone());
        let t = &self.shared.config.timeouts;
        let options = &mut peer.options;
        options.connection_timeout = Some(t.connect);
        options.total_connection_timeout = Some(t.tls);
        options.read_timeout = Some(t.read);
        options.write_timeout = Some(t.read);
        options.idle_timeout = Some(t.idle);
        options.set_http_version(2, 1);
        options.max_h2_streams = 100;
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (target, snapshot, token) = ctx.resolved()?;
        match prepare_upstream_request(req, &target, &snapshot, &token, inject::Body::Unread) {
            Ok(injected) => {
                self.shared
                    .metrics
                    .injections
                    .inc_by(injected.secret_ids.len() as u64);
                ctx.injected = injected;
                ctx.sent_upstream = Some(Instant::now());
                Ok(())
            }
            Err(refusal) => Err(self.fail(ctx, refusal)),
        }
    }

    /// A new upstream connection: how long its TCP connect and its TLS
    /// handshake took, as Pingora measured them.
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        digest: Option<&pingora_core::protocols::Digest>,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if reused {
            return Ok(());
        }
        let layers: Vec<std::time::Duration> = digest
            .map(|d| {
                d.timing_digest
                    .iter()
                    .map(|t| t.as_ref().and_then(|t| t.establishment_duration))
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let metrics = &self.shared.metrics;
        if let Some(connect) = layers.first() {
            metrics.upstream_connect.observe(connect.as_secs_f64());
        }
        if let (2.., Some(tls)) = (layers.len(), layers.last()) {
            metrics.upstream_tls.observe(tls.as_secs_f64());
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(sent) = ctx.sent_upstream.take() {
            self.shared
                .metrics
                .upstream_ttfb
                .observe(sent.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        inject::scrub_reflected(resp, &ctx.injected.url_values);
        ctx.scrub = ctx
            .injected
            .signature
            .as_ref()
            .and_then(|s| inject::BodyScrub::new(s));
        if ctx.injected.secret_ids.is_empty() {
            let path = session.req_header().uri.path().to_owned();
            if let Some(rewrite) = self.guidance(resp.status.as_u16(), &path, ctx) {
                // The body changes length; Pingora frames it anew.
                resp.remove_header("content-length");
                if rewrite.replaces_for_sure() {
                    resp.remove_header("content-encoding");
                    resp.insert_header("content-type", "application/json")?;
                    resp.insert_header("x-should-retry", "false")?;
                }
                ctx.outcome = "guidance";
                ctx.rewrite = Some(rewrite);
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(rewrite) = ctx.rewrite.as_mut() {
            rewrite.on_chunk(body, end_of_stream);
        }
        if let Some(scrub) = ctx.scrub.as_mut() {
            let chunk = body.take().unwrap_or_default();
            // Empty chunks are not written: held bytes wait safely.
            *body = Some(Bytes::from(scrub.feed(&chunk, end_of_stream)));
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let refusal = ctx
            .refusal
            .take()
            .or_else(|| classify(e, ctx.target.as_ref()));
        let Some(refusal) = refusal else {
            // The client went away: nobody to answer.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        ctx.outcome = refusal.code();
        let status = refusal.status();
        if session.response_written().is_none() {
            let body = refusal.body();
            let resp = refusal.response_header(body.len());
            if session
                .write_response_header(Box::new(resp), false)
                .await
                .is_ok()
            {
                let _ = session.write_response_body(Some(body), true).await;
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let metrics = &self.shared.metrics;
        metrics
            .requests
            .with_label_values(&[ctx.outcome, status_class(status)])
            .inc();
        metrics
            .request_seconds
            .observe(ctx.started.elapsed().as_secs_f64());
        let Some(target) = &ctx.target else { return };
        let agent = ctx
            .snapshot
            .as_ref()
            .zip(ctx.token.as_ref())
            .and_then(|(s, t)| s.agent_by_token_hash(t));
        let req = session.req_header();
        let ms = ctx.started.elapsed().as_millis() as u64;
        tracing::info!(
            agent = agent.map_or("", |a| a.identifier.as_str()),
            project = agent.map_or("", |a| a.project.as_str()),
            method = %req.method,
            host = %target.host,
            path = req.uri.path(),
            injected = ?ctx.injected.secret_ids,
            status,
            outcome = ctx.outcome,
            ms,
            "request"
        );
        let (Some(sink), Some(agent)) = (&self.shared.hooks.audit, agent) else {
            return;
        };
        let now = time::OffsetDateTime::now_utc();
        let record = AuditRecord {
            project: agent.project.clone(),
            time: now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            unix_ms: u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
            agent_id: agent.id.clone(),
            agent: agent.identifier.clone(),
            method: req.method.as_str().to_owned(),
            host: target.host.clone(),
            path: req.uri.path().to_owned(),
            rule_id: ctx.rule.as_ref().map(|(id, _)| id.clone()),
            rule_name: ctx.rule.as_ref().map(|(_, name)| name.clone()),
            outcome: ctx.outcome.to_owned(),
            injected: std::mem::take(&mut ctx.injected.secret_ids),
            status,
            duration_ms: ms,
        };
        if !sink.record(record) {
            metrics.audit_dropped.inc();
        }
    }
}

impl GatewayProxy {
    /// Answers a request with a refusal; `Ok(true)` tells Pingora it is done.
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        refusal: Refusal,
    ) -> Result<bool> {
        ctx.outcome = refusal.code();
        let body = refusal.body();
        let resp = refusal.response_header(body.len());
        if refusal.closes() {
            session.set_keepalive(None);
        }
        // A HEAD answer announces the body's length but carries none (over
        // h2, a body there is a protocol error).
        if session.req_header().method == http::Method::HEAD {
            session.write_response_header(Box::new(resp), true).await?;
        } else {
            session.write_response_header(Box::new(resp), false).await?;
            session.write_response_body(Some(body), true).await?;
        }
        Ok(true)
    }

    /// The guidance rewrite for an upstream refusal of an uncredentialed request.
    fn guidance(&self, status: u16, path: &str, ctx: &RequestCtx) -> Option<guidance::BodyRewrite> {
        let (target, snapshot, token) = (
            ctx.target.as_ref()?,
            ctx.snapshot.as_ref()?,
            ctx.token.as_ref()?,
        );
        let agent = snapshot.agent_by_token_hash(token)?;
        let kind = match snapshot.secret_presence(agent, &target.host, target.port) {
            SecretPresence::HiddenFromAgent => guidance::Guidance::AccessRestricted,
            SecretPresence::None | SecretPresence::Visible => {
                guidance::Guidance::CredentialNotFound
            }
        };
        let dashboard = self.shared.config.dashboard_url.trim_end_matches('/');
        let body = guidance::body(
            kind,
            &target.host,
            path,
            &agent.identifier,
            &agent.project,
            dashboard,
        );
        guidance::BodyRewrite::for_status(status, body)
    }

    /// Holds the request for a human; forwards it if approved.
    async fn approve(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(broker) = self.shared.hooks.approvals.clone() else {
            return self
                .answer(session, ctx, Refusal::ApprovalUnavailable)
                .await;
        };
        let (target, snapshot, token) = ctx.resolved()?;
        let Some(agent) = snapshot.agent_by_token_hash(&token) else {
            return self.answer(session, ctx, Refusal::ProxyAuthRequired).await;
        };
        let Some(_slot) = self.shared.held.try_take(&agent.id).ok() else {
            return self.answer(session, ctx, Refusal::ApprovalsBusy).await;
        };
        let body = match self.read_body(session, approval::MAX_HELD_BODY).await? {
            Ok(body) => body,
            Err(refusal) => return self.answer(session, ctx, refusal).await,
        };
        let original = session.req_header().clone();
        // What the reviewer is told the gateway would inject (names only).
        let mut preview = original.clone();
        let injected = match prepare_upstream_request(
            &mut preview,
            &target,
            &snapshot,
            &token,
            inject::Body::Known(&body),
        ) {
            Ok(injected) => injected,
            Err(refusal) => return self.answer(session, ctx, refusal).await,
        };
        drop(preview);
        let scheme = if target.tls { "https" } else { "http" };
        let path_and_query = original.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{scheme}://{}{path_and_query}", target.authority());
        let mut review =
            approval::review(&original, url, &target.host, &injected.header_names, &body);
        review.agent_id = agent.id.clone();
        review.agent_name = agent.name.clone();
        review.agent_identifier = agent.identifier.clone();
        review.project = agent.project.clone();
        let timeout = self.shared.config.approval_timeout;
        review.timeout_secs = timeout.as_secs();

        self.shared.metrics.approvals_pending.inc();
        let held = approval::hold(broker.as_ref(), session, review, timeout).await;
        self.shared.metrics.approvals_pending.dec();
        match held {
            approval::Held::Approved => {
                // Judged again, and injected, by the policy of now: an
                // agent, secret or rule removed while it waited counts.
                let upstream = match self.release(&original, &body, &target, &token, ctx) {
                    Ok(released) => released,
                    Err(refusal) => return self.answer(session, ctx, refusal).await,
                };
                self.shared
                    .metrics
                    .injections
                    .inc_by(ctx.injected.secret_ids.len() as u64);
                ctx.outcome = "approved";
                self.forward_direct(session, ctx, &target, &upstream, &body)
                    .await
            }
            approval::Held::Denied { id } | approval::Held::TimedOut { id } => {
                self.answer(
                    session,
                    ctx,
                    Refusal::ManualApprovalDenied { approval_id: id },
                )
                .await
            }
            approval::Held::Unavailable => {
                self.answer(session, ctx, Refusal::ApprovalUnavailable)
                    .await
            }
            approval::Held::ClientGone => {
                ctx.outcome = "client_gone";
                Ok(true)
            }
        }
    }

    /// An approved request, judged against the current policy and prepared
    /// with its credentials (left in `ctx.injected`): refused if its agent
    /// is gone or a rule now blocks it; a deleted secret is not injected.
    fn release(
        &self,
        original: &RequestHeader,
        body: &[u8],
        target: &Target,
        token: &TokenHash,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<RequestHeader, Refusal> {
        let snapshot = self.shared.policy.current().ok_or(Refusal::NotReady)?;
        let agent = snapshot
            .agent_by_token_hash(token)
            .ok_or(Refusal::ProxyAuthRequired)?;
        let canonical = ctx
            .canonical
            .as_ref()
            .ok_or(Refusal::BadRequest("the request was not judged"))?;
        let dashboard_url = self.shared.config.dashboard_url.trim_end_matches('/');
        if let Some(refusal) = block_refusal(
            &snapshot.evaluate(agent, canonical.facts(&target.host, target.port)),
            canonical,
            target,
            dashboard_url,
        ) {
            return Err(refusal);
        }
        let mut upstream = original.clone();
        frame_held(&mut upstream, body.len())?;
        ctx.injected = prepare_upstream_request(
            &mut upstream,
            target,
            &snapshot,
            token,
            inject::Body::Known(body),
        )?;
        ctx.snapshot = Some(snapshot);
        Ok(upstream)
    }

    /// Reads the whole request body, within the held-body deadline and size;
    /// a client waiting for `100 Continue` gets it first (Pingora sends none).
    async fn read_body(
        &self,
        session: &mut Session,
        max: usize,
    ) -> Result<std::result::Result<Vec<u8>, Refusal>> {
        continue_if_expected(session).await?;
        match tokio::time::timeout(
            self.shared.config.held_body_timeout,
            approval::read_body_up_to(session, max),
        )
        .await
        {
            Err(_) => Ok(Err(Refusal::RequestTimeout)),
            Ok(body) => Ok(body?.ok_or(Refusal::PayloadTooLarge)),
        }
    }

    /// An AWS request with a body and no declared payload hash: the body
    /// is hashed to sign the request.
    fn needs_body(&self, session: &mut Session, ctx: &RequestCtx) -> bool {
        let Ok((target, snapshot, token)) = ctx.resolved() else {
            return false;
        };
        let Some(agent) = snapshot.agent_by_token_hash(&token) else {
            return false;
        };
        if session.is_body_empty() {
            return false;
        }
        let req = session.req_header();
        // The path secrets are matched on upstream: origin-form.
        let path = match req.uri.path_and_query() {
            Some(p) if req.uri.scheme().is_some() => p.as_str().to_owned(),
            _ => String::from_utf8_lossy(req.raw_path()).into_owned(),
        };
        let secrets = snapshot.injections(agent, &target.host, target.port, target.tls, &path);
        inject::needs_body(req, secrets)
    }

    /// Reads the body (held like an approval's, within the same limits),
    /// then prepares the request with it and forwards it.
    async fn with_body(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let (_, snapshot, token) = ctx.resolved()?;
        let Some(agent) = snapshot.agent_by_token_hash(&token) else {
            return self.answer(session, ctx, Refusal::ProxyAuthRequired).await;
        };
        let Some(_slot) = self.shared.hashing.try_take(&agent.id).ok() else {
            return self.answer(session, ctx, Refusal::SigningBusy).await;
        };
        let body = match self.read_body(session, approval::MAX_HELD_BODY).await? {
            Ok(body) => body,
            Err(refusal) => return self.answer(session, ctx, refusal).await,
        };
        self.forward_read(session, ctx, &body).await
    }

    /// A request whose body was read: prepared with it (credentials
    /// injected, signed over it) and forwarded.
    async fn forward_read(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: &[u8],
    ) -> Result<bool> {
        let (target, snapshot, token) = ctx.resolved()?;
        let mut upstream = session.req_header().clone();
        let prepared = frame_held(&mut upstream, body.len()).and_then(|()| {
            prepare_upstream_request(
                &mut upstream,
                &target,
                &snapshot,
                &token,
                inject::Body::Known(body),
            )
        });
        match prepared {
            Ok(injected) => {
                self.shared
                    .metrics
                    .injections
                    .inc_by(injected.secret_ids.len() as u64);
                ctx.injected = injected;
            }
            Err(refusal) => return self.answer(session, ctx, refusal).await,
        }
        self.forward_direct(session, ctx, &target, &upstream, body)
            .await
    }

    /// Codex refreshing its ChatGPT login: with the managed refresh token
    /// (the placeholder login OneCLI gave it), the gateway answers with
    /// placeholder tokens itself and nothing leaves; the control service
    /// keeps the real login fresh. Any other refresh goes on as sent.
    async fn login_refresh(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let (_, snapshot, token) = ctx.resolved()?;
        let Some(agent) = snapshot.agent_by_token_hash(&token) else {
            return self.answer(session, ctx, Refusal::ProxyAuthRequired).await;
        };
        let body = match self.read_body(session, LOGIN_REFRESH_BODY).await? {
            Ok(body) => body,
            Err(refusal) => return self.answer(session, ctx, refusal).await,
        };
        if refresh_token_of(&body).as_deref() != Some(credential::MANAGED_REFRESH_TOKEN) {
            return self.forward_read(session, ctx, &body).await;
        }
        let (status, answer) = match snapshot.chatgpt_login(agent).and_then(|s| s.refresh_answer()) {
            Some(answer) => (200, answer.to_owned()),
            None => (
                400,
                serde_json::json!({
                    "error": "invalid_grant",
                    "error_description": "OneCLI holds no ChatGPT login this agent may use: store one with `onecli secrets create --type openai --value-file ~/.codex/auth.json`.",
                })
                .to_string(),
            ),
        };
        ctx.outcome = "login_refresh_answered";
        self.respond_json(session, status, answer).await
    }

    /// A JSON answer of the gateway's own.
    async fn respond_json(&self, session: &mut Session, status: u16, body: String) -> Result<bool> {
        let body = Bytes::from(body);
        let mut resp = ResponseHeader::build(status, Some(3))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("cache-control", "no-store")?;
        // A HEAD answer announces the body's length but carries none (over
        // h2, a body there is a protocol error).
        if session.req_header().method == http::Method::HEAD {
            session.write_response_header(Box::new(resp), true).await?;
        } else {
            session.write_response_header(Box::new(resp), false).await?;
            session.write_response_body(Some(body), true).await?;
        }
        Ok(true)
    }

    async fn forward_direct(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &Target,
        upstream: &RequestHeader,
        body: &[u8],
    ) -> Result<bool> {
        match direct::forward(&self.shared, session, target, upstream, body, &ctx.injected).await {
            direct::Outcome::Relayed(_) => Ok(true),
            direct::Outcome::Broken => Err(Error::explain(
                ErrorType::ReadError,
                "upstream response cut off",
            )),
            direct::Outcome::Refused(refusal) => self.answer(session, ctx, refusal).await,
        }
    }

    /// Upgrade requests (WebSocket) are relayed by `upgrade`, not Pingora.
    async fn upgrade(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let (target, snapshot, token) = ctx.resolved()?;
        let headers = &session.req_header().headers;
        if headers.contains_key("transfer-encoding")
            || headers
                .get("content-length")
                .is_some_and(|v| v.as_bytes() != b"0")
        {
            return self
                .answer(
                    session,
                    ctx,
                    Refusal::BadRequest("an upgrade request cannot carry a body"),
                )
                .await;
        }
        let mut req = session.req_header().clone();
        match prepare_upstream_request(
            &mut req,
            &target,
            &snapshot,
            &token,
            inject::Body::Known(&[]),
        ) {
            Ok(injected) => {
                self.shared
                    .metrics
                    .injections
                    .inc_by(injected.secret_ids.len() as u64);
                ctx.injected = injected;
            }
            Err(refusal) => return self.answer(session, ctx, refusal).await,
        }
        self.forward_direct(session, ctx, &target, &req, &[]).await
    }

    /// Records the refusal for `fail_to_proxy` and returns the error that gets there.
    fn fail(&self, ctx: &mut RequestCtx, refusal: Refusal) -> Box<Error> {
        let status = refusal.status();
        ctx.refusal = Some(refusal);
        Error::new(ErrorType::HTTPStatus(status))
    }

    /// Origin-form requests to the gateway itself: `/healthz`, `/readyz`.
    async fn own_api(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let ready = self.shared.policy.current().is_some();
        let (status, body) = match session.req_header().uri.path() {
            "/healthz" => (
                200,
                serde_json::json!({ "status": "ok", "version": crate::VERSION }),
            ),
            "/readyz" if ready => (200, serde_json::json!({ "status": "ready" })),
            "/readyz" => (503, serde_json::json!({ "status": "not_ready" })),
            _ => return self.answer(session, ctx, Refusal::NotAProxyRequest).await,
        };
        ctx.outcome = "own_api";
        self.respond_json(session, status, body.to_string()).await
    }
}

/// `Expect: 100-continue`: the client waits for a go before its body.
async fn continue_if_expected(session: &mut Session) -> Result<()> {
    let expects = session
        .req_header()
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects {
        session.write_continue_response().await?;
    }
    Ok(())
}

/// The most a login refresh carries (Codex sends a few hundred bytes).
const LOGIN_REFRESH_BODY: usize = 64 * 1024;

/// A POST to the ChatGPT login's token endpoint (any port: tests pin one).
fn is_login_refresh(req: &RequestHeader, ctx: &RequestCtx) -> bool {
    req.method == http::Method::POST
        && req.uri.path() == credential::CHATGPT_TOKEN_PATH
        && ctx
            .target
            .as_ref()
            .is_some_and(|t| t.host == credential::CHATGPT_TOKEN_HOST)
}

/// The `refresh_token` of a token request, JSON (as Codex sends it) or a form.
fn refresh_token_of(body: &[u8]) -> Option<String> {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        return json.get("refresh_token")?.as_str().map(str::to_owned);
    }
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "refresh_token").then(|| {
            String::from_utf8_lossy(&crate::sigv4::percent_decode(&value.replace('+', " ")))
                .into_owned()
        })
    })
}

fn tunnel_facts(session: &Session) -> Option<&TunnelFacts> {
    session
        .digest()?
        .proxy_digest
        .as_ref()?
        .user_data
        .as_ref()?
        .downcast_ref::<TunnelFacts>()
}

/// Inside a tunnel, the request must be for the CONNECT host (no domain
/// fronting through an intercepted connection).
fn misdirected(req: &RequestHeader, facts: &TunnelFacts) -> Option<Refusal> {
    let absolute = raw_target_authority(req.raw_path())
        .authority()
        .and_then(|a| std::str::from_utf8(a).ok());
    let authority = absolute
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok()))?;
    let (host, port) = split_host_port(authority);
    let same_host = normalize_host(host) == facts.host.as_str();
    let same_port = port.is_none_or(|p| p == facts.port);
    (!(same_host && same_port)).then(|| Refusal::Misdirected {
        connect_host: facts.host.clone(),
    })
}

fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

/// An absolute-form target (`http://host/…`, `https://host/…`) sent to the
/// gateway as a proxy. `Ok(None)`: origin-form, a request for the gateway.
fn absolute_target(req: &RequestHeader) -> std::result::Result<Option<Target>, Refusal> {
    match raw_target_authority(req.raw_path()) {
        RawTargetAuthority::None => Ok(None),
        RawTargetAuthority::AmbiguousAuthority => {
            Err(Refusal::BadRequest("ambiguous request target"))
        }
        RawTargetAuthority::Absolute {
            scheme, authority, ..
        } => {
            let tls = if scheme.eq_ignore_ascii_case(b"https") {
                true
            } else if scheme.eq_ignore_ascii_case(b"http") {
                false
            } else {
                return Err(Refusal::BadRequest(
                    "only http:// and https:// targets are proxied",
                ));
            };
            let authority = std::str::from_utf8(authority)
                .map_err(|_| Refusal::BadRequest("request target is not ASCII"))?;
            let default_port = if tls { 443 } else { 80 };
            let (host, port) = parse_authority(authority, default_port).ok_or(
                Refusal::BadRequest("the request target's host or port is not valid"),
            )?;
            Ok(Some(Target {
                host: normalize_host(host).into_owned(),
                port,
                tls,
            }))
        }
    }
}

/// SPEC §6.0: the canonical form of the request, which every decision
/// judges. The request is rewritten to it, so that what is forwarded is what
/// was judged. TRACE and TRACK are refused: they echo the request back,
/// credentials included.
pub(crate) fn canonical_request(
    req: &mut RequestHeader,
) -> std::result::Result<CanonicalRequest, Refusal> {
    let method = req.method.as_str();
    if method.eq_ignore_ascii_case("TRACE") || method.eq_ignore_ascii_case("TRACK") {
        return Err(Refusal::MethodNotAllowed {
            method: method.to_ascii_uppercase(),
        });
    }
    let raw = req.raw_path().to_vec();
    let (prefix, target) = match raw_target_authority(&raw) {
        RawTargetAuthority::Absolute { path_and_query, .. } => {
            raw.split_at(raw.len() - path_and_query.len())
        }
        _ => (&raw[..0], &raw[..]),
    };
    let target = match target {
        b"" => "/",
        t => std::str::from_utf8(t)
            .map_err(|_| Refusal::BadRequest(Ambiguous::NotPrintable.reason()))?,
    };
    let overrides = METHOD_OVERRIDE_HEADERS
        .iter()
        .flat_map(|name| req.headers.get_all(*name))
        .map(|value| value.as_bytes());
    let canonical = CanonicalRequest::new(method, target, overrides)
        .map_err(|why| Refusal::BadRequest(why.reason()))?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if canonical.path.exact != path {
        let mut rewritten = prefix.to_vec();
        rewritten.extend_from_slice(canonical.path.exact.as_bytes());
        if let Some(query) = query {
            rewritten.push(b'?');
            rewritten.extend_from_slice(query.as_bytes());
        }
        req.set_raw_path(&rewritten)
            .map_err(|_| Refusal::BadRequest("request target is not valid"))?;
    }
    Ok(canonical)
}

/// SPEC §6 for one request: `None` to go on, or the refusal. Counts the
/// request against the rate limits it falls under (which waits only with a
/// shared rate-limit store, and then boundedly).
pub(crate) async fn enforce_rules(
    shared: &Shared,
    snapshot: &Snapshot,
    token: &TokenHash,
    target: &Target,
    request: &CanonicalRequest,
    decided_by: &mut Option<(String, String)>,
) -> Verdict {
    let Some(agent) = snapshot.agent_by_token_hash(token) else {
        return Verdict::Refuse(Refusal::ProxyAuthRequired);
    };
    let facts = request.facts(&target.host, target.port);
    let dashboard_url = || shared.config.dashboard_url.trim_end_matches('/').to_owned();
    let (rate_limits, hold) = match snapshot.evaluate(agent, facts) {
        Decision::Allow { rate_limits } => (rate_limits, false),
        Decision::NeedsApproval { rate_limits, rule } => {
            *decided_by = Some((rule.id.clone(), rule.name.clone()));
            (rate_limits, true)
        }
        decision @ (Decision::Block(_) | Decision::BlockByDefault) => {
            if let Decision::Block(rule) = &decision {
                *decided_by = Some((rule.id.clone(), rule.name.clone()));
            }
            return match block_refusal(&decision, request, target, &dashboard_url()) {
                Some(refusal) => Verdict::Refuse(refusal),
                None => Verdict::Refuse(Refusal::BadRequest("the policy could not decide")),
            };
        }
    };
    // Rate limits count before a human is asked: nobody reviews a request
    // that would be refused anyway.
    if let Err(limited) = shared.rate_limiter.check(&agent.id, &rate_limits).await {
        shared.metrics.rate_limited.inc();
        *decided_by = Some((limited.rule.id.clone(), limited.rule.name.clone()));
        if let RuleAction::RateLimit { limit, window } = limited.rule.action {
            return Verdict::Refuse(Refusal::RateLimited {
                limit,
                window: window.name(),
                retry_after_secs: limited.retry_after_secs,
            });
        }
    }
    if hold {
        Verdict::Hold
    } else {
        Verdict::Proceed
    }
}

/// The refusal for a blocking decision (SPEC §6 steps 1 and 4), `None` for
/// the others.
fn block_refusal(
    decision: &Decision<'_>,
    request: &CanonicalRequest,
    target: &Target,
    dashboard_url: &str,
) -> Option<Refusal> {
    let (method, path) = (request.method.clone(), request.path.exact.clone());
    match decision {
        Decision::Block(rule) => Some(Refusal::BlockedByPolicy {
            rule_name: rule.name.clone(),
            method,
            path,
            dashboard_url: dashboard_url.to_owned(),
        }),
        Decision::BlockByDefault => Some(Refusal::BlockedByDefault {
            method,
            host: target.host.clone(),
            path,
            dashboard_url: dashboard_url.to_owned(),
        }),
        Decision::Allow { .. } | Decision::NeedsApproval { .. } => None,
    }
}

/// What the rules say a request does next.
pub(crate) enum Verdict {
    Proceed,
    Refuse(Refusal),
    /// Wait for a human (SPEC §6 step 2).
    Hold,
}

/// Turns the agent's request into the upstream's: hop-by-hop headers and
/// `Proxy-Authorization` gone, origin-form target, the target's `Host`, and
/// the credentials of the matching secrets.
pub(crate) fn prepare_upstream_request(
    req: &mut RequestHeader,
    target: &Target,
    snapshot: &Snapshot,
    token: &TokenHash,
    body: inject::Body<'_>,
) -> std::result::Result<inject::Injected, Refusal> {
    strip_hop_by_hop(req);
    to_origin_form(req, target)?;
    // The agent may have been removed since the request arrived.
    let agent = snapshot
        .agent_by_token_hash(token)
        .ok_or(Refusal::ProxyAuthRequired)?;
    let path = String::from_utf8_lossy(req.raw_path()).into_owned();
    let secrets = snapshot.injections(agent, &target.host, target.port, target.tls, &path);
    inject::apply(req, secrets, &target.host, body).map_err(|error| match error {
        inject::InjectError::Sign { error, .. } => Refusal::BadRequest(error.message()),
        error => Refusal::BadGateway {
            message: format!("OneCLI gateway could not inject a credential: {error}"),
        },
    })
}

/// A body read whole goes out in one piece, at once: no 100-continue.
fn frame_held(req: &mut RequestHeader, len: usize) -> std::result::Result<(), Refusal> {
    req.remove_header("transfer-encoding");
    req.remove_header("expect");
    req.insert_header("content-length", len.to_string())
        .map_err(|_| Refusal::BadRequest("the request could not be framed"))?;
    Ok(())
}

/// Connection-level headers are the client's business with us, not the
/// upstream's. `Upgrade` survives for WebSocket handshakes.
fn strip_hop_by_hop(req: &mut RequestHeader) {
    let upgrade = req.headers.contains_key("upgrade");
    let named: Vec<String> = req
        .headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "upgrade" && t != "close" && t != "keep-alive")
        .collect();
    for name in named {
        req.remove_header(name.as_str());
    }
    for name in [
        "proxy-authorization",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
    ] {
        req.remove_header(name);
    }
    if !upgrade {
        req.remove_header("connection");
    }
}

/// Upstream requests carry an origin-form target and the target's `Host`.
fn to_origin_form(req: &mut RequestHeader, target: &Target) -> std::result::Result<(), Refusal> {
    let origin: Vec<u8> = match raw_target_authority(req.raw_path()) {
        RawTargetAuthority::Absolute {
            path_and_query: b"",
            ..
        } => b"/".to_vec(),
        RawTargetAuthority::Absolute { path_and_query, .. } => path_and_query.to_vec(),
        _ => match req.uri.path_and_query() {
            Some(pq) => pq.as_str().as_bytes().to_vec(),
            None => b"/".to_vec(),
        },
    };
    req.set_raw_path(&origin)
        .map_err(|_| Refusal::BadRequest("request target is not valid"))?;
    req.insert_header("host", target.authority())
        .map_err(|_| Refusal::BadRequest("bad host"))?;
    Ok(())
}

/// Pingora's errors, as answers: timeouts are 504, other upstream trouble
/// 502. `None` when the client itself failed and there is nobody to answer.
fn classify(e: &Error, target: Option<&Target>) -> Option<Refusal> {
    let host = target.map_or_else(String::new, |t| t.host.clone());
    match e.etype() {
        ErrorType::HTTPStatus(400) => Some(Refusal::BadRequest("the request could not be parsed")),
        ErrorType::ConnectTimedout
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout
        | ErrorType::TLSHandshakeTimedout => {
            if e.esource() == &ErrorSource::Downstream {
                None
            } else {
                Some(Refusal::UpstreamTimeout { host })
            }
        }
        _ => match e.esource() {
            ErrorSource::Downstream => match e.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => None,
                _ => Some(Refusal::BadRequest("the request could not be parsed")),
            },
            ErrorSource::Upstream => Some(Refusal::BadGateway {
                message: upstream_message(e.etype(), &host),
            }),
            _ => Some(Refusal::BadGateway {
                message: "OneCLI gateway internal error.".to_owned(),
            }),
        },
    }
}

fn upstream_message(etype: &ErrorType, host: &str) -> String {
    match etype {
        ErrorType::ConnectRefused => format!("{host} refused the connection."),
        ErrorType::ConnectNoRoute => format!("{host} is unreachable."),
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError => {
            format!(
                "TLS with {host} failed: its certificate is not trusted or the handshake failed."
            )
        }
        ErrorType::InvalidHTTPHeader
        | ErrorType::H1Error
        | ErrorType::H2Error
        | ErrorType::InvalidH2
        | ErrorType::H2Downgrade => format!("{host} sent a response that is not valid HTTP."),
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => {
            format!("{host} closed the connection before it answered.")
        }
        ErrorType::ConnectError | ErrorType::SocketError => {
            format!("OneCLI gateway could not connect to {host}.")
        }
        _ => "OneCLI gateway internal error.".to_owned(),
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        0 => "none",
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).expect("req");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        r
    }

    fn facts(host: &str, port: u16) -> TunnelFacts {
        TunnelFacts {
            token: [0; 32],
            host: host.into(),
            port,
            tls: true,
        }
    }

    #[test]
    fn host_must_match_the_connect_host() {
        let f = facts("api.test", 443);
        assert_eq!(misdirected(&req("/", &[("host", "api.test")]), &f), None);
        assert_eq!(
            misdirected(&req("/", &[("host", "API.test:443")]), &f),
            None
        );
        assert!(misdirected(&req("/", &[("host", "evil.test")]), &f).is_some());
        assert!(misdirected(&req("/", &[("host", "api.test:8443")]), &f).is_some());
        assert!(misdirected(&req("https://evil.test/", &[]), &f).is_some());
    }

    #[test]
    fn requests_are_rewritten_to_the_canonical_form_they_are_judged_in() {
        for (target, forwarded) in [
            ("/%7Euser/%61b?q=%61", "/~user/ab?q=%61"),
            ("/plain?x", "/plain?x"),
            (
                "http://api.test:8080/%61b/c?q=%61",
                "http://api.test:8080/ab/c?q=%61",
            ),
            ("http://api.test", "http://api.test"),
            ("/a%3ab", "/a%3Ab"),
        ] {
            let mut r = req(target, &[("x-http-method-override", "delete")]);
            let canonical = canonical_request(&mut r).expect("canonical");
            assert_eq!(String::from_utf8_lossy(r.raw_path()), forwarded, "{target}");
            assert_eq!(canonical.broad_methods, ["DELETE", "GET"]);
        }
        for target in ["/a/%2e%2e/b", "/a%2fb", "http://api.test/a%5cb"] {
            let mut r = req(target, &[]);
            assert!(
                matches!(canonical_request(&mut r), Err(Refusal::BadRequest(_))),
                "{target}"
            );
        }
        let mut trace = RequestHeader::build("TRACE", b"/", None).expect("req");
        assert!(matches!(
            canonical_request(&mut trace),
            Err(Refusal::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn absolute_targets() {
        let t = absolute_target(&req("http://Example.test:8080/x?y", &[]))
            .expect("ok")
            .expect("absolute");
        assert_eq!(
            (t.host.as_str(), t.port, t.tls),
            ("example.test", 8080, false)
        );
        let t = absolute_target(&req("https://example.test/x", &[]))
            .expect("ok")
            .expect("absolute");
        assert_eq!((t.port, t.tls), (443, true));
        assert!(absolute_target(&req("/healthz", &[]))
            .expect("ok")
            .is_none());
        assert!(absolute_target(&req("ftp://example.test/", &[])).is_err());
    }

    #[test]
    fn origin_form_and_host_for_the_upstream() {
        let target = Target {
            host: "api.test".into(),
            port: 8443,
            tls: true,
        };
        let mut r = req(
            "https://api.test:8443/v1/x?q=1",
            &[
                ("proxy-authorization", "Basic eDp5"),
                ("connection", "keep-alive, x-private"),
                ("x-private", "1"),
                ("te", "trailers"),
            ],
        );
        strip_hop_by_hop(&mut r);
        to_origin_form(&mut r, &target).expect("origin form");
        assert_eq!(r.raw_path(), b"/v1/x?q=1");
        assert_eq!(
            r.headers.get("host").map(|h| h.as_bytes()),
            Some(&b"api.test:8443"[..])
        );
        for gone in ["proxy-authorization", "connection", "x-private", "te"] {
            assert!(!r.headers.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn websocket_handshakes_keep_upgrade() {
        let mut r = req(
            "/chat",
            &[("connection", "Upgrade"), ("upgrade", "websocket")],
        );
        strip_hop_by_hop(&mut r);
        assert!(r.headers.contains_key("connection") && r.headers.contains_key("upgrade"));
    }
}
