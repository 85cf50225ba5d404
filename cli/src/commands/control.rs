//! `onecli control`: the control service alone, for deployments where the
//! gateways run apart and subscribe to it (`onecli gateway --control-url`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use onecli_control::api::{Api, ApiConfig};
use onecli_control::approvals::ApprovalsHub;
use onecli_control::audit::{AuditLog, AuditWriter};
use onecli_control::publish::{PolicySink, Publisher, Subscriptions};
use onecli_control::{bootstrap, crypto, Store};

use super::gateway::default_data_dir;
use super::{exit, CliError};

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Where the store, the secret key and the first keys live.
    #[arg(long, env = "ONECLI_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// The gateways' CA certificate (PEM), handed to agents; default <data-dir>/gateway/ca.pem.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    #[command(flatten)]
    pub control: ControlOptions,
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
}

impl ControlOptions {
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://localhost:{}", self.listen.port()))
    }
}

/// The control service's parts, opened before the API so that a gateway in
/// the same process can be given the audit log.
pub struct ControlParts {
    pub store: Arc<Store>,
    pub subscriptions: Arc<Subscriptions>,
    pub audit: Arc<AuditLog>,
    pub audit_writer: AuditWriter,
}

impl ControlParts {
    /// Opens the store, creating the key and the first key files on first start.
    pub fn open(data_dir: &Path) -> Result<ControlParts, CliError> {
        let key = crypto::load_key(data_dir, std::env::var(crypto::KEY_ENV).ok(), true)
            .map_err(|e| CliError::config(e.to_string()))?;
        let subscriptions = Arc::new(Subscriptions::new(key.clone()));
        let store =
            Arc::new(Store::open(data_dir, key).map_err(|e| CliError::config(e.to_string()))?);
        let written = bootstrap::ensure_key_files(&store, data_dir)
            .map_err(|e| CliError::config(format!("cannot create the first keys: {e}")))?;
        for path in written {
            eprintln!("onecli: created {}", path.display());
        }
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
                listen: Some(options.listen),
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
    let ca_cert = args
        .ca_cert
        .unwrap_or_else(|| args.data_dir.join("gateway").join("ca.pem"));
    // Gateways run apart hold their approvals here (`/v1/gateway/approvals`).
    let approvals = Arc::new(ApprovalsHub::new(DEFAULT_APPROVAL_TIMEOUT_SECS));
    let (api, audit_writer) =
        ControlParts::open(&args.data_dir)?.into_api(&args.control, ca_cert, Vec::new(), approvals);
    let listen = args.control.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(startup_error(listen))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(startup_error(listen))?;
        api.publisher.publish(&api.store).await;
        tokio::spawn(audit_writer.run());
        tracing::info!(%listen, "control service listening");
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
