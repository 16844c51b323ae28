//! The `serve` command: loads the certificate and the state to serve, starts the server, keeps
//! both fresh by polling their files, and stops on SIGTERM or SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

pub mod files;
pub mod http;

use crate::cluster::ClusterArgs;
pub use crate::cluster::ClusterOptions;
use crate::cluster::self_signed::{self, SelfSignedArgs};
use crate::serve::files::FileSource;
use crate::metrics::Metrics;
use crate::reload;
use http::{App, Limits, ServeError};
use crate::tls::{Reload, ServingCert};
use crate::view::live::ClusterIndex;

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

/// Logs a failure when it differs from the last one, so a file that stays broken or missing
/// is reported once rather than at every poll.
#[derive(Debug, Default)]
struct Reported(Mutex<Option<String>>);

impl Reported {
    fn first_time(&self, message: &str) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() == Some(message) {
            return false;
        }
        *last = Some(message.to_string());
        true
    }

    fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

fn load_files(source: &FileSource, app: &App, reported: &Reported) {
    match source.poll() {
        Ok(None) => {}
        Ok(Some(snapshot)) => {
            reported.clear();
            let credentials = snapshot.catalog.config().credentials.len();
            for problem in snapshot.catalog.problems() {
                tracing::warn!("config: {problem}");
            }
            app.metrics().config_reload(true, Some(credentials));
            app.serve_snapshot(snapshot);
            tracing::info!(credentials, "config loaded");
        }
        Err(e) => {
            let message = e.to_string();
            if reported.first_time(&message) {
                app.metrics().config_reload(false, None);
                if app.is_ready() {
                    tracing::error!(
                        "config not reloaded, still serving the last good one: {message}"
                    );
                } else {
                    tracing::error!("config not loaded: {message}");
                }
            }
            app.set_not_ready(&format!("config not loaded: {message}"));
        }
    }
}

fn reload_cert(cert: &ServingCert, metrics: &Metrics, reported: &Reported) {
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
        return Err(ServeError::Usage(
            "--cluster needs --config (file mode)".to_string(),
        ));
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
                     use --tls-cert and --tls-key with --config"
                        .to_string(),
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
    let app = App::new(metrics.clone(), limits, "config not loaded yet");

    let mut cluster = None;
    if let Some(config) = args.config.clone() {
        let source = FileSource::new(config, args.cluster.clone(), args.own_namespace.clone());
        let config_reported = Reported::default();
        load_files(&source, &app, &config_reported);
        let interval = args.reload_interval.max(Duration::from_millis(10));
        let watch_app = app.clone();
        background.push(tokio::spawn(reload::every(interval, move || {
            load_files(&source, &watch_app, &config_reported)
        })));
    }

    let client_ca = args
        .client_ca
        .as_deref()
        .map(crate::tls::ClientCa::load)
        .transpose()?;
    let bound = http::bind(
        args.listen,
        args.metrics_listen,
        &cert,
        client_ca.as_ref(),
        app.clone(),
    )
    .await?;
    let admission_addr = bound.admission_addr().map_err(|source| ServeError::Bind {
        addr: args.listen,
        what: "admission",
        source,
    })?;
    let metrics_addr = bound.metrics_addr().map_err(|source| ServeError::Bind {
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
        cluster = Some(crate::cluster::start(cluster_args, app.clone()).await?);
    }
    tracing::info!("admission listening on https://{admission_addr}");
    tracing::info!("metrics listening on http://{metrics_addr}");

    if watch_files {
        let interval = args.reload_interval.max(Duration::from_millis(10));
        let cert_reported = Reported::default();
        background.push(tokio::spawn(reload::every(interval, move || {
            reload_cert(&cert, &metrics, &cert_reported)
        })));
    }
    let index = cluster.as_ref().map(|c| c.index().clone());
    let task = tokio::spawn(async move {
        let result = bound.run(shutdown).await;
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
            Err(e) => Err(ServeError::Runtime(std::io::Error::other(e.to_string()))),
        }
    })?;
    tracing::info!("stopped");
    Ok(())
}
