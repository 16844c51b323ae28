//! Cluster mode: the only code that talks to the Kubernetes API.
//!
//! Watches keep an in-memory [`index::ClusterIndex`] of Namespaces, source and local secrets
//! and the injector's copies, and follow the config ConfigMap. Each change of the config or of
//! a source recompiles the [`Catalog`] and serves it; admissions then read only memory, and
//! make the copies they need through the [`writer`]. The [`reconcile`] loop keeps copies equal
//! to their sources, backfills ServiceAccounts and prunes.

pub mod index;
pub mod reconcile;
pub mod self_signed;
mod watches;
pub mod writer;

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::core::v1::{ConfigMap, Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::{CONFIG_KEY, Config, DEFAULT_CONFIG_MAP, Source};
use crate::metrics::Metrics;
use crate::policy::Catalog;
use crate::reload::Fingerprint;
use crate::server::App;
use crate::snapshot::{Snapshot, View};

use index::{ClusterIndex, Feed};

/// The field manager of every write, so that the injector's fields are told apart from others'.
pub const FIELD_MANAGER: &str = "pull-secret-injector";

/// How cluster mode reaches the API and paces itself.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// A kubeconfig; otherwise the in-cluster config, then `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// The config ConfigMap as `namespace/name`; default: `pull-secret-injector` in the own
    /// namespace.
    pub config_map: Option<String>,
    /// How long an admission waits for the copies it needs.
    pub copy_timeout: Duration,
    /// How often every watch lists again from scratch.
    pub resync_interval: Duration,
    /// How often every ServiceAccount in scope is checked.
    pub backfill_interval: Duration,
    /// How soon failed writes are tried again.
    pub retry_interval: Duration,
    /// Sustained API requests per second.
    pub api_qps: u32,
    /// Burst above `api_qps`.
    pub api_burst: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            kubeconfig: None,
            config_map: None,
            copy_timeout: Duration::from_secs(2),
            resync_interval: Duration::from_secs(300),
            backfill_interval: Duration::from_secs(600),
            retry_interval: Duration::from_secs(5),
            api_qps: 50,
            api_burst: 100,
        }
    }
}

/// Settings of cluster mode, resolved against the injector's namespace.
#[derive(Debug, Clone)]
pub struct ClusterArgs {
    /// What the command line said.
    pub options: ClusterOptions,
    /// Namespace of the config ConfigMap.
    pub config_map_namespace: String,
    /// Name of the config ConfigMap.
    pub config_map_name: String,
    /// The injector's own namespace, never injected into.
    pub own_namespace: String,
}

impl ClusterArgs {
    /// Resolves `--config-map` (default: `pull-secret-injector` in `own_namespace`).
    pub fn new(options: ClusterOptions, own_namespace: &str) -> Result<Self, ClusterError> {
        let (namespace, name) = match &options.config_map {
            None => (own_namespace.to_string(), DEFAULT_CONFIG_MAP.to_string()),
            Some(text) => match text.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    (ns.to_string(), name.to_string())
                }
                _ => {
                    return Err(ClusterError::Usage(format!(
                        "--config-map {text:?}: expected NAMESPACE/NAME"
                    )));
                }
            },
        };
        Ok(ClusterArgs {
            options,
            config_map_namespace: namespace,
            config_map_name: name,
            own_namespace: own_namespace.to_string(),
        })
    }
}

/// Why cluster mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig file cannot be read.
    #[error("cannot read kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// No usable client configuration (not in a cluster, no kubeconfig).
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
    /// The client cannot be built from the configuration.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(String),
    /// A setting is out of range.
    #[error("{0}")]
    Usage(String),
}

/// The config as last read from the ConfigMap.
#[derive(Debug, Default)]
struct ConfigState {
    /// The last valid config, with the fingerprint of its text.
    good: Option<(Arc<Config>, Fingerprint)>,
    /// The text last looked at, valid or not, so that a relist of the same text is quiet.
    seen: Option<Fingerprint>,
    /// Why there is no config, while there is none.
    missing: Option<String>,
}

/// What the watches, the admission copier and the reconciler share.
pub(crate) struct Shared {
    client: Client,
    index: Arc<ClusterIndex>,
    app: Arc<App>,
    metrics: Arc<Metrics>,
    args: ClusterArgs,
    limiter: DefaultDirectRateLimiter,
    config: Mutex<ConfigState>,
    snapshot: ArcSwapOption<Snapshot>,
    rebuild: Notify,
    triggers: reconcile::Triggers,
    feeds: Mutex<HashMap<Feed, JoinHandle<()>>>,
    /// Problems of the catalog last logged, so that a rebuild with the same ones is quiet.
    problems: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running cluster mode; dropping it stops the watches and the reconciler.
#[derive(Debug)]
pub struct ClusterHandle {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl ClusterHandle {
    /// The index the watches keep (for tests and benchmarks).
    pub fn index(&self) -> &Arc<ClusterIndex> {
        &self.shared.index
    }
}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for (_, task) in lock(&self.shared.feeds).drain() {
            task.abort();
        }
    }
}

/// Builds the API client from a kubeconfig, or infers it (in-cluster, then `KUBECONFIG`).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| ClusterError::Kubeconfig {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ClusterError::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| ClusterError::Client(e.to_string()))
}

/// Starts the watches, the catalog builder and the reconciler; `app` serves from the first
/// complete sync on.
pub async fn start(args: ClusterArgs, app: Arc<App>) -> Result<ClusterHandle, ClusterError> {
    // rustls picks a process-wide provider only when exactly one is compiled in; say which.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let qps = NonZeroU32::new(args.options.api_qps)
        .ok_or_else(|| ClusterError::Usage("--api-qps must be at least 1".to_string()))?;
    let burst = NonZeroU32::new(args.options.api_burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let client = client(args.options.kubeconfig.as_deref()).await?;
    let metrics = app.metrics().clone();
    app.set_not_ready(&format!(
        "waiting for the ConfigMap {}/{} and the first list of namespaces and copies",
        args.config_map_namespace, args.config_map_name
    ));
    let shared = Arc::new(Shared {
        client,
        index: Arc::new(ClusterIndex::new()),
        app: app.clone(),
        metrics,
        args,
        limiter: RateLimiter::direct(Quota::per_second(qps).allow_burst(burst)),
        config: Mutex::new(ConfigState::default()),
        snapshot: ArcSwapOption::empty(),
        rebuild: Notify::new(),
        triggers: reconcile::Triggers::default(),
        feeds: Mutex::new(HashMap::new()),
        problems: Mutex::new(Vec::new()),
    });
    let writer = Arc::new(writer::Writer::new(shared.clone()));
    app.set_copier(Arc::new(writer::AdmissionCopier(writer.clone())));
    let tasks = vec![
        tokio::spawn(watches::namespaces(shared.clone())),
        tokio::spawn(watches::copies(shared.clone())),
        tokio::spawn(watches::config_map(shared.clone())),
        tokio::spawn(build_loop(shared.clone())),
        tokio::spawn(reconcile::run(shared.clone(), writer)),
    ];
    Ok(ClusterHandle { shared, tasks })
}

impl Shared {
    /// Waits for a slot under the client-side rate limit.
    async fn throttle(&self) {
        self.limiter.until_ready().await;
    }

    /// The snapshot being served, once there is one.
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }

    fn config_map_ref(&self) -> String {
        format!(
            "{}/{}",
            self.args.config_map_namespace, self.args.config_map_name
        )
    }

    /// Reads the config from the ConfigMap (`None`: it was deleted or never existed).
    fn config_seen(self: &Arc<Self>, cm: Option<&ConfigMap>) {
        let Some(cm) = cm else {
            let mut state = lock(&self.config);
            state.seen = None;
            let message = format!("ConfigMap {} not found", self.config_map_ref());
            if state.good.is_some() {
                tracing::warn!("{message}; still serving the last good config");
            } else {
                if state.missing.as_deref() != Some(message.as_str()) {
                    tracing::error!("{message}; nothing is injected until it exists");
                }
                self.app.set_not_ready(&message);
            }
            state.missing = Some(message);
            return;
        };
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(CONFIG_KEY))
            .map(String::as_str);
        let fingerprint = Fingerprint::of([text.unwrap_or("").as_bytes()]);
        let mut state = lock(&self.config);
        if state.seen.as_ref() == Some(&fingerprint) {
            return;
        }
        state.seen = Some(fingerprint);
        let parsed = match text {
            Some(text) => Config::from_raw_yaml(text).map_err(|e| e.to_string()),
            None => Err(format!("it has no key {CONFIG_KEY}")),
        };
        match parsed {
            Ok(config) => {
                let credentials = config.credentials.len();
                let config = Arc::new(config);
                state.good = Some((config.clone(), fingerprint));
                state.missing = None;
                drop(state);
                self.metrics.config_reload(true, Some(credentials));
                tracing::info!(
                    credentials,
                    "config loaded from ConfigMap {}",
                    self.config_map_ref()
                );
                self.follow_sources(&config);
                self.rebuild.notify_one();
                self.triggers.backfill_all();
            }
            Err(reason) => {
                let serving = state.good.is_some();
                let message = format!(
                    "invalid config in ConfigMap {}: {reason}",
                    self.config_map_ref()
                );
                if !serving {
                    state.missing = Some(message.clone());
                }
                drop(state);
                self.metrics.config_reload(false, None);
                if serving {
                    tracing::error!("{message}; still serving the last good config");
                } else {
                    tracing::error!("{message}; nothing is injected until it is fixed");
                    self.app.set_not_ready(&message);
                }
                let shared = self.clone();
                let cm = cm.clone();
                tokio::spawn(async move { shared.post_config_event(&cm, &reason, serving).await });
            }
        }
    }

    /// Records a Warning Event on the ConfigMap, where `kubectl describe` shows it.
    async fn post_config_event(&self, cm: &ConfigMap, reason: &str, serving: bool) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let consequence = if serving {
            "the last good configuration stays in force"
        } else {
            "nothing is injected until it is fixed"
        };
        let mut message = format!("invalid {CONFIG_KEY}, {consequence}: {reason}");
        // kube-apiserver refuses Event messages over 1 KiB.
        if message.len() > 1000 {
            let mut cut = 990;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" ...");
        }
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", self.args.config_map_name)),
                namespace: Some(self.args.config_map_namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("ConfigMap".to_string()),
                name: Some(self.args.config_map_name.clone()),
                namespace: Some(self.args.config_map_namespace.clone()),
                uid: cm.metadata.uid.clone(),
                resource_version: cm.metadata.resource_version.clone(),
                ..Default::default()
            },
            reason: Some("InvalidConfig".to_string()),
            message: Some(message),
            type_: Some("Warning".to_string()),
            source: Some(EventSource {
                component: Some(FIELD_MANAGER.to_string()),
                host: None,
            }),
            reporting_component: Some(FIELD_MANAGER.to_string()),
            reporting_instance: std::env::var("POD_NAME").ok(),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        self.throttle().await;
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.args.config_map_namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => self.metrics.api_write("create_event"),
            Err(e) => {
                self.metrics.reconcile_error("create_event");
                tracing::warn!(
                    "cannot record an Event on ConfigMap {}: {}",
                    self.config_map_ref(),
                    writer::describe(&e)
                );
            }
        }
    }

    /// Starts watches for the sources the config names and stops those it no longer names.
    fn follow_sources(self: &Arc<Self>, config: &Config) {
        let wanted = source_feeds(config);
        let mut feeds = lock(&self.feeds);
        let stale: Vec<Feed> = feeds
            .keys()
            .filter(|f| !wanted.contains(*f))
            .cloned()
            .collect();
        for feed in stale {
            if let Some(task) = feeds.remove(&feed) {
                task.abort();
            }
            self.index.write().remove_feed(&feed);
        }
        for feed in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = feeds.entry(feed) {
                let task = watches::secrets(self.clone(), slot.key().clone());
                slot.insert(task);
            }
        }
    }

    /// Compiles the config against the index and serves it, once every watch it depends on
    /// has listed.
    fn rebuild_now(&self) {
        let config = {
            let state = lock(&self.config);
            match &state.good {
                Some((config, _)) => config.clone(),
                None => return,
            }
        };
        let mut required = vec![Feed::Namespaces, Feed::Copies];
        required.extend(source_feeds(&config));
        let ix = self.index.read();
        let waiting: Vec<String> = required
            .iter()
            .filter(|f| !ix.is_synced(f))
            .map(feed_name)
            .collect();
        if !waiting.is_empty() {
            // Once serving, the previous catalog stays until new sources have listed.
            if !self.app.is_ready() {
                self.app.set_not_ready(&format!(
                    "waiting for the first list of {}",
                    waiting.join(", ")
                ));
            }
            return;
        }
        let catalog = Catalog::build(
            (*config).clone(),
            &*ix,
            Some(self.args.own_namespace.as_str()),
        );
        drop(ix);
        let problems = catalog.problems();
        {
            let mut last = lock(&self.problems);
            if *last != problems {
                for problem in &problems {
                    tracing::warn!("config: {problem}");
                }
                *last = problems;
            }
        }
        let snapshot = Arc::new(Snapshot {
            catalog,
            view: View::Live(self.index.clone()),
        });
        let first = self.snapshot.swap(Some(snapshot.clone())).is_none();
        self.app.serve_snapshot(snapshot);
        if first {
            tracing::info!("caches synced; serving admissions");
        }
        self.triggers.sync();
    }
}

/// The watch each source of the config needs.
fn source_feeds(config: &Config) -> BTreeSet<Feed> {
    config
        .credentials
        .iter()
        .map(|c| match &c.source {
            Source::Secret { namespace, name } => Feed::SourceNamed {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            Source::SecretSelector {
                namespace,
                selector,
            } => Feed::SourceSelected {
                namespace: namespace.clone(),
                labels: selector.to_query(),
            },
            Source::LocalSecretSelector { selector } => Feed::Locals {
                labels: selector.to_query(),
            },
        })
        .collect()
}

fn feed_name(feed: &Feed) -> String {
    match feed {
        Feed::Namespaces => "namespaces".to_string(),
        Feed::Copies => "copies".to_string(),
        Feed::SourceNamed { namespace, name } => format!("secret {namespace}/{name}"),
        Feed::SourceSelected { namespace, labels } => {
            format!("secrets {labels} in namespace {namespace}")
        }
        Feed::Locals { labels } => format!("local secrets {labels}"),
    }
}

/// Rebuilds the catalog whenever a watch says something it depends on changed; bursts of
/// changes coalesce into one rebuild.
async fn build_loop(shared: Arc<Shared>) {
    loop {
        shared.rebuild.notified().await;
        shared.rebuild_now();
    }
}
