//! What the fuzz targets share: the docker-hub example's catalog and cluster, built once.

use std::path::Path;
use std::sync::OnceLock;

use pull_secret_injector::offline::{DEFAULT_OWN_NAMESPACE, load_cluster, load_config};
use pull_secret_injector::policy::Catalog;
use pull_secret_injector::view::ClusterState;

/// The docker-hub example (one credential for Docker Hub, namespace `shop` in scope).
pub fn docker_hub() -> (&'static Catalog, &'static ClusterState) {
    static SETUP: OnceLock<(Catalog, ClusterState)> = OnceLock::new();
    let (catalog, state) = SETUP.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/docker-hub");
        let config = load_config(&root.join("config.yaml")).expect("the example's config");
        let state = load_cluster(&[root.join("cluster")]).expect("the example's cluster");
        let catalog = Catalog::build(config, &state, Some(DEFAULT_OWN_NAMESPACE));
        (catalog, state)
    });
    (catalog, state)
}
