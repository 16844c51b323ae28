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
