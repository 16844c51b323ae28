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
