//! The `serve` command, wired: loads the certificate and what to serve (files, or the cluster),
//! starts the HTTP server, keeps both fresh, and stops on SIGTERM or SIGINT. The one place that
//! knows every part; the parts know nothing of each other (cluster mode is handed the serving
//! slot and hands back the ports the HTTP server calls).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

pub mod files;
pub mod http;

use crate::admission::slot::Slot;
pub use crate::cluster::ClusterOptions;
use crate::cluster::self_signed::{self, SelfSignedArgs, SelfSignedError};
use crate::cluster::{ClusterArgs, ClusterError};
use crate::metrics::Metrics;
use crate::reload::{self, ReportOnce};
use crate::tls::{ClientCa, Reload, ServingCert, TlsError};
use crate::view::live::ClusterIndex;
use files::FileSource;
use http::{App, HttpError, Limits};

/// Why `serve` could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The HTTP side (ports, TLS, the metrics server).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The serving certificate or the client CA cannot be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Cluster mode cannot start.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Self-signed mode cannot load or make its certificate.
    #[error(transparent)]
    SelfSigned(#[from] SelfSignedError),
    /// Flags that do not fit together.
    #[error("{0}")]
    Usage(&'static str),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The server task ended abnormally.
    #[error("the server task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Everything `serve` is told on its command line.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    /// The config file (file mode); `None` means cluster mode.
    pub config: Option<PathBuf>,
    /// Cluster manifests (file mode).
    pub cluster: Vec<PathBuf>,
    /// The injector's own namespace, never injected into.
    pub own_namespace: String,
    /// The HTTPS admission address.
    pub listen: SocketAddr,
    /// The plain-HTTP metrics address.
    pub metrics_listen: SocketAddr,
    /// Where the serving certificate comes from.
    pub tls: TlsSource,
    /// Client certificates are verified against this CA bundle, and required for reviews.
    pub client_ca: Option<PathBuf>,
    /// How often the certificate and the file-mode inputs are checked for changes.
    pub reload_interval: Duration,
    /// Input bounds.
    pub limits: Limits,
    /// Cluster mode settings (used when `config` is `None`).
    pub cluster_mode: ClusterOptions,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files, reloaded when they change (the `certs` command, cert-manager).
    Files {
        /// The certificate (leaf first).
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// Made and renewed by the injector, kept in a Secret (cluster mode only).
    SelfSigned {
        /// The Service kube-apiserver calls.
        service: String,
        /// The Secret holding the pair, in the own namespace.
        secret: String,
        /// The MutatingWebhookConfiguration whose `caBundle` is kept.
        webhook_configuration: String,
        /// Validity of each new pair.
        validity: Duration,
    },
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    /// Where admission reviews are served (HTTPS).
    pub admission_addr: SocketAddr,
    /// Where metrics are served (HTTP).
    pub metrics_addr: SocketAddr,
    /// The shared state, for tests that inspect it.
    pub app: Arc<App>,
    /// Cluster mode's index of the cluster, for tests that inspect it.
    pub index: Option<Arc<ClusterIndex>>,
    /// Ends when the server has shut down.
    pub task: JoinHandle<Result<(), ServeError>>,
}

/// File mode's reaction to a poll of its files, through the slot's one reaction to a config
/// load.
fn load_files(source: &FileSource, slot: &Slot) {
    match source.poll() {
        Ok(None) => {}
        Ok(Some(snapshot)) => {
            slot.config_accepted("files", snapshot.catalog.config());
            slot.publish(Arc::new(snapshot));
        }
        Err(e) => {
            slot.config_refused(&format!("config not loaded: {e}"));
        }
    }
}

fn reload_cert(cert: &ServingCert, metrics: &Metrics, reported: &ReportOnce) {
    match cert.reload() {
        Ok(Reload::Unchanged) => {}
        Ok(Reload::Replaced) => {
            reported.clear();
            metrics.certificate_reload(true);
            tracing::info!("serving certificate reloaded");
        }
        Err(e) => {
            let message = e.to_string();
            if reported.first_time(&message) {
                metrics.certificate_reload(false);
                tracing::error!(
                    "serving certificate not reloaded, still serving the old one: {message}"
                );
            }
        }
    }
}

/// Loads, binds and starts serving; returns once the ports are bound. The server stops when
/// `shutdown` completes.
pub async fn start(
    args: &ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, ServeError> {
    if args.config.is_none() && !args.cluster.is_empty() {
        return Err(ServeError::Usage("--cluster needs --config (file mode)"));
    }
    let cluster_args = match args.config {
        Some(_) => None,
        None => Some(ClusterArgs::new(
            args.cluster_mode.clone(),
            &args.own_namespace,
        )?),
    };
    let metrics = Arc::new(Metrics::new());
    let mut background: Vec<JoinHandle<()>> = Vec::new();
    let (cert, watch_files) = match &args.tls {
        TlsSource::Files { cert, key } => (Arc::new(ServingCert::load(cert, key)?), true),
        TlsSource::SelfSigned {
            service,
            secret,
            webhook_configuration,
            validity,
        } => {
            if args.config.is_some() {
                return Err(ServeError::Usage(
                    "--self-signed needs cluster mode (it keeps the certificate in a Secret); \
                     use --tls-cert and --tls-key with --config",
                ));
            }
            let client = crate::cluster::client(args.cluster_mode.kubeconfig.as_deref()).await?;
            let settings = SelfSignedArgs {
                namespace: args.own_namespace.clone(),
                service: service.clone(),
                secret: secret.clone(),
                webhook_configuration: webhook_configuration.clone(),
                validity: *validity,
                interval: args.reload_interval,
            };
            let (cert, task) = self_signed::start(client, settings, metrics.clone()).await?;
            background.push(task);
            (cert, false)
        }
    };
    let mut limits = args.limits.clone();
    limits.require_client_cert = args.client_ca.is_some();
    let slot = Slot::new(metrics.clone(), "config not loaded yet");
    let app = App::new(slot.clone(), limits);

    let mut cluster = None;
    if let Some(config) = args.config.clone() {
        let source = FileSource::new(config, args.cluster.clone(), args.own_namespace.clone());
        load_files(&source, &slot);
        let interval = args.reload_interval.max(Duration::from_millis(10));
        let watch_slot = slot.clone();
        background.push(tokio::spawn(reload::every(interval, move || {
            load_files(&source, &watch_slot)
        })));
    }

    let client_ca = args.client_ca.as_deref().map(ClientCa::load).transpose()?;
    let bound = http::bind(
        args.listen,
        args.metrics_listen,
        &cert,
        client_ca.as_ref(),
        app.clone(),
    )
    .await?;
    let admission_addr = bound.admission_addr().map_err(|source| HttpError::Bind {
        addr: args.listen,
        what: "admission",
        source,
    })?;
    let metrics_addr = bound.metrics_addr().map_err(|source| HttpError::Bind {
        addr: args.metrics_listen,
        what: "metrics",
        source,
    })?;
    if let Some(cluster_args) = cluster_args {
        tracing::info!(
            "cluster mode: config from ConfigMap {}/{}",
            cluster_args.config_map_namespace,
            cluster_args.config_map_name
        );
        let started = crate::cluster::start(cluster_args, slot.clone()).await?;
        app.set_copier(started.copier());
        app.set_namespace_wait(started.namespace_wait());
        app.set_registries_seen(started.registries_seen());
        cluster = Some(started);
    }
    tracing::info!("admission listening on https://{admission_addr}");
    tracing::info!("metrics listening on http://{metrics_addr}");

    if watch_files {
        let interval = args.reload_interval.max(Duration::from_millis(10));
        let cert_reported = ReportOnce::default();
        background.push(tokio::spawn(reload::every(interval, move || {
            reload_cert(&cert, &metrics, &cert_reported)
        })));
    }
    let index = cluster.as_ref().map(|c| c.index().clone());
    let task = tokio::spawn(async move {
        let result = bound.run(shutdown).await.map_err(ServeError::from);
        for task in background {
            task.abort();
        }
        drop(cluster);
        result
    });
    Ok(Running {
        admission_addr,
        metrics_addr,
        app,
        index,
        task,
    })
}

/// Completes on SIGTERM (what kubelet sends) or SIGINT.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                tracing::warn!("cannot install signal handlers; stop with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `serve` to completion on a new runtime.
pub fn serve(args: &ServeArgs) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async {
        let running = start(args, termination_signal()).await?;
        match running.task.await {
            Ok(result) => result,
            Err(e) => Err(ServeError::Task(e)),
        }
    })?;
    tracing::info!("stopped");
    Ok(())
}
