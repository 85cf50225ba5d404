//! `onecli control`: the control service alone, for deployments where the
//! gateways run apart and subscribe to it (`onecli gateway --control-url`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use onecli_control::api::{Api, ApiConfig, Surface};
use onecli_control::approvals::ApprovalsHub;
use onecli_control::audit::{AuditLog, AuditWriter};
use onecli_control::publish::{PolicySink, Publisher, Subscriptions};
use onecli_control::refresh::RefreshConfig;
use onecli_control::{bootstrap, crypto, Store};

use super::gateway::default_data_dir;
use super::{exit, CliError};

#[derive(Debug, Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
    /// Where the store, the secret key and the first keys live.
    #[arg(long, env = "ONECLI_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// The gateways' CA certificate (PEM), handed to agents; default <data-dir>/gateway/ca.pem.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    #[command(flatten)]
    pub control: ControlOptions,
    #[command(flatten)]
    pub metrics: ControlMetricsArg,
    /// Serve what gateways call (policy, approvals, audit) on this address
    /// only, not on --listen: a port a network policy can open to gateways alone.
    #[arg(long)]
    pub gateway_api_listen: Option<SocketAddr>,
    /// Also accept the gateway token in this file (made by the operator,
    /// e.g. a Kubernetes Secret), beside <data-dir>/gateway-token.
    #[arg(long, env = "ONECLI_GATEWAY_TOKEN_FILE")]
    pub gateway_token_file: Option<PathBuf>,
    /// Also trust this CA (PEM) for the control service's own HTTPS calls
    /// (the ChatGPT login refresh), beside the system's.
    #[arg(long)]
    pub upstream_ca: Option<PathBuf>,
}

/// What configures the control service, alone or inside `onecli serve`.
#[derive(Debug, Args)]
pub struct ControlOptions {
    /// Address of the control API and dashboard.
    #[arg(long, default_value = "127.0.0.1:10254")]
    pub listen: SocketAddr,
    /// The control service's URL as agents and the SDK reach it (links, approvals).
    #[arg(long, env = "ONECLI_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// host:port containers use to reach a gateway (container-config).
    #[arg(
        long,
        env = "ONECLI_CONTAINER_GATEWAY",
        default_value = "host.docker.internal:10255"
    )]
    pub container_gateway: String,
    /// Hosts agents reach directly rather than through the gateway (their
    /// NO_PROXY, beside loopback): MCP and other local services.
    #[arg(
        long,
        env = "ONECLI_NO_PROXY",
        value_delimiter = ',',
        value_name = "HOST,…"
    )]
    pub no_proxy: Vec<String>,
    /// Where ChatGPT logins (Codex's auth.json, stored as an openai secret)
    /// are refreshed, with the real refresh token, before they expire.
    #[arg(long, env = "ONECLI_CHATGPT_TOKEN_URL", default_value = onecli_control::refresh::DEFAULT_TOKEN_URL)]
    pub chatgpt_token_url: String,
    /// How often ChatGPT logins are looked at; each is refreshed in its last hour.
    #[arg(long, value_parser = super::gateway::parse_duration, default_value = "60s")]
    pub login_refresh_every: std::time::Duration,
    /// Time a client of the API and dashboard has to send a request head.
    #[arg(long, value_parser = super::gateway::parse_duration, default_value = "30s")]
    pub api_header_timeout: std::time::Duration,
}

impl ControlOptions {
    /// The login refresher's settings; `extra_ca` is trusted beside the system's.
    pub fn refresh_config(&self, extra_ca: Option<PathBuf>) -> RefreshConfig {
        RefreshConfig {
            token_url: self.chatgpt_token_url.clone(),
            extra_ca,
            every: self.login_refresh_every,
            ahead: std::time::Duration::from_secs(3600),
        }
    }
}

/// `onecli control` alone: where its Prometheus metrics are served.
#[derive(Debug, Args)]
pub struct ControlMetricsArg {
    /// Serve the control service's Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

impl ControlOptions {
    /// The URL agents, the SDK and links use for this service: the one
    /// configured, else the address it listens on (`localhost` for loopback
    /// and wildcard binds, which are never handed out).
    pub fn public_url(&self) -> String {
        match self
            .public_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => local_url(self.listen),
        }
    }

    /// Refuses what would hand agents an address they cannot use.
    pub fn check(&self) -> Result<(), CliError> {
        if let Some(url) = self.public_url.as_deref().filter(|u| !u.trim().is_empty()) {
            check_url("--public-url", url)?;
        }
        let host = self
            .container_gateway
            .rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok())
            .map(|(host, _)| host)
            .ok_or_else(|| {
                CliError::config(format!(
                    "--container-gateway {:?} is not HOST:PORT",
                    self.container_gateway
                ))
            })?;
        if is_wildcard(host) {
            return Err(CliError::config(format!(
                "--container-gateway {} is a bind address, not one containers can reach: give the host they use (e.g. host.docker.internal:10255)",
                self.container_gateway
            )));
        }
        for host in self.no_proxy_hosts() {
            let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_:[]/".contains(c);
            let bad = !host.chars().all(allowed)
                || host.trim_matches('.').is_empty()
                // `.com`: a whole top-level domain.
                || (host.starts_with('.') && !host[1..].contains('.'))
                // `0.0.0.0/0`, `::/0`, `10.0.0.0/4`: most of the Internet.
                || host
                    .rsplit_once('/')
                    .and_then(|(_, bits)| bits.parse::<u8>().ok())
                    .is_some_and(|bits| bits < 8);
            if bad {
                return Err(CliError::config(format!(
                    "--no-proxy {host:?}: give host names, .domain suffixes, IP addresses or networks of /8 or narrower, comma-separated (not \"*\", a whole top-level domain or /0: agents would bypass the gateway)"
                )));
            }
        }
        Ok(())
    }

    /// The `--no-proxy` hosts, trimmed, empty entries dropped (an empty
    /// variable, a trailing comma).
    pub fn no_proxy_hosts(&self) -> Vec<String> {
        self.no_proxy
            .iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect()
    }

    /// Says at start when the links handed out are a guess.
    pub fn warn_if_guessing(&self) {
        let configured = self
            .public_url
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty());
        if !configured && self.listen.ip().is_unspecified() {
            tracing::warn!(
                listen = %self.listen,
                advertised = %self.public_url(),
                "listening on a wildcard address with no --public-url: links, /v1/gateway-url and container-config name localhost, which only this machine reaches; set --public-url (ONECLI_PUBLIC_URL) to the URL agents and browsers use"
            );
        }
    }
}

/// `http://localhost:PORT` for loopback and wildcard binds, else the address.
pub fn local_url(listen: SocketAddr) -> String {
    let ip = listen.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        format!("http://localhost:{}", listen.port())
    } else {
        format!("http://{listen}")
    }
}

/// `0.0.0.0`, `::` and the like: where a server listens, never where a
/// client can connect.
fn is_wildcard(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// An http(s) URL with a host clients can reach, and no credentials in it
/// (it is printed in links).
pub fn check_url(flag: &str, url: &str) -> Result<(), CliError> {
    let bad = |why: &str| CliError::config(format!("{flag} {url:?}: {why}"));
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("give an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad("a URL handed out in links cannot carry credentials"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(bad("the URL has no host"));
    }
    if is_wildcard(host) {
        return Err(bad(
            "that is a bind address: give the host agents and browsers connect to",
        ));
    }
    Ok(())
}

/// The control service's parts, opened before the API so that a gateway in
/// the same process can be given the audit log.
pub struct ControlParts {
    pub store: Arc<Store>,
    pub subscriptions: Arc<Subscriptions>,
    pub audit: Arc<AuditLog>,
    pub audit_writer: AuditWriter,
}

/// A data directory other users can read or enter: they could copy the
/// store and the keys in it. Reported, not changed: the operator decides.
pub fn warn_if_open(data_dir: &Path) {
    if let Some(mode) = onecli_control::store::open_to_others(data_dir) {
        tracing::warn!(
            data_dir = %data_dir.display(),
            mode = %format!("{mode:04o}"),
            "the data directory is open to other users, who could copy the store and its keys: chmod 700 it"
        );
    }
}

impl ControlParts {
    /// Opens the store, creating the key and the first key files on first start.
    pub fn open(data_dir: &Path) -> Result<ControlParts, CliError> {
        let env_key = crypto::key_from_env().map_err(|e| CliError::config(e.to_string()))?;
        let key = crypto::load_key(data_dir, env_key, true)
            .map_err(|e| CliError::config(e.to_string()))?;
        let subscriptions = Arc::new(Subscriptions::new(key.clone()));
        let store =
            Arc::new(Store::open(data_dir, key).map_err(|e| CliError::config(e.to_string()))?);
        let written = bootstrap::ensure_key_files(&store, data_dir)
            .map_err(|e| CliError::config(format!("cannot create the first keys: {e}")))?;
        for path in written {
            eprintln!("onecli: created {}", path.display());
        }
        warn_if_open(data_dir);
        let (audit, audit_writer) = AuditLog::new(store.clone());
        Ok(ControlParts {
            store,
            subscriptions,
            audit,
            audit_writer,
        })
    }

    /// The API, publishing to `sinks` and to remote gateways; and the
    /// writer to run beside it.
    pub fn into_api(
        self,
        options: &ControlOptions,
        ca_cert: PathBuf,
        mut sinks: Vec<Arc<dyn PolicySink>>,
        approvals: Arc<ApprovalsHub>,
        gateway_api_apart: bool,
    ) -> (Arc<Api>, AuditWriter) {
        sinks.push(self.subscriptions.clone());
        let api = Arc::new(Api {
            store: self.store,
            publisher: Publisher::new(sinks),
            subscriptions: self.subscriptions,
            approvals,
            audit: self.audit,
            config: ApiConfig {
                container_gateway: options.container_gateway.clone(),
                public_url: options.public_url(),
                ca_cert,
                no_proxy: options.no_proxy_hosts(),
                gateway_api_apart,
                listen: Some(options.listen),
                header_timeout: options.api_header_timeout,
            },
            sessions: Default::default(),
        });
        (api, self.audit_writer)
    }
}

/// How long a request waits for a human before it is denied (SPEC §6).
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 180;

pub fn startup_error(addr: SocketAddr) -> impl Fn(std::io::Error) -> CliError {
    move |e| CliError {
        message: format!("cannot listen on {addr}: {e}"),
        exit_code: exit::STARTUP,
    }
}

pub fn run(args: ControlArgs) -> Result<(), CliError> {
    args.control.check()?;
    let ca_cert = args
        .ca_cert
        .unwrap_or_else(|| args.data_dir.join("gateway").join("ca.pem"));
    // Gateways run apart hold their approvals here (`/v1/gateway/approvals`).
    let approvals = Arc::new(ApprovalsHub::new(DEFAULT_APPROVAL_TIMEOUT_SECS));
    let parts = ControlParts::open(&args.data_dir)?;
    if let Some(file) = args
        .gateway_token_file
        .as_ref()
        .filter(|f| !f.as_os_str().is_empty())
    {
        let token = std::fs::read_to_string(file).map_err(|e| {
            CliError::config(format!(
                "cannot read the gateway token {}: {e}",
                file.display()
            ))
        })?;
        parts
            .store
            .accept_gateway_token("operator", token.trim())
            .map_err(|e| CliError::config(format!("{}: {e}", file.display())))?;
    }
    let (api, audit_writer) = parts.into_api(
        &args.control,
        ca_cert,
        Vec::new(),
        approvals,
        args.gateway_api_listen.is_some(),
    );
    let listen = args.control.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(startup_error(listen))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(startup_error(listen))?;
        let apart = [
            (args.metrics.metrics_listen, Surface::Metrics),
            (args.gateway_api_listen, Surface::Gateways),
        ];
        for (addr, surface) in apart {
            if let Some(addr) = addr {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(startup_error(addr))?;
                tokio::spawn(
                    api.clone()
                        .serve_on(listener, std::future::pending(), surface),
                );
            }
        }
        api.publisher.publish(&api.store).await;
        tokio::spawn(audit_writer.run());
        tokio::spawn(onecli_control::refresh::run(
            api.clone(),
            args.control.refresh_config(args.upstream_ca.clone()),
        ));
        tracing::info!(%listen, "control service listening");
        args.control.warn_if_guessing();
        api.serve(listener, shutdown_signal()).await;
        Ok(())
    })
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
