//! What the reconciler should do with the copies that exist: compare each with the catalog,
//! and say which to update (their data or marks differ from their source's), which to delete
//! (no rule wants them, with `prune`), and how many are in each state. Pure: a function of the
//! catalog and the live index.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::catalog::Catalog;
use super::types::PreparedSource;
use crate::config::Source;
use crate::view::ClusterView;
use crate::view::live::Indexes;

/// How one managed copy stands against the current catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CopyState {
    /// Equal to its source.
    Current,
    /// Holds other data or marks than its source's: to update (rotation, or a tampered copy).
    Stale,
    /// Stale, and its last update was refused (an immutable copy, a webhook in the way):
    /// retried with backoff.
    Unwritable,
    /// Its source secret is gone: kept, reported.
    SourceMissing,
    /// Its source secret exists but no longer parses as a pull secret: kept (it still serves
    /// pulls, and an admin's typo must not prune every copy), reported.
    SourceUnusable,
    /// It names a `secretSelector` source this process never saw: kept, not alerted on (a
    /// tenant can write such marks; after a restart a vanished source looks the same).
    Orphaned,
    /// No rule wants it here any more: deleted when `prune` is on.
    Unwanted,
}

impl CopyState {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Current => "current",
            CopyState::Stale => "stale",
            CopyState::Unwritable => "unwritable",
            CopyState::SourceMissing => "source_missing",
            CopyState::SourceUnusable => "source_unusable",
            CopyState::Orphaned => "orphaned",
            CopyState::Unwanted => "unwanted",
        }
    }
}

/// What to do with the copies.
#[derive(Debug, Default)]
pub struct CopyPlan {
    /// Copies to bring to their source's content: namespace, source, resourceVersion seen.
    pub updates: Vec<(String, Arc<PreparedSource>, String)>,
    /// Copies to delete (only with `prune: true`): namespace, name, resourceVersion seen.
    pub deletes: Vec<(String, String, String)>,
    /// Copies by credential (a configured one: the index holds no other) and state.
    pub counts: BTreeMap<(String, &'static str), i64>,
    /// Per credential, sources that are gone while copies of them remain.
    pub missing_sources: BTreeMap<String, BTreeSet<String>>,
}

/// Compares every managed copy with the catalog. Copies in terminating or unknown namespaces
/// are left alone (nothing may be written there). `seen` holds the sources this process has
/// seen prepared: a copy of a `secretSelector` source outside it is orphaned, not missing.
pub fn plan_copies(catalog: &Catalog, ix: &Indexes, seen: &BTreeSet<String>) -> CopyPlan {
    let config = catalog.config();
    let mut wanted: HashMap<(&str, String), &Arc<PreparedSource>> = HashMap::new();
    for (credential, source) in catalog.prepared_sources() {
        wanted.insert((credential.name.as_str(), source.source_ref()), source);
    }
    let mut plan = CopyPlan::default();
    for (ns, name, copy) in ix.copies() {
        let Some(info) = ix.namespace(ns) else {
            continue;
        };
        if info.terminating {
            continue;
        }
        let credential = config.credential(copy.credential);
        let in_scope = credential.is_some_and(|c| c.namespaces.admits(ns, &info.labels))
            && catalog.namespace_exclusion(info).is_none();
        let state = match wanted.get(&(copy.credential, copy.source.to_string())) {
            _ if !in_scope => CopyState::Unwanted,
            Some(source) if source.copy_name != name => CopyState::Unwanted,
            Some(source)
                if copy.data_hash == Some(source.hash.as_str())
                    && copy.hash == Some(source.hash.as_str()) =>
            {
                CopyState::Current
            }
            Some(source) => {
                plan.updates.push((
                    ns.to_string(),
                    (*source).clone(),
                    copy.resource_version.to_string(),
                ));
                CopyState::Stale
            }
            None => {
                let exists = copy
                    .source
                    .split_once('/')
                    .is_some_and(|(sns, sname)| ix.secret(sns, sname).is_some());
                let selected =
                    credential.is_some_and(|c| matches!(c.source, Source::SecretSelector { .. }));
                if exists && catalog.source_unparsable(copy.credential, copy.source) {
                    CopyState::SourceUnusable
                } else if exists {
                    // The source is there but no longer selected, or selects no entry: the
                    // catalog's problems say why; the copy is not wanted from it.
                    CopyState::Unwanted
                } else if selected && !seen.contains(copy.source) {
                    CopyState::Orphaned
                } else {
                    plan.missing_sources
                        .entry(copy.credential.to_string())
                        .or_default()
                        .insert(copy.source.to_string());
                    CopyState::SourceMissing
                }
            }
        };
        if state == CopyState::Unwanted && config.prune {
            plan.deletes.push((
                ns.to_string(),
                name.to_string(),
                copy.resource_version.to_string(),
            ));
        }
        *plan
            .counts
            .entry((copy.credential.to_string(), state.as_str()))
            .or_default() += 1;
    }
    plan.updates
        .sort_by(|a, b| (&a.0, &a.1.copy_name).cmp(&(&b.0, &b.1.copy_name)));
    plan.deletes.sort();
    plan
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::config::Config;
    use crate::testing::{copy_of, feed, live_catalog as setup, stale};
    use crate::view::NamespaceInfo;
    use crate::view::live::{Feed, IndexRules};

    #[test]
    fn only_stale_copies_are_updated_and_terminating_namespaces_are_left_alone() {
        let (mut ix, catalog) = setup(false);
        ix.apply_copy(&copy_of(&catalog, "icr", "team-a", "5"));
        ix.apply_copy(&stale(copy_of(&catalog, "hub", "team-a", "6")));
        ix.apply_copy(&stale(copy_of(&catalog, "hub", "team-b", "7")));
        let plan = plan_copies(&catalog, &ix, &BTreeSet::new());
        let updates: Vec<_> = plan
            .updates
            .iter()
            .map(|(ns, s, rv)| (ns.as_str(), s.copy_name.as_str(), rv.as_str()))
            .collect();
        assert_eq!(updates, [("team-a", "hub", "6")]);
        assert_eq!(plan.counts[&("icr".to_string(), "current")], 1);
        assert_eq!(plan.counts[&("hub".to_string(), "stale")], 1);
        assert_eq!(plan.counts.len(), 2, "{:?}", plan.counts);
        assert!(plan.deletes.is_empty());
    }

    #[test]
    fn a_missing_source_keeps_its_copies_and_is_reported() {
        let (mut ix, catalog) = setup(true);
        ix.apply_copy(&copy_of(&catalog, "hub", "team-a", "5"));
        ix.delete_secret(&feed("hub"), "default", "hub");
        let catalog = Catalog::build(catalog.config().clone(), &ix, None);
        let plan = plan_copies(&catalog, &ix, &BTreeSet::new());
        assert!(
            plan.deletes.is_empty(),
            "copies of a vanished source are kept"
        );
        assert!(plan.updates.is_empty());
        assert_eq!(plan.counts[&("hub".to_string(), "source_missing")], 1);
        assert_eq!(
            plan.missing_sources["hub"],
            BTreeSet::from(["default/hub".to_string()])
        );
    }

    #[test]
    fn unwanted_copies_are_deleted_only_with_prune() {
        for prune in [false, true] {
            let (mut ix, catalog) = setup(prune);
            // Out of scope (namespace `other`).
            ix.apply_copy(&copy_of(&catalog, "icr", "other", "5"));
            // Marks of a credential the config does not have: not a copy at all, so never
            // counted, updated or deleted (a tenant can write such marks).
            let mut foreign = copy_of(&catalog, "icr", "team-a", "6");
            foreign.metadata.name = Some("retired".to_string());
            foreign
                .metadata
                .annotations
                .as_mut()
                .expect("annotations")
                .insert(
                    crate::marks::CREDENTIAL_ANNOTATION.to_string(),
                    "retired".to_string(),
                );
            assert!(!ix.apply_copy(&foreign));
            let plan = plan_copies(&catalog, &ix, &BTreeSet::new());
            assert_eq!(plan.counts[&("icr".to_string(), "unwanted")], 1);
            assert_eq!(plan.counts.len(), 1, "{:?}", plan.counts);
            let deletes: Vec<_> = plan
                .deletes
                .iter()
                .map(|(ns, n, rv)| (ns.as_str(), n.as_str(), rv.as_str()))
                .collect();
            if prune {
                assert_eq!(deletes, [("other", "all-icr-io", "5")]);
            } else {
                assert!(deletes.is_empty());
            }
        }
    }

    #[test]
    fn a_copy_whose_data_was_replaced_is_restored_even_with_its_marks_intact() {
        let (mut ix, catalog) = setup(false);
        let mut tampered = copy_of(&catalog, "icr", "team-a", "5");
        tampered.data = Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(br#"{"auths":{"icr.io":{"auth":"dGVuYW50OnB3"}}}"#.to_vec()),
        )]));
        ix.apply_copy(&tampered);
        let plan = plan_copies(&catalog, &ix, &BTreeSet::new());
        let updates: Vec<_> = plan
            .updates
            .iter()
            .map(|(ns, s, rv)| (ns.as_str(), s.copy_name.as_str(), rv.as_str()))
            .collect();
        assert_eq!(updates, [("team-a", "all-icr-io", "5")]);
        assert_eq!(plan.counts[&("icr".to_string(), "stale")], 1);
    }

    #[test]
    fn a_selector_copy_of_a_source_never_seen_is_orphaned_not_missing() {
        let config = Config::from_raw_yaml(
            r#"
credentials:
  - name: runai
    secretSelector: {namespace: runai, matchLabels: {a: b}}
    namespaces: {include: ["team-*"]}
"#,
        )
        .expect("config");
        let mut ix = Indexes::default();
        ix.set_rules(IndexRules::of(&config));
        ix.apply_namespace(&Feed::Namespaces, NamespaceInfo::named("team-a"));
        let catalog = Catalog::build(config, &ix, None);
        let copy = |name: &str| Secret {
            metadata: ObjectMeta {
                namespace: Some("team-a".to_string()),
                name: Some(name.to_string()),
                resource_version: Some("1".to_string()),
                labels: Some(crate::marks::copy_labels()),
                annotations: Some(crate::marks::copy_annotations(
                    "runai",
                    &format!("runai/{name}"),
                    "sha256:x",
                )),
                ..Default::default()
            },
            ..Default::default()
        };
        ix.apply_copy(&copy("ghost"));
        ix.apply_copy(&copy("gone"));
        let seen = BTreeSet::from(["runai/gone".to_string()]);
        let plan = plan_copies(&catalog, &ix, &seen);
        assert_eq!(plan.counts[&("runai".to_string(), "orphaned")], 1);
        assert_eq!(plan.counts[&("runai".to_string(), "source_missing")], 1);
        assert_eq!(
            plan.missing_sources["runai"],
            BTreeSet::from(["runai/gone".to_string()])
        );
    }

    #[test]
    fn copies_of_a_source_that_stopped_parsing_are_kept_even_with_prune() {
        let (mut ix, catalog) = setup(true);
        ix.apply_copy(&copy_of(&catalog, "hub", "team-a", "5"));
        let mut broken = crate::testing::source("hub", "docker.io");
        broken.data = Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(b"not json".to_vec()),
        )]));
        ix.apply_secret(&feed("hub"), broken);
        let catalog = Catalog::build(catalog.config().clone(), &ix, None);
        let plan = plan_copies(&catalog, &ix, &BTreeSet::new());
        assert!(plan.deletes.is_empty(), "{:?}", plan.deletes);
        assert_eq!(plan.counts[&("hub".to_string(), "source_unusable")], 1);
    }
}
