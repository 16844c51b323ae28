//! The config compiled against the source secrets: done once per config or source change,
//! so that a decision is a handful of lookups. Source secrets are read, filtered to the
//! registries their credential selects, hashed, and their keys put in one keyring.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;

use super::types::{PreparedSource, Problem, WarningReason};
use crate::config::{Config, Credential, PROTECTED_NAMESPACES, Source};
use crate::marks::OPT_OUT_KEY;
use crate::registry::dockerconfig::DockerConfig;
use crate::registry::keyring::{Keyring, RegistryKey};
use crate::view::{ClusterView, NamespaceInfo};

/// A problem with a credential that does not depend on the target namespace.
#[derive(Debug, Clone)]
pub(super) struct CredentialProblem {
    pub(super) reason: WarningReason,
    /// The whole story, for admins (logs, Events): names the source secret and the cause.
    pub(super) message: String,
    /// The registry keys the unusable source holds, when they could be read, so that only
    /// pods pulling from those registries hear of it.
    pub(super) keys: Option<Vec<RegistryKey>>,
    /// The source secret (`namespace/name`) it concerns, when it concerns one that exists.
    pub(super) source: Option<String>,
}

/// The config, compiled against the current source secrets.
#[derive(Debug)]
pub struct Catalog {
    pub(super) config: Config,
    pub(super) own_namespace: Option<String>,
    /// Per credential, in config order: its prepared sources (copied credentials only).
    pub(super) sources: Vec<Vec<Arc<PreparedSource>>>,
    /// Per credential: problems found while preparing its sources.
    pub(super) problems: Vec<Vec<CredentialProblem>>,
    /// Every selected key of every prepared source, pointing at (credential, source).
    pub(super) keyring: Keyring<(usize, usize)>,
    /// Unusable auths keys, reported once per catalog rather than per request.
    pub(super) notes: Vec<String>,
    /// Credentials with a `localSecretSelector`, whose secrets are read per namespace.
    pub(super) local_credentials: Vec<usize>,
    /// Credentials whose sources have problems, worth a warning when in scope.
    pub(super) troubled_credentials: Vec<usize>,
    /// Where each credential's sources start in a flat numbering of all sources.
    pub(super) source_offsets: Vec<usize>,
    /// Number of prepared sources in all.
    pub(super) source_count: usize,
}

impl Catalog {
    /// Compiles a config against the secrets the view holds. `own_namespace` is the injector's
    /// namespace, never injected into.
    pub fn build(config: Config, view: &dyn ClusterView, own_namespace: Option<&str>) -> Catalog {
        Self::build_after(config, view, own_namespace, None)
    }

    /// [`Catalog::build`], remembering from the catalog it replaces which registries a source
    /// that has since vanished served, so that pods pulling from them are told why nothing is
    /// injected (and others are not).
    pub fn build_after(
        config: Config,
        view: &dyn ClusterView,
        own_namespace: Option<&str>,
        previous: Option<&Catalog>,
    ) -> Catalog {
        let mut sources = Vec::with_capacity(config.credentials.len());
        let mut problems = Vec::with_capacity(config.credentials.len());
        let mut keyring = Keyring::new();
        let mut notes = Vec::new();
        for (ci, credential) in config.credentials.iter().enumerate() {
            let mut prepared = Vec::new();
            let mut issues = Vec::new();
            let secrets: Vec<&Secret> = match &credential.source {
                Source::Secret { namespace, name } => match view.secret(namespace, name) {
                    Some(s) => vec![s],
                    None => {
                        issues.push(CredentialProblem {
                            reason: WarningReason::SourceMissing,
                            message: format!(
                                "credential {}: source secret {namespace}/{name} not found",
                                credential.name
                            ),
                            keys: previous.and_then(|p| {
                                p.known_keys(&credential.name, &format!("{namespace}/{name}"))
                            }),
                            source: None,
                        });
                        Vec::new()
                    }
                },
                Source::SecretSelector {
                    namespace,
                    selector,
                } => {
                    let selected: Vec<&Secret> = view
                        .secrets_in(namespace)
                        .into_iter()
                        .filter(|s| selector.matches(&labels_of(s)))
                        .collect();
                    if selected.is_empty() {
                        issues.push(CredentialProblem {
                            reason: WarningReason::SourceMissing,
                            message: format!(
                                "credential {}: no secret in namespace {namespace} matches {}",
                                credential.name,
                                selector.to_query()
                            ),
                            keys: None,
                            source: None,
                        });
                    }
                    selected
                }
                Source::LocalSecretSelector { .. } => Vec::new(),
            };
            for secret in secrets {
                match prepare(credential, secret, &mut notes) {
                    Ok(source) => {
                        let si = prepared.len();
                        for key in source.content.keys() {
                            if let Ok(k) = RegistryKey::parse(key) {
                                keyring.add(k, (ci, si));
                            }
                        }
                        prepared.push(Arc::new(source));
                    }
                    Err(problem) => issues.push(problem),
                }
            }
            sources.push(prepared);
            problems.push(issues);
        }
        let local_credentials = config
            .credentials
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.source, Source::LocalSecretSelector { .. }))
            .map(|(i, _)| i)
            .collect();
        let troubled_credentials = problems
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(i, _)| i)
            .collect();
        let mut source_offsets = Vec::with_capacity(sources.len());
        let mut source_count = 0;
        for s in &sources {
            source_offsets.push(source_count);
            source_count += s.len();
        }
        Catalog {
            source_offsets,
            source_count,
            local_credentials,
            troubled_credentials,
            config,
            own_namespace: own_namespace.map(str::to_string),
            sources,
            problems,
            keyring,
            notes,
        }
    }

    /// The config this catalog was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every prepared source, with the credential it belongs to.
    pub fn prepared_sources(&self) -> impl Iterator<Item = (&Credential, &Arc<PreparedSource>)> {
        self.config
            .credentials
            .iter()
            .zip(&self.sources)
            .flat_map(|(c, s)| s.iter().map(move |p| (c, p)))
    }

    /// Problems with sources and keys, independent of any namespace (for logs and `validate`).
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .iter()
            .flatten()
            .map(|p| p.message.clone())
            .chain(self.notes.iter().cloned())
            .collect()
    }

    /// The registry keys this catalog knew a credential's source by: those of its prepared
    /// source, or those an earlier catalog knew when it was already missing.
    fn known_keys(&self, credential: &str, source_ref: &str) -> Option<Vec<RegistryKey>> {
        let ci = self
            .config
            .credentials
            .iter()
            .position(|c| c.name == credential)?;
        if let Some(source) = self.sources[ci]
            .iter()
            .find(|s| s.source_ref() == source_ref)
        {
            return Some(
                source
                    .content
                    .keys()
                    .filter_map(|k| RegistryKey::parse(k).ok())
                    .collect(),
            );
        }
        self.problems[ci]
            .iter()
            .find(|p| p.reason == WarningReason::SourceMissing)
            .and_then(|p| p.keys.clone())
    }

    /// Whether a credential's source exists but does not parse as a pull secret: its copies
    /// are kept (they still serve pulls) rather than pruned, until it is fixed or goes.
    pub fn source_unparsable(&self, credential: &str, source_ref: &str) -> bool {
        self.config
            .credentials
            .iter()
            .zip(&self.problems)
            .filter(|(c, _)| c.name == credential)
            .flat_map(|(_, problems)| problems)
            .any(|p| {
                p.reason == WarningReason::SourceInvalid && p.source.as_deref() == Some(source_ref)
            })
    }

    /// The credentials' source problems, with their reasons (for metrics and Events).
    pub fn credential_problems(&self) -> Vec<Problem> {
        self.config
            .credentials
            .iter()
            .zip(&self.problems)
            .flat_map(|(c, problems)| {
                problems.iter().map(|p| Problem {
                    credential: c.name.clone(),
                    reason: p.reason,
                    message: p.message.clone(),
                })
            })
            .collect()
    }

    /// Why the injector leaves this namespace alone, if it does.
    pub fn namespace_exclusion(&self, ns: &NamespaceInfo) -> Option<String> {
        if PROTECTED_NAMESPACES.contains(&ns.name.as_str()) {
            return Some(format!("namespace {} is a system namespace", ns.name));
        }
        if self.own_namespace.as_deref() == Some(ns.name.as_str()) {
            return Some(format!("namespace {} is the injector's own", ns.name));
        }
        if opted_out(Some(&ns.labels), Some(&ns.annotations)) {
            return Some(format!(
                "namespace {} is labelled or annotated {OPT_OUT_KEY}=false",
                ns.name
            ));
        }
        None
    }
}

/// Reads, filters and hashes one source secret for a credential.
fn prepare(
    credential: &Credential,
    secret: &Secret,
    notes: &mut Vec<String>,
) -> Result<PreparedSource, CredentialProblem> {
    let namespace = secret.metadata.namespace.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    // A minted token past its expiry, which the minter could not replace, would fail every
    // pull it is attached to (even of public images): it is not spread, and pods are told.
    if let Some(token) = &credential.token
        && let Some(why) = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::marks::EXPIRED_ANNOTATION))
    {
        return Err(CredentialProblem {
            reason: WarningReason::TokenExpired,
            message: format!(
                "credential {}: its {} token in {namespace}/{name} has expired and minting a new one fails ({why})",
                credential.name,
                token.provider()
            ),
            keys: crate::registry::dockerconfig::registry_keys_of(secret).map(|keys| {
                keys.iter()
                    .filter_map(|k| RegistryKey::parse(k).ok())
                    .collect()
            }),
            source: Some(format!("{namespace}/{name}")),
        });
    }
    let full = DockerConfig::from_secret(secret).map_err(|e| CredentialProblem {
        reason: WarningReason::SourceInvalid,
        message: format!("credential {}: {e}", credential.name),
        keys: crate::registry::dockerconfig::registry_keys_of(secret).map(|keys| {
            keys.iter()
                .filter_map(|k| RegistryKey::parse(k).ok())
                .collect()
        }),
        source: Some(format!("{namespace}/{name}")),
    })?;
    for key in full.keys() {
        if let Err(e) = RegistryKey::parse(key) {
            notes.push(format!(
                "credential {}: secret {namespace}/{name}: key skipped, as kubelet never uses it: {e}",
                credential.name
            ));
        }
    }
    let content = full.filter(|key| RegistryKey::parse(key).is_ok_and(|k| credential.selects(&k)));
    if content.is_empty() {
        return Err(CredentialProblem {
            reason: WarningReason::SourceEmpty,
            message: format!(
                "credential {}: secret {namespace}/{name} has no registry entry selected by its registries",
                credential.name
            ),
            keys: Some(Vec::new()),
            source: Some(format!("{namespace}/{name}")),
        });
    }
    let data = content.to_dockerconfigjson();
    let hash = content.content_hash();
    Ok(PreparedSource {
        source_version: secret.metadata.resource_version.clone().unwrap_or_default(),
        credential: credential.name.clone(),
        copy_name: credential.copy_name_for(&name).to_string(),
        source_namespace: namespace,
        source_name: name,
        content,
        data,
        hash,
    })
}

pub(super) fn labels_of(secret: &Secret) -> BTreeMap<String, String> {
    secret.metadata.labels.clone().unwrap_or_default()
}

pub(super) fn opted_out(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) -> bool {
    let off = |m: Option<&BTreeMap<String, String>>| {
        m.and_then(|m| m.get(OPT_OUT_KEY))
            .is_some_and(|v| v == "false")
    };
    off(labels) || off(annotations)
}
