//! Fakes of Google's token services, strict where Google is:
//! - the OAuth2 token endpoint's JWT-bearer grant for service accounts, as "Using OAuth 2.0
//!   for Server to Server Applications" (developers.google.com/identity/protocols/oauth2/
//!   service-account) and RFC 7523 describe it: RS256 signed by the key whose `kid` the header
//!   names, `iss` the service account, `aud` the token endpoint's own URL, a `scope`, `exp` at
//!   most an hour after `iat` and not past; any fault is a 400 `invalid_grant`;
//! - Security Token Service's `v1/token` (RFC 8693 token exchange, as Google's workload
//!   identity federation and AIP-4117's external_account credentials use it);
//! - IAM Service Account Credentials' `generateAccessToken`, with a Bearer token and a JSON
//!   body, answering `accessToken` and an RFC 3339 `expireTime`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::post;
use jsonwebtoken::errors::ErrorKind;
use serde_json::json;

use super::{bind, expect_fields, form, spawn};

/// The scope every request here must ask for.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// What Google knows of a service account: its email and one of its keys.
pub struct ServiceAccount {
    /// `client_email`.
    pub email: String,
    /// `private_key_id`, the assertion header's `kid`.
    pub key_id: String,
    /// The key's public half, SubjectPublicKeyInfo PEM.
    pub public_pem: String,
}

struct OAuthState {
    url: String,
    account: ServiceAccount,
    access_token: String,
    expires_in: u64,
}

/// Starts an OAuth2 token endpoint that knows `account` and issues `access_token`; returns
/// its token URL (`.../token`; `.../v1/token` reaches it too, but is not its URL).
pub async fn oauth2(account: ServiceAccount, access_token: &str, expires_in: u64) -> String {
    let (listener, base) = bind().await;
    let url = format!("{base}/token");
    let state = Arc::new(OAuthState {
        url: url.clone(),
        account,
        access_token: access_token.to_string(),
        expires_in,
    });
    let router = Router::new()
        .route("/token", post(oauth2_token))
        .route("/v1/token", post(oauth2_token))
        .with_state(state);
    spawn(listener, router);
    url
}

async fn oauth2_token(
    State(s): State<Arc<OAuthState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match check_assertion(&s, &headers, &body) {
        Ok(()) => super::json(
            StatusCode::OK,
            json!({"access_token": s.access_token, "expires_in": s.expires_in, "token_type": "Bearer"}),
        ),
        Err(why) => super::json(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": why}),
        ),
    }
}

fn check_assertion(s: &OAuthState, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let fields = form(headers, body)?;
    let assertion = fields.get("assertion").ok_or("missing field assertion")?;
    expect_fields(
        &fields,
        &[("grant_type", JWT_BEARER), ("assertion", assertion)],
    )?;
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| "Invalid JWT header")?;
    if header.kid.as_deref() != Some(s.account.key_id.as_str()) {
        return Err("Invalid JWT: no key with the header's kid".into());
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[&s.url]);
    validation.set_issuer(&[&s.account.email]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(s.account.public_pem.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => "Invalid JWT Signature.".to_string(),
            ErrorKind::InvalidAudience => "Invalid JWT: Failed audience check.".to_string(),
            ErrorKind::InvalidIssuer => "Invalid JWT: Failed issuer check.".to_string(),
            ErrorKind::ExpiredSignature => "Invalid JWT: Token has expired.".to_string(),
            other => format!("Invalid JWT: {other:?}"),
        })?
        .claims;
    if claims["scope"] != CLOUD_PLATFORM {
        return Err("Invalid JWT: scope is not cloud-platform".into());
    }
    let (iat, exp) = (
        claims["iat"].as_u64().ok_or("iat not a number")?,
        claims["exp"].as_u64().ok_or("exp not a number")?,
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if exp <= iat || exp - iat > 3600 || iat > now + 60 {
        return Err(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
                    reasonable timeframe."
                .into(),
        );
    }
    Ok(())
}

/// What an STS fake expects of the exchange and answers with.
pub struct Exchange {
    /// The workload identity provider's audience.
    pub audience: String,
    /// The subject token, as the credential source file holds it.
    pub subject_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt` for Kubernetes tokens.
    pub subject_token_type: String,
    /// The federated access token it issues.
    pub access_token: String,
    /// Its lifetime.
    pub expires_in: u64,
}

/// Starts an STS token endpoint; returns its `v1/token` URL.
pub async fn sts(exchange: Exchange) -> String {
    let (listener, base) = bind().await;
    let router = Router::new()
        .route("/v1/token", post(sts_token))
        .with_state(Arc::new(exchange));
    spawn(listener, router);
    format!("{base}/v1/token")
}

async fn sts_token(State(x): State<Arc<Exchange>>, headers: HeaderMap, body: Bytes) -> Response {
    let checked = form(&headers, &body).and_then(|fields| {
        expect_fields(
            &fields,
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("audience", &x.audience),
                ("scope", CLOUD_PLATFORM),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("subject_token", &x.subject_token),
                ("subject_token_type", &x.subject_token_type),
            ],
        )
    });
    match checked {
        Ok(()) => super::json(
            StatusCode::OK,
            json!({
                "access_token": x.access_token,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": x.expires_in,
            }),
        ),
        Err(why) => super::json(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": why}),
        ),
    }
}

/// What an IAM Credentials fake expects and answers.
pub struct Impersonation {
    /// The service account impersonated, as the URL names it.
    pub service_account: String,
    /// The federated token the caller must present.
    pub bearer: String,
    /// The service account's access token it issues.
    pub access_token: String,
    /// Its `expireTime`, RFC 3339.
    pub expire_time: String,
}

/// Starts an IAM Credentials endpoint; returns the account's `generateAccessToken` URL.
pub async fn iam(impersonation: Impersonation) -> String {
    let (listener, base) = bind().await;
    let url = format!(
        "{base}/v1/projects/-/serviceAccounts/{}:generateAccessToken",
        impersonation.service_account
    );
    let router = Router::new()
        .fallback(generate_access_token)
        .with_state(Arc::new(impersonation));
    spawn(listener, router);
    url
}

async fn generate_access_token(
    State(i): State<Arc<Impersonation>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let want_path = format!(
        "/v1/projects/-/serviceAccounts/{}:generateAccessToken",
        i.service_account
    );
    if uri.path() != want_path {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method");
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(i.bearer.as_str()) {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let request: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let want = json!({"scope": [CLOUD_PLATFORM], "lifetime": "3600s"});
    if !is_json || request.as_ref() != Some(&want) {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "request is not the expected JSON scope and lifetime",
        );
    }
    super::json(
        StatusCode::OK,
        json!({"accessToken": i.access_token, "expireTime": i.expire_time}),
    )
}

fn google_error(status: StatusCode, code: &str, message: &str) -> Response {
    super::json(
        status,
        json!({"error": {"code": status.as_u16(), "message": message, "status": code}}),
    )
}
