//! The copy contract: the label and annotations the injector writes on its copies and on the
//! objects it mutates, and the only code that reads them back.
//!
//! Everything here is input from tenants too: anyone who can write Secrets in a namespace can
//! put the managed-by label and any annotation on one. So reading is strict: a labelled Secret
//! counts as a copy only when its marks name a configured credential, that credential's source,
//! and the name that credential's copy gets ([`CopyRules`]); values are length-capped before
//! they are compared or stored.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::{Config, Source};

/// Label put on every copy the injector makes; only secrets carrying it are ever updated.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "pull-secret-injector";
/// Annotation on a copy: the credential that made it.
pub const CREDENTIAL_ANNOTATION: &str = "pull-secret-injector/credential";
/// Annotation on a copy: its source secret, `namespace/name`.
pub const SOURCE_ANNOTATION: &str = "pull-secret-injector/source";
/// Annotation on a copy: the hash of its content, as written.
pub const CONTENT_HASH_ANNOTATION: &str = "pull-secret-injector/content-hash";
/// Annotation on a mutated object: the pull secrets the injector added.
pub const INJECTED_ANNOTATION: &str = "pull-secret-injector/injected";
/// Label or annotation that opts a namespace or object out when set to `"false"`.
pub const OPT_OUT_KEY: &str = "pull-secret-injector/inject";

// The marks of a managed token Secret (the minter writes them, the catalog reads the
// expired mark).
/// Annotation: when the stored token expires (RFC 3339).
pub const EXPIRES_ANNOTATION: &str = "pull-secret-injector/token-expires-at";
/// Annotation: when the stored token is due for refresh (RFC 3339); jittered once, at mint
/// time, so that a replica taking over keeps the same schedule.
pub const REFRESH_ANNOTATION: &str = "pull-secret-injector/token-refresh-at";
/// Annotation: a hash of the token source it was minted from; a changed source mints anew.
pub const SPEC_ANNOTATION: &str = "pull-secret-injector/token-spec";
/// Annotation: the provider (`ecr`, `gar`, `acr`).
pub const PROVIDER_ANNOTATION: &str = "pull-secret-injector/token-provider";
/// Annotation present once the token has expired and minting still fails: the catalog stops
/// injecting the credential and says why. Its value is the last failure.
pub const EXPIRED_ANNOTATION: &str = "pull-secret-injector/token-expired";
/// Label on managed token Secrets: the credential they are minted for.
pub const MINTED_FOR_LABEL: &str = "pull-secret-injector/minted-for";

/// Longest credential annotation read: credential names are DNS labels.
const MAX_CREDENTIAL_LEN: usize = 63;
/// Longest source annotation read: a namespace (63), `/` and a Secret name (253).
const MAX_SOURCE_LEN: usize = 63 + 1 + 253;
/// Longest content-hash annotation read: `sha256:` and 64 hex digits.
const MAX_HASH_LEN: usize = 7 + 64;
/// Longest injected annotation read; more is not ours (names are at most 253 bytes, and a
/// namespace holds few credentials).
const MAX_INJECTED_LEN: usize = 16 * 1024;

fn annotation<'a>(meta: &'a ObjectMeta, key: &str, max: usize) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .filter(|v| v.len() <= max)
}

/// Whether an object carries the managed-by label.
pub fn is_managed(meta: &ObjectMeta) -> bool {
    is_managed_labels(meta.labels.as_ref())
}

/// Whether a label set holds the managed-by label.
pub fn is_managed_labels(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

/// The labels every copy carries.
pub fn copy_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())])
}

/// The annotations a copy of `source` (`namespace/name`) for `credential` carries.
pub fn copy_annotations(credential: &str, source: &str, hash: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CREDENTIAL_ANNOTATION.to_string(), credential.to_string()),
        (SOURCE_ANNOTATION.to_string(), source.to_string()),
        (CONTENT_HASH_ANNOTATION.to_string(), hash.to_string()),
    ])
}

/// The marks of a labelled Secret, read with length caps; not yet checked against the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyMarks<'a> {
    /// The credential annotation.
    pub credential: &'a str,
    /// The source annotation, `namespace/name`.
    pub source: &'a str,
    /// The content-hash annotation, when present and well-formed in length.
    pub hash: Option<&'a str>,
}

impl<'a> CopyMarks<'a> {
    /// The marks of a labelled object; `None` without the label or the two identifying
    /// annotations, or when one of them is longer than any value the injector writes.
    pub fn read(meta: &'a ObjectMeta) -> Option<Self> {
        if !is_managed(meta) {
            return None;
        }
        Some(CopyMarks {
            credential: annotation(meta, CREDENTIAL_ANNOTATION, MAX_CREDENTIAL_LEN)?,
            source: annotation(meta, SOURCE_ANNOTATION, MAX_SOURCE_LEN)?,
            hash: annotation(meta, CONTENT_HASH_ANNOTATION, MAX_HASH_LEN),
        })
    }
}

/// The injected annotation of a mutated object, as a list of names (capped in length).
pub fn injected_names(annotations: Option<&BTreeMap<String, String>>) -> Vec<&str> {
    annotations
        .and_then(|a| a.get(INJECTED_ANNOTATION))
        .filter(|v| v.len() <= MAX_INJECTED_LEN)
        .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// Which labelled Secrets are copies under a config: those whose marks name a configured
/// credential that is copied, its source (for `secretSelector`, any secret of the selector's
/// namespace), and the name that credential gives its copy of that source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyRules {
    by_credential: HashMap<String, Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// `secret:`: exactly this source, copied under this name.
    Named { source: String, copy_name: String },
    /// `secretSelector:`: any secret of this namespace, copied under its own name.
    Selected { namespace: String },
}

impl CopyRules {
    /// The rules of a config.
    pub fn of(config: &Config) -> Self {
        let by_credential = config
            .credentials
            .iter()
            .filter_map(|c| {
                let rule = match &c.source {
                    Source::Secret { namespace, name } => Rule::Named {
                        source: format!("{namespace}/{name}"),
                        copy_name: c.copy_name_for(name).to_string(),
                    },
                    Source::SecretSelector { namespace, .. } => Rule::Selected {
                        namespace: namespace.clone(),
                    },
                    Source::LocalSecretSelector { .. } => return None,
                };
                Some((c.name.clone(), rule))
            })
            .collect();
        CopyRules { by_credential }
    }

    /// Whether a Secret named `name` with these marks is a copy the config accounts for.
    pub fn admits(&self, name: &str, marks: &CopyMarks<'_>) -> bool {
        match self.by_credential.get(marks.credential) {
            None => false,
            Some(Rule::Named { source, copy_name }) => marks.source == source && name == copy_name,
            Some(Rule::Selected { namespace }) => marks
                .source
                .split_once('/')
                .is_some_and(|(ns, source_name)| ns == namespace && source_name == name),
        }
    }

    /// Whether no credential is copied (so no labelled Secret is a copy).
    pub fn is_empty(&self) -> bool {
        self.by_credential.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("team-a".to_string()),
            labels: Some(copy_labels()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    const CONFIG: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    namespaces: {include: ["*"]}
  - name: renamed
    secret: default/hub
    copyName: hub-copy
    namespaces: {include: ["*"]}
  - name: runai
    secretSelector: {namespace: runai, matchLabels: {a: b}}
    namespaces: {include: ["*"]}
  - name: local
    localSecretSelector: {matchLabels: {a: b}}
    namespaces: {include: ["*"]}
"#;

    #[test]
    fn only_copies_the_config_accounts_for_are_admitted() {
        let rules = CopyRules::of(&Config::from_raw_yaml(CONFIG).expect("config"));
        let cases = [
            ("all-icr-io", "icr", "default/all-icr-io", true),
            ("other-name", "icr", "default/all-icr-io", false),
            ("all-icr-io", "icr", "default/elsewhere", false),
            ("hub-copy", "renamed", "default/hub", true),
            ("hub", "renamed", "default/hub", false),
            ("nvcr", "runai", "runai/nvcr", true),
            ("nvcr", "runai", "runai/other", false),
            ("nvcr", "runai", "elsewhere/nvcr", false),
            ("nvcr", "runai", "nvcr", false),
            ("x", "local", "team-a/x", false),
            ("all-icr-io", "unknown", "default/all-icr-io", false),
        ];
        for (name, credential, source, admitted) in cases {
            let m = meta(
                name,
                &[
                    (CREDENTIAL_ANNOTATION, credential),
                    (SOURCE_ANNOTATION, source),
                ],
            );
            let marks = CopyMarks::read(&m).expect("marks");
            assert_eq!(
                rules.admits(name, &marks),
                admitted,
                "{name} {credential} {source}"
            );
        }
    }

    #[test]
    fn oversized_or_missing_marks_are_not_read() {
        let long = "x".repeat(100_000);
        let m = meta(
            "a",
            &[
                (CREDENTIAL_ANNOTATION, long.as_str()),
                (SOURCE_ANNOTATION, "default/a"),
            ],
        );
        assert_eq!(CopyMarks::read(&m), None);
        let m = meta("a", &[(CREDENTIAL_ANNOTATION, "icr")]);
        assert_eq!(CopyMarks::read(&m), None);
        let m = meta(
            "a",
            &[
                (CREDENTIAL_ANNOTATION, "icr"),
                (SOURCE_ANNOTATION, "default/a"),
                (CONTENT_HASH_ANNOTATION, long.as_str()),
            ],
        );
        assert_eq!(CopyMarks::read(&m).expect("marks").hash, None);
        let mut unlabelled = meta(
            "a",
            &[
                (CREDENTIAL_ANNOTATION, "icr"),
                (SOURCE_ANNOTATION, "default/a"),
            ],
        );
        unlabelled.labels = None;
        assert_eq!(CopyMarks::read(&unlabelled), None);
    }

    #[test]
    fn injected_names_skip_empty_entries_and_oversized_values() {
        let a = BTreeMap::from([(INJECTED_ANNOTATION.to_string(), "a,,b".to_string())]);
        assert_eq!(injected_names(Some(&a)), ["a", "b"]);
        let huge = BTreeMap::from([(INJECTED_ANNOTATION.to_string(), "a,".repeat(10_000))]);
        assert!(injected_names(Some(&huge)).is_empty());
        assert!(injected_names(None).is_empty());
    }
}
