//! The injector's configuration: schema, defaults and validation.
//!
//! The config is read from YAML, either raw or as the `config.yaml` key of a ConfigMap
//! manifest. Validation collects every problem before failing, so an admin fixes a broken
//! ConfigMap in one round, and each problem names the credential and the field at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

use crate::registry::glob::Glob;
use crate::registry::keyring::{KeyError, RegistryKey};

/// The ConfigMap data key that holds the configuration.
pub const CONFIG_KEY: &str = "config.yaml";
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
}

/// A validated Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    match_labels: BTreeMap<String, String>,
    expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
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
    /// The field at fault, e.g. `registries[1]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.credential {
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

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    credentials: Vec<RawCredential>,
    service_accounts: Option<Vec<String>>,
    pods: Option<bool>,
    prune: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCredential {
    name: Option<String>,
    secret: Option<String>,
    secret_selector: Option<RawSecretSelector>,
    local_secret_selector: Option<RawLabelSelector>,
    registries: Option<Vec<String>>,
    namespaces: Option<RawNamespaces>,
    copy_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSecretSelector {
    namespace: Option<String>,
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<RawRequirement>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<RawRequirement>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRequirement {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawNamespaces {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    selector: Option<RawLabelSelector>,
}

impl Config {
    /// Reads a config from YAML: the raw config, or a ConfigMap manifest holding `config.yaml`.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| ConfigError::single("(document)", format!("not valid YAML: {e}")))?;
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
            return Self::from_raw_yaml(inner);
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
        let raw: RawConfig = serde_yaml::from_str(text)
            .map_err(|e| ConfigError::single("(document)", e.to_string()))?;
        validate(raw)
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

struct Collector {
    problems: Vec<Problem>,
    credential: Option<String>,
}

impl Collector {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            credential: self.credential.clone(),
            field: field.into(),
            message: message.into(),
        });
    }
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut out = Collector {
        problems: Vec::new(),
        credential: None,
    };
    let mut credentials = Vec::new();
    let mut seen_names: BTreeMap<String, usize> = BTreeMap::new();
    for (index, rc) in raw.credentials.into_iter().enumerate() {
        out.credential = Some(match &rc.name {
            Some(name) => format!("credentials[{index}] ({name})"),
            None => format!("credentials[{index}]"),
        });
        // Checked on the raw name so that a duplicate is reported even when either
        // credential has other problems too.
        if let Some(name) = &rc.name
            && let Some(first) = seen_names.insert(name.clone(), index)
        {
            out.push(
                "name",
                format!("duplicate name {name:?}, already used by credentials[{first}]"),
            );
        }
        if let Some(c) = validate_credential(rc, &mut out) {
            credentials.push(c);
        }
    }
    out.credential = None;
    check_copy_names(&credentials, &mut out);

    let service_accounts = raw
        .service_accounts
        .unwrap_or_else(|| vec!["default".to_string()])
        .iter()
        .enumerate()
        .filter_map(|(i, p)| compile_glob(p, &format!("serviceAccounts[{i}]"), &mut out))
        .collect();

    if out.problems.is_empty() {
        Ok(Config {
            credentials,
            service_accounts,
            pods: raw.pods.unwrap_or(true),
            prune: raw.prune.unwrap_or(false),
        })
    } else {
        Err(ConfigError {
            problems: out.problems,
        })
    }
}

fn validate_credential(rc: RawCredential, out: &mut Collector) -> Option<Credential> {
    let before = out.problems.len();
    let name = match rc.name {
        None => {
            out.push("name", "is required");
            String::new()
        }
        Some(name) => {
            if let Err(why) = check_dns_label(&name) {
                out.push("name", format!("{name:?} is not a DNS label: {why}"));
            }
            name
        }
    };

    let given = [
        rc.secret.is_some(),
        rc.secret_selector.is_some(),
        rc.local_secret_selector.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    let source = match given {
        0 => {
            out.push(
                "secret",
                "no source: set exactly one of secret, secretSelector, localSecretSelector",
            );
            None
        }
        1 => source_of(rc.secret, rc.secret_selector, rc.local_secret_selector, out),
        _ => {
            out.push(
                "secret",
                "several sources: set exactly one of secret, secretSelector, localSecretSelector",
            );
            None
        }
    };

    if let Some(copy_name) = &rc.copy_name {
        if let Err(why) = check_dns_subdomain(copy_name) {
            out.push(
                "copyName",
                format!("{copy_name:?} is not a valid Secret name: {why}"),
            );
        }
        match &source {
            Some(Source::SecretSelector { .. }) => out.push(
                "copyName",
                "cannot be used with secretSelector, which may select several secrets",
            ),
            Some(Source::LocalSecretSelector { .. }) => out.push(
                "copyName",
                "cannot be used with localSecretSelector: local secrets are referenced, not copied",
            ),
            _ => {}
        }
    }

    let registries = rc.registries.map(|patterns| {
        if patterns.is_empty() {
            out.push(
                "registries",
                "is empty, so the credential would select nothing; omit it to use every key of the secret",
            );
        }
        patterns
            .iter()
            .enumerate()
            .filter_map(|(i, p)| registry_pattern(p, &format!("registries[{i}]"), out))
            .collect::<Vec<_>>()
    });

    let namespaces = match rc.namespaces {
        None => {
            out.push(
                "namespaces",
                "is required: say where the credential may be injected (include: [\"*\"] for everywhere)",
            );
            None
        }
        Some(ns) => namespace_scope(ns, out),
    };

    if out.problems.len() != before {
        return None;
    }
    Some(Credential {
        name,
        source: source?,
        registries,
        namespaces: namespaces?,
        copy_name: rc.copy_name,
    })
}

fn source_of(
    secret: Option<String>,
    secret_selector: Option<RawSecretSelector>,
    local: Option<RawLabelSelector>,
    out: &mut Collector,
) -> Option<Source> {
    if let Some(reference) = secret {
        let Some((namespace, name)) = reference.split_once('/') else {
            out.push("secret", format!("{reference:?} must be namespace/name"));
            return None;
        };
        let mut ok = true;
        if let Err(why) = check_dns_label(namespace) {
            out.push(
                "secret",
                format!("namespace {namespace:?} is invalid: {why}"),
            );
            ok = false;
        }
        if let Err(why) = check_dns_subdomain(name) {
            out.push("secret", format!("name {name:?} is invalid: {why}"));
            ok = false;
        }
        return ok.then(|| Source::Secret {
            namespace: namespace.to_string(),
            name: name.to_string(),
        });
    }
    if let Some(sel) = secret_selector {
        let namespace = match sel.namespace {
            None => {
                out.push("secretSelector.namespace", "is required");
                None
            }
            Some(ns) => match check_dns_label(&ns) {
                Ok(()) => Some(ns),
                Err(why) => {
                    out.push(
                        "secretSelector.namespace",
                        format!("{ns:?} is invalid: {why}"),
                    );
                    None
                }
            },
        };
        let raw = RawLabelSelector {
            match_labels: sel.match_labels,
            match_expressions: sel.match_expressions,
        };
        if raw.match_labels.is_empty() && raw.match_expressions.is_empty() {
            out.push(
                "secretSelector",
                "selects every secret in the namespace; give matchLabels or matchExpressions",
            );
            return None;
        }
        let selector = label_selector(raw, "secretSelector", out)?;
        return Some(Source::SecretSelector {
            namespace: namespace?,
            selector,
        });
    }
    let raw = local?;
    if raw.match_labels.is_empty() && raw.match_expressions.is_empty() {
        out.push(
            "localSecretSelector",
            "selects every secret in the namespace; give matchLabels or matchExpressions",
        );
        return None;
    }
    let selector = label_selector(raw, "localSecretSelector", out)?;
    Some(Source::LocalSecretSelector { selector })
}

fn namespace_scope(ns: RawNamespaces, out: &mut Collector) -> Option<NamespaceScope> {
    let before = out.problems.len();
    if ns.include.is_empty() {
        out.push(
            "namespaces.include",
            "must list at least one namespace glob (\"*\" for every namespace)",
        );
    }
    let include = ns
        .include
        .iter()
        .enumerate()
        .filter_map(|(i, p)| compile_glob(p, &format!("namespaces.include[{i}]"), out))
        .collect();
    let exclude = ns
        .exclude
        .iter()
        .enumerate()
        .filter_map(|(i, p)| compile_glob(p, &format!("namespaces.exclude[{i}]"), out))
        .collect();
    let selector = ns
        .selector
        .and_then(|s| label_selector(s, "namespaces.selector", out));
    (out.problems.len() == before).then_some(NamespaceScope {
        include,
        exclude,
        selector,
    })
}

fn compile_glob(pattern: &str, field: &str, out: &mut Collector) -> Option<Glob> {
    match Glob::new(pattern) {
        Ok(g) => Some(g),
        Err(e) => {
            out.push(field, format!("invalid glob: {e}"));
            None
        }
    }
}

fn registry_pattern(pattern: &str, field: &str, out: &mut Collector) -> Option<RegistryKey> {
    if pattern.is_empty() {
        out.push(field, "empty pattern: it would match nothing");
        return None;
    }
    // kubelet parses keys with Go's URL parser, for which `?` starts a query and `#` a
    // fragment: a pattern like `u?.icr.io` would silently mean host `u`.
    if pattern.contains(['?', '#']) {
        out.push(
            field,
            format!(
                "{pattern:?}: `?` and `#` cannot be used, kubelet's URL parser reads them as a query or fragment; use `*` within a label"
            ),
        );
        return None;
    }
    match RegistryKey::parse(pattern) {
        Ok(k) => Some(k),
        Err(e) => {
            // Go 1.26 (kubelet 1.36) takes a `[` only as the start of an IPv6 literal host:
            // say so, since `[...]` classes did work in older kubelets.
            let hint = if matches!(e, KeyError::Url { .. }) && pattern.contains('[') {
                "; kubelet accepts `[` only around an IPv6 address at the start of the host, so `[...]` classes cannot be used: use `*` within a label"
            } else {
                ""
            };
            out.push(field, format!("kubelet cannot use it as a key: {e}{hint}"));
            None
        }
    }
}

fn label_selector(
    raw: RawLabelSelector,
    field: &str,
    out: &mut Collector,
) -> Option<LabelSelector> {
    let before = out.problems.len();
    for (k, v) in &raw.match_labels {
        if let Err(why) = check_label_key(k) {
            out.push(format!("{field}.matchLabels"), format!("key {k:?}: {why}"));
        }
        if let Err(why) = check_label_value(v) {
            out.push(
                format!("{field}.matchLabels"),
                format!("value {v:?} of {k:?}: {why}"),
            );
        }
    }
    let mut expressions = Vec::new();
    for (i, r) in raw.match_expressions.into_iter().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        if let Err(why) = check_label_key(&r.key) {
            out.push(&at, format!("key {:?}: {why}", r.key));
            continue;
        }
        for v in &r.values {
            if let Err(why) = check_label_value(v) {
                out.push(&at, format!("value {v:?}: {why}"));
            }
        }
        let values: BTreeSet<String> = r.values.into_iter().collect();
        let requirement = match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                out.push(
                    &at,
                    format!("operator {} needs at least one value", r.operator),
                );
                continue;
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                out.push(&at, format!("operator {} takes no values", r.operator));
                continue;
            }
            "In" => Requirement::In(r.key, values),
            "NotIn" => Requirement::NotIn(r.key, values),
            "Exists" => Requirement::Exists(r.key),
            "DoesNotExist" => Requirement::DoesNotExist(r.key),
            other => {
                out.push(
                    &at,
                    format!("unknown operator {other:?} (use In, NotIn, Exists or DoesNotExist)"),
                );
                continue;
            }
        };
        expressions.push(requirement);
    }
    (out.problems.len() == before).then_some(LabelSelector {
        match_labels: raw.match_labels,
        expressions,
    })
}

/// Two credentials may share a copy name only when they would write identical content:
/// otherwise each would overwrite the other's copy.
fn check_copy_names(credentials: &[Credential], out: &mut Collector) {
    let mut by_copy: BTreeMap<&str, &Credential> = BTreeMap::new();
    for c in credentials {
        let Source::Secret { namespace, name } = &c.source else {
            continue;
        };
        let copy = c.copy_name_for(name);
        match by_copy.get(copy) {
            None => {
                by_copy.insert(copy, c);
            }
            Some(first) => {
                let same_source = matches!(&first.source, Source::Secret { namespace: n, name: m } if n == namespace && m == name);
                let same_registries = registry_set(first) == registry_set(c);
                if !(same_source && same_registries) {
                    out.credential = Some(format!("credential {}", c.name));
                    out.push(
                        "copyName",
                        format!(
                            "copy name {copy:?} is also written by credential {} with different content; give one of them another copyName",
                            first.name
                        ),
                    );
                    out.credential = None;
                }
            }
        }
    }
}

fn registry_set(c: &Credential) -> Option<BTreeSet<&str>> {
    c.registries
        .as_ref()
        .map(|r| r.iter().map(RegistryKey::normalized).collect())
}

/// RFC 1123 label: what Kubernetes requires of namespace names.
pub fn check_dns_label(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > 63 {
        return Err("must be at most 63 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("must consist of lower case letters, digits and '-'");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

/// RFC 1123 subdomain: what Kubernetes requires of Secret names.
pub fn check_dns_subdomain(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > 253 {
        return Err("must be at most 253 characters");
    }
    for part in s.split('.') {
        if part.is_empty() {
            return Err("must not have empty dot-separated parts");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("must consist of lower case letters, digits, '-' and '.'");
        }
        if part.starts_with('-') || part.ends_with('-') {
            return Err("each part must start and end with a letter or digit");
        }
    }
    Ok(())
}

fn check_label_key(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            check_dns_subdomain(prefix).map_err(|_| "prefix must be a DNS subdomain")?;
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("name part must not be empty");
    }
    check_label_value(name)
}

fn check_label_value(value: &str) -> Result<(), &'static str> {
    if value.len() > 63 {
        return Err("must be at most 63 characters");
    }
    if value.is_empty() {
        return Ok(());
    }
    let ok_inner = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let first = value.as_bytes()[0];
    let last = value.as_bytes()[value.len() - 1];
    if !ok_inner || !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("must be alphanumerics, '-', '_' or '.', starting and ending alphanumeric");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    registries: ["icr.io", "*.icr.io"]
    namespaces:
      include: ["*"]
      exclude: ["kube-*", "openshift-*"]
      selector: {matchLabels: {}}
  - name: runai-cluster-wide
    secretSelector:
      namespace: runai
      matchLabels: {runai/cluster-wide: "true"}
    namespaces: {include: ["runai-*"]}
  - name: project-local
    localSecretSelector: {matchLabels: {pull-secret-injector/local: "true"}}
    namespaces: {include: ["runai-*"]}
serviceAccounts: ["default"]
pods: true
prune: false
"#;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::from_yaml(yaml) {
            Ok(_) => panic!("config should be invalid:\n{yaml}"),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn design_example_parses() {
        let c = Config::from_yaml(FULL).unwrap();
        assert_eq!(c.credentials.len(), 3);
        assert_eq!(
            c.credentials[0].source,
            Source::Secret {
                namespace: "default".into(),
                name: "all-icr-io".into()
            }
        );
        assert!(c.pods && !c.prune);
        assert!(c.wants_service_account("default"));
        assert!(!c.wants_service_account("builder"));
        let icr = &c.credentials[0];
        let none = BTreeMap::new();
        assert!(icr.namespaces.admits("team-a", &none));
        assert!(!icr.namespaces.admits("kube-system", &none));
        assert!(!icr.namespaces.admits("openshift-config", &none));
        assert!(icr.selects(&RegistryKey::parse("us.icr.io").unwrap()));
        assert!(icr.selects(&RegistryKey::parse("https://icr.io").unwrap()));
        assert!(icr.selects(&RegistryKey::parse("cp.icr.io/cp/cpd").unwrap()));
        assert!(!icr.selects(&RegistryKey::parse("quay.io").unwrap()));
        assert!(!icr.selects(&RegistryKey::parse("a.b.icr.io").unwrap()));
    }

    #[test]
    fn defaults() {
        let c = Config::from_yaml("credentials: []").unwrap();
        assert!(c.pods);
        assert!(!c.prune);
        assert_eq!(c.service_accounts.len(), 1);
        assert!(c.wants_service_account("default"));
        let off = Config::from_yaml("credentials: []\nserviceAccounts: []").unwrap();
        assert!(!off.wants_service_account("default"));
    }

    #[test]
    fn configmap_manifest_is_accepted() {
        let manifest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: pull-secret-injector}}\ndata:\n  config.yaml: |\n{}",
            FULL.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        );
        assert_eq!(Config::from_yaml(&manifest).unwrap().credentials.len(), 3);
        let missing =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pull-secret-injector}\ndata: {}";
        assert_eq!(
            problems(missing),
            ["data: ConfigMap pull-secret-injector has no string key \"config.yaml\""]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_credential_and_field() {
        let yaml = r#"
credentials:
  - name: a
    secret: default/src
    namespaces: {include: ["*"]}
  - name: a
    secret: default/other
    namespaces: {include: ["*"]}
  - name: two-sources
    secret: default/x
    localSecretSelector: {matchLabels: {a: b}}
    namespaces: {include: ["*"]}
  - name: no-source
    namespaces: {include: ["*"]}
  - name: Bad_Name
    secret: default/x
    namespaces: {include: ["*"]}
  - name: patterns
    secret: default/x
    registries: ["", "u?.icr.io", "us.icr.io:port", "us.[a-.io", "u[r-t].icr.io", "[a-z].icr.io", "a b@quay.io", "*.icr.io"]
    namespaces: {include: ["[", "ok"], exclude: ["\\"]}
  - name: selectors
    secretSelector: {namespace: runai, matchExpressions: [{key: a, operator: Near, values: [x]}, {key: b, operator: In}]}
    namespaces: {include: ["*"], selector: {matchLabels: {"bad key!": x}}}
  - name: no-namespaces
    secret: noslash
  - name: copy-a
    secret: default/one
    copyName: shared
    namespaces: {include: ["*"]}
  - name: copy-b
    secret: default/two
    copyName: shared
    namespaces: {include: ["*"]}
  - name: empty-registries
    secret: default/x
    registries: []
    namespaces: {include: []}
serviceAccounts: ["["]
"#;
        let got = problems(yaml);
        let want = [
            "credentials[1] (a): name: duplicate name \"a\", already used by credentials[0]",
            "credentials[2] (two-sources): secret: several sources: set exactly one of secret, secretSelector, localSecretSelector",
            "credentials[3] (no-source): secret: no source: set exactly one of secret, secretSelector, localSecretSelector",
            "credentials[4] (Bad_Name): name: \"Bad_Name\" is not a DNS label: must consist of lower case letters, digits and '-'",
            "credentials[5] (patterns): registries[0]: empty pattern: it would match nothing",
            "credentials[5] (patterns): registries[1]: \"u?.icr.io\": `?` and `#` cannot be used",
            "credentials[5] (patterns): registries[2]: kubelet cannot use it as a key: registry key \"us.icr.io:port\" is not a valid URL: invalid port \":port\" after host",
            // Go 1.26: a `[` that does not start the host is refused outright (url.go:549).
            "credentials[5] (patterns): registries[3]: kubelet cannot use it as a key: registry key \"us.[a-.io\" is not a valid URL: invalid IP-literal; kubelet accepts `[` only around an IPv6 address at the start of the host, so `[...]` classes cannot be used: use `*` within a label",
            "credentials[5] (patterns): registries[4]: kubelet cannot use it as a key: registry key \"u[r-t].icr.io\" is not a valid URL: invalid IP-literal; kubelet accepts `[` only",
            // A leading `[` is an IPv6 literal; here the text after `]` is not a port.
            "credentials[5] (patterns): registries[5]: kubelet cannot use it as a key: registry key \"[a-z].icr.io\" is not a valid URL: invalid port \".icr.io\" after host; kubelet accepts `[` only",
            // validUserinfo refuses the space; the userinfo itself is never shown.
            "credentials[5] (patterns): registries[6]: kubelet cannot use it as a key: registry key \"***@quay.io\" is not a valid URL: net/url: invalid userinfo",
            "credentials[5] (patterns): namespaces.include[0]: invalid glob: pattern \"[\": unterminated character class",
            "credentials[5] (patterns): namespaces.exclude[0]: invalid glob: pattern \"\\\\\": trailing backslash",
            "credentials[6] (selectors): secretSelector.matchExpressions[0]: unknown operator \"Near\"",
            "credentials[6] (selectors): secretSelector.matchExpressions[1]: operator In needs at least one value",
            "credentials[6] (selectors): namespaces.selector.matchLabels: key \"bad key!\"",
            "credentials[7] (no-namespaces): secret: \"noslash\" must be namespace/name",
            "credentials[7] (no-namespaces): namespaces: is required",
            "credentials[10] (empty-registries): registries: is empty, so the credential would select nothing",
            "credentials[10] (empty-registries): namespaces.include: must list at least one namespace glob",
            "credential copy-b: copyName: copy name \"shared\" is also written by credential copy-a with different content",
            "serviceAccounts[0]: invalid glob: pattern \"[\": unterminated character class",
        ];
        for w in want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing problem {w:?} in:\n{}",
                got.join("\n")
            );
        }
        assert_eq!(
            got.len(),
            want.len(),
            "unexpected problems:\n{}",
            got.join("\n")
        );
    }

    #[test]
    fn duplicates_are_reported_even_when_a_credential_has_other_problems() {
        let yaml = r#"
credentials:
  - name: icr
    secret: default/a
    registries: ["u?.icr.io"]
    namespaces: {include: ["*"]}
  - name: icr
    secret: default/b
    namespaces: {include: ["*"]}
"#;
        let got = problems(yaml);
        assert!(
            got.iter().any(|p| p.contains("duplicate name \"icr\"")),
            "{got:?}"
        );
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn structural_errors_name_the_field() {
        let unknown = problems("credentials:\n  - name: a\n    secrets: default/x\n");
        assert!(
            unknown[0].contains("unknown field `secrets`"),
            "{unknown:?}"
        );
        let wrong_type = problems("credentials: {}\n");
        assert!(wrong_type[0].contains("credentials"), "{wrong_type:?}");
        assert!(problems("")[0].contains("empty"));
        assert!(problems("credentials: [")[0].contains("not valid YAML"));
    }

    #[test]
    fn same_copy_name_with_same_content_is_fine() {
        let yaml = r#"
credentials:
  - name: a
    secret: default/src
    registries: ["quay.io"]
    namespaces: {include: ["team-*"]}
  - name: b
    secret: default/src
    registries: ["quay.io"]
    namespaces: {include: ["dev-*"]}
"#;
        assert!(Config::from_yaml(yaml).is_ok());
    }

    #[test]
    fn label_selectors() {
        let yaml = r#"
credentials:
  - name: a
    secret: default/src
    namespaces:
      include: ["*"]
      selector:
        matchLabels: {tier: prod}
        matchExpressions:
          - {key: team, operator: In, values: [a, b]}
          - {key: legacy, operator: DoesNotExist}
"#;
        let c = Config::from_yaml(yaml).unwrap();
        let scope = &c.credentials[0].namespaces;
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(scope.admits("x", &labels(&[("tier", "prod"), ("team", "a")])));
        assert!(!scope.admits("x", &labels(&[("tier", "prod"), ("team", "c")])));
        assert!(!scope.admits(
            "x",
            &labels(&[("tier", "prod"), ("team", "a"), ("legacy", "")])
        ));
        assert!(!scope.admits("x", &labels(&[("team", "a")])));
        assert_eq!(
            scope.selector.as_ref().unwrap().to_query(),
            "tier=prod,team in (a,b),!legacy"
        );
    }
}
