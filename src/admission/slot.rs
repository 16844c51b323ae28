//! What an admission is answered from: a [`Snapshot`] (a compiled config and a view of the
//! cluster, either a fixed one read from files or the live index the watches keep), held in the
//! [`Slot`] that whoever loads configs (file mode, cluster mode) fills and the HTTP server
//! reads. The slot also holds why nothing is served yet, and is the one place that reacts to a
//! config load: the log line, the metric, readiness.

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::Catalog;
use crate::reload::ReportOnce;
use crate::view::live::ClusterIndex;
use crate::view::{ClusterState, ClusterView};

/// The cluster state behind a snapshot.
pub enum View {
    /// Read from manifest files (file mode); fixed until the next snapshot.
    Files(ClusterState),
    /// Kept current by watches (cluster mode).
    Live(Arc<ClusterIndex>),
}

impl View {
    /// Runs `f` on a consistent view. A live view is locked for reading meanwhile, so `f`
    /// must be short and must not wait.
    pub fn read<R>(&self, f: impl FnOnce(&dyn ClusterView) -> R) -> R {
        match self {
            View::Files(state) => f(state),
            View::Live(index) => f(&*index.read()),
        }
    }
}

/// A config compiled against a cluster view: everything an admission needs.
pub struct Snapshot {
    /// The compiled config.
    pub catalog: Catalog,
    /// The cluster state the decision reads.
    pub view: View,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("credentials", &self.catalog.config().credentials.len())
            .field(
                "view",
                &match &self.view {
                    View::Files(_) => "files",
                    View::Live(_) => "live",
                },
            )
            .finish()
    }
}

impl Snapshot {
    /// A snapshot that injects nothing: what reviews are answered from while nothing is
    /// loaded.
    pub fn empty() -> Snapshot {
        let state = ClusterState::new();
        Snapshot {
            catalog: Catalog::build(Config::empty(), &state, None),
            view: View::Files(state),
        }
    }
}

/// The snapshot being served, and why there is none while there is none.
pub struct Slot {
    snapshot: ArcSwapOption<Snapshot>,
    not_ready: ArcSwap<String>,
    metrics: Arc<Metrics>,
    /// The config failure last reported.
    refused: ReportOnce,
    /// The problems of the catalog last published, so that a republish with the same ones is
    /// quiet.
    problems: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("serving", &self.is_serving())
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// An empty slot: not ready for `reason`.
    pub fn new(metrics: Arc<Metrics>, reason: &str) -> Arc<Slot> {
        Arc::new(Slot {
            snapshot: ArcSwapOption::empty(),
            not_ready: ArcSwap::from_pointee(reason.to_string()),
            metrics,
            refused: ReportOnce::default(),
            problems: Mutex::new(Vec::new()),
        })
    }

    /// The metrics everything reports to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The snapshot served now, if any.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }

    /// Whether a snapshot is served.
    pub fn is_serving(&self) -> bool {
        self.snapshot.load().is_some()
    }

    /// Why nothing is served (meaningful while [`Slot::is_serving`] is false).
    pub fn not_ready_reason(&self) -> Arc<String> {
        self.not_ready.load_full()
    }

    /// Records why nothing is served yet; once a snapshot is served the last good one stays,
    /// and this only changes what `/readyz` would say were it to go.
    pub fn set_not_ready(&self, reason: &str) {
        self.not_ready.store(Arc::new(reason.to_string()));
    }

    /// A config was read and is valid (`origin` names where from): counted and logged. The
    /// snapshot built from it is served by [`Slot::publish`], now (file mode) or once its
    /// sources are listed (cluster mode).
    pub fn config_accepted(&self, origin: &str, config: &Config) {
        self.refused.clear();
        let credentials = config.credentials.len();
        self.metrics.config_reload(true, Some(credentials));
        tracing::info!(credentials, "config loaded from {origin}");
    }

    /// A config could not be used (`message` says why): counted and logged once per distinct
    /// failure; while nothing is served, it is why. Returns whether it was reported now (so
    /// the caller adds its own report, an Event say, once too).
    pub fn config_refused(&self, message: &str) -> bool {
        let serving = self.is_serving();
        if !serving {
            self.set_not_ready(message);
        }
        if !self.refused.first_time(message) {
            return false;
        }
        self.metrics.config_reload(false, None);
        if serving {
            tracing::error!("{message}; still serving the last good config");
        } else {
            tracing::error!("{message}; nothing is injected until it is fixed");
        }
        true
    }

    /// Serves `snapshot` from the next request on, logging the problems of its catalog that
    /// differ from the last published; returns the problems not seen in the last one.
    pub fn publish(&self, snapshot: Arc<Snapshot>) -> Vec<String> {
        let problems = snapshot.catalog.problems();
        let fresh = {
            let mut last = crate::lock::lock(&self.problems);
            if *last == problems {
                Vec::new()
            } else {
                for problem in &problems {
                    tracing::warn!("config: {problem}");
                }
                let fresh = problems
                    .iter()
                    .filter(|p| !last.contains(p))
                    .cloned()
                    .collect();
                *last = problems;
                fresh
            }
        };
        self.snapshot.store(Some(snapshot));
        fresh
    }
}
