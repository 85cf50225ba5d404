//! Where the gateway's policy comes from. The hot path only ever calls
//! [`PolicyHandle::current`]; sources (the policy file today, the control
//! service's push later) are the only writers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use onecli_policy::config::{compile_policy_file, ConfigError};
use onecli_policy::{PolicyDoc, Snapshot};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::metrics::GatewayMetrics;
use crate::retire::RetiringSwap;

/// The current snapshot. `None` until the first one arrives: the gateway is
/// not ready and refuses agent traffic until then. A replaced snapshot is
/// freed by the retirement thread, never by a request that still held it.
pub struct PolicyHandle {
    current: RetiringSwap<Snapshot>,
    metrics: Arc<GatewayMetrics>,
}

impl PolicyHandle {
    pub fn new(metrics: Arc<GatewayMetrics>) -> Self {
        PolicyHandle {
            current: RetiringSwap::new("onecli-retire"),
            metrics,
        }
    }

    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    pub fn install(&self, snapshot: Snapshot) {
        self.metrics.policy_installed(snapshot.version());
        self.current.store(Arc::new(snapshot));
    }

    /// Counts a policy update that never got as far as compiling (it did not
    /// open or decode).
    pub fn rejected(&self) {
        self.metrics.policy_rejected();
    }

    /// Compiles a document from a policy source and installs it, unless it
    /// is invalid or older than the one in force: then the current one
    /// stays, and the rejection is logged and counted.
    pub fn install_doc(&self, doc: PolicyDoc) -> bool {
        let version = doc.version;
        if self.current().is_some_and(|s| s.version() > version) {
            tracing::warn!(version, "older policy ignored");
            return false;
        }
        match Snapshot::compile(doc) {
            Ok(snapshot) => {
                self.install(snapshot);
                tracing::debug!(version, "policy installed");
                true
            }
            Err(errors) => {
                self.metrics.policy_rejected();
                for error in errors {
                    tracing::error!(%error, version, "policy rejected; keeping the last good one");
                }
                false
            }
        }
    }
}

/// `--policy FILE`: compiled at start, then reloaded when the file changes
/// (polled) or on SIGHUP. A file that fails validation is rejected and the
/// last good policy stays.
pub struct PolicyFile {
    path: PathBuf,
    handle: Arc<PolicyHandle>,
    metrics: Arc<GatewayMetrics>,
    version: AtomicU64,
}

const POLL_EVERY: Duration = Duration::from_millis(200);

impl PolicyFile {
    pub fn new(path: PathBuf, handle: Arc<PolicyHandle>, metrics: Arc<GatewayMetrics>) -> Self {
        PolicyFile {
            path,
            handle,
            metrics,
            version: AtomicU64::new(0),
        }
    }

    /// Reads, compiles and installs the file.
    pub fn reload(&self) -> Result<u64, Vec<ConfigError>> {
        let name = self.path.display().to_string();
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            vec![ConfigError {
                file: name.clone(),
                line: None,
                message: format!("cannot read: {e}"),
            }]
        })?;
        let version = self.version.load(Ordering::SeqCst) + 1;
        let env = |k: &str| std::env::var(k).ok();
        let snapshot = compile_policy_file(&name, &text, version, &env)?;
        self.version.store(version, Ordering::SeqCst);
        self.handle.install(snapshot);
        Ok(version)
    }

    fn reload_and_report(&self, why: &'static str) {
        match self.reload() {
            Ok(version) => {
                tracing::info!(version, why, path = %self.path.display(), "policy reloaded")
            }
            Err(errors) => {
                self.metrics.policy_rejected();
                for error in errors {
                    tracing::error!(%error, "policy rejected; keeping the last good one");
                }
            }
        }
    }

    fn fingerprint(&self) -> Option<(SystemTime, u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.len(), meta.ino()))
    }
}

#[async_trait]
impl BackgroundService for PolicyFile {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; relying on file polling");
                None
            }
        };
        let mut last = self.fingerprint();
        let mut tick = tokio::time::interval(POLL_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let now = self.fingerprint();
                    if now.is_some() && now != last {
                        last = now;
                        self.reload_and_report("file changed");
                    }
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    last = self.fingerprint();
                    self.reload_and_report("SIGHUP");
                }
            }
        }
    }
}
