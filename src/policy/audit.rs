//! What already runs without what the injector would give it today: pods created before it was
//! installed, while it was down or before a credential covered their namespace; ServiceAccounts
//! that lack a credential; copies that are stale or that nothing accounts for; credentials that
//! cannot be used. Pure: decides on a snapshot, as the webhook would, and writes nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use super::catalog::Catalog;
use super::types::{Subject, SubjectKind};
use crate::view::{ClusterState, ClusterView, NamespaceInfo, ProbeState};
use crate::workload::Workload;

/// Everything `audit` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    /// Pods that lack pull secrets, grouped by namespace and owner.
    pub pods: Vec<PodGroup>,
    /// ServiceAccounts that lack pull secrets.
    pub service_accounts: Vec<ServiceAccountFinding>,
    /// Copies that are not current.
    pub copies: Vec<CopyFinding>,
    /// Credentials that cannot be used, or that a registry rejects.
    pub credentials: Vec<CredentialFinding>,
}

impl Audit {
    /// Whether anything was found.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
            && self.service_accounts.is_empty()
            && self.copies.is_empty()
            && self.credentials.is_empty()
    }
}

/// Pods of one owner in one namespace that lack the same secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodGroup {
    /// The namespace.
    pub namespace: String,
    /// `Deployment/api`, `StatefulSet/db`, `Pod/debug` (a pod without a controller).
    pub owner: String,
    /// The pods.
    pub pods: Vec<String>,
    /// The secrets the injector would add to them today.
    pub lacks: Vec<String>,
    /// The credentials behind those secrets.
    pub credentials: Vec<String>,
    /// What makes new pods that have them (a command never run by `audit`).
    pub fix: String,
}

/// A ServiceAccount that lacks pull secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountFinding {
    /// The namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub name: String,
    /// The secrets the injector would add.
    pub lacks: Vec<String>,
}

/// A copy that is not current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyFinding {
    /// The namespace.
    pub namespace: String,
    /// The copy's name.
    pub name: String,
    /// The credential its marks name.
    pub credential: String,
    /// `stale`, `sourceMissing`, `sourceUnusable`, `orphaned` or `unwanted`.
    pub state: &'static str,
    /// What that means here.
    pub why: String,
}

/// A credential that cannot be used, or is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialFinding {
    /// The credential.
    pub credential: String,
    /// `source_missing`, `source_invalid`, `source_empty`, `credential_rejected`.
    pub reason: &'static str,
    /// What is wrong, for admins (names the source).
    pub message: String,
}

impl Catalog {
    /// Audits `state` and the pods in `pods` (those whose phase is `Succeeded` or `Failed` are
    /// done and left out) against this catalog.
    pub fn audit(&self, state: &ClusterState, pods: &[Workload]) -> Audit {
        let mut audit = Audit::default();
        let namespace = |name: &str| {
            state
                .namespace(name)
                .cloned()
                .unwrap_or_else(|| NamespaceInfo::named(name))
        };
        let mut groups: BTreeMap<(String, String), PodGroup> = BTreeMap::new();
        for pod in pods.iter().filter(|p| p.kind == "Pod" && !p.finished) {
            let ns_name = pod
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string());
            let ns = namespace(&ns_name);
            let subject = Subject {
                kind: SubjectKind::Pod,
                name: None,
                images: pod.images.iter().map(String::as_str).collect(),
                existing: pod.pull_secrets.iter().map(String::as_str).collect(),
                labels: Some(&pod.labels),
                annotations: Some(&pod.annotations),
            };
            let decision = self.decide(&subject, &ns, state, true);
            if decision.skipped.is_some() || decision.add.is_empty() {
                continue;
            }
            let owner = pod
                .owner
                .clone()
                .unwrap_or_else(|| format!("Pod/{}", pod.name));
            let group = groups
                .entry((ns_name.clone(), owner.clone()))
                .or_insert_with(|| PodGroup {
                    namespace: ns_name.clone(),
                    fix: String::new(),
                    owner,
                    pods: Vec::new(),
                    lacks: Vec::new(),
                    credentials: Vec::new(),
                });
            group.pods.push(pod.name.clone());
            for name in decision.add {
                if !group.lacks.contains(&name) {
                    group.lacks.push(name);
                }
            }
            for c in decision.credentials {
                if !group.credentials.contains(&c) {
                    group.credentials.push(c);
                }
            }
        }
        audit.pods = groups
            .into_values()
            .map(|mut g| {
                g.fix = fix(&g);
                g
            })
            .collect();

        for ns in state.namespaces() {
            for sa in state.service_accounts_in(&ns.name) {
                let Some(name) = sa.metadata.name.as_deref() else {
                    continue;
                };
                let existing: Vec<&str> = sa
                    .image_pull_secrets
                    .iter()
                    .flatten()
                    .map(|r| r.name.as_str())
                    .collect();
                let subject = Subject {
                    kind: SubjectKind::ServiceAccount,
                    name: Some(name),
                    images: Vec::new(),
                    existing,
                    labels: sa.metadata.labels.as_ref(),
                    annotations: sa.metadata.annotations.as_ref(),
                };
                let decision = self.decide(&subject, ns, state, true);
                if decision.skipped.is_none() && !decision.add.is_empty() {
                    audit.service_accounts.push(ServiceAccountFinding {
                        namespace: ns.name.clone(),
                        name: name.to_string(),
                        lacks: decision.add,
                    });
                }
            }
        }

        audit.copies = self.audit_copies(state);

        for p in self.credential_problems() {
            audit.credentials.push(CredentialFinding {
                credential: p.credential,
                reason: p.reason.as_str(),
                message: p.message,
            });
        }
        for credential in &self.config.credentials {
            if !state.rejected_somewhere(&credential.name) {
                continue;
            }
            for (registry, health) in state.credential_health(&credential.name) {
                if health.state == ProbeState::Rejected {
                    audit.credentials.push(CredentialFinding {
                        credential: credential.name.clone(),
                        reason: "credential_rejected",
                        message: format!(
                            "{registry} rejects it since {}: pods given it cannot pull from {registry}, not even public images",
                            crate::view::health::utc(health.since)
                        ),
                    });
                }
            }
        }
        audit
    }

    /// The copies in `state` that are not current, and why.
    fn audit_copies(&self, state: &ClusterState) -> Vec<CopyFinding> {
        let mut out = Vec::new();
        for (ns, name, copy) in state.copies() {
            let credential = copy.credential.unwrap_or("");
            let source = copy.source.unwrap_or("");
            let finding = |state: &'static str, why: String| CopyFinding {
                namespace: ns.to_string(),
                name: name.to_string(),
                credential: credential.to_string(),
                state,
                why,
            };
            let Some(ci) = self
                .config
                .credentials
                .iter()
                .position(|c| c.name == credential)
            else {
                out.push(finding(
                    "orphaned",
                    format!(
                        "made for credential {credential:?}, which the config does not have: kept (a pod may use it); delete it when none does"
                    ),
                ));
                continue;
            };
            let info = state
                .namespace(ns)
                .cloned()
                .unwrap_or_else(|| NamespaceInfo::named(ns));
            if !self.config.credentials[ci]
                .namespaces
                .admits(ns, &info.labels)
                || self.namespace_exclusion(&info).is_some()
            {
                out.push(finding(
                    "unwanted",
                    format!(
                        "namespace {ns} is out of credential {credential}'s scope now: deleted with prune: true, kept otherwise"
                    ),
                ));
                continue;
            }
            match self.sources[ci].iter().find(|s| s.source_ref() == source) {
                Some(prepared) if prepared.copy_name != name => out.push(finding(
                    "unwanted",
                    format!("its source's copies are named {} now", prepared.copy_name),
                )),
                Some(prepared) if copy.hash != Some(prepared.hash.as_str()) => out.push(finding(
                    "stale",
                    format!(
                        "holds other content than its source {source}: the running injector brings it up to date"
                    ),
                )),
                Some(_) => {}
                None if self.source_unparsable(credential, source) => out.push(finding(
                    "sourceUnusable",
                    format!("its source {source} does not parse as a pull secret: kept as it is"),
                )),
                None if source
                    .split_once('/')
                    .is_some_and(|(n, s)| state.secret(n, s).is_some()) =>
                {
                    out.push(finding(
                    "orphaned",
                    format!(
                        "names source {source}, which credential {credential} does not select: kept, not rotated"
                    ),
                ))
                }
                None => out.push(finding(
                    "sourceMissing",
                    format!("its source {source} is gone: kept so that running pods keep pulling, but never rotated"),
                )),
            }
        }
        out
    }
}

/// What makes new pods with the secrets, by owner kind.
fn fix(g: &PodGroup) -> String {
    let ns = &g.namespace;
    match g.owner.split_once('/') {
        Some((kind @ ("Deployment" | "StatefulSet" | "DaemonSet"), name)) => format!(
            "kubectl -n {ns} rollout restart {}/{name}",
            kind.to_ascii_lowercase()
        ),
        Some(("Pod", name)) => format!(
            "pod {ns}/{name} has no controller: delete it and create it again from its manifest"
        ),
        _ => format!(
            "kubectl -n {ns} delete pod {} (its {} makes new ones)",
            g.pods.join(" "),
            g.owner
        ),
    }
}
