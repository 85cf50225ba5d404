//! `onecli serve`: the control service and the gateway in one process over
//! one data directory, the embedded default. Every change made through the
//! API is compiled and swapped into the gateway before the API answers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use clap::Args;
use onecli_control::api::{Api, ApiConfig};
use onecli_control::publish::Subscriptions;
use onecli_control::publish::{PolicySink, Publisher};
use onecli_control::{bootstrap, crypto, Store};
use onecli_gateway::policy_source::PolicyHandle;
use onecli_gateway::{build_server, PolicySource};
use onecli_policy::PolicyDoc;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::{background_service, BackgroundService};

use super::gateway::GatewayOptions;
use super::{exit, CliError};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the control API and dashboard.
    #[arg(long, default_value = "127.0.0.1:10254")]
    pub listen: SocketAddr,
    /// Address of the gateway (the agents' HTTPS_PROXY).
    #[arg(long, default_value = "127.0.0.1:10255")]
    pub gateway_listen: SocketAddr,
    /// The control service's URL as agents and the SDK reach it (links, approvals).
    #[arg(long, env = "ONECLI_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// host:port containers use to reach the gateway (container-config).
    #[arg(
        long,
        env = "ONECLI_CONTAINER_GATEWAY",
        default_value = "host.docker.internal:10255"
    )]
    pub container_gateway: String,
    #[command(flatten)]
    pub gateway: GatewayOptions,
}

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let data_dir = args.gateway.data_dir.clone();
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://localhost:{}", args.listen.port()));
    let key = crypto::load_key(&data_dir, std::env::var(crypto::KEY_ENV).ok(), true)
        .map_err(|e| CliError::config(e.to_string()))?;
    let subscriptions = Arc::new(Subscriptions::new(key.clone()));
    let store = Arc::new(Store::open(&data_dir, key).map_err(|e| CliError::config(e.to_string()))?);
    ensure_key_files(&store, &data_dir)?;

    let mut config = args.gateway.config(args.gateway_listen, &public_url);
    config.protected.push(args.listen);
    let ca_cert = match &config.ca_files {
        Some((cert, _)) => cert.clone(),
        None => data_dir.join("gateway").join("ca.pem"),
    };
    let mut gateway = build_server(config, PolicySource::External)
        .map_err(|e| CliError::config(e.to_string()))?;

    // Bind now, so a taken port is a clear error before anything starts.
    let listener = std::net::TcpListener::bind(args.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| CliError {
            message: format!("cannot listen on {}: {e}", args.listen),
            exit_code: exit::STARTUP,
        })?;
    let sinks: Vec<Arc<dyn PolicySink>> = vec![
        Arc::new(InProcessGateway(gateway.policy.clone())),
        subscriptions.clone(),
    ];
    let api = Arc::new(Api {
        store,
        publisher: Publisher::new(sinks),
        subscriptions,
        config: ApiConfig {
            container_gateway: args.container_gateway,
            public_url,
            ca_cert,
        },
    });
    gateway.server.add_service(background_service(
        "onecli-control-api",
        ControlApi {
            api,
            listener: std::sync::Mutex::new(Some(listener)),
        },
    ));
    tracing::info!(api = %args.listen, gateway = %args.gateway_listen, data_dir = %data_dir.display(), "onecli serving");
    gateway.server.run_forever()
}

/// On first start, the admin API key and a gateway token, in 0600 files;
/// only their paths are printed.
fn ensure_key_files(store: &Store, data_dir: &Path) -> Result<(), CliError> {
    let written = bootstrap::ensure_key_files(store, data_dir)
        .map_err(|e| CliError::config(format!("cannot create the first keys: {e}")))?;
    for path in written {
        eprintln!("onecli: created {}", path.display());
    }
    Ok(())
}

/// The gateway in this process takes each policy version directly.
struct InProcessGateway(Arc<PolicyHandle>);

impl PolicySink for InProcessGateway {
    fn install(&self, doc: PolicyDoc) {
        self.0.install_doc(doc);
    }
}

/// The control API as a Pingora background service: it shares the server's
/// lifecycle and graceful shutdown.
struct ControlApi {
    api: Arc<Api>,
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
}

#[async_trait]
impl BackgroundService for ControlApi {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.listener.lock().map(|mut l| l.take()).unwrap_or(None);
        let Some(listener) = taken else { return };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(error) => {
                tracing::error!(%error, "control API listener unusable");
                return;
            }
        };
        // The gateway is not ready until it holds a policy: publish the current one.
        self.api.publisher.publish(&self.api.store).await;
        self.api
            .clone()
            .serve(listener, async move {
                let _ = shutdown.changed().await;
            })
            .await;
    }
}
