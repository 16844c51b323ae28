//! Workload identity federation: Google's external_account credentials (AIP-4117) with a file
//! credential source, exchanged at Security Token Service for a federated access token
//! (RFC 8693), then, when the credential says so, for a service account's own token through
//! IAM Credentials' `generateAccessToken`.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{AccessToken, SCOPE, optional, required, token_answer};
use crate::config::token::GarSpec;
use crate::token::{MintContext, MintError, answer_str, send_for_json};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
// generateAccessToken's default and, without an organisation policy allowing more, its most.
const IMPERSONATED_LIFETIME: &str = "3600s";

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

/// The access token the external_account credential at `credentials_file` (or
/// `GOOGLE_APPLICATION_CREDENTIALS`) yields.
pub(super) async fn mint(
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
    serde_json::json!({ "scope": [SCOPE], "lifetime": IMPERSONATED_LIFETIME })
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
            endpoint: crate::token::endpoint_of(url),
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
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn impersonation_answers_are_read_and_their_faults_named() {
        let answer = |v: Value| v.as_object().unwrap().clone();
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
