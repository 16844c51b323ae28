//! What an admission is answered from: a compiled config and a view of the cluster, either a
//! fixed one read from files or the live index the watches keep.

use std::sync::Arc;

use crate::policy::Catalog;
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
