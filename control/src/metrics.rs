//! The control service's Prometheus metrics (SPEC §8). One set a process:
//! a process runs one control service. Labels come from fixed lists (routes,
//! status codes, decisions), never from what a client sent.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub struct ControlMetrics {
    registry: Registry,
    api_requests: IntCounterVec,
    api_seconds: HistogramVec,
    policy_version: IntGauge,
    compile_seconds: Histogram,
    push_seconds: Histogram,
    gateways_listening: IntGauge,
    approvals_pending: IntGauge,
    approvals_decided: IntCounterVec,
    audit_records: IntCounter,
    audit_lost: IntCounter,
    logins_refreshed: IntCounterVec,
}

static METRICS: LazyLock<ControlMetrics> =
    LazyLock::new(|| ControlMetrics::new().expect("the control metrics are well-formed"));

/// This process's control metrics.
pub fn metrics() -> &'static ControlMetrics {
    &METRICS
}

/// Latencies from a millisecond to a minute.
const SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

impl ControlMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let api_requests = IntCounterVec::new(
            Opts::new(
                "onecli_control_api_requests_total",
                "API and dashboard requests by route and status",
            ),
            &["route", "status"],
        )?;
        let api_seconds = HistogramVec::new(
            HistogramOpts::new(
                "onecli_control_api_request_duration_seconds",
                "Time to answer an API request, by route (long polls included)",
            )
            .buckets(SECONDS.to_vec()),
            &["route"],
        )?;
        let policy_version = IntGauge::new(
            "onecli_control_policy_version",
            "Version of the last policy published",
        )?;
        let compile_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "onecli_control_policy_compile_duration_seconds",
                "Time to compile the policy from the store after a change",
            )
            .buckets(SECONDS.to_vec()),
        )?;
        let push_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "onecli_control_policy_push_duration_seconds",
                "Time from a policy's publication to its delivery to a gateway run apart",
            )
            .buckets(SECONDS.to_vec()),
        )?;
        let gateways_listening = IntGauge::new(
            "onecli_control_gateways_listening",
            "Gateways run apart waiting for the next policy now",
        )?;
        let approvals_pending = IntGauge::new(
            "onecli_control_approvals_pending",
            "Requests waiting for a human's decision now",
        )?;
        let approvals_decided = IntCounterVec::new(
            Opts::new(
                "onecli_control_approvals_decided_total",
                "Held requests decided, by decision",
            ),
            &["decision"],
        )?;
        let audit_records = IntCounter::new(
            "onecli_control_audit_records_total",
            "Audit records written to the store",
        )?;
        let audit_lost = IntCounter::new(
            "onecli_control_audit_records_lost_total",
            "Audit records the store could not write",
        )?;
        let logins_refreshed = IntCounterVec::new(
            Opts::new(
                "onecli_control_login_refreshes_total",
                "ChatGPT login refreshes, by outcome (ok, failed, store_failed)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(logins_refreshed.clone()))?;
        registry.register(Box::new(api_requests.clone()))?;
        registry.register(Box::new(api_seconds.clone()))?;
        registry.register(Box::new(policy_version.clone()))?;
        registry.register(Box::new(compile_seconds.clone()))?;
        registry.register(Box::new(push_seconds.clone()))?;
        registry.register(Box::new(gateways_listening.clone()))?;
        registry.register(Box::new(approvals_pending.clone()))?;
        registry.register(Box::new(approvals_decided.clone()))?;
        registry.register(Box::new(audit_records.clone()))?;
        registry.register(Box::new(audit_lost.clone()))?;
        Ok(ControlMetrics {
            registry,
            api_requests,
            api_seconds,
            policy_version,
            compile_seconds,
            push_seconds,
            gateways_listening,
            approvals_pending,
            approvals_decided,
            audit_records,
            audit_lost,
            logins_refreshed,
        })
    }

    pub fn login_refreshed(&self, outcome: &'static str) {
        self.logins_refreshed.with_label_values(&[outcome]).inc();
    }

    /// One request answered.
    pub fn api_request(&self, route: &'static str, status: u16, took: Duration) {
        self.api_requests
            .with_label_values(&[route, status_label(status)])
            .inc();
        self.api_seconds
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    pub fn published(&self, version: u64, compile: Duration) {
        self.policy_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.compile_seconds.observe(compile.as_secs_f64());
    }

    pub fn pushed(&self, since_published: Duration) {
        self.push_seconds.observe(since_published.as_secs_f64());
    }

    pub fn decided(&self, decision: &'static str) {
        self.approvals_decided.with_label_values(&[decision]).inc();
    }

    pub fn audit_written(&self, records: usize, written: bool) {
        let n = u64::try_from(records).unwrap_or(u64::MAX);
        if written {
            self.audit_records.inc_by(n);
        } else {
            self.audit_lost.inc_by(n);
        }
    }

    /// The text format, with the gauges read now.
    pub fn render(&self, gateways_listening: usize, approvals_pending: usize) -> Vec<u8> {
        self.gateways_listening
            .set(i64::try_from(gateways_listening).unwrap_or(i64::MAX));
        self.approvals_pending
            .set(i64::try_from(approvals_pending).unwrap_or(i64::MAX));
        let mut out = Vec::with_capacity(8192);
        // Encoding our own well-formed registry into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// The status codes the service answers with, as labels: a fixed set.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// The route a path belongs to, from a fixed list: ids and other values a
/// client chose never become labels.
pub fn route_label(path: &str) -> &'static str {
    let rest = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/api/"));
    let Some(rest) = rest else {
        return "dashboard";
    };
    let mut segments = rest.split('/').filter(|s| !s.is_empty());
    let first = segments.next().unwrap_or_default();
    let first = if first == "dry-run" {
        segments.next().unwrap_or_default()
    } else {
        first
    };
    match first {
        "agents" => "agents",
        "secrets" => "secrets",
        "rules" => "rules",
        "approvals" => "approvals",
        "logs" => "logs",
        "health" => "health",
        "container-config" => "container-config",
        "skill" => "skill",
        "gateway-url" => "gateway-url",
        "dashboard" => "dashboard-links",
        "gateway" => match segments.next() {
            Some("ca") => "gateway-ca",
            Some("policy") => "gateway-policy",
            Some("approvals") => "gateway-approvals",
            Some("audit") => "gateway-audit",
            _ => "other",
        },
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_fixed_set() {
        assert_eq!(route_label("/v1/agents/abc/secrets"), "agents");
        assert_eq!(route_label("/api/dry-run/secrets/x"), "secrets");
        assert_eq!(route_label("/v1/gateway/policy"), "gateway-policy");
        assert_eq!(route_label("/v1/anything-an-agent-invents"), "other");
        assert_eq!(route_label("/rules"), "dashboard");
        assert_eq!(status_label(418), "4xx");
    }
}
