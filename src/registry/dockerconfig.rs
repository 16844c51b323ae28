//! Pull secrets: `.dockerconfigjson` and legacy `.dockercfg` contents, validated as strictly as
//! kubelet reads them, filtered per registry, converted, and hashed.
//!
//! kubelet unmarshals every pull secret of a pod into one keyring and gives up on the whole pod
//! when one of them fails to parse (`MakeDockerKeyring`). So a secret that kubelet would choke
//! on must never be copied or injected: validation here rejects exactly those.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::registry::keyring::redact_key;

/// Secret type of `.dockerconfigjson` pull secrets.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Data key of `.dockerconfigjson` pull secrets.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// Secret type of legacy `.dockercfg` pull secrets.
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
/// Data key of legacy `.dockercfg` pull secrets.
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// The fields kubelet's `DockerConfigEntry` decodes; Go matches them case-insensitively.
const STRING_FIELDS: [&str; 4] = ["username", "password", "email", "auth"];

/// The registry entries of one pull secret, in a canonical (sorted) order.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DockerConfig {
    auths: BTreeMap<String, AuthEntry>,
}

/// One registry's credentials; every field is kept, known or not.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthEntry {
    fields: Map<String, Value>,
}

impl AuthEntry {
    /// The field names present (never their values).
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// The login this entry holds, as kubelet reads it: `username`/`password`, overridden by
    /// `auth` (base64 `user:password`) when that is set; and `identitytoken`, which a registry's
    /// token realm exchanges for an access token.
    pub fn login(&self) -> Login {
        let field = |wanted: &str| {
            self.fields
                .get(wanted)
                .or_else(|| {
                    self.fields
                        .iter()
                        .filter(|(k, _)| k.eq_ignore_ascii_case(wanted))
                        .map(|(_, v)| v)
                        .next_back()
                })
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mut login = Login {
            username: field("username"),
            password: field("password"),
            identity_token: field("identitytoken"),
        };
        if let Some(auth) = field("auth") {
            let decoded = if auth.trim().ends_with('=') {
                STANDARD.decode(&auth)
            } else {
                STANDARD_NO_PAD.decode(&auth)
            };
            if let Some((user, password)) = decoded
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .and_then(|d| {
                    d.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                })
            {
                login.username = Some(user);
                login.password = Some(password);
            }
        }
        login
    }
}

/// A registry login read from a pull secret entry. Its `Debug` shows which parts are present,
/// never their values.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Login {
    /// The user name.
    pub username: Option<String>,
    /// The password (or a token used as one).
    pub password: Option<String>,
    /// An OAuth2 refresh token for the registry's token realm.
    pub identity_token: Option<String>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username.is_some())
            .field("password", &self.password.is_some())
            .field("identity_token", &self.identity_token.is_some())
            .finish()
    }
}

/// Why a pull secret cannot be used. Messages name the secret and the registry key, never a
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerConfigError {
    /// The secret's type is not a pull-secret type.
    #[error("secret {secret}: type {found:?} is not {DOCKER_CONFIG_JSON_TYPE} or {DOCKERCFG_TYPE}")]
    WrongType {
        /// `namespace/name`.
        secret: String,
        /// The type found.
        found: String,
    },
    /// The data key for the type is missing or empty.
    #[error("secret {secret}: data key {key} is missing or empty")]
    MissingData {
        /// `namespace/name`.
        secret: String,
        /// The expected data key.
        key: &'static str,
    },
    /// The content does not parse.
    #[error("{context}: {reason}")]
    Invalid {
        /// `secret ns/name: .dockerconfigjson`, or just the format when no secret is known.
        context: String,
        /// What is wrong, with the registry key at fault when there is one.
        reason: String,
    },
}

impl DockerConfigError {
    fn in_secret(self, secret: &str) -> Self {
        match self {
            DockerConfigError::Invalid { context, reason } => DockerConfigError::Invalid {
                context: format!("secret {secret}: {context}"),
                reason,
            },
            other => other,
        }
    }
}

fn invalid(context: &str, reason: impl Into<String>) -> DockerConfigError {
    DockerConfigError::Invalid {
        context: context.to_string(),
        reason: reason.into(),
    }
}

impl DockerConfig {
    /// Reads a pull secret, checking that its type and data key agree.
    pub fn from_secret(secret: &Secret) -> Result<DockerConfig, DockerConfigError> {
        let reference = format!(
            "{}/{}",
            secret.metadata.namespace.as_deref().unwrap_or(""),
            secret.metadata.name.as_deref().unwrap_or("")
        );
        let type_ = secret.type_.as_deref().unwrap_or("Opaque");
        let key = match type_ {
            DOCKER_CONFIG_JSON_TYPE => DOCKER_CONFIG_JSON_KEY,
            DOCKERCFG_TYPE => DOCKERCFG_KEY,
            other => {
                return Err(DockerConfigError::WrongType {
                    secret: reference,
                    found: other.to_string(),
                });
            }
        };
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
            .ok_or(DockerConfigError::MissingData {
                secret: reference.clone(),
                key,
            })?;
        let parsed = if key == DOCKER_CONFIG_JSON_KEY {
            Self::from_dockerconfigjson(data)
        } else {
            Self::from_dockercfg(data)
        };
        parsed.map_err(|e| e.in_secret(&reference))
    }

    /// Reads `.dockerconfigjson` content: `{"auths": {registry: entry}}`.
    pub fn from_dockerconfigjson(bytes: &[u8]) -> Result<DockerConfig, DockerConfigError> {
        const CONTEXT: &str = DOCKER_CONFIG_JSON_KEY;
        let Value::Object(top) = parse_json(bytes, CONTEXT)? else {
            return Err(invalid(CONTEXT, "content is not a JSON object"));
        };
        // Go's decoder matches `auths` case-insensitively, preferring the exact spelling, and
        // a missing `auths` is an empty config, not an error.
        let auths = top.get("auths").or_else(|| {
            top.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("auths"))
                .map(|(_, v)| v)
        });
        match auths {
            None | Some(Value::Null) => Ok(DockerConfig::default()),
            Some(Value::Object(entries)) => Self::from_entries(entries, CONTEXT),
            Some(_) => Err(invalid(CONTEXT, "\"auths\" is not a JSON object")),
        }
    }

    /// Reads legacy `.dockercfg` content: `{registry: entry}`.
    pub fn from_dockercfg(bytes: &[u8]) -> Result<DockerConfig, DockerConfigError> {
        const CONTEXT: &str = DOCKERCFG_KEY;
        match parse_json(bytes, CONTEXT)? {
            Value::Object(entries) => Self::from_entries(&entries, CONTEXT),
            Value::Null => Ok(DockerConfig::default()),
            _ => Err(invalid(CONTEXT, "content is not a JSON object")),
        }
    }

    fn from_entries(
        entries: &Map<String, Value>,
        context: &str,
    ) -> Result<Self, DockerConfigError> {
        let mut auths = BTreeMap::new();
        for (registry, entry) in entries {
            let fields = match entry {
                Value::Object(fields) => fields,
                // Go decodes null into a zero entry.
                Value::Null => &Map::new(),
                _ => {
                    return Err(invalid(
                        context,
                        format!("entry {:?} is not a JSON object", redact_key(registry)),
                    ));
                }
            };
            validate_entry(registry, fields, context)?;
            auths.insert(
                registry.clone(),
                AuthEntry {
                    fields: fields.clone(),
                },
            );
        }
        Ok(DockerConfig { auths })
    }

    /// Every entry: its auths key as written, and its fields.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &AuthEntry)> {
        self.auths.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The auths keys as written (`https://index.docker.io/v1/`), in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.auths.keys().map(String::as_str)
    }

    /// Number of registry entries.
    pub fn len(&self) -> usize {
        self.auths.len()
    }

    /// True when there is no registry entry.
    pub fn is_empty(&self) -> bool {
        self.auths.is_empty()
    }

    /// The entries whose key passes `keep`.
    pub fn filter(&self, keep: impl Fn(&str) -> bool) -> DockerConfig {
        DockerConfig {
            auths: self
                .auths
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// `{"auths":{...}}` with keys sorted at every level: deterministic bytes.
    pub fn to_dockerconfigjson(&self) -> Vec<u8> {
        let auths: Map<String, Value> = self
            .auths
            .iter()
            .map(|(k, v)| (k.clone(), Value::Object(v.fields.clone())))
            .collect();
        let mut top = Map::new();
        top.insert("auths".to_string(), Value::Object(auths));
        serde_json::to_vec(&sorted(Value::Object(top))).unwrap_or_default()
    }

    /// `sha256:` + hex of the canonical `.dockerconfigjson` bytes.
    pub fn content_hash(&self) -> String {
        content_hash_of(&self.to_dockerconfigjson())
    }
}

/// The registry keys a pull secret holds, read leniently (only the shape `{"auths": {key:
/// ...}}`, or `{key: ...}` for `.dockercfg`), for telling who a secret that fails validation
/// was meant for. `None` when even that cannot be read.
pub fn registry_keys_of(secret: &Secret) -> Option<Vec<String>> {
    let data = secret.data.as_ref()?;
    let (bytes, legacy) = match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON_TYPE) => (data.get(DOCKER_CONFIG_JSON_KEY)?, false),
        Some(DOCKERCFG_TYPE) => (data.get(DOCKERCFG_KEY)?, true),
        _ => return None,
    };
    let value: Value = serde_json::from_slice(&bytes.0).ok()?;
    let entries = if legacy {
        value.as_object()?
    } else {
        value.get("auths")?.as_object()?
    };
    Some(entries.keys().cloned().collect())
}

/// `sha256:` + hex of some bytes: the form of every content hash, so that the hash of a copy's
/// data as stored compares equal to its source's [`DockerConfig::content_hash`].
pub fn content_hash_of(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Sorts object keys at every level. serde_json's map is sorted today, but a dependency turning
/// on its `preserve_order` feature would silently change every content hash.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn parse_json(bytes: &[u8], context: &str) -> Result<Value, DockerConfigError> {
    // Only the position and our own duplicate-key message: serde_json's other messages may
    // quote pieces of the (secret) input.
    serde_json::from_slice::<Strict>(bytes)
        .map(|s| s.0)
        .map_err(|e| {
            let what = if e.to_string().starts_with(DUPLICATE_KEY) {
                "a JSON object repeats a key"
            } else {
                "not valid JSON"
            };
            invalid(
                context,
                format!("{what} (line {} column {})", e.line(), e.column()),
            )
        })
}

const DUPLICATE_KEY: &str = "duplicate key";

/// A JSON value whose objects never repeat a key.
///
/// Go's decoder reads every occurrence of a repeated key, so `{"auth":5,"auth":"dTpw"}` breaks
/// kubelet while serde_json (last one wins) would accept it. Rejecting repeats is the safe side:
/// such a secret is reported instead of being copied.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.insert(key, value).is_some() {
                return Err(serde::de::Error::custom(DUPLICATE_KEY));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Rejects what makes kubelet's `DockerConfigEntry.UnmarshalJSON` fail.
fn validate_entry(
    registry: &str,
    fields: &Map<String, Value>,
    context: &str,
) -> Result<(), DockerConfigError> {
    for wanted in STRING_FIELDS {
        // Go's encoding/json prefers an exact match and otherwise takes the last
        // case-insensitive one.
        let value = fields.get(wanted).or_else(|| {
            fields
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(wanted))
                .map(|(_, v)| v)
                .next_back()
        });
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if wanted == "auth" => check_auth(registry, s, context)?,
            Some(Value::String(_)) => {}
            Some(_) => {
                return Err(invalid(
                    context,
                    format!(
                        "entry {:?}: field {wanted:?} is not a string",
                        redact_key(registry)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// kubelet's `decodeDockerConfigFieldAuth`: padded base64 when it ends with `=`, unpadded
/// otherwise, decoding to `user:password`.
fn check_auth(registry: &str, auth: &str, context: &str) -> Result<(), DockerConfigError> {
    if auth.is_empty() {
        return Ok(());
    }
    let decoded = if auth.trim().ends_with('=') {
        STANDARD.decode(auth)
    } else {
        STANDARD_NO_PAD.decode(auth)
    };
    let decoded = decoded.map_err(|_| {
        invalid(
            context,
            format!(
                "entry {:?}: field \"auth\" is not valid base64",
                redact_key(registry)
            ),
        )
    })?;
    if !decoded.contains(&b':') {
        return Err(invalid(
            context,
            format!(
                "entry {:?}: field \"auth\" does not decode to user:password",
                redact_key(registry)
            ),
        ));
    }
    Ok(())
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("registries", &self.auths.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEntry")
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use proptest::prelude::*;

    const AUTH: &str = "aWFtYXBpa2V5OmZha2UtYXBpa2V5LTAwMDE="; // iamapikey:fake-apikey-0001

    fn secret(type_: &str, key: &str, data: &[u8]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("regcred".into()),
                namespace: Some("runai".into()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(data.to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn reads_dockerconfigjson_keeping_every_field() {
        let json = format!(
            r#"{{"auths":{{
                "us.icr.io":{{"auth":"{AUTH}"}},
                "https://index.docker.io/v1/":{{"username":"u","password":"fake-password-1","email":"a@b.c"}},
                "quay.io":{{"identitytoken":"fake-token","x-extra":{{"n":1}}}}
            }},"credsStore":"desktop"}}"#
        );
        let c = DockerConfig::from_dockerconfigjson(json.as_bytes()).unwrap();
        assert_eq!(
            c.keys().collect::<Vec<_>>(),
            ["https://index.docker.io/v1/", "quay.io", "us.icr.io"]
        );
        let out: Value = serde_json::from_slice(&c.to_dockerconfigjson()).unwrap();
        assert_eq!(out["auths"]["quay.io"]["x-extra"]["n"], 1);
        assert_eq!(out["auths"]["quay.io"]["identitytoken"], "fake-token");
        assert_eq!(
            out["auths"]["https://index.docker.io/v1/"]["email"],
            "a@b.c"
        );
        assert_eq!(out["auths"]["us.icr.io"]["auth"], AUTH);
        assert!(out.get("credsStore").is_none(), "only auths is copied");
    }

    #[test]
    fn converts_legacy_dockercfg() {
        let cfg = format!(
            r#"{{"image-registry.openshift-image-registry.svc:5000":{{"auth":"{AUTH}","email":"x@y"}}}}"#
        );
        let s = secret(DOCKERCFG_TYPE, DOCKERCFG_KEY, cfg.as_bytes());
        let c = DockerConfig::from_secret(&s).unwrap();
        let json = c.to_dockerconfigjson();
        let back = DockerConfig::from_dockerconfigjson(&json).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            ["image-registry.openshift-image-registry.svc:5000"]
        );
    }

    #[test]
    fn missing_auths_is_empty_not_an_error() {
        assert!(
            DockerConfig::from_dockerconfigjson(b"{}")
                .unwrap()
                .is_empty()
        );
        assert!(
            DockerConfig::from_dockerconfigjson(br#"{"auths":null}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn filter_and_hash() {
        let json =
            format!(r#"{{"auths":{{"a.io":{{"auth":"{AUTH}"}},"b.io":{{"auth":"{AUTH}"}}}}}}"#);
        let c = DockerConfig::from_dockerconfigjson(json.as_bytes()).unwrap();
        let only_a = c.filter(|k| k == "a.io");
        assert_eq!(only_a.len(), 1);
        assert_ne!(only_a.content_hash(), c.content_hash());
        // Same content written differently hashes the same.
        let reordered = format!(
            "{{ \"auths\" : {{ \"b.io\" : {{\"auth\":\"{AUTH}\"}},\n \"a.io\":{{\"auth\":\"{AUTH}\"}} }} }}"
        );
        let r = DockerConfig::from_dockerconfigjson(reordered.as_bytes()).unwrap();
        assert_eq!(r.content_hash(), c.content_hash());
        assert!(c.content_hash().starts_with("sha256:"));
        assert_eq!(c.content_hash().len(), 7 + 64);
        // Any change of a field changes the hash.
        let changed = json.replace("\"b.io\":{", "\"b.io\":{\"email\":\"e\",");
        let changed = DockerConfig::from_dockerconfigjson(changed.as_bytes()).unwrap();
        assert_ne!(changed.content_hash(), c.content_hash());
    }

    #[test]
    fn malformed_secrets_are_errors_without_secret_material() {
        let cases: &[(&str, &str, &[u8], &str)] = &[
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                b"not json fake-password-9",
                "secret runai/regcred: .dockerconfigjson: not valid JSON (line 1 column 2)",
            ),
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                b"[\"fake-password-9\"]",
                "secret runai/regcred: .dockerconfigjson: content is not a JSON object",
            ),
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                br#"{"auths":["fake-password-9"]}"#,
                "secret runai/regcred: .dockerconfigjson: \"auths\" is not a JSON object",
            ),
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                br#"{"auths":{"r.io":"fake-password-9"}}"#,
                "secret runai/regcred: .dockerconfigjson: entry \"r.io\" is not a JSON object",
            ),
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                br#"{"auths":{"r.io":{"auth":5}}}"#,
                "secret runai/regcred: .dockerconfigjson: entry \"r.io\": field \"auth\" is not a string",
            ),
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                br#"{"auths":{"r.io":{"auth":"fake-password-9!!"}}}"#,
                "secret runai/regcred: .dockerconfigjson: entry \"r.io\": field \"auth\" is not valid base64",
            ),
            // base64("fakepassword9"): no colon.
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                br#"{"auths":{"r.io":{"auth":"ZmFrZXBhc3N3b3JkOQ=="}}}"#,
                "secret runai/regcred: .dockerconfigjson: entry \"r.io\": field \"auth\" does not decode to user:password",
            ),
            // The entry is named, but not the userinfo a key may carry.
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                br#"{"auths":{"https://u:fake-password-9@r.io":{"auth":"ZmFrZXBhc3N3b3JkOQ=="}}}"#,
                "secret runai/regcred: .dockerconfigjson: entry \"https://***@r.io\": field \"auth\" does not decode to user:password",
            ),
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                br#"{"auths":{"r.io":{"Username":9,"password":"fake-password-9"}}}"#,
                "secret runai/regcred: .dockerconfigjson: entry \"r.io\": field \"username\" is not a string",
            ),
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                b"",
                "secret runai/regcred: data key .dockerconfigjson is missing or empty",
            ),
            (
                DOCKERCFG_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                b"{}",
                "secret runai/regcred: data key .dockercfg is missing or empty",
            ),
            (
                "Opaque",
                DOCKER_CONFIG_JSON_KEY,
                b"{}",
                "secret runai/regcred: type \"Opaque\" is not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg",
            ),
        ];
        for (type_, key, data, want) in cases {
            let err = DockerConfig::from_secret(&secret(type_, key, data))
                .unwrap_err()
                .to_string();
            assert_eq!(&err, want);
            assert!(!err.contains("fake-password"), "{err}");
        }
    }

    #[test]
    fn repeated_keys_are_refused_because_go_reads_every_occurrence() {
        for json in [
            r#"{"auths":{"r.io":{"auth":5,"auth":"dTpw"}}}"#,
            r#"{"auths":{"r.io":{"auth":"dTpw"}},"auths":{}}"#,
            r#"{"auths":{"r.io":{},"r.io":{"auth":"dTpw"}}}"#,
        ] {
            let err = DockerConfig::from_dockerconfigjson(json.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains("a JSON object repeats a key"), "{err}");
        }
    }

    #[test]
    fn unpadded_auth_is_accepted_like_kubelet() {
        // base64("u:p") is "dTpw": no padding needed; "dTpwcQ" is unpadded "u:pq".
        for auth in ["dTpw", "dTpwcQ", "dTpwcQ=="] {
            let json = format!(r#"{{"auths":{{"r.io":{{"auth":"{auth}"}}}}}}"#);
            assert!(
                DockerConfig::from_dockerconfigjson(json.as_bytes()).is_ok(),
                "{auth}"
            );
        }
        let json = br#"{"auths":{"r.io":{"auth":"dTpwcQ="}}}"#;
        assert!(
            DockerConfig::from_dockerconfigjson(json).is_err(),
            "bad padding"
        );
    }

    /// Found by `fuzz/docker_config`: a number that does not fit an integer must survive
    /// being written and read again, or a copy's content hash would drift from its source's.
    #[test]
    fn what_is_written_reads_back_to_the_same_content() {
        let legacy = br#"{".uths":{"https://index.docker.ioprivate.jp2.icr.is":{"https://inde":5555555555555555555555555555555555}}}"#;
        let config = DockerConfig::from_dockercfg(legacy).unwrap();
        let again = DockerConfig::from_dockerconfigjson(&config.to_dockerconfigjson()).unwrap();
        assert_eq!(again.content_hash(), config.content_hash());
        assert_eq!(again.to_dockerconfigjson(), config.to_dockerconfigjson());
    }

    #[test]
    fn debug_never_prints_credentials() {
        let json =
            format!(r#"{{"auths":{{"r.io":{{"auth":"{AUTH}","password":"fake-password-1"}}}}}}"#);
        let c = DockerConfig::from_dockerconfigjson(json.as_bytes()).unwrap();
        let text = format!("{c:?} {:?}", c.auths.values().next().unwrap());
        assert!(
            !text.contains("fake-password") && !text.contains(AUTH),
            "{text}"
        );
        assert!(text.contains("r.io"));
    }

    fn entry() -> impl Strategy<Value = Map<String, Value>> {
        (
            proptest::option::of("[a-z]{1,8}"),
            proptest::option::of("[a-zA-Z0-9]{0,12}"),
            proptest::option::of("[a-z]{1,8}:[a-z0-9]{1,8}"),
            proptest::option::of("[a-z0-9.@]{1,12}"),
        )
            .prop_map(|(user, password, auth, token)| {
                let mut m = Map::new();
                if let Some(u) = user {
                    m.insert("username".into(), Value::String(u));
                }
                if let Some(p) = password {
                    m.insert("password".into(), Value::String(p));
                }
                if let Some(a) = auth {
                    m.insert("auth".into(), Value::String(STANDARD.encode(a)));
                }
                if let Some(t) = token {
                    m.insert("identitytoken".into(), Value::String(t));
                }
                m
            })
    }

    proptest! {
        #[test]
        fn any_config_round_trips_and_keeps_its_hash(
            entries in proptest::collection::btree_map("[a-z0-9.:/-]{1,20}", entry(), 0..6)
        ) {
            let auths: Map<String, Value> = entries.into_iter().map(|(k, v)| (k, Value::Object(v))).collect();
            let json = serde_json::to_vec(&serde_json::json!({"auths": auths})).unwrap();
            let c = DockerConfig::from_dockerconfigjson(&json).unwrap();
            let again = DockerConfig::from_dockerconfigjson(&c.to_dockerconfigjson()).unwrap();
            prop_assert_eq!(again.content_hash(), c.content_hash());
            prop_assert_eq!(again, c);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = DockerConfig::from_dockerconfigjson(&bytes);
            let _ = DockerConfig::from_dockercfg(&bytes);
        }
    }
}
