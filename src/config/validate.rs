//! From YAML to a validated [`Config`]: the raw document as serde reads it, then every field
//! checked, collecting every problem before failing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::DeserializeSeed;

use super::names::{check_dns_label, check_dns_subdomain, check_label_key, check_label_value};
use super::token::{RawToken, TokenSource, managed_secret_name};
use super::verify::RawVerify;
use super::{
    Config, ConfigError, Credential, DEFAULT_NAMESPACE, LabelSelector, NamespaceScope, Problem,
    Requirement, Source, Verify,
};
use crate::registry::glob::Glob;
use crate::registry::keyring::{KeyError, RegistryKey};

/// Parses and validates the raw config document.
pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    match serde_yaml::from_str::<RawConfig>(text) {
        Ok(raw) => {
            let indices = (0..raw.credentials.len()).collect();
            validate(raw, indices, BTreeMap::new(), Vec::new())
        }
        Err(first) => Err(every_shape_problem(text, first)),
    }
}

/// serde stops at the first field that does not fit; an admin fixing a ConfigMap wants every
/// one. So the top level and each credential are read on their own, each problem keeping its
/// line (from a read of the whole text that deserializes only that part), and the credentials
/// that do fit are validated as usual.
fn every_shape_problem(text: &str, first: serde_yaml::Error) -> ConfigError {
    let whole = |e: &dyn std::fmt::Display| ConfigError::single("(document)", e.to_string());
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return whole(&e),
    };
    let mut top_problems = Vec::new();
    let top = match serde_yaml::from_str::<RawTop>(text) {
        Ok(top) => Some(top),
        Err(e) => {
            top_problems.push(Problem {
                credential: None,
                field: "(document)".to_string(),
                message: e.to_string(),
            });
            None
        }
    };
    let mut shape = BTreeMap::new();
    let mut good = Vec::new();
    let mut indices = Vec::new();
    match value.get("credentials") {
        Some(serde_yaml::Value::Sequence(items)) => {
            for (index, item) in items.iter().enumerate() {
                match serde_yaml::from_value::<RawCredential>(item.clone()) {
                    Ok(rc) => {
                        good.push(rc);
                        indices.push(index);
                    }
                    Err(unlocated) => {
                        let label = match item.get("name").and_then(|n| n.as_str()) {
                            Some(name) => format!("credentials[{index}] ({name})"),
                            None => format!("credentials[{index}]"),
                        };
                        let located = OnlyCredential(Some(index))
                            .deserialize(serde_yaml::Deserializer::from_str(text))
                            .err()
                            .map_or_else(|| unlocated.to_string(), |e| e.to_string());
                        shape.insert(index, credential_problem(label, index, &located));
                    }
                }
            }
        }
        None | Some(serde_yaml::Value::Null) if top.is_some() => {}
        _ => {
            if let Err(e) =
                OnlyCredential(None).deserialize(serde_yaml::Deserializer::from_str(text))
            {
                top_problems.push(Problem {
                    credential: None,
                    field: "(document)".to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
    if top_problems.is_empty() && shape.is_empty() {
        return whole(&first);
    }
    let raw = match top {
        Some(top) => RawConfig {
            credentials: good,
            service_accounts: top.service_accounts,
            pods: top.pods,
            prune: top.prune,
            verify: top.verify,
        },
        None => RawConfig {
            credentials: good,
            service_accounts: None,
            pods: None,
            prune: None,
            verify: None,
        },
    };
    match validate(raw, indices, shape, top_problems) {
        Err(e) => e,
        Ok(_) => whole(&first),
    }
}

/// A credential's serde error as a problem of that credential: the path serde puts first
/// (`credentials[2].namespaces: ...`) becomes the field.
fn credential_problem(label: String, index: usize, message: &str) -> Problem {
    let prefix = format!("credentials[{index}]");
    let (field, message) = match message.strip_prefix(&prefix) {
        Some(rest) => match rest.strip_prefix(": ") {
            Some(message) => (String::new(), message),
            None => match rest.strip_prefix('.').and_then(|r| r.split_once(": ")) {
                Some((field, message)) => (field.to_string(), message),
                None => (String::new(), message),
            },
        },
        None => (String::new(), message),
    };
    Problem {
        credential: Some(label),
        field,
        message: message.to_string(),
    }
}

/// The top level of the config without its credentials, which are read one by one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTop {
    #[serde(default)]
    #[allow(dead_code)]
    credentials: serde::de::IgnoredAny,
    service_accounts: Option<Vec<String>>,
    pods: Option<bool>,
    prune: Option<bool>,
    verify: Option<RawVerify>,
}

/// Reads the whole document but deserializes only one credential (or, with `None`, only the
/// shape of the `credentials` list), so that its error carries its line in the text.
struct OnlyCredential(Option<usize>);

impl<'de> serde::de::DeserializeSeed<'de> for OnlyCredential {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for OnlyCredential {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the config")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "credentials" {
                map.next_value_seed(CredentialList(self.0))?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct CredentialList(Option<usize>);

impl<'de> serde::de::DeserializeSeed<'de> for CredentialList {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CredentialList {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of credentials")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let more = if self.0 == Some(index) {
                seq.next_element::<RawCredential>()?.is_some()
            } else {
                seq.next_element::<serde::de::IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(());
            }
            index += 1;
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
    verify: Option<RawVerify>,
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
    verify: Option<RawVerify>,
    token: Option<RawToken>,
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

/// Validates `raw`, whose credentials were at `indices` of the document; `shape` holds the
/// problems of the credentials that could not be read, by index, and `problems` those found
/// before (the top level's), so that every problem is listed in document order.
fn validate(
    raw: RawConfig,
    indices: Vec<usize>,
    mut shape: BTreeMap<usize, Problem>,
    problems: Vec<Problem>,
) -> Result<Config, ConfigError> {
    let mut out = Collector {
        problems,
        credential: None,
    };
    let verify = match &raw.verify {
        Some(v) => v.resolve(&Verify::default(), "verify", &mut |field, message| {
            out.push(field, message)
        }),
        None => Verify::default(),
    };
    let mut credentials = Vec::new();
    let mut seen_names: BTreeMap<String, usize> = BTreeMap::new();
    for (index, rc) in indices.into_iter().zip(raw.credentials) {
        while let Some(entry) = shape.first_entry().filter(|e| *e.key() < index) {
            out.problems.push(entry.remove());
        }
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
        if let Some(c) = validate_credential(rc, &verify, &mut out) {
            credentials.push(c);
        }
    }
    out.problems.extend(shape.into_values());
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
            verify,
        })
    } else {
        Err(ConfigError {
            problems: out.problems,
        })
    }
}

fn validate_credential(
    rc: RawCredential,
    default_verify: &Verify,
    out: &mut Collector,
) -> Option<Credential> {
    let before = out.problems.len();
    let verify = match &rc.verify {
        Some(v) => v.resolve(default_verify, "verify", &mut |field, message| {
            out.push(field, message)
        }),
        None => default_verify.clone(),
    };
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
        rc.token.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    let mut token: Option<TokenSource> = None;
    let source = match given {
        0 => {
            out.push(
                "secret",
                "no source: set exactly one of secret, secretSelector, localSecretSelector, token",
            );
            None
        }
        1 => match rc.token {
            // A minted token is a Secret like any other once written: the injector's own
            // namespace holds it (placed by `Config::place_minted`).
            Some(raw) => {
                token = raw.resolve(&mut |field, message| out.push(field, message));
                token.as_ref().map(|_| Source::Secret {
                    namespace: DEFAULT_NAMESPACE.to_string(),
                    name: managed_secret_name(&name),
                })
            }
            None => source_of(rc.secret, rc.secret_selector, rc.local_secret_selector, out),
        },
        _ => {
            out.push(
                "secret",
                "several sources: set exactly one of secret, secretSelector, localSecretSelector, token",
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
        verify,
        token,
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
