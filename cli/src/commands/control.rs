//! `onecli control`: the control service alone, for deployments where the
//! gateways run apart and subscribe to it (`onecli gateway --control-url`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use onecli_control::api::{Api, ApiConfig};
use onecli_control::publish::{PolicySink, Publisher, Subscriptions};
use onecli_control::{bootstrap, crypto, Store};

use super::gateway::default_data_dir;
use super::{exit, CliError};

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Address of the control API and dashboard.
    #[arg(long, default_value = "127.0.0.1:10254")]
    pub listen: SocketAddr,
    /// Where the store, the secret key and the first keys live.
    #[arg(long, env = "ONECLI_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// The control service's URL as agents and the SDK reach it.
    #[arg(long, env = "ONECLI_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// host:port containers use to reach a gateway (container-config).
    #[arg(
        long,
        env = "ONECLI_CONTAINER_GATEWAY",
        default_value = "host.docker.internal:10255"
    )]
    pub container_gateway: String,
    /// The gateways' CA certificate (PEM), handed to agents; default <data-dir>/gateway/ca.pem.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
}

pub fn run(args: ControlArgs) -> Result<(), CliError> {
    let key = crypto::load_key(&args.data_dir, std::env::var(crypto::KEY_ENV).ok(), true)
        .map_err(|e| CliError::config(e.to_string()))?;
    let subscriptions = Arc::new(Subscriptions::new(key.clone()));
    let store =
        Arc::new(Store::open(&args.data_dir, key).map_err(|e| CliError::config(e.to_string()))?);
    for path in bootstrap::ensure_key_files(&store, &args.data_dir)
        .map_err(|e| CliError::config(e.to_string()))?
    {
        eprintln!("onecli: created {}", path.display());
    }
    let public_url = args
        .public_url
        .unwrap_or_else(|| format!("http://localhost:{}", args.listen.port()));
    let ca_cert = args
        .ca_cert
        .unwrap_or_else(|| args.data_dir.join("gateway").join("ca.pem"));
    let sinks: Vec<Arc<dyn PolicySink>> = vec![subscriptions.clone()];
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
    let startup = |e: std::io::Error| CliError {
        message: format!("cannot listen on {}: {e}", args.listen),
        exit_code: exit::STARTUP,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(startup)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(startup)?;
        api.publisher.publish(&api.store).await;
        tracing::info!(listen = %args.listen, "control service listening");
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
