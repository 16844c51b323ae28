//! Token sources: credentials the injector mints itself (ECR, Artifact Registry, ACR) instead
//! of copying a secret an admin made. These are the validated forms; the minter (`token`)
//! reads them, and the rest of the injector sees the managed Secret the minter writes.

use std::path::PathBuf;

/// A credential minted from a cloud provider's token API.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    /// Amazon ECR: `GetAuthorizationToken`, valid 12 hours.
    Ecr(EcrSpec),
    /// Google Artifact Registry / Container Registry: an OAuth2 access token, valid 1 hour.
    Gar(GarSpec),
    /// Azure Container Registry: an ACR refresh token from `/oauth2/exchange`, about 3 hours.
    Acr(AcrSpec),
}

impl TokenSource {
    /// The provider's short name, as the config spells it: `ecr`, `gar`, `acr`.
    pub fn provider(&self) -> &'static str {
        match self {
            TokenSource::Ecr(_) => "ecr",
            TokenSource::Gar(_) => "gar",
            TokenSource::Acr(_) => "acr",
        }
    }

    /// The Secret holding static key material, when the credential uses one.
    pub fn key_secret(&self) -> Option<&SecretKeyRef> {
        match self {
            TokenSource::Ecr(EcrSpec {
                auth: AwsAuth::Secret(s),
                ..
            })
            | TokenSource::Gar(GarSpec {
                auth: GoogleAuth::ServiceAccountKey(s),
                ..
            })
            | TokenSource::Acr(AcrSpec {
                auth: AzureAuth::ClientSecret(s),
                ..
            }) => Some(s),
            _ => None,
        }
    }
}

/// A Secret the injector reads key material from.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretKeyRef {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
}

/// How to mint an ECR token.
#[derive(Debug, Clone, PartialEq)]
pub struct EcrSpec {
    /// The AWS region of the registries (`eu-west-1`).
    pub region: String,
    /// Account ids whose registries the token is for; empty: the caller's own account.
    pub registry_ids: Vec<String>,
    /// How the injector authenticates to AWS.
    pub auth: AwsAuth,
    /// The ECR API endpoint, instead of `https://api.ecr.REGION.amazonaws.com`.
    pub endpoint: Option<String>,
    /// The STS endpoint for web identity, instead of `https://sts.REGION.amazonaws.com`.
    pub sts_endpoint: Option<String>,
}

/// AWS authentication.
#[derive(Debug, Clone, PartialEq)]
pub enum AwsAuth {
    /// Static keys from a Secret: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, optionally,
    /// `AWS_SESSION_TOKEN`.
    Secret(SecretKeyRef),
    /// `AssumeRoleWithWebIdentity` with a projected ServiceAccount token (EKS IRSA style).
    WebIdentity {
        /// The role to assume; `None`: the `AWS_ROLE_ARN` environment variable.
        role_arn: Option<String>,
        /// The token file; `None`: the `AWS_WEB_IDENTITY_TOKEN_FILE` environment variable.
        token_file: Option<PathBuf>,
    },
}

/// How to mint an Artifact Registry / GCR access token.
#[derive(Debug, Clone, PartialEq)]
pub struct GarSpec {
    /// The registry hosts the token is written for (`europe-docker.pkg.dev`, `eu.gcr.io`).
    pub registries: Vec<String>,
    /// How the injector authenticates to Google.
    pub auth: GoogleAuth,
    /// The OAuth2 token endpoint, instead of the key's `token_uri` (or, for workload identity,
    /// the external account's `token_url`).
    pub token_endpoint: Option<String>,
}

/// Google authentication.
#[derive(Debug, Clone, PartialEq)]
pub enum GoogleAuth {
    /// A service account key JSON under the Secret's `key.json`: a JWT-bearer grant.
    ServiceAccountKey(SecretKeyRef),
    /// Workload identity federation: an external-account JSON file whose credential source is
    /// a projected token file; optionally impersonating a service account.
    WorkloadIdentity {
        /// The external-account JSON; `None`: `GOOGLE_APPLICATION_CREDENTIALS`.
        credentials_file: Option<PathBuf>,
    },
}

/// How to mint an ACR refresh token.
#[derive(Debug, Clone, PartialEq)]
pub struct AcrSpec {
    /// The registry host (`myregistry.azurecr.io`).
    pub registry: String,
    /// The Entra ID (AAD) tenant; `None`: the Secret's `tenantId`, or `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// How the injector authenticates to Entra ID.
    pub auth: AzureAuth,
    /// The Entra ID authority, instead of `https://login.microsoftonline.com`.
    pub authority_host: Option<String>,
    /// The registry's base URL for `/oauth2/exchange`, instead of `https://REGISTRY`.
    pub endpoint: Option<String>,
}

/// Azure authentication.
#[derive(Debug, Clone, PartialEq)]
pub enum AzureAuth {
    /// A service principal: `clientId` and `clientSecret` (and optionally `tenantId`) in a
    /// Secret.
    ClientSecret(SecretKeyRef),
    /// Workload identity: a federated token file as the client assertion.
    WorkloadIdentity {
        /// The application (client) id; `None`: `AZURE_CLIENT_ID`.
        client_id: Option<String>,
        /// The federated token file; `None`: `AZURE_FEDERATED_TOKEN_FILE`.
        token_file: Option<PathBuf>,
    },
}

/// The managed Secret a token credential's minted token is written to, in the injector's
/// namespace: `<credential>-token`.
pub fn managed_secret_name(credential: &str) -> String {
    format!("{credential}-token")
}

/// `token:` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawToken {
    ecr: Option<RawEcr>,
    gar: Option<RawGar>,
    acr: Option<RawAcr>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEcr {
    region: Option<String>,
    #[serde(default)]
    registry_ids: Vec<String>,
    secret: Option<String>,
    web_identity: Option<RawWebIdentity>,
    endpoint: Option<String>,
    sts_endpoint: Option<String>,
}

#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawWebIdentity {
    role_arn: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGar {
    #[serde(default)]
    registries: Vec<String>,
    service_account_key: Option<String>,
    workload_identity: Option<RawGoogleWorkloadIdentity>,
    token_endpoint: Option<String>,
}

#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGoogleWorkloadIdentity {
    credentials_file: Option<PathBuf>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAcr {
    registry: Option<String>,
    tenant_id: Option<String>,
    client_secret: Option<String>,
    workload_identity: Option<RawAzureWorkloadIdentity>,
    authority_host: Option<String>,
    endpoint: Option<String>,
}

#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAzureWorkloadIdentity {
    client_id: Option<String>,
    token_file: Option<PathBuf>,
}

/// Reports a problem at a field of `token`.
type Problems<'a> = dyn FnMut(String, String) + 'a;

impl RawToken {
    /// Validates the token source, reporting every problem at its field.
    pub(super) fn resolve(self, problem: &mut Problems<'_>) -> Option<TokenSource> {
        let given = [self.ecr.is_some(), self.gar.is_some(), self.acr.is_some()];
        match given.iter().filter(|b| **b).count() {
            0 => {
                problem(
                    "token".into(),
                    "names no provider: give one of ecr, gar, acr".into(),
                );
                return None;
            }
            1 => {}
            _ => {
                problem(
                    "token".into(),
                    "names several providers: give exactly one of ecr, gar, acr".into(),
                );
                return None;
            }
        }
        if let Some(ecr) = self.ecr {
            return ecr.resolve(problem).map(TokenSource::Ecr);
        }
        if let Some(gar) = self.gar {
            return gar.resolve(problem).map(TokenSource::Gar);
        }
        self.acr?.resolve(problem).map(TokenSource::Acr)
    }
}

impl RawEcr {
    fn resolve(self, problem: &mut Problems<'_>) -> Option<EcrSpec> {
        let mut ok = true;
        let mut bad = |field: &str, message: String, problem: &mut Problems<'_>| {
            problem(format!("token.ecr.{field}"), message);
            ok = false;
        };
        let region = match self.region {
            None => {
                bad(
                    "region",
                    "is required (for example eu-west-1)".into(),
                    problem,
                );
                String::new()
            }
            Some(r) if !is_aws_region(&r) => {
                bad(
                    "region",
                    format!("{r:?} is not an AWS region name (for example eu-west-1)"),
                    problem,
                );
                r
            }
            Some(r) => r,
        };
        for (i, id) in self.registry_ids.iter().enumerate() {
            if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                bad(
                    &format!("registryIds[{i}]"),
                    format!("{id:?} is not an AWS account id (12 digits)"),
                    problem,
                );
            }
        }
        let auth = match (self.secret, self.web_identity) {
            (Some(secret), None) => {
                secret_ref(&secret, "token.ecr.secret", problem).map(AwsAuth::Secret)
            }
            (None, Some(w)) => Some(AwsAuth::WebIdentity {
                role_arn: w.role_arn,
                token_file: w.token_file,
            }),
            (None, None) => {
                bad(
                    "secret",
                    "no credentials: give secret (static keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or webIdentity (IRSA: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE)".into(),
                    problem,
                );
                None
            }
            (Some(_), Some(_)) => {
                bad(
                    "secret",
                    "give either secret or webIdentity, not both".into(),
                    problem,
                );
                None
            }
        };
        if let Some(AwsAuth::WebIdentity {
            role_arn: Some(arn),
            ..
        }) = &auth
            && !(arn.starts_with("arn:aws") && arn.contains(":iam::") && arn.contains(":role/"))
        {
            bad(
                "webIdentity.roleArn",
                format!("{arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
                problem,
            );
        }
        let endpoint = endpoint_checked(self.endpoint, "token.ecr.endpoint", problem, &mut ok);
        let sts_endpoint =
            endpoint_checked(self.sts_endpoint, "token.ecr.stsEndpoint", problem, &mut ok);
        let auth = auth?;
        ok.then_some(EcrSpec {
            region,
            registry_ids: self.registry_ids,
            auth,
            endpoint,
            sts_endpoint,
        })
    }
}

impl RawGar {
    fn resolve(self, problem: &mut Problems<'_>) -> Option<GarSpec> {
        let mut ok = true;
        if self.registries.is_empty() {
            problem(
                "token.gar.registries".into(),
                "is required: the registry hosts the token is for (europe-docker.pkg.dev, eu.gcr.io, ...)".into(),
            );
            ok = false;
        }
        for (i, host) in self.registries.iter().enumerate() {
            if let Err(why) = registry_host(host) {
                problem(format!("token.gar.registries[{i}]"), why);
                ok = false;
            }
        }
        let auth = match (self.service_account_key, self.workload_identity) {
            (Some(secret), None) => secret_ref(&secret, "token.gar.serviceAccountKey", problem)
                .map(GoogleAuth::ServiceAccountKey),
            (None, Some(w)) => Some(GoogleAuth::WorkloadIdentity {
                credentials_file: w.credentials_file,
            }),
            (None, None) => {
                problem(
                    "token.gar.serviceAccountKey".into(),
                    "no credentials: give serviceAccountKey (a Secret with key.json) or workloadIdentity (an external-account credentials file)".into(),
                );
                None
            }
            (Some(_), Some(_)) => {
                problem(
                    "token.gar.serviceAccountKey".into(),
                    "give either serviceAccountKey or workloadIdentity, not both".into(),
                );
                None
            }
        };
        let token_endpoint = endpoint_checked(
            self.token_endpoint,
            "token.gar.tokenEndpoint",
            problem,
            &mut ok,
        );
        let auth = auth?;
        ok.then_some(GarSpec {
            registries: self.registries,
            auth,
            token_endpoint,
        })
    }
}

impl RawAcr {
    fn resolve(self, problem: &mut Problems<'_>) -> Option<AcrSpec> {
        let mut ok = true;
        let registry = match self.registry {
            None => {
                problem(
                    "token.acr.registry".into(),
                    "is required (for example myregistry.azurecr.io)".into(),
                );
                ok = false;
                String::new()
            }
            Some(r) => {
                if let Err(why) = registry_host(&r) {
                    problem("token.acr.registry".into(), why);
                    ok = false;
                }
                r
            }
        };
        if let Some(t) = &self.tenant_id
            && (t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        {
            problem(
                "token.acr.tenantId".into(),
                format!("{t:?} is not a tenant id (a GUID or a domain)"),
            );
            ok = false;
        }
        let auth = match (self.client_secret, self.workload_identity) {
            (Some(secret), None) => {
                secret_ref(&secret, "token.acr.clientSecret", problem).map(AzureAuth::ClientSecret)
            }
            (None, Some(w)) => Some(AzureAuth::WorkloadIdentity {
                client_id: w.client_id,
                token_file: w.token_file,
            }),
            (None, None) => {
                problem(
                    "token.acr.clientSecret".into(),
                    "no credentials: give clientSecret (a Secret with clientId and clientSecret) or workloadIdentity (AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE)".into(),
                );
                None
            }
            (Some(_), Some(_)) => {
                problem(
                    "token.acr.clientSecret".into(),
                    "give either clientSecret or workloadIdentity, not both".into(),
                );
                None
            }
        };
        let authority_host = endpoint_checked(
            self.authority_host,
            "token.acr.authorityHost",
            problem,
            &mut ok,
        );
        let endpoint = endpoint_checked(self.endpoint, "token.acr.endpoint", problem, &mut ok);
        let auth = auth?;
        ok.then_some(AcrSpec {
            registry,
            tenant_id: self.tenant_id,
            auth,
            authority_host,
            endpoint,
        })
    }
}

/// An endpoint override: https, or plain http to this machine only (a local test server or
/// proxy), since key material and tokens travel over it.
fn endpoint_checked(
    url: Option<String>,
    field: &str,
    problem: &mut Problems<'_>,
    ok: &mut bool,
) -> Option<String> {
    let url = url?;
    let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "::1");
    let why = match scheme {
        _ if host.is_empty() => Some("is not a URL (https://HOST[:PORT][/PATH])"),
        "https" => None,
        "http" if loopback => None,
        "http" => Some("must use https: plain http is accepted only to localhost"),
        _ => Some("is not a URL (https://HOST[:PORT][/PATH])"),
    };
    if let Some(why) = why {
        problem(field.to_string(), format!("{url:?} {why}"));
        *ok = false;
        return None;
    }
    Some(url)
}

/// `namespace/name` of a Secret holding key material.
fn secret_ref(reference: &str, field: &str, problem: &mut Problems<'_>) -> Option<SecretKeyRef> {
    let Some((namespace, name)) = reference.split_once('/') else {
        problem(
            field.to_string(),
            format!("{reference:?} must be namespace/name"),
        );
        return None;
    };
    let mut ok = true;
    if let Err(why) = super::check_dns_label(namespace) {
        problem(
            field.to_string(),
            format!("namespace {namespace:?} is invalid: {why}"),
        );
        ok = false;
    }
    if let Err(why) = super::check_dns_subdomain(name) {
        problem(
            field.to_string(),
            format!("name {name:?} is invalid: {why}"),
        );
        ok = false;
    }
    ok.then(|| SecretKeyRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// A registry host as a docker config key names it: `HOST[:PORT]`, no scheme, no path.
fn registry_host(host: &str) -> Result<(), String> {
    if host.contains("://") || host.contains('/') {
        return Err(format!(
            "{host:?}: give the registry host alone (europe-docker.pkg.dev), without scheme or path"
        ));
    }
    let name = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    super::check_dns_subdomain(name)
        .map_err(|why| format!("{host:?} is not a registry host name: {why}"))
}

/// `eu-west-1`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-5`: letters and digits between
/// dashes, ending in a number.
fn is_aws_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
}
