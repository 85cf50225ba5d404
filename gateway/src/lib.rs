//! The OneCLI gateway: the data plane. A CONNECT/MITM forward proxy on
//! Pingora that authenticates agents by proxy token, intercepts their TLS
//! with leaves minted from its own CA, injects the credentials the policy
//! snapshot assigns, and forwards over verified TLS.
//!
//! The gateway never reads the store: it enforces an immutable snapshot
//! held in an `ArcSwap` ([`policy_source::PolicyHandle`]).

pub mod approval;
pub mod auth;
pub mod ca;
pub mod config;
pub mod control_client;
pub mod direct;
pub mod egress;
pub mod errors;
pub mod front_door;
#[doc(hidden)]
pub mod fuzzing;
pub mod guidance;
pub mod head;
pub mod head_deadline;
pub mod inject;
pub mod leaf;
pub mod metrics;
pub mod policy_source;
pub mod proxy;
pub mod rate_limit;
pub mod remote;
pub mod retire;
pub mod server;
pub mod sigv4;
pub mod slots;
pub mod subscriber;
pub mod tunnel;

use std::sync::Arc;

use pingora_core::tls::ssl::{SslAcceptor, SslConnector};

pub use config::GatewayConfig;
pub use server::{build_server, BuildError, GatewayServer, PolicySource};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What every connection and request shares: built once at start-up.
pub struct Shared {
    pub config: GatewayConfig,
    pub policy: Arc<policy_source::PolicyHandle>,
    pub leaves: leaf::LeafCertCache,
    pub acceptor: SslAcceptor,
    /// Verified TLS to upstreams for the connections the gateway makes
    /// itself (upgrades); Pingora's connector trusts the same roots.
    pub upstream_tls: SslConnector,
    pub egress: egress::EgressGuard,
    pub metrics: Arc<metrics::GatewayMetrics>,
    pub rate_limiter: rate_limit::RateLimits,
    pub hooks: ControlHooks,
    /// Slots for requests held for approval, in total and per agent.
    pub held: approval::HeldSlots,
    /// Bodies read to be hashed for an AWS signature: slots of their own,
    /// so that they never take approvals' (nor approvals theirs).
    pub hashing: approval::HeldSlots,
    /// Client connections open, in total and per address.
    pub connections: slots::Slots<std::net::IpAddr>,
}

/// What a control service provides a gateway beyond its policy.
#[derive(Default, Clone)]
pub struct ControlHooks {
    /// Where held requests wait for a human; `None`: approval rules fail closed.
    pub approvals: Option<Arc<dyn onecli_policy::approval::ApprovalBroker>>,
    /// Where audit records go; `None`: the request log line only.
    pub audit: Option<Arc<dyn onecli_policy::audit::AuditSink>>,
    /// More metrics for the gateway's `/metrics` (the control service's,
    /// in `onecli serve`), in Prometheus' text format.
    pub metrics: Option<Arc<dyn Fn() -> Vec<u8> + Send + Sync>>,
}
