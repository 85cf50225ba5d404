//! Prometheus metrics (SPEC §8), on their own listener. One registry per
//! gateway, so tests can run several in one process.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Upstream latencies, from half a millisecond to a minute.
const UPSTREAM_SECONDS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0,
];

pub struct GatewayMetrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub injections: IntCounter,
    pub tunnels_open: IntGauge,
    pub tunnels: IntCounterVec,
    pub connections_open: IntGauge,
    pub connections_refused: IntCounterVec,
    pub leaf_minted: IntCounter,
    pub leaf_cached: IntGauge,
    pub policy_version: IntGauge,
    pub policy_rejected: IntCounter,
    pub rate_limited: IntCounter,
    pub rate_limit_fallback: IntCounter,
    pub rate_limit_store_in_use: IntGauge,
    pub rate_limit_gateways: IntGauge,
    pub approvals_pending: IntGauge,
    pub audit_dropped: IntCounter,
    pub request_seconds: Histogram,
    pub upstream_connect: Histogram,
    pub upstream_tls: Histogram,
    pub upstream_ttfb: Histogram,
    policy_age: Gauge,
    policy_installed_at: Mutex<Option<Instant>>,
}

impl GatewayMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "onecli_gateway_requests_total",
                "Requests by outcome and status class",
            ),
            &["outcome", "status"],
        )?;
        let injections = IntCounter::new(
            "onecli_gateway_injections_total",
            "Credentials injected into upstream requests",
        )?;
        let tunnels_open =
            IntGauge::new("onecli_gateway_tunnels_open", "CONNECT tunnels open now")?;
        let tunnels = IntCounterVec::new(
            Opts::new("onecli_gateway_tunnels_total", "CONNECT tunnels by mode"),
            &["mode"],
        )?;
        let leaf_minted = IntCounter::new(
            "onecli_gateway_leaf_certs_minted_total",
            "Leaf certificates minted",
        )?;
        let leaf_cached = IntGauge::new(
            "onecli_gateway_leaf_certs_cached",
            "Leaf certificates in the cache",
        )?;
        let policy_version = IntGauge::new(
            "onecli_gateway_policy_version",
            "Version of the policy in force (0: none)",
        )?;
        let policy_rejected = IntCounter::new(
            "onecli_gateway_policy_rejected_total",
            "Policy updates rejected as invalid",
        )?;
        let request_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "onecli_gateway_request_duration_seconds",
                "Time from request head to end of response",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                60.0,
            ]),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(injections.clone()))?;
        registry.register(Box::new(tunnels_open.clone()))?;
        registry.register(Box::new(tunnels.clone()))?;
        registry.register(Box::new(leaf_minted.clone()))?;
        registry.register(Box::new(leaf_cached.clone()))?;
        registry.register(Box::new(policy_version.clone()))?;
        registry.register(Box::new(policy_rejected.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        let audit_dropped = IntCounter::new(
            "onecli_gateway_audit_dropped_total",
            "Audit records dropped because the queue was full",
        )?;
        registry.register(Box::new(audit_dropped.clone()))?;
        let approvals_pending = IntGauge::new(
            "onecli_gateway_approvals_pending",
            "Requests held for a human's approval now",
        )?;
        registry.register(Box::new(approvals_pending.clone()))?;
        let rate_limited = IntCounter::new(
            "onecli_gateway_rate_limited_total",
            "Requests refused by a rate_limit rule",
        )?;
        registry.register(Box::new(rate_limited.clone()))?;
        let rate_limit_fallback = IntCounter::new(
            "onecli_gateway_rate_limit_fallback_total",
            "Requests counted locally, with this gateway's share of each limit, because the rate-limit store was unavailable",
        )?;
        registry.register(Box::new(rate_limit_fallback.clone()))?;
        let rate_limit_store_in_use = IntGauge::new(
            "onecli_gateway_rate_limit_store_in_use",
            "1 while rate limits are counted in the shared store (--rate-limit-store), 0 otherwise",
        )?;
        registry.register(Box::new(rate_limit_store_in_use.clone()))?;
        let rate_limit_gateways = IntGauge::new(
            "onecli_gateway_rate_limit_gateways",
            "Live gateways sharing the rate-limit store, as last heard from it",
        )?;
        registry.register(Box::new(rate_limit_gateways.clone()))?;
        let connections_open = IntGauge::new(
            "onecli_gateway_connections_open",
            "Client connections open now",
        )?;
        registry.register(Box::new(connections_open.clone()))?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "onecli_gateway_connections_refused_total",
                "Client connections refused by --max-connections (limit=total) or --max-connections-per-client (limit=per_client)",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(connections_refused.clone()))?;
        let upstream = |name: &str, help: &str| {
            let h = Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(UPSTREAM_SECONDS.to_vec()),
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let upstream_connect = upstream(
            "onecli_gateway_upstream_connect_duration_seconds",
            "TCP connect time of new upstream connections",
        )?;
        let upstream_tls = upstream(
            "onecli_gateway_upstream_tls_duration_seconds",
            "TLS handshake time of new upstream connections",
        )?;
        let upstream_ttfb = upstream(
            "onecli_gateway_upstream_first_byte_duration_seconds",
            "Time from sending a request upstream to its response head",
        )?;
        let policy_age = Gauge::new(
            "onecli_gateway_policy_age_seconds",
            "Seconds since the policy in force was installed (since the last change arrived)",
        )?;
        registry.register(Box::new(policy_age.clone()))?;
        Ok(GatewayMetrics {
            registry,
            requests,
            injections,
            tunnels_open,
            tunnels,
            connections_open,
            connections_refused,
            leaf_minted,
            leaf_cached,
            policy_version,
            policy_rejected,
            rate_limited,
            rate_limit_fallback,
            rate_limit_store_in_use,
            rate_limit_gateways,
            approvals_pending,
            audit_dropped,
            request_seconds,
            upstream_connect,
            upstream_tls,
            upstream_ttfb,
            policy_age,
            policy_installed_at: Mutex::new(None),
        })
    }

    pub fn policy_installed(&self, version: u64) {
        self.policy_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        if let Ok(mut at) = self.policy_installed_at.lock() {
            *at = Some(Instant::now());
        }
    }

    pub fn policy_rejected(&self) {
        self.policy_rejected.inc();
    }

    pub fn render(&self) -> Vec<u8> {
        if let Some(at) = self.policy_installed_at.lock().ok().and_then(|at| *at) {
            self.policy_age.set(at.elapsed().as_secs_f64());
        }
        let mut out = Vec::with_capacity(4096);
        // Encoding our own well-formed registry into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Serves `GET /metrics` in the Prometheus text format.
pub struct MetricsApp {
    pub metrics: Arc<GatewayMetrics>,
    pub leaf_count: Arc<dyn Fn() -> usize + Send + Sync>,
    /// Appended: the control service's metrics in `onecli serve`.
    pub extra: Option<Arc<dyn Fn() -> Vec<u8> + Send + Sync>>,
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let (status, ctype, body) = if path == "/metrics" {
            self.metrics
                .leaf_cached
                .set(i64::try_from((self.leaf_count)()).unwrap_or(i64::MAX));
            let mut body = self.metrics.render();
            if let Some(extra) = &self.extra {
                body.extend(extra());
            }
            (200, "text/plain; version=0.0.4", body)
        } else {
            (404, "text/plain", b"not found\n".to_vec())
        };
        http::Response::builder()
            .status(status)
            .header("content-type", ctype)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}
