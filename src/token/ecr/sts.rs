//! STS `AssumeRoleWithWebIdentity` (STS API reference, query protocol): a projected
//! ServiceAccount token traded for a role's session keys, the EKS IRSA arrangement.

use std::path::Path;

use aws_credential_types::Credentials;
use serde::Deserialize;

use super::{call, dns_suffix};
use crate::config::token::EcrSpec;
use crate::token::{MintContext, MintError, endpoint_of};

const SESSION_NAME: &str = "pull-secret-injector";

/// The default regional STS endpoint of a region.
pub fn default_sts_endpoint(region: &str) -> String {
    format!("https://sts.{region}.{}/", dns_suffix(region))
}

/// A value from the spec, else from the environment (an empty variable counts as unset, as
/// the AWS SDKs treat it).
fn spec_or_env(
    cx: &MintContext<'_>,
    from_spec: Option<String>,
    var: &str,
    what: &str,
) -> Result<String, MintError> {
    from_spec
        .filter(|v| !v.trim().is_empty())
        .or_else(|| (cx.env)(var).filter(|v| !v.trim().is_empty()))
        .ok_or_else(|| {
            MintError::Config(format!(
                "ecr web identity: no {what}: the credential names none and {var} is not set"
            ))
        })
}

pub(super) async fn web_identity_credentials(
    spec: &EcrSpec,
    role_arn: Option<&str>,
    token_file: Option<&Path>,
    cx: &MintContext<'_>,
) -> Result<Credentials, MintError> {
    let role_arn = spec_or_env(cx, role_arn.map(str::to_string), "AWS_ROLE_ARN", "role ARN")?;
    let token_file = spec_or_env(
        cx,
        token_file.map(|p| p.to_string_lossy().into_owned()),
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "token file",
    )?;
    // The error names the file and the OS's reason only: the content is a bearer token.
    let token = tokio::fs::read_to_string(&token_file).await.map_err(|e| {
        MintError::Config(format!(
            "ecr web identity: cannot read the token file {token_file}: {}",
            e.kind()
        ))
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(MintError::Config(format!(
            "ecr web identity: the token file {token_file} is empty"
        )));
    }

    let url = spec
        .sts_endpoint
        .clone()
        .unwrap_or_else(|| default_sts_endpoint(&spec.region));
    let endpoint = endpoint_of(&url);
    // Unsigned by design: the web identity token is the credential (STS API reference).
    let request = cx.http.post(&url).header("Accept", "text/xml").form(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn.as_str()),
        ("RoleSessionName", SESSION_NAME),
        ("WebIdentityToken", token),
        ("DurationSeconds", "3600"),
    ]);
    let body = call(request, &endpoint, &[token]).await?;
    sts_credentials(&body).map_err(|detail| MintError::Protocol { endpoint, detail })
}

/// The keys of an `AssumeRoleWithWebIdentityResponse`, or which of them it lacks.
fn sts_credentials(body: &str) -> Result<Credentials, String> {
    let answer: StsAnswer = quick_xml::de::from_str(body)
        .map_err(|_| "not an AssumeRoleWithWebIdentityResponse document".to_string())?;
    let c = answer
        .result
        .and_then(|r| r.credentials)
        .unwrap_or_default();
    let missing: Vec<&str> = [
        ("AccessKeyId", &c.access_key_id),
        ("SecretAccessKey", &c.secret_access_key),
        ("SessionToken", &c.session_token),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.is_none().then_some(name))
    .collect();
    match (c.access_key_id, c.secret_access_key, c.session_token) {
        (Some(id), Some(secret), Some(session)) => {
            Ok(Credentials::new(id, secret, Some(session), None, "sts"))
        }
        _ => Err(format!(
            "AssumeRoleWithWebIdentityResult/Credentials lacks {}",
            missing.join(", ")
        )),
    }
}

#[derive(Deserialize)]
struct StsAnswer {
    #[serde(rename = "AssumeRoleWithWebIdentityResult")]
    result: Option<StsResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsResult {
    credentials: Option<StsCredentials>,
}

// Options, so that a missing element is named in the error instead of quick-xml's wording,
// which may quote the values around it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoint_is_regional() {
        assert_eq!(
            default_sts_endpoint("us-east-2"),
            "https://sts.us-east-2.amazonaws.com/"
        );
    }

    #[test]
    fn sts_credentials_parse_and_name_what_is_missing() {
        let xml = "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                   <AssumeRoleWithWebIdentityResult><Credentials><SessionToken>st</SessionToken>\
                   <SecretAccessKey>sk</SecretAccessKey><Expiration>2026-01-01T00:00:00Z</Expiration>\
                   <AccessKeyId>ak</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult>\
                   </AssumeRoleWithWebIdentityResponse>";
        let c = sts_credentials(xml).unwrap();
        assert_eq!(c.access_key_id(), "ak");
        assert_eq!(c.secret_access_key(), "sk");
        assert_eq!(c.session_token(), Some("st"));
        let partial = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>\
                       <Credentials><AccessKeyId>ak</AccessKeyId></Credentials>\
                       </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(
            sts_credentials(partial).unwrap_err(),
            "AssumeRoleWithWebIdentityResult/Credentials lacks SecretAccessKey, SessionToken"
        );
        assert!(sts_credentials("{}").is_err());
    }
}
