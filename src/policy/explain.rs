//! Why each credential was, or was not, used for an object: the decision's reasons as data, so
//! that `check`, `audit` and the admission warnings say the same thing in the same words.
//!
//! The admission path never runs this: it is computed after a decision, from the same catalog
//! and view, for the commands that explain.

use std::collections::BTreeMap;

use serde::Serialize;

use super::catalog::{Catalog, labels_of};
use super::types::{Decision, Subject, SubjectKind, WarningReason};
use crate::config::{Credential, OutOfScope, Source, VerifyMode};
use crate::registry::dockerconfig::DockerConfig;
use crate::registry::image::ImageRef;
use crate::registry::keyring::{Location, RegistryKey};
use crate::view::health::utc;
use crate::view::{ClusterView, NamespaceInfo, ProbeState};

/// One credential of the config, and what became of it for one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consideration {
    /// The credential's name.
    pub credential: String,
    /// Injected, already there, or why not.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What became of a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    /// Its secrets are added to `imagePullSecrets`.
    Injected {
        /// The secret names.
        secrets: Vec<String>,
        /// What an admin should know although it is injected (a registry rejects it).
        notes: Vec<String>,
    },
    /// The object already references its secrets.
    AlreadyReferenced {
        /// The secret names.
        secrets: Vec<String>,
    },
    /// Not injected, and why.
    NotInjected {
        /// The reason.
        why: WhyNot,
    },
}

/// Why a credential was not injected. [`WhyNot::message`] words it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum WhyNot {
    /// No `namespaces.include` glob matches the namespace.
    NotIncluded {
        /// The include globs.
        include: Vec<String>,
    },
    /// A `namespaces.exclude` glob matches the namespace.
    Excluded {
        /// The glob.
        pattern: String,
    },
    /// The namespace's labels fail `namespaces.selector`.
    SelectorMismatch {
        /// Each failing requirement, with what the labels hold.
        failed: Vec<String>,
    },
    /// `namespaces.selector` needs the namespace's labels, which are not known (the namespace
    /// is not among the manifests, and no label was given).
    NamespaceLabelsUnknown {
        /// The selector.
        selector: String,
    },
    /// The source secret does not exist (or no secret matches the `secretSelector`).
    SourceMissing {
        /// What is missing.
        detail: String,
    },
    /// The source secret is not a valid pull secret.
    SourceInvalid {
        /// The parse error.
        detail: String,
    },
    /// Its minted token has expired and minting a new one fails.
    TokenExpired {
        /// When, and the last failure.
        detail: String,
    },
    /// The source holds no entry the credential's `registries` select.
    SourceEmpty {
        /// Which source.
        detail: String,
    },
    /// No secret in the namespace matches the `localSecretSelector`.
    NoLocalSecret {
        /// The selector.
        selector: String,
    },
    /// A selected local secret is not a valid pull secret.
    LocalSecretInvalid {
        /// The secret and the parse error.
        detail: String,
    },
    /// No key it serves matches any of the object's images.
    NoKeyMatches {
        /// Per image with a valid reference: its registry and the keys that were compared.
        images: Vec<KeyMiss>,
    },
    /// Only its Docker Hub key matched, as kubelet's fallback, and a key of another secret
    /// matched the image directly: kubelet uses only the direct match.
    FallbackOnly {
        /// The image.
        image: String,
    },
    /// The copy's name in the namespace is held by a secret the injector does not manage.
    NameTaken {
        /// `namespace/name`.
        secret: String,
    },
    /// The copy's name is held by a copy made for another credential, with other content.
    CopyConflict {
        /// `namespace/name`.
        secret: String,
        /// The credential it was made for.
        other: String,
    },
    /// `verify.mode: skip` withholds it: the registry rejected it on two probes in a row.
    Withheld {
        /// The registry.
        registry: String,
        /// Since when, RFC 3339.
        since: String,
    },
}

/// One image a credential's keys did not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMiss {
    /// The image as written.
    pub image: String,
    /// Its registry (`host[:port]`).
    pub registry: String,
    /// The keys the credential serves (after its `registries` filter).
    pub selected: Vec<String>,
    /// Keys of its source that `registries` drops and that would have matched the image.
    pub dropped: Vec<String>,
}

impl WhyNot {
    /// The reason in words, as `check` and `audit` print it after "not injected: ".
    pub fn message(&self, namespace: &str) -> String {
        match self {
            WhyNot::NotIncluded { include } => format!(
                "namespace {namespace} matches none of namespaces.include {}",
                quoted(include)
            ),
            WhyNot::Excluded { pattern } => {
                format!("namespace {namespace} is excluded by namespaces.exclude {pattern:?}")
            }
            WhyNot::SelectorMismatch { failed } => format!(
                "namespace {namespace}'s labels do not match namespaces.selector: {}",
                failed.join("; ")
            ),
            WhyNot::NamespaceLabelsUnknown { selector } => format!(
                "namespaces.selector ({selector}) needs the labels of namespace {namespace}, which are not known: give its Namespace manifest, or --namespace-label"
            ),
            WhyNot::SourceMissing { detail }
            | WhyNot::SourceInvalid { detail }
            | WhyNot::SourceEmpty { detail }
            | WhyNot::TokenExpired { detail }
            | WhyNot::LocalSecretInvalid { detail } => detail.clone(),
            WhyNot::NoLocalSecret { selector } => format!(
                "no secret in namespace {namespace} matches its localSecretSelector ({selector})"
            ),
            WhyNot::NoKeyMatches { images } => images
                .iter()
                .map(|m| {
                    let mut text = format!(
                        "no key it serves matches {} (registry {}); it serves {}",
                        m.image,
                        m.registry,
                        if m.selected.is_empty() {
                            "no key".to_string()
                        } else {
                            quoted(&m.selected)
                        }
                    );
                    if !m.dropped.is_empty() {
                        text.push_str(&format!(
                            "; its registries drop {}, which would match",
                            quoted(&m.dropped)
                        ));
                    }
                    text
                })
                .collect::<Vec<_>>()
                .join("; "),
            WhyNot::FallbackOnly { image } => format!(
                "only its Docker Hub key matches {image}, as kubelet's fallback, and another secret matches it directly: kubelet uses that one"
            ),
            WhyNot::NameTaken { secret } => name_taken(secret),
            WhyNot::CopyConflict { secret, other } => copy_conflict(secret, other),
            WhyNot::Withheld { registry, since } => {
                format!("{registry} has rejected it since {since} (verify.mode: skip)")
            }
        }
    }
}

/// `["a", "b"]`: globs and keys as written.
fn quoted(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", inner.join(", "))
}

/// The words for a copy name held by a secret the injector does not manage (admission
/// warnings use them too).
pub(super) fn name_taken(secret: &str) -> String {
    format!("secret {secret} exists and is not managed by pull-secret-injector; left alone")
}

/// The words for a copy name held by another credential's copy.
pub(super) fn copy_conflict(secret: &str, other: &str) -> String {
    format!("secret {secret} is a copy made for credential {other} with other content")
}

/// What one explanation is about.
#[derive(Clone, Copy)]
struct Asked<'a, 's> {
    subject: &'a Subject<'s>,
    ns: &'a NamespaceInfo,
    view: &'a dyn ClusterView,
    labels_known: bool,
    decision: &'a Decision,
}

impl Catalog {
    /// For each credential of the config, in order, what became of it in `decision` (made by
    /// [`Catalog::explain`] for `subject` in `ns`) and why. `labels_known` says whether `ns`'s
    /// labels are known (a namespace absent from manifests has none that can be trusted).
    /// Empty when the object was skipped as a whole (`decision.skipped` says why).
    pub fn considerations(
        &self,
        subject: &Subject<'_>,
        ns: &NamespaceInfo,
        view: &dyn ClusterView,
        labels_known: bool,
        decision: &Decision,
    ) -> Vec<Consideration> {
        if decision.skipped.is_some() {
            return Vec::new();
        }
        self.config
            .credentials
            .iter()
            .enumerate()
            .map(|(ci, credential)| Consideration {
                credential: credential.name.clone(),
                outcome: self.outcome(
                    ci,
                    credential,
                    &Asked {
                        subject,
                        ns,
                        view,
                        labels_known,
                        decision,
                    },
                ),
            })
            .collect()
    }

    fn outcome(&self, ci: usize, credential: &Credential, asked: &Asked<'_, '_>) -> Outcome {
        let Asked {
            subject,
            ns,
            view,
            labels_known,
            decision,
        } = *asked;
        let not = |why| Outcome::NotInjected { why };
        // Its secret names, as the decision would add them.
        let mut names: Vec<String> = self.sources[ci]
            .iter()
            .map(|s| s.copy_name.clone())
            .collect();
        if let Source::LocalSecretSelector { selector } = &credential.source {
            names.extend(
                view.secrets_in(&ns.name)
                    .into_iter()
                    .filter(|s| selector.matches(&labels_of(s)))
                    .filter_map(|s| s.metadata.name.clone()),
            );
        }
        if decision.credentials.contains(&credential.name) {
            let secrets: Vec<String> = match subject.kind {
                SubjectKind::Pod => {
                    let mut used: Vec<String> = Vec::new();
                    for m in decision.images.iter().flat_map(|i| &i.matches) {
                        if m.credential == credential.name && !used.contains(&m.secret) {
                            used.push(m.secret.clone());
                        }
                    }
                    used
                }
                SubjectKind::ServiceAccount => names
                    .iter()
                    .filter(|n| decision.add.contains(n))
                    .cloned()
                    .collect(),
            };
            return Outcome::Injected {
                secrets,
                notes: rejection_notes(credential, view),
            };
        }
        if let Some(why) = credential.namespaces.why_not(&ns.name, &ns.labels) {
            return not(match why {
                OutOfScope::SelectorMismatch { .. } if !labels_known => {
                    WhyNot::NamespaceLabelsUnknown {
                        selector: credential
                            .namespaces
                            .selector
                            .as_ref()
                            .map(|s| s.to_query())
                            .unwrap_or_default(),
                    }
                }
                OutOfScope::NotIncluded { include } => WhyNot::NotIncluded { include },
                OutOfScope::Excluded { pattern } => WhyNot::Excluded { pattern },
                OutOfScope::SelectorMismatch { failed } => WhyNot::SelectorMismatch { failed },
            });
        }
        if self.sources[ci].is_empty()
            && let Some(p) = self.problems[ci].first()
        {
            let detail = p.message.clone();
            return not(match p.reason {
                WarningReason::SourceInvalid => WhyNot::SourceInvalid { detail },
                WarningReason::SourceEmpty => WhyNot::SourceEmpty { detail },
                WarningReason::TokenExpired => WhyNot::TokenExpired { detail },
                _ => WhyNot::SourceMissing { detail },
            });
        }
        if let Source::LocalSecretSelector { selector } = &credential.source {
            let secrets: Vec<_> = view
                .secrets_in(&ns.name)
                .into_iter()
                .filter(|s| selector.matches(&labels_of(s)))
                .collect();
            if secrets.is_empty() {
                return not(WhyNot::NoLocalSecret {
                    selector: selector.to_query(),
                });
            }
            if let Some((secret, e)) = secrets.iter().find_map(|s| {
                DockerConfig::from_secret(s)
                    .err()
                    .map(|e| (s.metadata.name.clone().unwrap_or_default(), e))
            }) && secrets.len() == 1
            {
                return not(WhyNot::LocalSecretInvalid {
                    detail: format!("local secret {}/{secret}: {e}", ns.name),
                });
            }
        }
        let existing: Vec<String> = names
            .iter()
            .filter(|n| subject.existing.contains(&n.as_str()))
            .cloned()
            .collect();
        if !existing.is_empty() {
            return Outcome::AlreadyReferenced { secrets: existing };
        }
        if let Some(why) = self.blocked(ci, &ns.name, view) {
            return not(why);
        }
        match subject.kind {
            SubjectKind::ServiceAccount => {
                // In scope and usable, yet not added: skip mode withholds it everywhere.
                not(withheld(credential, view, None)
                    .unwrap_or(WhyNot::NoKeyMatches { images: Vec::new() }))
            }
            SubjectKind::Pod => self.image_miss(ci, credential, subject, ns, view, decision),
        }
    }

    /// Why a credential in scope with a usable source matched none of the pod's images.
    fn image_miss(
        &self,
        ci: usize,
        credential: &Credential,
        subject: &Subject<'_>,
        ns: &NamespaceInfo,
        view: &dyn ClusterView,
        decision: &Decision,
    ) -> Outcome {
        let mut misses = Vec::new();
        for raw in &subject.images {
            let Ok(image) = ImageRef::parse(raw) else {
                continue;
            };
            let name = image.name();
            let target = Location::of_image(&image, name);
            let registry = if target.port().is_empty() {
                target.host().to_string()
            } else {
                format!("{}:{}", target.host(), target.port())
            };
            let hits = self.keyring.lookup_at(name, &target, |_, &(c, _)| c == ci);
            if !hits.is_empty() {
                if let Some(why) = withheld(credential, view, Some(&registry)) {
                    return Outcome::NotInjected { why };
                }
                let direct = hits
                    .iter()
                    .any(|(k, _)| !k.is_default_registry() || k.matches(&target));
                let others_matched = decision
                    .images
                    .iter()
                    .any(|i| i.image == *raw && !i.matches.is_empty());
                if !direct && others_matched {
                    return Outcome::NotInjected {
                        why: WhyNot::FallbackOnly {
                            image: raw.to_string(),
                        },
                    };
                }
                continue;
            }
            let mut selected = Vec::new();
            let mut dropped = Vec::new();
            for source in &self.sources[ci] {
                selected.extend(source.content.keys().map(str::to_string));
                let Some(secret) = view.secret(&source.source_namespace, &source.source_name)
                else {
                    continue;
                };
                let Ok(full) = DockerConfig::from_secret(secret) else {
                    continue;
                };
                for key in full.keys() {
                    if let Ok(k) = RegistryKey::parse(key)
                        && !credential.selects(&k)
                        && (k.matches(&target)
                            || k.is_default_registry()
                                && crate::registry::keyring::is_default_registry_match(name))
                    {
                        dropped.push(k.to_string());
                    }
                }
            }
            if let Source::LocalSecretSelector { selector } = &credential.source {
                for secret in view.secrets_in(&ns.name) {
                    if selector.matches(&labels_of(secret))
                        && let Ok(config) = DockerConfig::from_secret(secret)
                    {
                        selected.extend(
                            config
                                .keys()
                                .filter(|k| {
                                    RegistryKey::parse(k).is_ok_and(|k| credential.selects(&k))
                                })
                                .map(str::to_string),
                        );
                    }
                }
            }
            selected.sort();
            selected.dedup();
            dropped.sort();
            dropped.dedup();
            misses.push(KeyMiss {
                image: raw.to_string(),
                registry,
                selected,
                dropped,
            });
        }
        if misses.is_empty() {
            // Every image matched one of its keys: its secret went in under a name another
            // credential's copy shares (same content), or that copy won the name.
            let names: Vec<String> = self.sources[ci]
                .iter()
                .map(|s| s.copy_name.clone())
                .collect();
            let shared: Vec<String> = names
                .iter()
                .filter(|n| decision.add.contains(n))
                .cloned()
                .collect();
            if !shared.is_empty() {
                return Outcome::Injected {
                    secrets: shared,
                    notes: rejection_notes(credential, view),
                };
            }
            if let Some(name) = names.first() {
                let other = decision
                    .images
                    .iter()
                    .flat_map(|i| &i.matches)
                    .find(|m| m.secret == *name)
                    .map_or("(another)", |m| m.credential.as_str());
                return Outcome::NotInjected {
                    why: WhyNot::CopyConflict {
                        secret: format!("{}/{name}", ns.name),
                        other: other.to_string(),
                    },
                };
            }
        }
        Outcome::NotInjected {
            why: WhyNot::NoKeyMatches { images: misses },
        }
    }

    /// Whether the copy name of one of a credential's sources is held in `namespace` by a
    /// secret that keeps it out.
    fn blocked(&self, ci: usize, namespace: &str, view: &dyn ClusterView) -> Option<WhyNot> {
        let mut reasons = Vec::new();
        for source in &self.sources[ci] {
            if namespace == source.source_namespace && source.copy_name == source.source_name {
                return None;
            }
            let existing = view.occupant(namespace, &source.copy_name)?;
            let secret = format!("{namespace}/{}", source.copy_name);
            if !existing.managed {
                reasons.push(WhyNot::NameTaken { secret });
            } else if existing.hash != Some(source.hash.as_str())
                && !(existing.credential == Some(source.credential.as_str())
                    && existing.source == Some(source.source_ref().as_str()))
            {
                reasons.push(WhyNot::CopyConflict {
                    secret,
                    other: existing.credential.unwrap_or("(unknown)").to_string(),
                });
            } else {
                return None;
            }
        }
        reasons.into_iter().next()
    }
}

/// `skip` mode's refusal at `registry` (at any registry when `None`, for ServiceAccounts).
fn withheld(
    credential: &Credential,
    view: &dyn ClusterView,
    registry: Option<&str>,
) -> Option<WhyNot> {
    if credential.verify.mode != VerifyMode::Skip {
        return None;
    }
    let known: BTreeMap<&str, _> = view
        .credential_health(&credential.name)
        .into_iter()
        .collect();
    known
        .iter()
        .filter(|(r, _)| registry.is_none_or(|want| want == **r))
        .find(|(_, h)| h.withheld())
        .map(|(r, h)| WhyNot::Withheld {
            registry: r.to_string(),
            since: utc(h.since),
        })
}

/// For an injected credential: the registries that reject it.
fn rejection_notes(credential: &Credential, view: &dyn ClusterView) -> Vec<String> {
    if !view.rejected_somewhere(&credential.name) {
        return Vec::new();
    }
    view.credential_health(&credential.name)
        .into_iter()
        .filter(|(_, h)| h.state == ProbeState::Rejected)
        .map(|(r, h)| {
            format!(
                "{r} rejects it since {}; pulls with it fail there, even of public images",
                utc(h.since)
            )
        })
        .collect()
}
