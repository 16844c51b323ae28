//! Minting short-lived registry credentials: one client per provider (ECR, Artifact Registry,
//! ACR), each speaking its provider's public token protocol over HTTPS. This is an edge: it
//! talks to the network and reads projected token files; what it returns is plain data the
//! minter (`cluster::tokens`) writes as a managed `kubernetes.io/dockerconfigjson` Secret.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::config::token::TokenSource;

pub mod acr;
pub mod ecr;
pub mod gar;
pub mod schedule;

/// What a provider minted: one docker auth per registry host, all valid until `expires_at`.
#[derive(Clone, PartialEq)]
pub struct Minted {
    /// The entries, in the order the provider reported them.
    pub auths: Vec<MintedAuth>,
    /// When the provider says the token stops working.
    pub expires_at: SystemTime,
}

/// One docker config entry: the registry host and the username/password a runtime sends.
#[derive(Clone, PartialEq)]
pub struct MintedAuth {
    /// The auths key: a registry host (`123456789012.dkr.ecr.eu-west-1.amazonaws.com`).
    pub registry: String,
    /// The username the provider documents for its tokens (`AWS`, `oauth2accesstoken`, ...).
    pub username: String,
    /// The token itself.
    pub password: String,
}

// Tokens never reach a log line through Debug.
impl fmt::Debug for MintedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedAuth")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for Minted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minted")
            .field("auths", &self.auths)
            .field(
                "expires_at",
                &humantime::format_rfc3339_seconds(self.expires_at),
            )
            .finish()
    }
}

/// Why a token could not be minted. Messages name the endpoint and the provider's error code
/// or message, never a key, token or password.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum MintError {
    /// The key material is missing or unusable (a Secret key absent, a key JSON that does not
    /// parse, an environment variable unset): fixing it takes an admin.
    #[error("{0}")]
    Config(String),
    /// The provider refused these credentials (an explicit 4xx).
    #[error("{endpoint} refused the request: {detail}")]
    Rejected {
        /// The URL called, without query.
        endpoint: String,
        /// The provider's error code and message.
        detail: String,
    },
    /// The provider could not be reached or failed (DNS, TCP, TLS, timeout, 5xx).
    #[error("{endpoint} unreachable: {detail}")]
    Unreachable {
        /// The URL called, without query.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// The provider answered, but not with what its protocol promises.
    #[error("unexpected answer from {endpoint}: {detail}")]
    Protocol {
        /// The URL called, without query.
        endpoint: String,
        /// What was wrong with it.
        detail: String,
    },
}

impl MintError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            MintError::Config(_) => "config",
            MintError::Rejected { .. } => "rejected",
            MintError::Unreachable { .. } => "unreachable",
            MintError::Protocol { .. } => "protocol",
        }
    }
}

/// What a provider client needs besides its spec. The environment and the clock come in from
/// outside, so that tests neither set process variables nor wait.
pub struct MintContext<'a> {
    /// The HTTP client (timeouts, TLS roots) every call uses.
    pub http: &'a reqwest::Client,
    /// The data of the credential's key Secret, when its auth names one.
    pub key: Option<&'a BTreeMap<String, Vec<u8>>>,
    /// Now, for signatures and assertions.
    pub now: SystemTime,
    /// Reads an environment variable (`AWS_ROLE_ARN`, `AZURE_CLIENT_ID`, ...).
    pub env: &'a (dyn Fn(&str) -> Option<String> + Send + Sync),
}

/// Mints a token for `source`.
pub async fn mint(source: &TokenSource, cx: &MintContext<'_>) -> Result<Minted, MintError> {
    match source {
        TokenSource::Ecr(spec) => ecr::mint(spec, cx).await,
        TokenSource::Gar(spec) => gar::mint(spec, cx).await,
        TokenSource::Acr(spec) => acr::mint(spec, cx).await,
    }
}

/// The HTTP client minting uses: rustls with the system's roots, bounded in time, no
/// redirects (a credential never follows one to another host).
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("pull-secret-injector/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the token HTTP client: {e}"))
}

/// The endpoint part of a URL for error messages: scheme, host, port and path, never a query.
pub(crate) fn endpoint_of(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

/// A provider's error body, shortened for a message: the first 200 characters on one line.
pub(crate) fn short_detail(status: reqwest::StatusCode, body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut detail: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        detail.push_str("...");
    }
    if detail.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {detail}")
    }
}

/// A string value from the key Secret, or a `Config` error naming the Secret key.
pub(crate) fn key_string(cx: &MintContext<'_>, key: &str, what: &str) -> Result<String, MintError> {
    let data = cx
        .key
        .ok_or_else(|| MintError::Config(format!("{what}: the key Secret was not read")))?;
    let bytes = data
        .get(key)
        .ok_or_else(|| MintError::Config(format!("{what}: the key Secret has no key {key}")))?;
    let s = std::str::from_utf8(bytes).map_err(|_| {
        MintError::Config(format!("{what}: key {key} of the key Secret is not UTF-8"))
    })?;
    let s = s.trim();
    if s.is_empty() {
        return Err(MintError::Config(format!(
            "{what}: key {key} of the key Secret is empty"
        )));
    }
    Ok(s.to_string())
}

/// Sends a token request and reads its JSON object answer. A 4xx is `Rejected` with the
/// provider's own error words (OAuth2's `error`/`error_description`, Google APIs' `error`
/// object, the registry API's `errors`), a 5xx or a failed send is `Unreachable`, anything
/// else that is not a JSON object is `Protocol`. Every value in `secrets` is blanked out of
/// the detail, in case a provider echoes what it was sent.
pub(crate) async fn send_for_json(
    request: reqwest::RequestBuilder,
    endpoint: &str,
    secrets: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, MintError> {
    let endpoint = endpoint_of(endpoint);
    let response = request.send().await.map_err(|e| MintError::Unreachable {
        endpoint: endpoint.clone(),
        detail: transport_detail(&e),
    })?;
    let status = response.status();
    let body = response.text().await.map_err(|e| MintError::Unreachable {
        endpoint: endpoint.clone(),
        detail: format!("{status}, body unreadable: {}", transport_detail(&e)),
    })?;
    if status.is_success() {
        // A successful body holds the token: nothing of it goes into a message.
        return match serde_json::from_str(&body) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(MintError::Protocol {
                endpoint,
                detail: format!("{status} with a body that is not a JSON object"),
            }),
        };
    }
    let detail = blank_out(&error_detail(status, &body), secrets);
    if status.is_client_error() {
        Err(MintError::Rejected { endpoint, detail })
    } else if status.is_server_error() {
        Err(MintError::Unreachable { endpoint, detail })
    } else {
        Err(MintError::Protocol { endpoint, detail })
    }
}

/// The words of a provider's error body: the shapes OAuth2 (RFC 6749 5.2), Google APIs and the
/// registry API use, else the body shortened.
pub(crate) fn error_detail(status: reqwest::StatusCode, body: &str) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) else {
        return short_detail(status, body);
    };
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
    let words = match map.get("error") {
        Some(serde_json::Value::String(code)) => match text(map.get("error_description")) {
            Some(description) => Some(format!("{code}: {description}")),
            None => Some(code.clone()),
        },
        Some(serde_json::Value::Object(e)) => {
            match (text(e.get("status")), text(e.get("message"))) {
                (Some(s), Some(m)) => Some(format!("{s}: {m}")),
                (s, m) => s.or(m),
            }
        }
        _ => map
            .get("errors")
            .and_then(|e| e.as_array())
            .and_then(|e| e.first())
            .and_then(
                |first| match (text(first.get("code")), text(first.get("message"))) {
                    (Some(c), Some(m)) => Some(format!("{c}: {m}")),
                    (c, m) => c.or(m),
                },
            ),
    };
    match words {
        Some(words) => short_detail(status, &words),
        None => short_detail(status, body),
    }
}

/// What failed in a send, without the URL reqwest would add (the caller names the endpoint).
fn transport_detail(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.dedup();
    if causes.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}

/// `text` with every non-trivial `secret` replaced by `<redacted>`.
pub(crate) fn blank_out(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        // Short values would blank out ordinary words; no real secret is that short.
        if secret.len() >= 8 {
            text = text.replace(secret, "<redacted>");
        }
    }
    text
}

/// A string field of a token answer, or a `Protocol` error naming it.
pub(crate) fn answer_str(
    answer: &serde_json::Map<String, serde_json::Value>,
    field: &str,
    endpoint: &str,
) -> Result<String, MintError> {
    match answer.get(field) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(MintError::Protocol {
            endpoint: endpoint_of(endpoint),
            detail: format!("no {field} string in the answer"),
        }),
    }
}

/// `now` plus an OAuth2 `expires_in` (seconds: a number, or a string some servers send).
pub(crate) fn expires_in(
    answer: &serde_json::Map<String, serde_json::Value>,
    now: SystemTime,
    endpoint: &str,
) -> Result<SystemTime, MintError> {
    let seconds = match answer.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    match seconds {
        Some(s) if s > 0 => Ok(now + Duration::from_secs(s)),
        _ => Err(MintError::Protocol {
            endpoint: endpoint_of(endpoint),
            detail: "no positive expires_in in the answer".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn error_bodies_give_the_providers_words() {
        let cases = [
            (
                r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
                "400 Bad Request: invalid_grant: Invalid JWT Signature.",
            ),
            (
                r#"{"error":"invalid_client"}"#,
                "400 Bad Request: invalid_client",
            ),
            (
                r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#,
                "400 Bad Request: PERMISSION_DENIED: Permission denied",
            ),
            (
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                "400 Bad Request: UNAUTHORIZED: authentication required",
            ),
            (
                "<html>\n  nope </html>",
                "400 Bad Request: <html> nope </html>",
            ),
            ("", "400 Bad Request"),
        ];
        for (body, want) in cases {
            assert_eq!(error_detail(StatusCode::BAD_REQUEST, body), want, "{body}");
        }
    }

    #[test]
    fn secrets_are_blanked_out_of_details() {
        let detail = "invalid assertion eyJhbGciOi.payload.sig for app";
        assert_eq!(
            blank_out(detail, &["eyJhbGciOi.payload.sig", "app"]),
            "invalid assertion <redacted> for app"
        );
    }

    #[test]
    fn expires_in_takes_numbers_and_numeric_strings() {
        let now = SystemTime::UNIX_EPOCH;
        let answer = |v: serde_json::Value| v.as_object().unwrap().clone();
        let got = expires_in(&answer(serde_json::json!({"expires_in": 3599})), now, "e");
        assert_eq!(got, Ok(now + Duration::from_secs(3599)));
        let got = expires_in(&answer(serde_json::json!({"expires_in": "60"})), now, "e");
        assert_eq!(got, Ok(now + Duration::from_secs(60)));
        let got = expires_in(&answer(serde_json::json!({"expires_in": 0})), now, "e");
        assert_eq!(got.unwrap_err().metric_label(), "protocol");
    }
}
