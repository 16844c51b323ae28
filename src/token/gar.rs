//! Artifact Registry / Container Registry: an OAuth2 access token for the `cloud-platform`
//! scope, written as `oauth2accesstoken:<token>` for each registry host. Two ways to get one:
//! a service account key, through the JWT-bearer grant (RFC 7523, Google's "Using OAuth 2.0
//! for Server to Server Applications"), or workload identity federation, through STS token
//! exchange (RFC 8693, Google's external_account credentials, AIP-4117) and, optionally,
//! IAM Credentials' `generateAccessToken` to impersonate a service account.

use std::path::PathBuf;
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
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
// Google accepts assertions valid for at most an hour.
const ASSERTION_LIFETIME: u64 = 3600;

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
            workload_identity(spec, credentials_file.as_ref(), cx).await?
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
        .map_err(|e| format!("gar: cannot sign the assertion: {e}"))
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

/// The fields of an external_account credential JSON this client reads.
#[derive(Debug, PartialEq)]
struct ExternalAccount {
    audience: String,
    subject_token_type: String,
    token_url: Option<String>,
    token_file: PathBuf,
    /// `None`: the file is the token; `Some(field)`: a JSON object holding it in `field`.
    json_field: Option<String>,
    impersonation_url: Option<String>,
}

async fn workload_identity(
    spec: &GarSpec,
    credentials_file: Option<&PathBuf>,
    cx: &MintContext<'_>,
) -> Result<AccessToken, MintError> {
    let path = match credentials_file {
        Some(p) => p.clone(),
        None => (cx.env)("GOOGLE_APPLICATION_CREDENTIALS")
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
                MintError::Config(
                    "gar: workload identity needs credentialsFile or \
                     GOOGLE_APPLICATION_CREDENTIALS"
                        .into(),
                )
            })?,
    };
    let json = tokio::fs::read(&path)
        .await
        .map_err(|e| MintError::Config(format!("gar: cannot read {}: {e}", path.display())))?;
    let account = parse_external_account(&json)
        .map_err(|e| MintError::Config(format!("gar: {}: {e}", path.display())))?;
    let subject_token = read_subject_token(&account).await?;

    let endpoint = spec
        .token_endpoint
        .clone()
        .or_else(|| account.token_url.clone())
        .ok_or_else(|| {
            MintError::Config(format!(
                "gar: {}: field token_url is missing",
                path.display()
            ))
        })?;
    let request = cx.http.post(&endpoint).form(&[
        ("grant_type", TOKEN_EXCHANGE),
        ("audience", account.audience.as_str()),
        ("scope", SCOPE),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("subject_token", subject_token.as_str()),
        ("subject_token_type", account.subject_token_type.as_str()),
    ]);
    let answer = send_for_json(request, &endpoint, &[&subject_token]).await?;
    let federated = token_answer(&answer, cx.now, &endpoint)?;
    match &account.impersonation_url {
        None => Ok(federated),
        Some(url) => impersonate(url, &federated.token, cx).await,
    }
}

/// Reads an external_account JSON; only file credential sources are supported, since a pod's
/// federated identity is a projected ServiceAccount token file.
fn parse_external_account(json: &[u8]) -> Result<ExternalAccount, String> {
    let value: Value = serde_json::from_slice(json).map_err(|e| {
        format!(
            "not JSON ({})",
            crate::redact::serde_message(&e.to_string())
        )
    })?;
    let Value::Object(map) = value else {
        return Err("not a JSON object".to_string());
    };
    match map.get("type").and_then(Value::as_str) {
        Some("external_account") => {}
        Some(_) => return Err("field type is not external_account".to_string()),
        None => return Err("field type is missing".to_string()),
    }
    let Some(Value::Object(source)) = map.get("credential_source") else {
        return Err("field credential_source is missing or not an object".to_string());
    };
    let token_file = optional(source, "file")
        .map_err(|e| format!("credential_source: {e}"))?
        .ok_or_else(|| {
            "credential_source: field file is missing (only file sources are supported)".to_string()
        })?;
    let json_field = match source.get("format") {
        None | Some(Value::Null) => None,
        Some(Value::Object(format)) => match format.get("type").and_then(Value::as_str) {
            None | Some("text") => None,
            Some("json") => Some(
                required(format, "subject_token_field_name")
                    .map_err(|e| format!("credential_source.format: {e}"))?,
            ),
            Some(_) => {
                return Err("credential_source.format: field type is not text or json".into());
            }
        },
        Some(_) => return Err("credential_source: field format is not an object".to_string()),
    };
    Ok(ExternalAccount {
        audience: required(&map, "audience")?,
        subject_token_type: required(&map, "subject_token_type")?,
        token_url: optional(&map, "token_url")?,
        token_file: PathBuf::from(token_file),
        json_field,
        impersonation_url: optional(&map, "service_account_impersonation_url")?,
    })
}

async fn read_subject_token(account: &ExternalAccount) -> Result<String, MintError> {
    let path = account.token_file.display();
    let content = tokio::fs::read_to_string(&account.token_file)
        .await
        .map_err(|e| {
            MintError::Config(format!("gar: cannot read the subject token {path}: {e}"))
        })?;
    let token = match &account.json_field {
        None => content.trim().to_string(),
        Some(field) => subject_token_from_json(&content, field)
            .map_err(|e| MintError::Config(format!("gar: subject token {path}: {e}")))?,
    };
    if token.is_empty() {
        return Err(MintError::Config(format!(
            "gar: the subject token {path} is empty"
        )));
    }
    Ok(token)
}

fn subject_token_from_json(content: &str, field: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(content).map_err(|_| "not JSON".to_string())?;
    match value.get(field) {
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(_) => Err(format!("field {field} is not a string")),
        None => Err(format!("field {field} is missing")),
    }
}

/// The IAM Credentials `generateAccessToken` request body.
fn impersonation_body() -> Value {
    serde_json::json!({ "scope": [SCOPE], "lifetime": format!("{ASSERTION_LIFETIME}s") })
}

async fn impersonate(
    url: &str,
    federated: &str,
    cx: &MintContext<'_>,
) -> Result<AccessToken, MintError> {
    let request = cx
        .http
        .post(url)
        .bearer_auth(federated)
        .json(&impersonation_body());
    let answer = send_for_json(request, url, &[federated]).await?;
    impersonation_answer(&answer, url)
}

fn impersonation_answer(answer: &Map<String, Value>, url: &str) -> Result<AccessToken, MintError> {
    let token = answer_str(answer, "accessToken", url)?;
    let expire_time = answer_str(answer, "expireTime", url)?;
    let expires_at =
        time::OffsetDateTime::parse(&expire_time, &time::format_description::well_known::Rfc3339)
            .map_err(|_| MintError::Protocol {
            endpoint: super::endpoint_of(url),
            detail: "expireTime is not an RFC 3339 time".to_string(),
        })?;
    Ok(AccessToken {
        token,
        expires_at: expires_at.into(),
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

        let imp = impersonation_answer(
            &answer(
                serde_json::json!({"accessToken": "ya29.i", "expireTime": "2027-01-02T03:04:05Z"}),
            ),
            "http://iam/x:generateAccessToken",
        )
        .unwrap();
        assert_eq!(imp.token, "ya29.i");
        assert_eq!(
            imp.expires_at,
            UNIX_EPOCH + Duration::from_secs(1_798_859_045)
        );
        let err = impersonation_answer(
            &answer(serde_json::json!({"accessToken": "ya29.i", "expireTime": "soon"})),
            "http://iam/x",
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
        assert_eq!(
            impersonation_body(),
            serde_json::json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "3600s"})
        );
    }

    #[test]
    fn external_accounts_are_read_with_their_token_format() {
        let base = serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {"file": "/var/run/token"},
        });
        let account = parse_external_account(base.to_string().as_bytes()).unwrap();
        assert_eq!(account.token_file, PathBuf::from("/var/run/token"));
        assert_eq!(account.json_field, None);
        assert_eq!(account.impersonation_url, None);

        let mut json = base.clone();
        json["credential_source"]["format"] =
            serde_json::json!({"type": "json", "subject_token_field_name": "id_token"});
        json["service_account_impersonation_url"] = "https://iam/x:generateAccessToken".into();
        let account = parse_external_account(json.to_string().as_bytes()).unwrap();
        assert_eq!(account.json_field.as_deref(), Some("id_token"));
        assert!(account.impersonation_url.is_some());
        assert_eq!(
            subject_token_from_json(r#"{"id_token":"t"}"#, "id_token").unwrap(),
            "t"
        );
        assert!(
            subject_token_from_json(r#"{"x":1}"#, "id_token")
                .unwrap_err()
                .contains("missing")
        );

        let edits: [(&str, Value, &str); 4] = [
            (
                "credential_source",
                serde_json::json!({"url": "http://169.254.169.254"}),
                "field file is missing",
            ),
            (
                "type",
                "service_account".into(),
                "field type is not external_account",
            ),
            ("audience", Value::Null, "field audience is missing"),
            (
                "credential_source",
                serde_json::json!({"file": "/t", "format": {"type": "xml"}}),
                "not text or json",
            ),
        ];
        for (field, value, want) in edits {
            let mut json = base.clone();
            json[field] = value;
            let err = parse_external_account(json.to_string().as_bytes()).unwrap_err();
            assert!(err.contains(want), "{err} does not say {want}");
        }
    }
}
