//! `onecli serve`: the control service and the gateway in one process over
//! one data directory, the embedded default. Every change made through the
//! API is compiled and swapped into the gateway before the API answers.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use clap::Args;
use onecli_control::api::Api;
use onecli_control::approvals::ApprovalsHub;
use onecli_control::audit::AuditWriter;
use onecli_control::publish::PolicySink;
use onecli_gateway::policy_source::PolicyHandle;
use onecli_gateway::{build_server, ControlHooks, PolicySource};
use onecli_policy::approval::ApprovalBroker;
use onecli_policy::audit::AuditSink;
use onecli_policy::PolicyDoc;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::{background_service, BackgroundService};

use super::control::{startup_error, ControlOptions, ControlParts};
use super::gateway::GatewayOptions;
use super::CliError;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
    /// Address of the gateway (the agents' HTTPS_PROXY).
    #[arg(long, default_value = "127.0.0.1:10255")]
    pub gateway_listen: SocketAddr,
    #[command(flatten)]
    pub control: ControlOptions,
    #[command(flatten)]
    pub gateway: GatewayOptions,
}

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    args.control.check()?;
    if let Some(url) = args
        .gateway
        .dashboard_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        super::control::check_url("--dashboard-url", url)?;
    }
    let data_dir = args.gateway.data_dir.clone();
    let listen = args.control.listen;
    let mut config = args
        .gateway
        .config(args.gateway_listen, &args.control.public_url())?;
    config.protected.push(listen);
    let ca_cert = match &config.ca_files {
        Some((cert, _)) => cert.clone(),
        None => data_dir.join("gateway").join("ca.pem"),
    };
    let parts = ControlParts::open(&data_dir)?;
    let approvals = Arc::new(ApprovalsHub::new(args.gateway.approval_timeout.as_secs()));
    let broker: Arc<dyn ApprovalBroker> = approvals.clone();
    let audit: Arc<dyn AuditSink> = parts.audit.clone();
    let control_metrics = {
        let (subscriptions, approvals) = (parts.subscriptions.clone(), approvals.clone());
        Arc::new(move || {
            onecli_control::metrics::metrics()
                .render(subscriptions.listening(), approvals.pending_count())
        })
    };
    let hooks = ControlHooks {
        approvals: Some(broker),
        audit: Some(audit),
        metrics: Some(control_metrics),
    };
    let mut gateway = build_server(config, PolicySource::External, hooks)
        .map_err(|e| CliError::config(e.to_string()))?;
    let in_process: Arc<dyn PolicySink> = Arc::new(InProcessGateway(gateway.policy.clone()));
    let (api, audit_writer) =
        parts.into_api(&args.control, ca_cert, vec![in_process], approvals, false);

    // Bind now, so a taken port is a clear error before anything starts.
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(startup_error(listen))?;
    let service = ControlApi {
        api,
        listener: std::sync::Mutex::new(Some(listener)),
        audit_writer: std::sync::Mutex::new(Some(audit_writer)),
        refresh: args
            .control
            .refresh_config(args.gateway.upstream_ca.clone()),
    };
    gateway
        .server
        .add_service(background_service("onecli-control-api", service));
    tracing::info!(api = %listen, gateway = %args.gateway_listen, data_dir = %data_dir.display(), "onecli serving");
    args.control.warn_if_guessing();
    gateway.server.run_forever()
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
    audit_writer: std::sync::Mutex<Option<AuditWriter>>,
    /// ChatGPT logins, refreshed in this process too.
    refresh: onecli_control::refresh::RefreshConfig,
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
        if let Some(writer) = self
            .audit_writer
            .lock()
            .map(|mut w| w.take())
            .unwrap_or(None)
        {
            tokio::spawn(writer.run());
            tokio::spawn(onecli_control::refresh::run(
                self.api.clone(),
                self.refresh.clone(),
            ));
        }
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
