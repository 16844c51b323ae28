//! Cluster mode: the only code that talks to the Kubernetes API.
//!
//! Watches keep an in-memory [`index::ClusterIndex`] of Namespaces, source and local secrets
//! and the injector's copies, and follow the config ConfigMap. Each change of the config or of
//! a source recompiles the [`Catalog`] and serves it; admissions then read only memory, and
//! make the copies they need through the [`writer`]. The [`reconcile`] loop keeps copies equal
//! to their sources, backfills ServiceAccounts and prunes.

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

use crate::admission::ports::{CopyMaker, NamespaceWait};
use crate::admission::slot::Slot;
use crate::admission::slot::{Snapshot, View};
use crate::config::{CONFIG_KEY, Config, DEFAULT_CONFIG_MAP, Source};
use crate::lock::lock;
use crate::metrics::Metrics;
use crate::policy::Catalog;
use crate::reload::Fingerprint;

use crate::view::live::{self, ClusterIndex, Feed, IndexRules};

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
    /// Sustained API requests per second for copies admissions wait for: a budget of their
    /// own, so that the reconciler's backlog (or a flood of reviews) cannot starve them.
    pub admission_api_qps: u32,
    /// Burst above `admission_api_qps`.
    pub admission_api_burst: u32,
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
            admission_api_qps: 20,
            admission_api_burst: 40,
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
    /// The ConfigMap last seen (uid, resourceVersion), for Events about it.
    object: Option<(Option<String>, Option<String>)>,
}

/// What the watches, the admission copier and the reconciler share.
pub(crate) struct Shared {
    client: Client,
    index: Arc<ClusterIndex>,
    slot: Arc<Slot>,
    metrics: Arc<Metrics>,
    args: ClusterArgs,
    limiter: DefaultDirectRateLimiter,
    admission_limiter: DefaultDirectRateLimiter,
    config: Mutex<ConfigState>,
    snapshot: ArcSwapOption<Snapshot>,
    rebuild: Notify,
    triggers: reconcile::Triggers,
    /// Bumped at every Namespace the watch reports, for admissions waiting to learn of one.
    namespaces_seen: tokio::sync::watch::Sender<u64>,
    feeds: Mutex<HashMap<Feed, JoinHandle<()>>>,
    /// The sources the last catalog prepared, so that a rebuild that changes which secrets
    /// are injected (a new secret a `secretSelector` selects, a source that reappears)
    /// backfills every ServiceAccount without waiting for a config change.
    prepared: Mutex<Option<BTreeSet<(String, String, String)>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

/// A running cluster mode; dropping it stops the watches and the reconciler.
#[derive(Debug)]
pub struct ClusterHandle {
    shared: Arc<Shared>,
    copier: Arc<writer::AdmissionCopier>,
    tasks: Vec<JoinHandle<()>>,
}

impl ClusterHandle {
    /// The index the watches keep (for tests and benchmarks).
    pub fn index(&self) -> &Arc<ClusterIndex> {
        &self.shared.index
    }

    /// What makes the copies an admission needs, for the HTTP server to call.
    pub fn copier(&self) -> Arc<dyn CopyMaker> {
        self.copier.clone()
    }

    /// What waits for the Namespace watch to learn of a namespace, for the HTTP server to call.
    pub fn namespace_wait(&self) -> Arc<dyn NamespaceWait> {
        Arc::new(NamespaceWaiter(self.shared.clone()))
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

/// Starts the watches, the catalog builder and the reconciler; `slot` serves from the first
/// complete sync on.
pub async fn start(args: ClusterArgs, slot: Arc<Slot>) -> Result<ClusterHandle, ClusterError> {
    // rustls picks a process-wide provider only when exactly one is compiled in; say which.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let qps = NonZeroU32::new(args.options.api_qps)
        .ok_or_else(|| ClusterError::Usage("--api-qps must be at least 1".to_string()))?;
    let burst = NonZeroU32::new(args.options.api_burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let admission_qps = NonZeroU32::new(args.options.admission_api_qps)
        .ok_or_else(|| ClusterError::Usage("--admission-api-qps must be at least 1".to_string()))?;
    let admission_burst =
        NonZeroU32::new(args.options.admission_api_burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let client = client(args.options.kubeconfig.as_deref()).await?;
    let metrics = slot.metrics().clone();
    slot.set_not_ready(&format!(
        "waiting for the ConfigMap {}/{} and the first list of namespaces and copies",
        args.config_map_namespace, args.config_map_name
    ));
    let shared = Arc::new(Shared {
        client,
        index: Arc::new(ClusterIndex::new()),
        slot: slot.clone(),
        metrics,
        args,
        limiter: RateLimiter::direct(Quota::per_second(qps).allow_burst(burst)),
        admission_limiter: RateLimiter::direct(
            Quota::per_second(admission_qps).allow_burst(admission_burst),
        ),
        config: Mutex::new(ConfigState::default()),
        snapshot: ArcSwapOption::empty(),
        rebuild: Notify::new(),
        triggers: reconcile::Triggers::default(),
        namespaces_seen: tokio::sync::watch::Sender::new(0),
        feeds: Mutex::new(HashMap::new()),
        prepared: Mutex::new(None),
    });
    let writer = Arc::new(writer::Writer::new(shared.clone()));
    let copier = Arc::new(writer::AdmissionCopier(writer.clone()));
    let tasks = vec![
        tokio::spawn(watches::namespaces(shared.clone())),
        tokio::spawn(watches::config_map(shared.clone())),
        tokio::spawn(build_loop(shared.clone())),
        tokio::spawn(reconcile::run(shared.clone(), writer)),
    ];
    Ok(ClusterHandle {
        shared,
        copier,
        tasks,
    })
}

impl Shared {
    /// Waits for a slot under the client-side rate limit.
    async fn throttle(&self) {
        self.limiter.until_ready().await;
    }

    /// Waits for a slot under the admission copies' own rate limit.
    async fn throttle_admission(&self) {
        self.admission_limiter.until_ready().await;
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
            drop(state);
            let message = format!("ConfigMap {} not found", self.config_map_ref());
            self.slot.config_refused(&message);
            return;
        };
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(CONFIG_KEY))
            .map(String::as_str);
        let fingerprint = Fingerprint::of([text.unwrap_or("").as_bytes()]);
        let mut state = lock(&self.config);
        state.object = Some((
            cm.metadata.uid.clone(),
            cm.metadata.resource_version.clone(),
        ));
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
                let config = Arc::new(config);
                state.good = Some((config.clone(), fingerprint));
                drop(state);
                self.slot
                    .config_accepted(&format!("ConfigMap {}", self.config_map_ref()), &config);
                self.follow_config(&config);
                self.rebuild.notify_one();
                self.triggers.backfill_all();
            }
            Err(reason) => {
                let serving = state.good.is_some();
                drop(state);
                let message = format!(
                    "invalid config in ConfigMap {}: {reason}",
                    self.config_map_ref()
                );
                if !self.slot.config_refused(&message) {
                    return;
                }
                let consequence = if serving {
                    "the last good configuration stays in force"
                } else {
                    "nothing is injected until it is fixed"
                };
                let message = format!("invalid {CONFIG_KEY}, {consequence}: {reason}");
                let shared = self.clone();
                tokio::spawn(async move { shared.post_event("InvalidConfig", message).await });
            }
        }
    }

    /// Records a Warning Event on the ConfigMap, where `kubectl describe` shows it.
    async fn post_event(&self, reason: &str, mut message: String) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        // kube-apiserver refuses Event messages over 1 KiB.
        if message.len() > 1000 {
            let mut cut = 990;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" ...");
        }
        let (uid, resource_version) = lock(&self.config).object.clone().unwrap_or_default();
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
                uid,
                resource_version,
                ..Default::default()
            },
            reason: Some(reason.to_string()),
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

    /// Starts the watches the config needs (its sources, the ServiceAccounts it names, the
    /// copies) and stops those it no longer needs. When what the index admits changes, the
    /// copies and ServiceAccounts watches list again: what was ignored may count now.
    fn follow_config(self: &Arc<Self>, config: &Config) {
        let relist = self.index.write().set_rules(IndexRules::of(config));
        let mut wanted = source_feeds(config);
        wanted.extend(live::service_account_feeds(config));
        wanted.insert(Feed::Copies);
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
            let restart = relist && matches!(feed, Feed::Copies | Feed::ServiceAccounts { .. });
            if restart && let Some(task) = feeds.remove(&feed) {
                task.abort();
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = feeds.entry(feed) {
                let task = match slot.key() {
                    Feed::Copies => watches::copies(self.clone()),
                    Feed::ServiceAccounts { .. } => {
                        watches::service_accounts(self.clone(), slot.key().clone())
                    }
                    other => watches::secrets(self.clone(), other.clone()),
                };
                slot.insert(task);
            }
        }
    }

    /// Whether every ServiceAccount watch the config needs has listed: a full backfill before
    /// that would miss the ServiceAccounts not listed yet (it runs again when they are).
    fn service_accounts_synced(&self, config: &Config) -> bool {
        let ix = self.index.read();
        live::service_account_feeds(config)
            .iter()
            .all(|f| ix.is_synced(f))
    }

    /// Compiles the config against the index and serves it, once every watch it depends on
    /// has listed.
    fn rebuild_now(self: &Arc<Self>) {
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
            if !self.slot.is_serving() {
                self.slot.set_not_ready(&format!(
                    "waiting for the first list of {}",
                    waiting.join(", ")
                ));
            }
            return;
        }
        let previous = self.snapshot();
        let catalog = Catalog::build_after(
            (*config).clone(),
            &*ix,
            Some(self.args.own_namespace.as_str()),
            previous.as_ref().map(|s| &s.catalog),
        );
        drop(ix);
        let mut counts: std::collections::BTreeMap<(String, &'static str), i64> =
            Default::default();
        for problem in catalog.credential_problems() {
            *counts
                .entry((problem.credential, problem.reason.as_str()))
                .or_default() += 1;
        }
        self.metrics.set_credential_problems(&counts);
        let credential_messages: Vec<String> = catalog
            .credential_problems()
            .into_iter()
            .map(|p| p.message)
            .collect();
        let prepared: BTreeSet<(String, String, String)> = catalog
            .prepared_sources()
            .map(|(c, s)| (c.name.clone(), s.source_ref(), s.copy_name.clone()))
            .collect();
        let sources_changed = lock(&self.prepared)
            .replace(prepared.clone())
            .is_some_and(|before| before != prepared);
        let snapshot = Arc::new(Snapshot {
            catalog,
            view: View::Live(self.index.clone()),
        });
        let first = self.snapshot.swap(Some(snapshot.clone())).is_none();
        let fresh = self.slot.publish(snapshot);
        // Admins read the whole story in the ConfigMap's Events; tenants' admission warnings
        // only name the credential.
        let events: Vec<String> = credential_messages
            .into_iter()
            .filter(|m| fresh.contains(m))
            .collect();
        if !events.is_empty() {
            let shared = self.clone();
            tokio::spawn(async move {
                for message in events {
                    shared.post_event("CredentialUnusable", message).await;
                }
            });
        }
        if first {
            tracing::info!("caches synced; serving admissions");
        }
        if sources_changed {
            self.triggers.backfill_all();
        }
        self.triggers.sync();
    }
}

/// How long an admission for a namespace the index does not know waits for the Namespace
/// watch to report it: the watch event of a new namespace lags its `default` ServiceAccount's
/// admission by milliseconds, while a forged review for a namespace that does not exist
/// should hold its slot only briefly (and costs no API call either way).
const NAMESPACE_WAIT: Duration = Duration::from_millis(500);

/// Lets admissions wait for the Namespace watch (see [`NAMESPACE_WAIT`]).
struct NamespaceWaiter(Arc<Shared>);

impl NamespaceWait for NamespaceWaiter {
    fn wait_for<'a>(&'a self, namespace: &'a str) -> futures::future::BoxFuture<'a, bool> {
        Box::pin(async move {
            let shared = &self.0;
            let bound = NAMESPACE_WAIT.min(shared.args.options.copy_timeout);
            let mut seen = shared.namespaces_seen.subscribe();
            let known =
                || crate::view::ClusterView::namespace(&*shared.index.read(), namespace).is_some();
            let wait = async {
                loop {
                    if known() {
                        return true;
                    }
                    if seen.changed().await.is_err() {
                        return false;
                    }
                }
            };
            tokio::time::timeout(bound, wait).await.unwrap_or(false)
        })
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
        Feed::ServiceAccounts { name: Some(name) } => format!("ServiceAccounts named {name}"),
        Feed::ServiceAccounts { name: None } => "ServiceAccounts".to_string(),
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
