//! The cluster as manifest files describe it: Namespaces, Secrets and ServiceAccounts loaded from
//! YAML or JSON (what `check`, `review`, `validate` and file-mode `serve` read).

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use serde::Deserialize;

use super::{ClusterView, Health, NamespaceInfo, Occupant, RegistryHealth};
use crate::marks::is_managed;
use crate::registry::dockerconfig::{DOCKER_CONFIG_JSON_KEY, content_hash_of};

/// A plain snapshot of Namespaces, Secrets and ServiceAccounts.
#[derive(Clone, Default)]
pub struct ClusterState {
    namespaces: BTreeMap<String, NamespaceInfo>,
    secrets: BTreeMap<String, BTreeMap<String, Secret>>,
    /// The data hash of each managed secret, by namespace and name, computed once at load.
    copy_hashes: BTreeMap<(String, String), String>,
    /// What probing taught, when the caller probed (`check --verify`).
    health: Health,
    service_accounts: BTreeMap<String, BTreeMap<String, ServiceAccount>>,
}

/// Why a manifest could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML/JSON.
    #[error("{origin}: document {index}: not valid YAML or JSON: {reason}")]
    Syntax {
        /// Where the text came from.
        origin: String,
        /// Which document of a multi-document stream (1-based).
        index: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// A document is a known kind but does not fit its schema.
    #[error("{origin}: document {index} ({kind} {name}): {reason}")]
    Object {
        /// Where the text came from.
        origin: String,
        /// Which document (1-based).
        index: usize,
        /// Its kind.
        kind: String,
        /// Its name, when it has one.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

impl std::fmt::Debug for ClusterState {
    /// Names and counts only: a Secret's own Debug would print its data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterState")
            .field("namespaces", &self.namespaces.keys().collect::<Vec<_>>())
            .field(
                "secrets",
                &self
                    .secrets
                    .iter()
                    .map(|(ns, m)| (ns, m.keys().collect::<Vec<_>>()))
                    .collect::<Vec<_>>(),
            )
            .field(
                "service_accounts",
                &self
                    .service_accounts
                    .values()
                    .map(BTreeMap::len)
                    .sum::<usize>(),
            )
            .finish()
    }
}

impl ClusterState {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what probing taught (`check --verify` probes, then decides).
    pub fn set_health(&mut self, health: Health) {
        self.health = health;
    }

    /// Adds or replaces a namespace.
    pub fn insert_namespace(&mut self, ns: NamespaceInfo) {
        self.namespaces.insert(ns.name.clone(), ns);
    }

    /// Adds or replaces a secret; its namespace defaults to `default`, as kubectl's does.
    pub fn insert_secret(&mut self, mut secret: Secret) {
        let ns = secret
            .metadata
            .namespace
            .get_or_insert_with(|| "default".to_string())
            .clone();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let key = (ns.clone(), name.clone());
        match secret
            .data
            .as_ref()
            .and_then(|d| d.get(DOCKER_CONFIG_JSON_KEY))
            .filter(|_| is_managed(&secret.metadata))
        {
            Some(data) => {
                self.copy_hashes.insert(key, content_hash_of(&data.0));
            }
            None => {
                self.copy_hashes.remove(&key);
            }
        }
        self.secrets.entry(ns).or_default().insert(name, secret);
    }

    /// Adds or replaces a ServiceAccount.
    pub fn insert_service_account(&mut self, mut sa: ServiceAccount) {
        let ns = sa
            .metadata
            .namespace
            .get_or_insert_with(|| "default".to_string())
            .clone();
        let name = sa.metadata.name.clone().unwrap_or_default();
        self.service_accounts
            .entry(ns)
            .or_default()
            .insert(name, sa);
    }

    /// Every known namespace.
    pub fn namespaces(&self) -> impl Iterator<Item = &NamespaceInfo> {
        self.namespaces.values()
    }

    /// Every secret the injector manages (its copies, by their label), with their marks:
    /// namespace, name, and what it holds.
    pub fn copies(&self) -> impl Iterator<Item = (&str, &str, Occupant<'_>)> {
        self.secrets.iter().flat_map(move |(ns, by_name)| {
            by_name
                .iter()
                .filter(|(_, s)| crate::marks::is_managed(&s.metadata))
                .map(move |(name, s)| {
                    let hash = self
                        .copy_hashes
                        .get(&(ns.clone(), name.clone()))
                        .map(String::as_str);
                    (ns.as_str(), name.as_str(), Occupant::of(s, hash))
                })
        })
    }

    /// Every ServiceAccount of a namespace.
    pub fn service_accounts_in(&self, namespace: &str) -> impl Iterator<Item = &ServiceAccount> {
        self.service_accounts
            .get(namespace)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Loads every Namespace, Secret and ServiceAccount of a YAML (multi-document) or JSON text;
    /// `List` objects are unpacked and other kinds are ignored. Returns how many were loaded.
    pub fn load_manifests(&mut self, origin: &str, text: &str) -> Result<usize, ManifestError> {
        let mut loaded = 0;
        for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let index = i + 1;
            let value =
                serde_yaml::Value::deserialize(document).map_err(|e| ManifestError::Syntax {
                    origin: origin.to_string(),
                    index,
                    reason: e.to_string(),
                })?;
            if value.is_null() {
                continue;
            }
            let json: serde_json::Value =
                serde_json::to_value(&value).map_err(|e| ManifestError::Syntax {
                    origin: origin.to_string(),
                    index,
                    reason: e.to_string(),
                })?;
            loaded += self.load_value(origin, index, json)?;
        }
        Ok(loaded)
    }

    fn load_value(
        &mut self,
        origin: &str,
        index: usize,
        value: serde_json::Value,
    ) -> Result<usize, ManifestError> {
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_string();
        let name = value
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or("(unnamed)")
            .to_string();
        let object_error = |reason: String| ManifestError::Object {
            origin: origin.to_string(),
            index,
            kind: kind.clone(),
            name: name.clone(),
            reason,
        };
        match kind.as_str() {
            "List" | "NamespaceList" | "SecretList" | "ServiceAccountList" => {
                let items = match value.get("items") {
                    Some(serde_json::Value::Array(items)) => items.clone(),
                    _ => return Err(object_error("items must be a list".to_string())),
                };
                let mut n = 0;
                for item in items {
                    n += self.load_value(origin, index, item)?;
                }
                Ok(n)
            }
            "Namespace" => {
                let ns: Namespace = serde_json::from_value(value)
                    .map_err(|e| object_error(crate::redact::serde_message(&e.to_string())))?;
                let info = NamespaceInfo::from_namespace(&ns)
                    .ok_or_else(|| object_error("metadata.name is required".to_string()))?;
                self.insert_namespace(info);
                Ok(1)
            }
            "Secret" => {
                // k8s-openapi's base64 error quotes the offending byte and its offset: check
                // the encoding first so the message names the key and nothing of the data.
                if let Some(serde_json::Value::Object(data)) = value.get("data") {
                    for (key, encoded) in data {
                        let ok = encoded.as_str().is_some_and(|e| {
                            base64::engine::general_purpose::STANDARD.decode(e).is_ok()
                        });
                        if !ok {
                            return Err(object_error(format!(
                                "data key {key:?} is not a base64-encoded string"
                            )));
                        }
                    }
                }
                let mut secret: Secret = serde_json::from_value(value)
                    .map_err(|e| object_error(crate::redact::serde_message(&e.to_string())))?;
                merge_string_data(&mut secret);
                if secret.metadata.name.is_none() {
                    return Err(object_error("metadata.name is required".to_string()));
                }
                self.insert_secret(secret);
                Ok(1)
            }
            "ServiceAccount" => {
                let sa: ServiceAccount = serde_json::from_value(value)
                    .map_err(|e| object_error(crate::redact::serde_message(&e.to_string())))?;
                if sa.metadata.name.is_none() {
                    return Err(object_error("metadata.name is required".to_string()));
                }
                self.insert_service_account(sa);
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// Folds `stringData` into `data` as kube-apiserver does on every write, so a manifest written
/// with `stringData` reads as the Secret the cluster would hold: each key is copied into `data`,
/// replacing a `data` value of the same key, and `stringData` itself is never stored
/// (`Convert_v1_Secret_To_core_Secret` in kubernetes pkg/apis/core/v1/conversion.go; the Secret
/// API reference: "stringData ... will be merged into the data field on write, overwriting any
/// existing values").
fn merge_string_data(secret: &mut Secret) {
    let Some(string_data) = secret.string_data.take() else {
        return;
    };
    let data = secret.data.get_or_insert_with(BTreeMap::new);
    for (key, value) in string_data {
        data.insert(key, k8s_openapi::ByteString(value.into_bytes()));
    }
}

impl ClusterView for ClusterState {
    fn namespace(&self, name: &str) -> Option<&NamespaceInfo> {
        self.namespaces.get(name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get(namespace)?.get(name)
    }

    fn secrets_in(&self, namespace: &str) -> Vec<&Secret> {
        self.secrets
            .get(namespace)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }

    fn registry_health(&self, credential: &str, registry: &str) -> Option<&RegistryHealth> {
        self.health.get(credential, registry)
    }

    fn rejected_somewhere(&self, credential: &str) -> bool {
        self.health.rejected_somewhere(credential)
    }

    fn credential_health(&self, credential: &str) -> Vec<(&str, &RegistryHealth)> {
        self.health.of(credential).collect()
    }

    fn occupant(&self, namespace: &str, name: &str) -> Option<Occupant<'_>> {
        let secret = self.secret(namespace, name)?;
        let hash = self
            .copy_hashes
            .get(&(namespace.to_string(), name.to_string()))
            .map(String::as_str);
        Some(Occupant::of(secret, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_multi_document_yaml_lists_and_json() {
        let mut state = ClusterState::new();
        let yaml = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {tier: prod}}
---
apiVersion: v1
kind: Secret
metadata: {name: src, namespace: default}
type: kubernetes.io/dockerconfigjson
data: {.dockerconfigjson: e30=}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
"#;
        assert_eq!(state.load_manifests("a.yaml", yaml).unwrap(), 2);
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"gone","deletionTimestamp":"2026-01-01T00:00:00Z"}},
            {"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"default","namespace":"gone"}}]}"#;
        assert_eq!(state.load_manifests("b.json", json).unwrap(), 2);
        assert_eq!(state.namespace("team-a").unwrap().labels["tier"], "prod");
        assert!(state.namespace("gone").unwrap().terminating);
        assert!(state.secret("default", "src").is_some());
        assert_eq!(state.secrets_in("default").len(), 1);
        assert_eq!(state.service_accounts_in("gone").count(), 1);
    }

    #[test]
    fn string_data_is_merged_into_data_and_wins_for_the_same_key() {
        let mut state = ClusterState::new();
        let yaml = "kind: Secret\nmetadata: {name: s, namespace: ns}\n\
                    data: {a: b2xk, b: b2xk}\nstringData: {a: new, c: plain}\n";
        state.load_manifests("x", yaml).unwrap();
        let secret = state.secret("ns", "s").unwrap();
        let data = secret.data.as_ref().unwrap();
        let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!(
            (text("a"), text("b"), text("c")),
            ("new".into(), "old".into(), "plain".into())
        );
        assert!(secret.string_data.is_none());
    }

    #[test]
    fn debug_shows_names_not_secret_data() {
        let mut state = ClusterState::new();
        let yaml = "kind: Secret\nmetadata: {name: s, namespace: ns}\ntype: Opaque\ndata: {k: ZmFrZS1wYXNzd29yZA==}\n";
        state.load_manifests("x", yaml).unwrap();
        let text = format!("{state:?}");
        assert!(text.contains("\"s\""), "{text}");
        assert!(
            !text.contains("fake-password") && !text.contains("102, 97, 107, 101"),
            "{text}"
        );
    }

    #[test]
    fn bad_manifests_name_the_file_document_and_object_without_data() {
        let mut state = ClusterState::new();
        let err = state
            .load_manifests(
                "x.yaml",
                "kind: Secret\nmetadata: {name: s}\ndata: {k: 12345}\n",
            )
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.yaml: document 1 (Secret s): "), "{err}");
        assert!(!err.contains("12345"), "{err}");
        let err = state
            .load_manifests("y.yaml", "---\nkind: Namespace\n---\n: [\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("y.yaml: document"), "{err}");
    }
}
