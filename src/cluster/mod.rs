//! Cluster mode: the only code that talks to the Kubernetes API.
//!
//! Watches keep an in-memory [`index::ClusterIndex`] of Namespaces, source and local secrets
//! and the injector's copies, and follow the config ConfigMap. Each change of the config or of
//! a source recompiles the [`Catalog`] and serves it; admissions then read only memory, and
//! make the copies they need through the [`writer`]. The [`reconcile`] loop keeps copies equal
//! to their sources, backfills ServiceAccounts and prunes.

pub mod api;
mod config_map;
mod events;
#[cfg(test)]
mod mock;
pub mod reconcile;
pub mod self_signed;
pub mod tokens;
mod verification;
mod watches;
pub mod writer;

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::admission::ports::{CopyMaker, NamespaceWait};
use crate::admission::slot::Slot;
use crate::admission::slot::Snapshot;
use crate::config::{Config, DEFAULT_CONFIG_MAP};
use crate::lock::lock;
use crate::metrics::Metrics;
use crate::reload::Fingerprint;

use crate::view::live::{ClusterIndex, Feed};

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
                    return Err(ClusterError::ConfigMapRef(text.clone()));
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
    /// The kubeconfig file cannot be read or used.
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// No usable client configuration (not in a cluster, no kubeconfig).
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(#[source] kube::config::InferConfigError),
    /// The client cannot be built from the configuration.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// `--config-map` is not `NAMESPACE/NAME`.
    #[error("--config-map {0:?}: expected NAMESPACE/NAME")]
    ConfigMapRef(String),
    /// A rate flag is zero.
    #[error("{0} must be at least 1")]
    ZeroRate(&'static str),
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
    /// The registries glob keys reached at admission, for the verifier.
    glob_registries: Mutex<verification::GlobRegistries>,
    /// Wakes the token minter when a new config is accepted.
    tokens_changed: Arc<Notify>,
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

    /// What hears of the registries glob keys reached at admission, for the HTTP server to call.
    pub fn registries_seen(&self) -> Arc<dyn crate::admission::ports::RegistriesSeen> {
        Arc::new(verification::Sightings(self.shared.clone()))
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
            let file = Kubeconfig::read_from(path).map_err(|source| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClusterError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?
        }
        None => kube::Config::infer().await.map_err(ClusterError::Config)?,
    };
    Client::try_from(config).map_err(ClusterError::Client)
}

/// Starts the watches, the catalog builder and the reconciler; `slot` serves from the first
/// complete sync on.
pub async fn start(args: ClusterArgs, slot: Arc<Slot>) -> Result<ClusterHandle, ClusterError> {
    // rustls picks a process-wide provider only when exactly one is compiled in; say which.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let qps = NonZeroU32::new(args.options.api_qps).ok_or(ClusterError::ZeroRate("--api-qps"))?;
    let burst = NonZeroU32::new(args.options.api_burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let admission_qps = NonZeroU32::new(args.options.admission_api_qps)
        .ok_or(ClusterError::ZeroRate("--admission-api-qps"))?;
    let admission_burst =
        NonZeroU32::new(args.options.admission_api_burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let client = client(args.options.kubeconfig.as_deref()).await?;
    slot.set_not_ready(&format!(
        "waiting for the ConfigMap {}/{} and the first list of namespaces and copies",
        args.config_map_namespace, args.config_map_name
    ));
    let shared = Arc::new(Shared::new(
        client,
        args,
        slot.clone(),
        RateLimiter::direct(Quota::per_second(qps).allow_burst(burst)),
        RateLimiter::direct(Quota::per_second(admission_qps).allow_burst(admission_burst)),
    ));
    let writer = Arc::new(writer::Writer::new(shared.clone()));
    let copier = Arc::new(writer::AdmissionCopier(writer.clone()));
    let tasks = vec![
        tokio::spawn(watches::namespaces(shared.clone())),
        tokio::spawn(watches::config_map(shared.clone())),
        tokio::spawn(config_map::build_loop(shared.clone())),
        tokio::spawn(reconcile::run(shared.clone(), writer)),
        tokio::spawn(crate::verify::run(
            Arc::new(verification::ClusterHooks(shared.clone())),
            shared.metrics.clone(),
        )),
        tokio::spawn(mint_tokens(shared.clone())),
    ];
    Ok(ClusterHandle {
        shared,
        copier,
        tasks,
    })
}

/// Runs the token minter of this replica (idle while no credential is minted).
async fn mint_tokens(shared: Arc<Shared>) {
    let providers = match tokens::Providers::new() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "token credentials cannot be minted");
            return;
        }
    };
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            // Outside a pod (a test, a workstation): unique per start, so that two replicas
            // in one process still elect one minter.
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            format!("pull-secret-injector-{:08x}", h.finish() as u32)
        });
    let minter = tokens::Minter::new(
        shared.client.clone(),
        tokens::MinterSettings {
            namespace: shared.args.own_namespace.clone(),
            identity,
        },
        Arc::new(providers),
        Arc::new(TokenNotices(shared.clone())),
        shared.metrics.clone(),
        Box::new(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u8(0);
            (h.finish() % 2001) as f64 / 1000.0 - 1.0
        }),
    );
    let index = shared.index.clone();
    let own = shared.args.own_namespace.clone();
    let minter = minter.observing(Arc::new(move |name: &str| {
        crate::view::ClusterView::secret(&*index.read(), &own, name)
            .and_then(|s| s.metadata.resource_version.clone())
    }));
    let changed = shared.tokens_changed.clone();
    let config = move || lock(&shared.config).good.as_ref().map(|(c, _)| c.clone());
    tokens::run(minter, config, changed).await;
}

/// The minter's Warnings, as Events on the ConfigMap.
struct TokenNotices(Arc<Shared>);

impl tokens::Notices for TokenNotices {
    fn warn(&self, reason: &'static str, message: String) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(self.0.post_event(reason, message))
    }
}

impl Shared {
    /// What cluster mode shares, before any watch has reported anything. One constructor for
    /// [`start`] and the unit tests, so that the tests exercise the state production builds.
    fn new(
        client: Client,
        args: ClusterArgs,
        slot: Arc<Slot>,
        limiter: DefaultDirectRateLimiter,
        admission_limiter: DefaultDirectRateLimiter,
    ) -> Shared {
        Shared {
            client,
            index: Arc::new(ClusterIndex::new()),
            metrics: slot.metrics().clone(),
            slot,
            args,
            limiter,
            admission_limiter,
            config: Mutex::new(ConfigState::default()),
            snapshot: ArcSwapOption::empty(),
            rebuild: Notify::new(),
            triggers: reconcile::Triggers::default(),
            namespaces_seen: tokio::sync::watch::Sender::new(0),
            feeds: Mutex::new(HashMap::new()),
            prepared: Mutex::new(None),
            glob_registries: Mutex::new(Default::default()),
            tokens_changed: Arc::new(Notify::new()),
        }
    }

    /// A `Shared` around `client` (a scripted mock, in the unit tests) with no watch running
    /// and a slot waiting for the ConfigMap. With `config_yaml`, the index admits the copies
    /// that config accounts for, as once the config watch reported it; the config itself is
    /// not taken as seen (`config_seen` is what the config tests drive).
    #[cfg(test)]
    fn for_tests(client: Client, args: ClusterArgs, config_yaml: Option<&str>) -> Arc<Shared> {
        let rate = |per_second: u32, burst: u32| {
            let per_second = NonZeroU32::new(per_second).expect("a non-zero rate");
            let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst))
        };
        let limiter = rate(args.options.api_qps, args.options.api_burst);
        let admission_limiter = rate(
            args.options.admission_api_qps,
            args.options.admission_api_burst,
        );
        let slot = Slot::new(
            Arc::new(Metrics::new()),
            &format!(
                "waiting for the ConfigMap {}/{}",
                args.config_map_namespace, args.config_map_name
            ),
        );
        let shared = Shared::new(client, args, slot, limiter, admission_limiter);
        if let Some(text) = config_yaml {
            let config = Config::from_raw_yaml(text).expect("the test's config is valid");
            shared
                .index
                .write()
                .set_rules(crate::view::live::IndexRules::of(&config));
        }
        Arc::new(shared)
    }

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
