//! The injector's configuration: schema, defaults and validation.
//!
//! The config is read from YAML, either raw or as the `config.yaml` key of a ConfigMap
//! manifest. Validation collects every problem before failing, so an admin fixes a broken
//! ConfigMap in one round, and each problem names the credential and the field at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

use crate::registry::glob::Glob;
use crate::registry::keyring::RegistryKey;

mod names;
pub mod token;
mod validate;
mod verify;

pub use names::{check_dns_label, check_dns_subdomain};
pub use verify::{Verify, VerifyMode};

/// The ConfigMap data key that holds the configuration.
pub const CONFIG_KEY: &str = "config.yaml";
/// The namespace the injector is installed in unless told otherwise (`POD_NAMESPACE`).
pub const DEFAULT_NAMESPACE: &str = "pull-secret-injector";
/// The default name of the config ConfigMap (in the injector's own namespace).
pub const DEFAULT_CONFIG_MAP: &str = "pull-secret-injector";
/// Namespaces the injector never writes to or injects into, whatever the config says.
pub const PROTECTED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The credentials, in the order the admin wrote them (which is the injection order).
    pub credentials: Vec<Credential>,
    /// ServiceAccount name globs that receive every applicable credential; empty turns it off.
    pub service_accounts: Vec<Glob>,
    /// Whether pods get image-based injection.
    pub pods: bool,
    /// Whether copies that no credential wants any more are deleted.
    pub prune: bool,
    /// The default verification settings (each credential has its own, resolved).
    pub verify: Verify,
}

/// One declared registry credential.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Unique DNS label; used in annotations, metrics and logs.
    pub name: String,
    /// Where the pull secret comes from.
    pub source: Source,
    /// Registry patterns selecting the auths entries to use; `None` selects all of them.
    pub registries: Option<Vec<RegistryKey>>,
    /// Which namespaces may receive the credential.
    pub namespaces: NamespaceScope,
    /// Name of the copy in target namespaces, when it differs from the source's name.
    pub copy_name: Option<String>,
    /// How the credential is verified against its registries.
    pub verify: Verify,
    /// The provider the injector mints this credential from, when it does; `source` is then
    /// the managed Secret the minted token is written to.
    pub token: Option<token::TokenSource>,
}

impl Credential {
    /// Whether an auths key is selected by `registries` (every key is when it is omitted).
    pub fn selects(&self, key: &RegistryKey) -> bool {
        match &self.registries {
            None => true,
            Some(patterns) => match crate::registry::keyring::Location::parse(key.normalized()) {
                Ok(location) => patterns.iter().any(|p| p.matches(&location)),
                Err(_) => false,
            },
        }
    }

    /// The name a copy of the given source secret gets in target namespaces.
    pub fn copy_name_for<'a>(&'a self, source_name: &'a str) -> &'a str {
        self.copy_name.as_deref().unwrap_or(source_name)
    }
}

/// Where a credential's pull secret lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// One secret, `namespace/name`.
    Secret {
        /// The source namespace.
        namespace: String,
        /// The secret's name.
        name: String,
    },
    /// Every secret in one namespace whose labels match.
    SecretSelector {
        /// The source namespace.
        namespace: String,
        /// The label selector.
        selector: LabelSelector,
    },
    /// Secrets already in the target namespace whose labels match: referenced, never copied.
    LocalSecretSelector {
        /// The label selector.
        selector: LabelSelector,
    },
}

/// Which namespaces a credential may be injected into.
#[derive(Debug, Clone)]
pub struct NamespaceScope {
    /// Name globs; a namespace must match one.
    pub include: Vec<Glob>,
    /// Name globs; a namespace matching one is out.
    pub exclude: Vec<Glob>,
    /// Label selector on the Namespace, ANDed with the globs.
    pub selector: Option<LabelSelector>,
}

impl NamespaceScope {
    /// Whether a namespace with this name and these labels is in scope.
    pub fn admits(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.include.iter().any(|g| g.matches(name))
            && !self.exclude.iter().any(|g| g.matches(name))
            && self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }

    /// Why a namespace is out of scope, the first rule that leaves it out in the order
    /// `admits` applies them; `None` when it is in scope.
    pub fn why_not(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<OutOfScope> {
        if !self.include.iter().any(|g| g.matches(name)) {
            return Some(OutOfScope::NotIncluded {
                include: self
                    .include
                    .iter()
                    .map(|g| g.as_str().to_string())
                    .collect(),
            });
        }
        if let Some(g) = self.exclude.iter().find(|g| g.matches(name)) {
            return Some(OutOfScope::Excluded {
                pattern: g.as_str().to_string(),
            });
        }
        let selector = self.selector.as_ref()?;
        let failed = selector.failures(labels);
        (!failed.is_empty()).then_some(OutOfScope::SelectorMismatch { failed })
    }
}

/// Why a namespace is out of a credential's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutOfScope {
    /// No `namespaces.include` glob matches its name.
    NotIncluded {
        /// The include globs.
        include: Vec<String>,
    },
    /// A `namespaces.exclude` glob matches its name.
    Excluded {
        /// The first exclude glob that matches.
        pattern: String,
    },
    /// Its labels do not satisfy `namespaces.selector`.
    SelectorMismatch {
        /// Each requirement that fails, with the namespace's value (`cpd-instance=true: the
        /// namespace has no label cpd-instance`).
        failed: Vec<String>,
    },
}

/// A validated Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    pub(super) match_labels: BTreeMap<String, String>,
    pub(super) expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl LabelSelector {
    /// A selector requiring exactly these labels.
    pub fn from_labels(labels: BTreeMap<String, String>) -> Self {
        LabelSelector {
            match_labels: labels,
            expressions: Vec::new(),
        }
    }

    /// Whether a label set satisfies every requirement (an empty selector matches everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|r| match r {
                Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
                Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
                Requirement::Exists(k) => labels.contains_key(k),
                Requirement::DoesNotExist(k) => !labels.contains_key(k),
            })
    }

    /// Each requirement `labels` fails, in words: the requirement as a query, then what the
    /// labels hold instead. Empty when the selector matches.
    pub fn failures(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        let has = |k: &str| match labels.get(k) {
            Some(v) => format!("the namespace has {k}={v}"),
            None => format!("the namespace has no label {k}"),
        };
        let mut out = Vec::new();
        for (k, v) in &self.match_labels {
            if labels.get(k) != Some(v) {
                out.push(format!("{k}={v}: {}", has(k)));
            }
        }
        for r in &self.expressions {
            let failed = match r {
                Requirement::In(k, values) => (!labels.get(k).is_some_and(|v| values.contains(v)))
                    .then(|| format!("{k} in ({}): {}", join(values), has(k))),
                Requirement::NotIn(k, values) => labels
                    .get(k)
                    .filter(|v| values.contains(*v))
                    .map(|_| format!("{k} notin ({}): {}", join(values), has(k))),
                Requirement::Exists(k) => {
                    (!labels.contains_key(k)).then(|| format!("{k}: {}", has(k)))
                }
                Requirement::DoesNotExist(k) => {
                    labels.contains_key(k).then(|| format!("!{k}: {}", has(k)))
                }
            };
            out.extend(failed);
        }
        out
    }

    /// The `matchLabels` part, for building API list queries.
    pub fn match_labels(&self) -> &BTreeMap<String, String> {
        &self.match_labels
    }

    /// The selector in Kubernetes' `labelSelector` query syntax (`a=b,c in (d,e),!f`).
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.expressions {
            parts.push(match r {
                Requirement::In(k, vs) => format!("{k} in ({})", join(vs)),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", join(vs)),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            });
        }
        parts.join(",")
    }
}

fn join(values: &BTreeSet<String>) -> String {
    values
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The credential at fault (`credentials[2] (icr)`), or `None` for top-level fields.
    pub credential: Option<String>,
    /// The field at fault, e.g. `registries[1]`; empty when it is the credential as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.credential {
            // A problem of the credential as a whole (a field serde does not know).
            Some(c) if self.field.is_empty() => write!(f, "{c}: {}", self.message),
            Some(c) => write!(f, "{c}: {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Every problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order they appear in the document.
    pub problems: Vec<Problem>,
}

/// The field of a problem with the file rather than with the config in it.
const WHOLE_FILE: &str = "(file)";

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(message) = self.whole_file() {
            return f.write_str(message);
        }
        write!(f, "invalid configuration ({} problem", self.problems.len())?;
        if self.problems.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// The one problem, when it is with the file as a whole (which of its YAML documents to
    /// read), not with a config: there is no config to call invalid.
    pub fn whole_file(&self) -> Option<&str> {
        match self.problems.as_slice() {
            [p] if p.credential.is_none() && p.field == WHOLE_FILE => Some(&p.message),
            _ => None,
        }
    }

    fn single(field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![Problem {
                credential: None,
                field: field.to_string(),
                message: message.into(),
            }],
        }
    }
}

impl Config {
    /// A config with nothing in it: what is served while no config is loaded.
    pub fn empty() -> Config {
        Config {
            credentials: Vec::new(),
            service_accounts: Vec::new(),
            pods: false,
            prune: false,
            verify: Verify::default(),
        }
    }

    /// Reads a config from YAML: the raw config, or a ConfigMap manifest holding `config.yaml`
    /// (alone, or the one such ConfigMap of a multi-document stream such as kustomize's
    /// output). Errors in the ConfigMap's `config.yaml` give lines of the file.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let mut documents = Vec::new();
        let mut total = 0;
        for document in serde_yaml::Deserializer::from_str(text) {
            total += 1;
            let value = serde_yaml::Value::deserialize(document)
                .map_err(|e| ConfigError::single("(document)", format!("not valid YAML: {e}")))?;
            if !value.is_null() {
                documents.push(value);
            }
        }
        let holds_config = |d: &serde_yaml::Value| {
            d.get("kind").and_then(|k| k.as_str()) == Some("ConfigMap")
                && d.get("data").and_then(|d| d.get(CONFIG_KEY)).is_some()
        };
        let doc = match documents.len() {
            0 => return Self::from_raw_yaml(""),
            1 => documents.remove(0),
            n => {
                let mut holding: Vec<_> = documents.into_iter().filter(holds_config).collect();
                if holding.len() != 1 {
                    return Err(ConfigError::single(
                        WHOLE_FILE,
                        format!(
                            "holds {n} YAML documents; give the config alone or the one ConfigMap that holds {CONFIG_KEY}"
                        ),
                    ));
                }
                holding.remove(0)
            }
        };
        if doc.get("kind").and_then(|k| k.as_str()) == Some("ConfigMap") {
            let name = doc
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                .unwrap_or("(unnamed)");
            let inner = doc
                .get("data")
                .and_then(|d| d.get(CONFIG_KEY))
                .and_then(|v| v.as_str())
                .ok_or_else(|| {
                    ConfigError::single(
                        "data",
                        format!("ConfigMap {name} has no string key {CONFIG_KEY:?}"),
                    )
                })?;
            return Self::from_raw_yaml(inner).map_err(|mut e| {
                if let Some((lines, columns)) = embedded_block(text, inner) {
                    for p in &mut e.problems {
                        p.message = shift_marks(&p.message, lines, columns);
                    }
                }
                e
            });
        }
        if total > 1 {
            // Empty documents around the config (a `---` at either end): serde reads one only.
            let alone = serde_yaml::to_string(&doc).unwrap_or_default();
            return Self::from_raw_yaml(&alone);
        }
        Self::from_raw_yaml(text)
    }

    /// Reads the raw config document (not a ConfigMap).
    pub fn from_raw_yaml(text: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::single(
                "(document)",
                "the configuration is empty; it needs at least `credentials:`",
            ));
        }
        validate::parse(text)
    }

    /// Puts the managed Secrets of token credentials in the injector's namespace: parsing
    /// places them in [`DEFAULT_NAMESPACE`], since the config does not say where it is
    /// installed.
    pub fn place_minted(mut self, own_namespace: &str) -> Config {
        for c in &mut self.credentials {
            if c.token.is_some()
                && let Source::Secret { namespace, .. } = &mut c.source
            {
                *namespace = own_namespace.to_string();
            }
        }
        self
    }

    /// Whether a ServiceAccount of this name receives every applicable credential.
    pub fn wants_service_account(&self, name: &str) -> bool {
        self.service_accounts.iter().any(|g| g.matches(name))
    }

    /// The credential with this name.
    pub fn credential(&self, name: &str) -> Option<&Credential> {
        self.credentials.iter().find(|c| c.name == name)
    }
}

/// Where a ConfigMap's `config.yaml` literal block (`config.yaml: |`) holding `inner` starts in
/// `text`: the lines before its first line, and its indentation. A literal block keeps every
/// line break, so line N of `inner` is line N plus that of the file. `None` for other scalar
/// styles, whose lines do not map one to one.
fn embedded_block(text: &str, inner: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let first_inner = inner.lines().find(|l| !l.trim().is_empty())?;
    lines.iter().enumerate().find_map(|(i, line)| {
        let rest = line.trim_start();
        let rest = ["config.yaml", "\"config.yaml\"", "'config.yaml'"]
            .iter()
            .find_map(|k| rest.strip_prefix(k))?;
        let header = rest.trim_start().strip_prefix(':')?.trim_start();
        let indicator = header.split('#').next().unwrap_or("").trim_end();
        if !indicator.starts_with('|')
            || !indicator[1..]
                .chars()
                .all(|c| matches!(c, '-' | '+' | '1'..='9'))
        {
            return None;
        }
        let body = lines[i + 1..].iter().find(|l| !l.trim().is_empty())?;
        let indent = body.len() - body.trim_start_matches(' ').len();
        (body[indent..] == *first_inner).then_some((i + 1, indent))
    })
}

/// `message` with every `line L column C` serde_yaml wrote moved by `lines` and `columns`.
fn shift_marks(message: &str, lines: usize, columns: usize) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 5..];
        let line_digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let tail = &after[line_digits..];
        let column_digits = tail
            .strip_prefix(" column ")
            .map(|t| t.bytes().take_while(u8::is_ascii_digit).count())
            .unwrap_or(0);
        match (
            after[..line_digits].parse::<usize>(),
            tail.get(8..8 + column_digits).map(str::parse::<usize>),
        ) {
            (Ok(line), Some(Ok(column))) if column_digits > 0 => {
                out.push_str(&format!(
                    "line {} column {}",
                    line + lines,
                    column + columns
                ));
                rest = &tail[8 + column_digits..];
            }
            _ => {
                out.push_str("line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
