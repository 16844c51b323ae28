//! Fixtures shared by the unit tests of several modules.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::Config;
use crate::policy::Catalog;
use crate::view::NamespaceInfo;
use crate::view::live::{Feed, IndexRules, Indexes};

/// Two copied credentials for `team-*` (`PRUNE` stands for the prune setting).
pub(crate) const LIVE_CONFIG: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    namespaces: {include: ["team-*"]}
  - name: hub
    secret: default/hub
    namespaces: {include: ["team-*"]}
prune: PRUNE
"#;

/// A FAKE `.dockerconfigjson` source in `default` with one entry.
pub(crate) fn source(name: &str, registry: &str) -> Secret {
    let json = format!(r#"{{"auths":{{"{registry}":{{"auth":"dTpw"}}}}}}"#);
    Secret {
        metadata: ObjectMeta {
            namespace: Some("default".to_string()),
            name: Some(name.to_string()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".to_string()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(json.into_bytes()),
        )])),
        ..Default::default()
    }
}

/// The watch of one named source in `default`.
pub(crate) fn feed(name: &str) -> Feed {
    Feed::SourceNamed {
        namespace: "default".into(),
        name: name.into(),
    }
}

/// An index with both sources, namespaces team-a, team-b (terminating) and other, and a
/// catalog built from it.
pub(crate) fn live_catalog(prune: bool) -> (Indexes, Catalog) {
    let config =
        Config::from_raw_yaml(&LIVE_CONFIG.replace("PRUNE", &prune.to_string())).expect("config");
    let mut ix = Indexes::default();
    ix.set_rules(IndexRules::of(&config));
    ix.apply_secret(&feed("all-icr-io"), source("all-icr-io", "icr.io"));
    ix.apply_secret(&feed("hub"), source("hub", "docker.io"));
    for name in ["team-a", "other", "default"] {
        ix.apply_namespace(&Feed::Namespaces, NamespaceInfo::named(name));
    }
    let mut gone = NamespaceInfo::named("team-b");
    gone.terminating = true;
    ix.apply_namespace(&Feed::Namespaces, gone);
    let catalog = Catalog::build(config, &ix, Some("pull-secret-injector"));
    (ix, catalog)
}

/// The copy a credential's source makes in `ns`, at resourceVersion `rv`.
pub(crate) fn copy_of(catalog: &Catalog, credential: &str, ns: &str, rv: &str) -> Secret {
    let (_, source) = catalog
        .prepared_sources()
        .find(|(c, _)| c.name == credential)
        .expect("source");
    let mut copy = source.copy_secret(ns);
    copy.metadata.resource_version = Some(rv.to_string());
    copy
}

/// A copy whose content-hash annotation is out of date.
pub(crate) fn stale(mut copy: Secret) -> Secret {
    copy.metadata
        .annotations
        .as_mut()
        .expect("annotations")
        .insert(
            crate::marks::CONTENT_HASH_ANNOTATION.to_string(),
            "old".to_string(),
        );
    copy
}
