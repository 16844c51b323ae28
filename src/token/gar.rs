//! Artifact Registry / Container Registry: an OAuth2 access token for the `cloud-platform`
//! scope, written as `oauth2accesstoken:<token>` for each registry host. Two ways to get one:
//! a service account key, through the JWT-bearer grant (RFC 7523, Google's "Using OAuth 2.0
//! for Server to Server Applications"), or workload identity federation, through STS token
//! exchange (RFC 8693, Google's external_account credentials, AIP-4117) and, optionally,
//! IAM Credentials' `generateAccessToken` to impersonate a service account.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{MintContext, MintError, Minted, MintedAuth, answer_str, expires_in, send_for_json};
use crate::config::token::{GarSpec, GoogleAuth};

/// The scope Artifact Registry and Container Registry accept for pulls.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The username Google documents for access tokens sent as a docker password.
pub const USERNAME: &str = "oauth2accesstoken";
/// The key of the service account key JSON in the key Secret.
pub const KEY_JSON: &str = "key.json";

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
// Google accepts assertions valid for at most an hour.
const ASSERTION_LIFETIME: u64 = 3600;

mod federation;

/// Mints an access token for the spec's registries.
pub async fn mint(spec: &GarSpec, cx: &MintContext<'_>) -> Result<Minted, MintError> {
    if spec.registries.is_empty() {
        return Err(MintError::Config(
            "gar: no registries to write the token for".into(),
        ));
    }
    let token = match &spec.auth {
        GoogleAuth::ServiceAccountKey(_) => service_account(spec, cx).await?,
        GoogleAuth::WorkloadIdentity { credentials_file } => {
            federation::mint(spec, credentials_file.as_ref(), cx).await?
        }
    };
    Ok(Minted {
        auths: spec
            .registries
            .iter()
            .map(|registry| MintedAuth {
                registry: registry.clone(),
                username: USERNAME.to_string(),
                password: token.token.clone(),
            })
            .collect(),
        expires_at: token.expires_at,
    })
}

// No Debug: it holds the token.
struct AccessToken {
    token: String,
    expires_at: SystemTime,
}

/// The fields of a service account key JSON the JWT-bearer grant needs.
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    private_key_id: String,
    token_uri: Option<String>,
}

// The private key never reaches a log line through Debug.
impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// The claims Google reads from a JWT-bearer assertion.
#[derive(Debug, Serialize, PartialEq)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

async fn service_account(spec: &GarSpec, cx: &MintContext<'_>) -> Result<AccessToken, MintError> {
    let what = format!("gar: {KEY_JSON} of the key Secret");
    let data = cx
        .key
        .ok_or_else(|| MintError::Config(format!("{what}: the key Secret was not read")))?;
    let json = data
        .get(KEY_JSON)
        .ok_or_else(|| MintError::Config(format!("gar: the key Secret has no key {KEY_JSON}")))?;
    let key =
        parse_service_account_key(json).map_err(|e| MintError::Config(format!("{what}: {e}")))?;
    let endpoint = spec
        .token_endpoint
        .clone()
        .or_else(|| key.token_uri.clone())
        .ok_or_else(|| MintError::Config(format!("{what}: field token_uri is missing")))?;
    let assertion = assertion(&key, &endpoint, cx.now).map_err(MintError::Config)?;
    let request = cx.http.post(&endpoint).form(&[
        ("grant_type", JWT_BEARER),
        ("assertion", assertion.as_str()),
    ]);
    let answer = send_for_json(request, &endpoint, &[&assertion]).await?;
    token_answer(&answer, cx.now, &endpoint)
}

/// Reads a service account key JSON; errors name the field and never quote a value.
fn parse_service_account_key(json: &[u8]) -> Result<ServiceAccountKey, String> {
    let value: Value = serde_json::from_slice(json).map_err(|e| {
        // serde_json's syntax errors hold a position only, never input text.
        format!(
            "not JSON ({})",
            crate::redact::serde_message(&e.to_string())
        )
    })?;
    let Value::Object(map) = value else {
        return Err("not a JSON object".to_string());
    };
    match map.get("type").and_then(Value::as_str) {
        Some("service_account") => {}
        Some("external_account") => {
            return Err(
                "field type is external_account: that is a workload identity credential, \
                 not a service account key"
                    .to_string(),
            );
        }
        Some(_) => return Err("field type is not service_account".to_string()),
        None => return Err("field type is missing".to_string()),
    }
    let key = ServiceAccountKey {
        client_email: required(&map, "client_email")?,
        private_key: required(&map, "private_key")?,
        private_key_id: required(&map, "private_key_id")?,
        token_uri: optional(&map, "token_uri")?,
    };
    if !key.private_key.contains("-----BEGIN PRIVATE KEY-----") {
        return Err("field private_key is not a PEM PKCS#8 private key".to_string());
    }
    Ok(key)
}

fn required(map: &Map<String, Value>, field: &str) -> Result<String, String> {
    optional(map, field)?.ok_or_else(|| format!("field {field} is missing"))
}

fn optional(map: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(format!("field {field} is empty")),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(format!("field {field} is not a string")),
    }
}

fn claims<'a>(key: &'a ServiceAccountKey, audience: &'a str, now: SystemTime) -> Claims<'a> {
    let iat = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    Claims {
        iss: &key.client_email,
        scope: SCOPE,
        aud: audience,
        iat,
        exp: iat + ASSERTION_LIFETIME,
    }
}

/// The signed RS256 assertion for `audience`, the endpoint it is posted to.
fn assertion(key: &ServiceAccountKey, audience: &str, now: SystemTime) -> Result<String, String> {
    let signing_key =
        jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|_| {
            format!(
                "gar: {KEY_JSON} of the key Secret: field private_key is not an RSA private key"
            )
        })?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.private_key_id.clone());
    jsonwebtoken::encode(&header, &claims(key, audience, now), &signing_key)
        // ring refuses some keys only when signing (shorter than 2048 bits, say).
        .map_err(|e| {
            format!("gar: {KEY_JSON} of the key Secret: field private_key cannot sign: {e}")
        })
}

fn token_answer(
    answer: &Map<String, Value>,
    now: SystemTime,
    endpoint: &str,
) -> Result<AccessToken, MintError> {
    Ok(AccessToken {
        token: answer_str(answer, "access_token", endpoint)?,
        expires_at: expires_in(answer, now, endpoint)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_json(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let mut map = serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "kid-1",
            "private_key": "-----BEGIN PRIVATE KEY-----\nSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n",
            "client_email": "puller@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .as_object()
        .unwrap()
        .clone();
        edit(&mut map);
        serde_json::to_vec(&map).unwrap()
    }

    #[test]
    fn a_key_is_read_and_its_errors_name_the_field_never_the_key() {
        let key = parse_service_account_key(&key_json(|_| {})).unwrap();
        assert_eq!(key.client_email, "puller@p.iam.gserviceaccount.com");
        assert_eq!(key.private_key_id, "kid-1");
        assert_eq!(
            key.token_uri.as_deref(),
            Some("https://oauth2.googleapis.com/token")
        );
        assert!(!format!("{key:?}").contains("SECRETKEYMATERIAL"));

        let cases: [(Vec<u8>, &str); 8] = [
            (
                key_json(|m| {
                    m.remove("client_email");
                }),
                "field client_email is missing",
            ),
            (
                key_json(|m| {
                    m.remove("private_key_id");
                }),
                "field private_key_id is missing",
            ),
            (
                key_json(|m| {
                    m.insert("private_key".into(), 5.into());
                }),
                "field private_key is not a string",
            ),
            (
                key_json(|m| {
                    m.insert("private_key".into(), "SECRETKEYMATERIAL".into());
                }),
                "field private_key is not a PEM",
            ),
            (
                key_json(|m| {
                    m.insert("type".into(), "authorized_user".into());
                }),
                "field type is not service_account",
            ),
            (
                key_json(|m| {
                    m.insert("type".into(), "external_account".into());
                }),
                "workload identity",
            ),
            (
                b"{\"private_key\": \"SECRETKEYMATERIAL".to_vec(),
                "not JSON",
            ),
            (b"[]".to_vec(), "not a JSON object"),
        ];
        for (json, want) in cases {
            let err = parse_service_account_key(&json).unwrap_err();
            assert!(err.contains(want), "{err} does not say {want}");
            assert!(!err.contains("SECRETKEYMATERIAL"), "{err}");
        }
        // token_uri may be left to the spec's token_endpoint.
        let key = parse_service_account_key(&key_json(|m| {
            m.remove("token_uri");
        }))
        .unwrap();
        assert_eq!(key.token_uri, None);
    }

    #[test]
    fn claims_are_googles_for_the_endpoint_posted_to() {
        let key = parse_service_account_key(&key_json(|_| {})).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let claims = claims(&key, "http://127.0.0.1:1/token", now);
        assert_eq!(
            claims,
            Claims {
                iss: "puller@p.iam.gserviceaccount.com",
                scope: "https://www.googleapis.com/auth/cloud-platform",
                aud: "http://127.0.0.1:1/token",
                iat: 1_800_000_000,
                exp: 1_800_003_600,
            }
        );
        // Not an RSA key: a config error, without the key.
        let err = assertion(&key, "http://x", now).unwrap_err();
        assert!(
            err.contains("private_key is not an RSA private key"),
            "{err}"
        );
        assert!(!err.contains("SECRETKEYMATERIAL"));
    }

    #[test]
    fn answers_are_read_and_their_faults_named() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let answer = |v: Value| v.as_object().unwrap().clone();
        let ok = token_answer(
            &answer(serde_json::json!({"access_token": "ya29.t", "expires_in": 3599, "token_type": "Bearer"})),
            now,
            "http://e/token",
        )
        .unwrap();
        assert_eq!(ok.token, "ya29.t");
        assert_eq!(ok.expires_at, now + Duration::from_secs(3599));
        for bad in [
            serde_json::json!({"expires_in": 3599}),
            serde_json::json!({"access_token": "ya29.t"}),
            serde_json::json!({"access_token": "ya29.t", "expires_in": -1}),
        ] {
            let err = token_answer(&answer(bad), now, "http://e/token?x=1")
                .err()
                .unwrap();
            assert_eq!(err.metric_label(), "protocol");
            assert!(!err.to_string().contains("ya29.t"), "{err}");
            assert!(!err.to_string().contains("x=1"), "{err}");
        }
    }
}
