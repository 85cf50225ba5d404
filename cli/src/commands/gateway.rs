//! `onecli gateway`: the data plane on its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use onecli_gateway::config::{EgressAllow, ResolveOverride, Timeouts};
use onecli_gateway::control_client::ControlClient;
use onecli_gateway::{build_server, ControlHooks, GatewayConfig, PolicySource};

use super::CliError;

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
    /// Address of the proxy listener.
    #[arg(long, default_value = "127.0.0.1:10255")]
    pub listen: SocketAddr,
    /// Policy file (TOML): agents, secrets, rules. Reloaded when it changes and on SIGHUP.
    #[arg(
        long,
        env = "ONECLI_POLICY",
        required_unless_present = "control_url",
        conflicts_with = "control_url"
    )]
    pub policy: Option<PathBuf>,
    /// Take the policy from this control service instead (http://HOST:PORT); the secret key
    /// comes from ONECLI_SECRET_KEY or <data-dir>/secret.key, as the control service's.
    #[arg(long, env = "ONECLI_CONTROL_URL", requires = "gateway_token_file")]
    pub control_url: Option<String>,
    /// File holding the gateway token the control service issued (<its data-dir>/gateway-token).
    #[arg(long, env = "ONECLI_GATEWAY_TOKEN_FILE")]
    pub gateway_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub options: GatewayOptions,
}

/// What configures a gateway, whether alone or inside `onecli serve`.
#[derive(Debug, Args)]
pub struct GatewayOptions {
    /// Where the CA and other state live.
    #[arg(long, env = "ONECLI_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// CA certificate PEM (with --ca-key); default: generated into the data dir.
    #[arg(long, requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// CA private key PEM (with --ca-cert).
    #[arg(long, requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Extra roots to trust for upstream TLS, on top of the system roots.
    #[arg(long)]
    pub upstream_ca: Option<PathBuf>,
    /// Pin HOST:PORT to ADDR (curl's syntax; repeatable). Pinned addresses pass the egress guard.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<ResolveOverride>,
    /// Allow upstreams in a network (CIDR) or a host otherwise refused as internal (repeatable).
    #[arg(long, value_name = "CIDR|HOST")]
    pub allow_egress: Vec<EgressAllow>,
    /// Serve the gateway's Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Upstream TCP connect timeout (e.g. 10s, 500ms).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Upstream connect + TLS handshake timeout.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub tls_timeout: Duration,
    /// Longest an upstream may stay silent (response head, or between body chunks).
    #[arg(long, value_parser = parse_duration, default_value = "300s")]
    pub read_timeout: Duration,
    /// Idle limit of pooled upstream connections and pass-through tunnels.
    #[arg(long, value_parser = parse_duration, default_value = "90s")]
    pub idle_timeout: Duration,
    /// Time a client has to send its request head or TLS hello.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub client_timeout: Duration,
    /// How long a client connection (a CONNECT tunnel after its handshake) may stay
    /// silent before its first request; later requests have HTTP keep-alive's limit.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub client_idle_timeout: Duration,
    /// Client connections open at once; past it a new one is answered 503 and closed.
    #[arg(long, default_value_t = onecli_gateway::config::DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one)]
    pub max_connections: usize,
    /// Client connections open at once from one IP address.
    #[arg(long, default_value_t = onecli_gateway::config::DEFAULT_MAX_CONNECTIONS_PER_CLIENT, value_parser = at_least_one)]
    pub max_connections_per_client: usize,
    /// Dashboard base URL used in links of error bodies.
    #[arg(long, env = "ONECLI_DASHBOARD_URL")]
    pub dashboard_url: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
    /// How long a graceful shutdown (SIGTERM) waits for in-flight requests.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub shutdown_timeout: Duration,
    /// How long a request held for human approval waits before it is denied.
    #[arg(long, value_parser = parse_duration, default_value = "180s")]
    pub approval_timeout: Duration,
    /// How long the body of a request to be held for approval may take to arrive.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub held_body_timeout: Duration,
    /// Count rate limits in this Redis, shared by every gateway given the same one:
    /// redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]. Without it each gateway counts alone.
    #[arg(
        long,
        env = "ONECLI_RATE_LIMIT_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub rate_limit_store: Option<StoreUrl>,
    /// The longest a request waits on --rate-limit-store before its gateway
    /// counts alone for a while (a Redis far away may need more than 50ms).
    #[arg(long, value_parser = parse_duration, default_value = "50ms", env = "ONECLI_RATE_LIMIT_STORE_TIMEOUT")]
    pub rate_limit_store_timeout: Duration,
}

/// `--rate-limit-store` as given: checked in [`GatewayOptions::config`],
/// not by clap, whose errors repeat the value (and so the password).
#[derive(Clone)]
pub struct StoreUrl(zeroize::Zeroizing<String>);

impl std::str::FromStr for StoreUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(StoreUrl(zeroize::Zeroizing::new(s.to_owned())))
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreUrl(…)")
    }
}

impl GatewayOptions {
    /// The gateway's settings; refused only for a bad `--rate-limit-store`.
    pub fn config(
        &self,
        listen: SocketAddr,
        default_dashboard: &str,
    ) -> Result<GatewayConfig, CliError> {
        let mut config = GatewayConfig::new(listen, self.data_dir.clone());
        config.metrics_listen = self.metrics_listen;
        config.ca_files = self.ca_cert.clone().zip(self.ca_key.clone());
        config.upstream_ca = self.upstream_ca.clone();
        config.resolve = self.resolve.clone();
        config.egress_allow = self.allow_egress.clone();
        config.timeouts = Timeouts {
            client_head: self.client_timeout,
            client_idle: self.client_idle_timeout,
            connect: self.connect_timeout,
            tls: self.tls_timeout,
            read: self.read_timeout,
            idle: self.idle_timeout,
        };
        config.dashboard_url = self
            .dashboard_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| default_dashboard.to_owned());
        config.threads = self.threads;
        config.shutdown_timeout = self.shutdown_timeout;
        config.approval_timeout = self.approval_timeout;
        config.held_body_timeout = self.held_body_timeout;
        config.max_connections = self.max_connections;
        config.max_connections_per_client = self.max_connections_per_client;
        config.rate_limit_store_timeout = self.rate_limit_store_timeout;
        config.rate_limit_store = match self.rate_limit_store.as_ref() {
            // An empty variable counts as unset.
            Some(StoreUrl(url)) if !url.trim().is_empty() => Some(
                url.trim()
                    .parse()
                    .map_err(|why| CliError::config(format!("--rate-limit-store: {why}")))?,
            ),
            _ => None,
        };
        Ok(config)
    }
}

pub fn run(args: GatewayArgs) -> Result<(), CliError> {
    match args
        .options
        .dashboard_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) => super::control::check_url("--dashboard-url", url)?,
        None if args.listen.ip().is_unspecified() => tracing::warn!(
            listen = %args.listen,
            "listening on a wildcard address with no --dashboard-url: the links in error bodies name http://localhost:10254; set --dashboard-url (ONECLI_DASHBOARD_URL) to the dashboard's public URL"
        ),
        None => {}
    }
    let config = args.options.config(args.listen, "http://localhost:10254")?;
    super::control::warn_if_open(&config.data_dir);
    let listen = config.listen;
    let ca_path = config.data_dir.join("gateway").join("ca.pem");
    let source = match (args.policy, args.control_url, args.gateway_token_file) {
        (Some(file), _, _) => PolicySource::File(file),
        (None, Some(url), Some(token_file)) => {
            let token = std::fs::read_to_string(&token_file).map_err(|e| {
                CliError::config(format!(
                    "cannot read the gateway token {}: {e}",
                    token_file.display()
                ))
            })?;
            let env_key = onecli_control::crypto::key_from_env()
                .map_err(|e| CliError::config(e.to_string()))?;
            let key = onecli_control::crypto::load_key(&config.data_dir, env_key, false).map_err(
                |e| {
                    CliError::config(format!(
                        "the gateway needs the control service's secret key: {e}"
                    ))
                },
            )?;
            PolicySource::Control {
                client: std::sync::Arc::new(
                    ControlClient::new(&url, zeroize::Zeroizing::new(token.trim().to_owned()))
                        .map_err(|e| CliError::config(e.to_string()))?,
                ),
                key,
            }
        }
        _ => {
            return Err(CliError::config(
                "give --policy FILE, or --control-url URL with --gateway-token-file FILE",
            ))
        }
    };
    let gateway = build_server(config, source, ControlHooks::default())
        .map_err(|e| CliError::config(e.to_string()))?;
    tracing::info!(%listen, ca = %ca_path.display(), "gateway listening");
    gateway.server.run_forever()
}

/// The data directory the servers use and the CLI reads the local key from:
/// `ONECLI_DATA_DIR`, else `~/.onecli/data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ONECLI_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".onecli").join("data"),
        None => PathBuf::from("data"),
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `250ms`, `10s`, `5m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms, 10s or 5m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

/// A count that must allow something: 0 would refuse every connection.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits_must_allow_one() {
        assert!(at_least_one("0").is_err());
        assert!(at_least_one("-1").is_err());
        assert_eq!(at_least_one("4096"), Ok(4096));
    }

    #[test]
    fn rate_limit_store_urls_are_checked_without_repeating_them() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            options: GatewayOptions,
        }
        let config = |url: &str| {
            Cli::try_parse_from(["onecli", "--rate-limit-store", url])
                .expect("clap takes any value")
                .options
                .config("127.0.0.1:1".parse().expect("addr"), "http://d")
        };
        let store = config("redis://:pw@127.0.0.1:6380/1")
            .expect("valid")
            .rate_limit_store
            .expect("set");
        assert_eq!(store.to_string(), "redis://:***@127.0.0.1:6380/1");
        assert!(config("")
            .expect("empty is unset")
            .rate_limit_store
            .is_none());
        let error = config("redis://:hunter2@127.0.0.1:x").expect_err("bad port");
        assert!(
            error.message.starts_with("--rate-limit-store: "),
            "{}",
            error.message
        );
        assert!(!error.message.contains("hunter2"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
