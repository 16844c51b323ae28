//! Cluster mode's config: the ConfigMap as the watch reports it, the watches it makes
//! necessary, and the catalog compiled from it and the index, served through the slot. A
//! change of the config or of a source rebuilds the catalog once (bursts coalesce).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{Shared, watches};
use crate::admission::slot::{Snapshot, View};
use crate::config::{CONFIG_KEY, Config};
use crate::lock::lock;
use crate::policy::Catalog;
use crate::reload::Fingerprint;
use crate::view::live::{self, Feed, IndexRules, source_feeds};

impl Shared {
    /// Reads the config from the ConfigMap (`None`: it was deleted or never existed).
    pub(super) fn config_seen(self: &Arc<Self>, cm: Option<&ConfigMap>) {
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
            Some(text) => Config::from_raw_yaml(text)
                .map(|c| c.place_minted(&self.args.own_namespace))
                .map_err(|e| e.to_string()),
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
                self.tokens_changed.notify_one();
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
                // The version refused, not whichever is current when the Event is posted.
                let object = (
                    cm.metadata.uid.clone(),
                    cm.metadata.resource_version.clone(),
                );
                tokio::spawn(async move {
                    shared
                        .post_event_about("InvalidConfig", message, Some(object))
                        .await
                });
            }
        }
    }

    /// Starts the watches the config needs (its sources, the ServiceAccounts it names, the
    /// copies) and stops those it no longer needs. When what the index admits changes, the
    /// copies and ServiceAccounts watches list again: what was ignored may count now.
    pub(super) fn follow_config(self: &Arc<Self>, config: &Config) {
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
        for feed in &stale {
            if let Some(task) = feeds.remove(feed) {
                task.abort();
            }
            self.index.write().remove_feed(feed);
        }
        // A kind of watch the config needs no more stops reporting when it last listed, or
        // its frozen timestamp would look like a stalled watch.
        for feed in &stale {
            let kind = watches::kind(feed);
            if !wanted.iter().any(|f| watches::kind(f) == kind) {
                self.metrics.watch_stopped(kind.as_str());
            }
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
    pub(super) fn service_accounts_synced(&self, config: &Config) -> bool {
        let ix = self.index.read();
        live::service_account_feeds(config)
            .iter()
            .all(|f| ix.is_synced(f))
    }

    /// Compiles the config against the index and serves it, once every watch it depends on
    /// has listed.
    pub(super) fn rebuild_now(self: &Arc<Self>) {
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
pub(super) async fn build_loop(shared: Arc<Shared>) {
    loop {
        shared.rebuild.notified().await;
        shared.rebuild_now();
    }
}

#[cfg(test)]
mod tests;
