//! Fakes of the two services an ACR token comes from:
//! - the Microsoft identity platform's v2.0 token endpoint, client credentials flow, as
//!   "Microsoft identity platform and the OAuth 2.0 client credentials flow" documents it: a
//!   shared secret (`client_secret`) or a federated credential (`client_assertion` with the
//!   jwt-bearer assertion type), `scope` the resource's `/.default`; a wrong secret is 401
//!   `invalid_client` with an AADSTS code, as Entra ID answers;
//! - Azure Container Registry's `/oauth2/exchange`, as "Azure Container Registry: authenticate
//!   with the OAuth2 exchange" (Azure/acr docs/AAD-OAuth.md) documents it: `grant_type`
//!   `access_token`, `service` the registry, `tenant`, the AAD `access_token`; it answers a
//!   JWT-shaped `refresh_token`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::{bind, expect_fields, form, spawn};

/// The scope ACR's data plane takes.
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";

/// How the application must prove itself.
pub enum Proof {
    /// A client secret.
    Secret(String),
    /// A federated token, sent as the client assertion.
    Assertion(String),
}

/// What an Entra ID fake knows and issues.
pub struct Aad {
    /// The tenant in the URL's path.
    pub tenant: String,
    /// The application (client) id.
    pub client_id: String,
    /// Its credential.
    pub proof: Proof,
    /// The access token it issues.
    pub access_token: String,
}

/// Starts an Entra ID authority; returns its base URL (the authority host).
pub async fn aad(aad: Aad) -> String {
    let (listener, base) = bind().await;
    let router = Router::new().fallback(aad_token).with_state(Arc::new(aad));
    spawn(listener, router);
    base
}

async fn aad_token(
    State(a): State<Arc<Aad>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() != format!("/{}/oauth2/v2.0/token", a.tenant) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            "AADSTS90002: Tenant not found.",
        );
    }
    let fields = match form(&headers, &body) {
        Ok(f) => f,
        Err(why) => return aad_error(StatusCode::BAD_REQUEST, "invalid_request", &why),
    };
    let shape = match &a.proof {
        Proof::Secret(_) => expect_fields(
            &fields,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &a.client_id),
                (
                    "client_secret",
                    fields.get("client_secret").map_or("", |s| s),
                ),
                ("scope", ACR_SCOPE),
            ],
        ),
        Proof::Assertion(_) => expect_fields(
            &fields,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &a.client_id),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                (
                    "client_assertion",
                    fields.get("client_assertion").map_or("", |s| s),
                ),
                ("scope", ACR_SCOPE),
            ],
        ),
    };
    if let Err(why) = shape {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("AADSTS900144: {why}"),
        );
    }
    match &a.proof {
        Proof::Secret(secret) if fields["client_secret"] != *secret => aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the \
             request is the client secret value, not the client secret ID.",
        ),
        Proof::Assertion(assertion) if fields["client_assertion"] != *assertion => aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS700211: No matching federated identity record found for presented assertion.",
        ),
        _ => super::json(
            StatusCode::OK,
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": a.access_token}),
        ),
    }
}

fn aad_error(status: StatusCode, error: &str, description: &str) -> Response {
    super::json(
        status,
        json!({"error": error, "error_description": description, "error_codes": [7000215]}),
    )
}

/// What an ACR exchange fake expects and answers.
pub struct Registry {
    /// The registry host, the `service`.
    pub host: String,
    /// The tenant the AAD token is from.
    pub tenant: String,
    /// The AAD access token it accepts.
    pub aad_token: String,
    /// The `exp` of the refresh token it issues.
    pub refresh_exp: u64,
    /// Answer 500 instead, as a registry in trouble does.
    pub failing: bool,
}

/// The first refresh token the registry issues for `exp`: JWT-shaped, as ACR's are.
pub fn refresh_token(exp: u64) -> String {
    nth_refresh_token(exp, 1)
}

/// The `n`th refresh token the registry issues (each exchange gets a new one, as ACR's do).
pub fn nth_refresh_token(exp: u64, n: u64) -> String {
    let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let mut claims = json!({"iss": "Azure Container Registry", "aud": "r", "exp": exp, "grant_type": "refresh_token"});
    if n > 1 {
        claims["jti"] = json!(n);
    }
    format!(
        "{}.{}.{}",
        part(json!({"alg": "RS256", "typ": "JWT", "kid": "acr"})),
        part(claims),
        URL_SAFE_NO_PAD.encode(b"not-a-real-signature")
    )
}

/// A registry fake and how many refresh tokens it has issued.
struct Served {
    registry: Registry,
    issued: std::sync::atomic::AtomicU64,
}

/// Starts a registry's `/oauth2/exchange`; returns its base URL (the spec's `endpoint`).
pub async fn registry(registry: Registry) -> String {
    let (listener, base) = bind().await;
    let router = Router::new()
        .route("/oauth2/exchange", post(exchange))
        .with_state(Arc::new(Served {
            registry,
            issued: Default::default(),
        }));
    spawn(listener, router);
    base
}

async fn exchange(State(served): State<Arc<Served>>, headers: HeaderMap, body: Bytes) -> Response {
    let r = &served.registry;
    if r.failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream failure").into_response();
    }
    let checked = form(&headers, &body).and_then(|fields| {
        expect_fields(
            &fields,
            &[
                ("grant_type", "access_token"),
                ("service", &r.host),
                ("tenant", &r.tenant),
                ("access_token", fields.get("access_token").map_or("", |s| s)),
            ],
        )?;
        if fields["access_token"] == r.aad_token {
            Ok(())
        } else {
            Err("access token not issued for this registry".into())
        }
    });
    match checked {
        Ok(()) => super::json(
            StatusCode::OK,
            json!({"refresh_token": nth_refresh_token(
                r.refresh_exp,
                served.issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
            )}),
        ),
        Err(why) => super::json(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": why}]}),
        ),
    }
}
