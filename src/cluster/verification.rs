//! Cluster mode's side of verification: the verifier ([`crate::verify`]) is handed the served
//! snapshot and the registries glob keys reached at admission, and hands back what it learnt,
//! which goes into the live index the decision reads, and Events on the source Secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::Shared;
use crate::admission::ports::RegistriesSeen;
use crate::admission::slot::Snapshot;
use crate::lock::lock;
use crate::verify::{Hooks, MAX_GLOB_REGISTRIES, Report};
use crate::view::Health;
use crate::view::health::utc;

/// The verifier's view of cluster mode.
pub(super) struct ClusterHooks(pub(super) Arc<Shared>);

impl Hooks for ClusterHooks {
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.0.snapshot()
    }

    fn glob_registries(&self) -> BTreeSet<(String, String)> {
        lock(&self.0.glob_registries)
            .iter()
            .flat_map(|(c, rs)| rs.iter().map(move |r| (c.clone(), r.clone())))
            .collect()
    }

    fn publish(&self, health: Health) {
        let withheld = |h: &Health| -> BTreeSet<(String, String)> {
            h.iter()
                .filter(|(_, _, r)| r.withheld())
                .map(|(c, r, _)| (c.to_string(), r.to_string()))
                .collect()
        };
        let mut ix = self.0.index.write();
        let before = withheld(ix.health());
        let after = withheld(&health);
        ix.set_health(health);
        drop(ix);
        // A credential withheld or given back changes what ServiceAccounts should hold.
        if before != after {
            self.0.triggers.backfill_all();
        }
    }

    fn report(&self, report: Report) {
        let shared = self.0.clone();
        tokio::spawn(async move {
            match report {
                Report::Rejected {
                    credential,
                    registry,
                    source,
                    detail,
                } => {
                    let message = format!(
                        "credential {credential}: {registry} rejects the login in this secret ({detail}); pods that use it cannot pull from {registry}, not even public images"
                    );
                    shared
                        .post_secret_event(&source, "CredentialRejected", message)
                        .await;
                }
                Report::ExpiresSoon {
                    credential,
                    registry,
                    source,
                    expires,
                } => {
                    let when = if expires <= crate::verify::now_unix() {
                        "expired"
                    } else {
                        "expires"
                    };
                    let message = format!(
                        "credential {credential}: the token this secret holds for {registry} {when} at {}; replace it before pods that use it fail to pull",
                        utc(expires)
                    );
                    shared
                        .post_secret_event(&source, "CredentialExpiresSoon", message)
                        .await;
                }
            }
        });
    }
}

/// Collects the registries glob keys reached, bounded per credential.
pub(super) struct Sightings(pub(super) Arc<Shared>);

impl RegistriesSeen for Sightings {
    fn seen(&self, registries: &[(String, String)]) {
        let mut seen = lock(&self.0.glob_registries);
        for (credential, registry) in registries {
            let set = seen.entry(credential.clone()).or_default();
            if set.len() < MAX_GLOB_REGISTRIES {
                set.insert(registry.clone());
            }
        }
    }
}

/// The registries glob keys reached, per credential.
pub(super) type GlobRegistries = BTreeMap<String, BTreeSet<String>>;
