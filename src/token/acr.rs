//! Azure Container Registry: an Entra ID (AAD) access token for the registry audience, from
//! the client-credentials grant (a service principal's secret, or a workload identity's
//! federated token as the client assertion), exchanged at the registry's `/oauth2/exchange`
//! for an ACR refresh token (ACR's documented AAD-OAuth flow). The refresh token is the
//! docker password, under the all-zero username ACR documents for it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{MintContext, MintError, Minted, MintedAuth, answer_str, key_string, send_for_json};
use crate::config::token::{AcrSpec, AzureAuth};

/// The username ACR documents for refresh tokens sent as a docker password.
pub const USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// The Entra ID scope of Azure Container Registry's data plane.
pub const SCOPE: &str = "https://containerregistry.azure.net/.default";
/// The Entra ID authority when neither the spec nor `AZURE_AUTHORITY_HOST` names one.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
// ACR's refresh tokens live about three hours; used only when one carries no exp.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3 * 3600);

/// Mints an ACR refresh token for the spec's registry.
pub async fn mint(spec: &AcrSpec, cx: &MintContext<'_>) -> Result<Minted, MintError> {
    let credential = credential(spec, cx).await?;
    let authority = spec
        .authority_host
        .clone()
        .or_else(|| (cx.env)("AZURE_AUTHORITY_HOST").filter(|h| !h.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_AUTHORITY.to_string());
    let aad_endpoint = format!(
        "{}/{}/oauth2/v2.0/token",
        authority.trim().trim_end_matches('/'),
        credential.tenant
    );
    let access_token = aad_token(&aad_endpoint, &credential, cx).await?;
    let refresh_token = exchange(spec, &credential.tenant, &access_token, cx).await?;
    let expires_at = expiry(&refresh_token, cx.now);
    Ok(Minted {
        auths: vec![MintedAuth {
            registry: spec.registry.clone(),
            username: USERNAME.to_string(),
            password: refresh_token,
        }],
        expires_at,
    })
}

/// How the client proves itself to Entra ID.
enum Proof {
    Secret(String),
    Assertion(String),
}

// No Debug: it holds the client secret or the assertion.
struct Credential {
    tenant: String,
    client_id: String,
    proof: Proof,
}

impl Credential {
    /// The client-credentials form Entra ID's v2.0 token endpoint takes.
    fn form(&self) -> Vec<(&'static str, &str)> {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
        ];
        match &self.proof {
            Proof::Secret(secret) => form.push(("client_secret", secret.as_str())),
            Proof::Assertion(assertion) => {
                form.push(("client_assertion_type", ASSERTION_TYPE));
                form.push(("client_assertion", assertion.as_str()));
            }
        }
        form.push(("scope", SCOPE));
        form
    }

    fn secret(&self) -> &str {
        match &self.proof {
            Proof::Secret(s) | Proof::Assertion(s) => s,
        }
    }
}

async fn credential(spec: &AcrSpec, cx: &MintContext<'_>) -> Result<Credential, MintError> {
    let env = |name: &str| {
        (cx.env)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (tenant, client_id, proof) = match &spec.auth {
        AzureAuth::ClientSecret(_) => {
            let client_id = key_string(cx, "clientId", "acr")?;
            let secret = key_string(cx, "clientSecret", "acr")?;
            let tenant = match &spec.tenant_id {
                Some(t) => Some(t.clone()),
                // An absent tenantId falls through to the environment; a present one must work.
                None if cx.key.is_some_and(|k| k.contains_key("tenantId")) => {
                    Some(key_string(cx, "tenantId", "acr")?)
                }
                None => env("AZURE_TENANT_ID"),
            };
            (tenant, client_id, Proof::Secret(secret))
        }
        AzureAuth::WorkloadIdentity {
            client_id,
            token_file,
        } => {
            let client_id = client_id
                .clone()
                .or_else(|| env("AZURE_CLIENT_ID"))
                .ok_or_else(|| {
                    MintError::Config(
                        "acr: workload identity needs clientId or AZURE_CLIENT_ID".into(),
                    )
                })?;
            let path = token_file
                .clone()
                .or_else(|| env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from))
                .ok_or_else(|| {
                    MintError::Config(
                        "acr: workload identity needs tokenFile or AZURE_FEDERATED_TOKEN_FILE"
                            .into(),
                    )
                })?;
            let assertion = tokio::fs::read_to_string(&path).await.map_err(|e| {
                MintError::Config(format!("acr: cannot read {}: {e}", path.display()))
            })?;
            let assertion = assertion.trim().to_string();
            if assertion.is_empty() {
                return Err(MintError::Config(format!(
                    "acr: {} is empty",
                    path.display()
                )));
            }
            (
                spec.tenant_id.clone().or_else(|| env("AZURE_TENANT_ID")),
                client_id,
                Proof::Assertion(assertion),
            )
        }
    };
    let tenant = tenant.map(|t| t.trim().to_string()).ok_or_else(|| {
        MintError::Config(
            "acr: no tenant: set tenantId (spec or key Secret) or AZURE_TENANT_ID".into(),
        )
    })?;
    check_tenant(&tenant)?;
    Ok(Credential {
        tenant,
        client_id,
        proof,
    })
}

/// A tenant goes into the token URL's path: a GUID or a domain name, nothing that could
/// change the URL's meaning.
fn check_tenant(tenant: &str) -> Result<(), MintError> {
    let fits = !tenant.is_empty()
        && tenant.len() <= 253
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !tenant.starts_with('.');
    if fits {
        Ok(())
    } else {
        Err(MintError::Config(format!(
            "acr: tenant {tenant:?} is neither a tenant id nor a domain name"
        )))
    }
}

async fn aad_token(
    endpoint: &str,
    credential: &Credential,
    cx: &MintContext<'_>,
) -> Result<String, MintError> {
    let request = cx.http.post(endpoint).form(&credential.form());
    let answer = send_for_json(request, endpoint, &[credential.secret()]).await?;
    answer_str(&answer, "access_token", endpoint)
}

/// The exchange request's form: ACR's `/oauth2/exchange` with the `access_token` grant.
fn exchange_form<'a>(
    registry: &'a str,
    tenant: &'a str,
    access_token: &'a str,
) -> [(&'static str, &'a str); 4] {
    [
        ("grant_type", "access_token"),
        ("service", registry),
        ("tenant", tenant),
        ("access_token", access_token),
    ]
}

async fn exchange(
    spec: &AcrSpec,
    tenant: &str,
    access_token: &str,
    cx: &MintContext<'_>,
) -> Result<String, MintError> {
    let base = spec
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://{}", spec.registry));
    let endpoint = format!("{}/oauth2/exchange", base.trim().trim_end_matches('/'));
    let request =
        cx.http
            .post(&endpoint)
            .form(&exchange_form(&spec.registry, tenant, access_token));
    let answer = send_for_json(request, &endpoint, &[access_token]).await?;
    answer_str(&answer, "refresh_token", &endpoint)
}

/// When the refresh token stops working: its `exp`, or ACR's usual three hours from `now`.
fn expiry(refresh_token: &str, now: SystemTime) -> SystemTime {
    match crate::verify::jwt::expiry(refresh_token) {
        Some(exp) if exp > 0 => UNIX_EPOCH + Duration::from_secs(exp as u64),
        _ => now + DEFAULT_LIFETIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn forms_are_client_credentials_with_the_registry_scope() {
        let secret = Credential {
            tenant: "t".into(),
            client_id: "app".into(),
            proof: Proof::Secret("s3cr3t-value".into()),
        };
        assert_eq!(
            secret.form(),
            [
                ("grant_type", "client_credentials"),
                ("client_id", "app"),
                ("client_secret", "s3cr3t-value"),
                ("scope", "https://containerregistry.azure.net/.default"),
            ]
        );
        let federated = Credential {
            tenant: "t".into(),
            client_id: "app".into(),
            proof: Proof::Assertion("eyJ.assertion".into()),
        };
        assert_eq!(
            federated.form(),
            [
                ("grant_type", "client_credentials"),
                ("client_id", "app"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                ),
                ("client_assertion", "eyJ.assertion"),
                ("scope", "https://containerregistry.azure.net/.default"),
            ]
        );
        assert_eq!(
            exchange_form("r.azurecr.io", "t", "aad"),
            [
                ("grant_type", "access_token"),
                ("service", "r.azurecr.io"),
                ("tenant", "t"),
                ("access_token", "aad"),
            ]
        );
    }

    #[test]
    fn expiry_is_the_refresh_tokens_exp_or_three_hours() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let jwt = |payload: &str| {
            format!(
                "{}.{}.sig",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(payload)
            )
        };
        assert_eq!(
            expiry(&jwt(r#"{"exp":1800000000}"#), now),
            UNIX_EPOCH + Duration::from_secs(1_800_000_000)
        );
        assert_eq!(expiry(&jwt(r#"{"sub":"x"}"#), now), now + DEFAULT_LIFETIME);
        assert_eq!(expiry("opaque", now), now + DEFAULT_LIFETIME);
    }

    #[test]
    fn tenants_are_ids_or_domains() {
        for ok in [
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "contoso.onmicrosoft.com",
        ] {
            assert!(check_tenant(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "t?x=1", "../x", ".x"] {
            assert_eq!(
                check_tenant(bad).unwrap_err().metric_label(),
                "config",
                "{bad}"
            );
        }
    }
}
