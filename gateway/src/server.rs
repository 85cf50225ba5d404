//! Assembles the Pingora server: the front door on the proxy port, metrics
//! on their own port, and the policy source as a background service.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_core::tls::ssl::{select_next_proto, AlpnError, SslAcceptor, SslConnector, SslMethod};
use pingora_core::tls::x509::X509;

use crate::ca::{write_atomic, CaError, CertificateAuthority};
use crate::egress::EgressGuard;
use crate::front_door::FrontDoor;
use crate::leaf::LeafCertCache;
use crate::metrics::{GatewayMetrics, MetricsApp};
use crate::policy_source::{PolicyFile, PolicyHandle};
use crate::proxy::GatewayProxy;
use crate::rate_limit::shared::PresenceKeeper;
use crate::rate_limit::{MonotonicClock, RateLimiter, RateLimits, RedisLimiter};
use crate::remote::{remote_audit, RemoteApprovals};
use crate::subscriber::ControlSubscriber;
use crate::{ControlHooks, GatewayConfig, Shared};

/// Live (rule, agent) rate-limit counters kept at most: about 5 MiB.
const RATE_LIMIT_KEYS: usize = 100_000;
/// The client socket's read buffer: one whole TLS record (16 KiB of
/// plaintext plus header and tag) per read, where Pingora's default is
/// 64 KiB. An idle connection keeps what it touched of it.
const CLIENT_READ_BUFFER: usize = 17 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("{0}")]
    Policy(String),
    #[error("{path}: {message}")]
    UpstreamCa { path: PathBuf, message: String },
    #[error("cannot prepare {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("metrics setup failed: {0}")]
    Metrics(#[from] prometheus::Error),
}

pub enum PolicySource {
    /// `--policy FILE`, watched for changes.
    File(PathBuf),
    /// Installed from outside through [`GatewayServer::policy`] (the control
    /// service in the same process). Not ready until the first install.
    External,
    /// Subscribed to a control service over HTTP.
    Control {
        client: Arc<crate::control_client::ControlClient>,
        key: onecli_policy::seal::SealingKey,
    },
}

/// A built gateway: the Pingora server to run, and the handle its policy
/// lives in.
pub struct GatewayServer {
    pub server: Server,
    pub policy: Arc<PolicyHandle>,
}

/// Builds a ready-to-run server. Everything that can fail at start-up fails
/// here, with a message naming what to fix.
pub fn build_server(
    config: GatewayConfig,
    source: PolicySource,
    mut hooks: ControlHooks,
) -> Result<GatewayServer, BuildError> {
    let gateway_dir = config.data_dir.join("gateway");
    // The CA key and the last policy (sealed): the owner's only.
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
        .create(&gateway_dir)
        .map_err(|source| BuildError::DataDir {
            path: gateway_dir.clone(),
            source,
        })?;

    let metrics = Arc::new(GatewayMetrics::new()?);
    let ca = match &config.ca_files {
        Some((cert, key)) => CertificateAuthority::load(cert, key)?,
        None => CertificateAuthority::load_or_generate(&gateway_dir)?,
    };
    let minted = metrics.leaf_minted.clone();
    let leaves = LeafCertCache::new(
        ca,
        config.leaf_cache_capacity,
        Box::new(move || minted.inc()),
    )
    .map_err(|e| BuildError::Tls(e.to_string()))?;

    let policy = Arc::new(PolicyHandle::new(metrics.clone()));
    let (mut policy_file, mut subscriber, mut audit_sender) = (None, None, None);
    match source {
        PolicySource::File(path) => {
            let file = PolicyFile::new(path, policy.clone(), metrics.clone());
            file.reload().map_err(|errors| {
                BuildError::Policy(
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            })?;
            policy_file = Some(file);
        }
        PolicySource::External => {}
        PolicySource::Control { client, key } => {
            // Approvals and audit records go to the same control service.
            if hooks.approvals.is_none() {
                hooks.approvals = Some(Arc::new(RemoteApprovals::new(client.clone(), key.clone())));
            }
            if hooks.audit.is_none() {
                let (audit, sender) = remote_audit(client.clone());
                hooks.audit = Some(Arc::new(audit));
                audit_sender = Some(sender);
            }
            let control = ControlSubscriber::new(client, key, policy.clone(), gateway_dir.clone());
            control.load_persisted();
            subscriber = Some(control);
        }
    }

    let mut conf = ServerConf {
        threads: config.threads.max(1),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(config.shutdown_timeout.as_secs().max(1)),
        upstream_keepalive_pool_size: 256,
        // One single-threaded runtime per thread, each connection on one of
        // them: no work stealing, so no cross-thread wake-ups on the hot path
        // (measured: 36.1 -> 34.7 CPU-µs per kept-alive request, 2 threads).
        work_stealing: false,
        ..ServerConf::default()
    };
    let roots = match &config.upstream_ca {
        Some(extra) => Some(upstream_roots(extra, &gateway_dir)?),
        None => system_roots(),
    };
    conf.ca_file = roots.as_ref().map(|p| p.display().to_string());

    let shared_limits = config.rate_limit_store.clone().map(|url| {
        tracing::info!(store = %url, "rate limits counted in the shared store");
        Arc::new(
            RedisLimiter::new(url, metrics.clone()).with_budget(config.rate_limit_store_timeout),
        )
    });
    let connections =
        crate::slots::Slots::new(config.max_connections, config.max_connections_per_client);
    raise_open_file_limit(config.max_connections);
    let mut own = vec![config.listen];
    own.extend(config.metrics_listen);
    own.extend(config.protected.iter().copied());
    let shared = Arc::new(Shared {
        acceptor: interception_acceptor()?,
        upstream_tls: upstream_connector(roots.as_deref())?,
        egress: EgressGuard::new(config.resolve.clone(), config.egress_allow.clone(), own),
        config,
        policy,
        leaves,
        metrics: metrics.clone(),
        hooks,
        held: crate::approval::held_slots(),
        hashing: crate::approval::held_slots(),
        connections,
        rate_limiter: RateLimits::new(
            RateLimiter::new(Arc::new(MonotonicClock::default()), RATE_LIMIT_KEYS),
            shared_limits.clone(),
        ),
    });

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy =
        pingora_proxy::http_proxy(&server.configuration, GatewayProxy::new(shared.clone()));
    // HTTP/1.1 keep-alive idles out after Pingora's 60 s; h2 has no default.
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(shared.config.timeouts.idle);
    proxy.server_options = Some(options);
    let proxy = Arc::new(proxy);
    let mut front = Service::new(
        "onecli-gateway".to_owned(),
        FrontDoor::new(shared.clone(), proxy),
    );
    front.add_listener(
        ListenerConfig::tcp(shared.config.listen.to_string())
            .l4_buffer(L4BufferSettings::default().read(CLIENT_READ_BUFFER)),
    );
    server.add_service(front);
    if let Some(addr) = shared.config.metrics_listen {
        let leaf_count = {
            let shared = shared.clone();
            Arc::new(move || shared.leaves.len())
        };
        let mut svc = Service::new(
            "onecli-gateway-metrics".to_owned(),
            MetricsApp {
                metrics,
                leaf_count,
                extra: shared.hooks.metrics.clone(),
            },
        );
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    if let Some(file) = policy_file {
        server.add_service(background_service("onecli-policy-file", file));
    }
    if let Some(control) = subscriber {
        server.add_service(background_service("onecli-policy-subscriber", control));
    }
    if let Some(limits) = shared_limits {
        server.add_service(background_service(
            "onecli-rate-limit-presence",
            PresenceKeeper(limits),
        ));
    }
    if let Some(sender) = audit_sender {
        server.add_service(background_service("onecli-audit-sender", sender));
    }
    Ok(GatewayServer {
        server,
        policy: shared.policy.clone(),
    })
}

/// The acceptor for intercepted tunnels: Mozilla intermediate settings,
/// ALPN h2 then http/1.1, no certificate (the leaf is installed per
/// connection by the certificate callback).
fn interception_acceptor() -> Result<SslAcceptor, BuildError> {
    let tls = |e: pingora_core::tls::error::ErrorStack| BuildError::Tls(e.to_string());
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(tls)?;
    builder.set_alpn_select_callback(|_, client| {
        select_next_proto(b"\x02h2\x08http/1.1", client).ok_or(AlpnError::NOACK)
    });
    Ok(builder.build())
}

/// Verified TLS, HTTP/1.1 only (it carries upgrades), trusting `roots`.
fn upstream_connector(roots: Option<&Path>) -> Result<SslConnector, BuildError> {
    let tls = |e: pingora_core::tls::error::ErrorStack| BuildError::Tls(e.to_string());
    let mut builder = SslConnector::builder(SslMethod::tls()).map_err(tls)?;
    match roots {
        Some(path) => builder.set_ca_file(path).map_err(tls)?,
        None => builder.set_default_verify_paths().map_err(tls)?,
    }
    builder.set_alpn_protos(b"\x08http/1.1").map_err(tls)?;
    Ok(builder.build())
}

const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// System roots plus `extra`, written once to the data dir: Pingora's
/// connector loads one CA file for every upstream.
fn upstream_roots(extra: &Path, dir: &Path) -> Result<PathBuf, BuildError> {
    let bad = |message: String| BuildError::UpstreamCa {
        path: extra.to_owned(),
        message,
    };
    let extra_pem = fs::read(extra).map_err(|e| bad(format!("cannot read: {e}")))?;
    let certs =
        X509::stack_from_pem(&extra_pem).map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    let mut bundle = system_roots()
        .and_then(|p| fs::read(p).ok())
        .unwrap_or_default();
    if !bundle.ends_with(b"\n") && !bundle.is_empty() {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(&extra_pem);
    let path = dir.join("upstream-roots.pem");
    write_atomic(&path, &bundle, 0o644)?;
    Ok(path)
}

/// The system's root bundle: `SSL_CERT_FILE`, else the usual places.
fn system_roots() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// Raises the soft limit on open files to the hard one: every client
/// connection takes a descriptor (busy ones an upstream one too, from a
/// shared pool). Reports a limit too low for `max_connections` and room
/// for upstreams, files and the listeners.
fn raise_open_file_limit(max_connections: usize) {
    /// Descriptors beside the client connections: pooled and in-flight
    /// upstream connections, files, listeners.
    const UPSTREAM_ROOM: u64 = 2048;
    use rlimit::Resource;
    let Ok((soft, hard)) = Resource::NOFILE.get() else {
        return;
    };
    let soft = if soft < hard && Resource::NOFILE.set(hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let need = (max_connections as u64).saturating_add(UPSTREAM_ROOM);
    if soft < need {
        tracing::warn!(
            open_files = soft,
            max_connections,
            "the open-file limit leaves too little room beside --max-connections for upstream connections: raise it (ulimit -n) or lower --max-connections"
        );
    }
}
