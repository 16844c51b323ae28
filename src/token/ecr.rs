//! Amazon ECR: `GetAuthorizationToken` (ECR API reference, AWS JSON 1.1 protocol) signed with
//! SigV4, with keys from a Secret or from STS `AssumeRoleWithWebIdentity` on a projected
//! ServiceAccount token (the EKS IRSA arrangement).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use serde::Deserialize;

use super::{MintContext, MintError, Minted, MintedAuth, endpoint_of, key_string, short_detail};
use crate::config::token::{AwsAuth, EcrSpec};

mod sts;

pub use sts::default_sts_endpoint;

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Mints an ECR token: one docker auth per registry id asked (or the caller's own registry).
pub async fn mint(spec: &EcrSpec, cx: &MintContext<'_>) -> Result<Minted, MintError> {
    let creds = match &spec.auth {
        AwsAuth::Secret(_) => secret_credentials(cx)?,
        AwsAuth::WebIdentity {
            role_arn,
            token_file,
        } => {
            sts::web_identity_credentials(spec, role_arn.as_deref(), token_file.as_deref(), cx)
                .await?
        }
    };
    get_authorization_token(spec, &creds, cx).await
}

/// The default ECR API endpoint of a region.
pub fn default_endpoint(region: &str) -> String {
    format!("https://api.ecr.{region}.{}/", dns_suffix(region))
}

// The China partition lives under its own domain; the other partitions a pull secret would
// plausibly target share amazonaws.com.
fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

fn secret_credentials(cx: &MintContext<'_>) -> Result<Credentials, MintError> {
    const WHAT: &str = "ecr static keys";
    let access_key = key_string(cx, "AWS_ACCESS_KEY_ID", WHAT)?;
    let secret_key = key_string(cx, "AWS_SECRET_ACCESS_KEY", WHAT)?;
    // Absent or empty means long-lived keys, as the AWS SDKs read an empty variable.
    let has_token = cx
        .key
        .and_then(|d| d.get("AWS_SESSION_TOKEN"))
        .is_some_and(|v| !v.trim_ascii().is_empty());
    let session_token = has_token
        .then(|| key_string(cx, "AWS_SESSION_TOKEN", WHAT))
        .transpose()?;
    Ok(Credentials::new(
        access_key,
        secret_key,
        session_token,
        None,
        "secret",
    ))
}

async fn get_authorization_token(
    spec: &EcrSpec,
    creds: &Credentials,
    cx: &MintContext<'_>,
) -> Result<Minted, MintError> {
    let url = spec
        .endpoint
        .clone()
        .unwrap_or_else(|| default_endpoint(&spec.region));
    let endpoint = endpoint_of(&url);
    let body = request_body(&spec.registry_ids);
    let signed =
        sign_request(&url, body.as_bytes(), &spec.region, creds, cx.now).map_err(|detail| {
            MintError::Config(format!("ecr: cannot sign for {endpoint}: {detail}"))
        })?;

    let mut request = cx
        .http
        .post(&url)
        .header("Content-Type", CONTENT_TYPE)
        .header("X-Amz-Target", TARGET);
    for (name, value) in &signed {
        request = request.header(*name, value);
    }
    let secrets: Vec<&str> = [Some(creds.secret_access_key()), creds.session_token()]
        .into_iter()
        .flatten()
        .collect();
    let text = call(request.body(body), &endpoint, &secrets).await?;
    parse_authorization(&text).map_err(|detail| MintError::Protocol { endpoint, detail })
}

fn request_body(registry_ids: &[String]) -> String {
    if registry_ids.is_empty() {
        "{}".to_string()
    } else {
        serde_json::json!({ "registryIds": registry_ids }).to_string()
    }
}

/// The SigV4 headers (`Authorization`, `X-Amz-Date`, `X-Amz-Security-Token`) for a
/// `GetAuthorizationToken` POST of `body`.
fn sign_request(
    url: &str,
    body: &[u8],
    region: &str,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Vec<(&'static str, String)>, String> {
    let identity: Identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ecr")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    // The headers signed must be the ones sent, byte for byte; Host comes from the URL, as
    // reqwest derives it.
    let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
    let request = SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name(), h.value().to_string()))
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationAnswer {
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: String,
    expires_at: f64,
    proxy_endpoint: String,
}

/// The minted auths of a `GetAuthorizationToken` answer, or what is wrong with it (never a
/// token: serde's messages are replaced by the position, since they may quote values).
fn parse_authorization(body: &str) -> Result<Minted, String> {
    let answer: AuthorizationAnswer = serde_json::from_str(body).map_err(|e| {
        format!(
            "not a GetAuthorizationToken answer ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    if answer.authorization_data.is_empty() {
        return Err("authorizationData is empty".into());
    }
    let mut auths = Vec::new();
    let mut expires_at: Option<SystemTime> = None;
    for (i, data) in answer.authorization_data.into_iter().enumerate() {
        let registry = registry_host(&data.proxy_endpoint)
            .ok_or_else(|| format!("authorizationData[{i}].proxyEndpoint has no host"))?;
        let (username, password) = split_token(&data.authorization_token).ok_or_else(|| {
            format!("authorizationData[{i}].authorizationToken is not base64 of user:password")
        })?;
        let at = epoch_seconds(data.expires_at)
            .ok_or_else(|| format!("authorizationData[{i}].expiresAt is not a time"))?;
        expires_at = Some(expires_at.map_or(at, |e| e.min(at)));
        auths.push(MintedAuth {
            registry,
            username,
            password,
        });
    }
    Ok(Minted {
        auths,
        expires_at: expires_at.expect("at least one entry"),
    })
}

/// The host (and port) of a `proxyEndpoint`, the form docker config auths keys take.
fn registry_host(proxy_endpoint: &str) -> Option<String> {
    let rest = proxy_endpoint
        .trim()
        .strip_prefix("https://")
        .or_else(|| proxy_endpoint.trim().strip_prefix("http://"))
        .unwrap_or(proxy_endpoint.trim());
    let host = rest.split('/').next().unwrap_or_default();
    (!host.is_empty()).then(|| host.to_string())
}

/// `authorizationToken` is base64 of `user:password`; the password may itself hold colons.
fn split_token(token: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (!user.is_empty() && !password.is_empty()).then(|| (user.to_string(), password.to_string()))
}

/// AWS JSON timestamps are epoch seconds, possibly fractional.
fn epoch_seconds(secs: f64) -> Option<SystemTime> {
    let d = Duration::try_from_secs_f64(secs).ok()?;
    UNIX_EPOCH.checked_add(d)
}

/// The code and message of an AWS error body: the JSON protocols' `__type` (whose code
/// follows a `#`) and `message`, or the query protocol's XML `ErrorResponse/Error`.
fn aws_error(body: &str) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct JsonError {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    // STS nests Error directly; moto (as EC2 does) puts it under Errors.
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct XmlErrorResponse {
        error: Option<XmlError>,
        errors: Option<XmlErrors>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct XmlErrors {
        error: XmlError,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct XmlError {
        code: Option<String>,
        message: Option<String>,
    }
    let (code, message) = if let Ok(e) = serde_json::from_str::<JsonError>(body) {
        let code = e
            .kind
            .map(|k| k.rsplit('#').next().unwrap_or(&k).to_string());
        (code, e.message)
    } else if let Ok(e) = quick_xml::de::from_str::<XmlErrorResponse>(body) {
        let e = e.error.or(e.errors.map(|e| e.error))?;
        (e.code, e.message)
    } else {
        return None;
    };
    let code = code.filter(|c| !c.is_empty())?;
    let message: String = message.unwrap_or_default().chars().take(300).collect();
    Some((
        code,
        message.split_whitespace().collect::<Vec<_>>().join(" "),
    ))
}

/// Sends `request` and returns the body of a 2xx answer, or the error its status or its
/// transport failure means, with `secrets` cut out of the detail.
async fn call(
    request: reqwest::RequestBuilder,
    endpoint: &str,
    secrets: &[&str],
) -> Result<String, MintError> {
    let unreachable = |e: reqwest::Error| MintError::Unreachable {
        endpoint: endpoint.to_string(),
        detail: scrub(transport_detail(&e), secrets),
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    if status.is_success() {
        return Ok(body);
    }
    let endpoint = endpoint.to_string();
    let detail = scrub(
        aws_error(&body)
            .map(|(code, message)| format!("{status}: {code}: {message}"))
            .unwrap_or_else(|| short_detail(status, &body)),
        secrets,
    );
    Err(if status.is_client_error() {
        MintError::Rejected { endpoint, detail }
    } else if status.is_server_error() {
        MintError::Unreachable { endpoint, detail }
    } else {
        // A redirect, which the client does not follow: not the protocol.
        MintError::Protocol { endpoint, detail }
    })
}

/// A transport failure in words: reqwest's own message says only "error sending request",
/// the cause (refused, DNS, TLS) is further down its source chain.
fn transport_detail(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    // The URL is the error's endpoint already.
    let top = match e.url() {
        Some(url) => e.to_string().replace(&format!(" ({url})"), ""),
        None => e.to_string(),
    };
    let mut parts = vec![top];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

// A provider may echo what it was sent (a canonical request with its token header, say):
// known secrets are cut out of anything that goes into an error.
fn scrub(text: String, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text, |t, s| t.replace(s, "<redacted>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn default_endpoints_follow_the_partition() {
        assert_eq!(
            default_endpoint("eu-west-1"),
            "https://api.ecr.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            default_endpoint("cn-north-1"),
            "https://api.ecr.cn-north-1.amazonaws.com.cn/"
        );
    }

    #[test]
    fn body_lists_registry_ids_or_is_empty() {
        assert_eq!(request_body(&[]), "{}");
        assert_eq!(
            request_body(&["111122223333".into(), "444455556666".into()]),
            r#"{"registryIds":["111122223333","444455556666"]}"#
        );
    }

    #[test]
    fn answer_becomes_auths_with_earliest_expiry() {
        let body = serde_json::json!({"authorizationData": [
            {"authorizationToken": token("AWS:pass:with:colons"), "expiresAt": 1_800_000_100.5,
             "proxyEndpoint": "https://111122223333.dkr.ecr.eu-west-1.amazonaws.com"},
            {"authorizationToken": token("AWS:other"), "expiresAt": 1_800_000_000,
             "proxyEndpoint": "https://444455556666.dkr.ecr.eu-west-1.amazonaws.com/"},
        ]})
        .to_string();
        let minted = parse_authorization(&body).unwrap();
        assert_eq!(minted.auths.len(), 2);
        assert_eq!(
            minted.auths[0].registry,
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(minted.auths[0].username, "AWS");
        assert_eq!(minted.auths[0].password, "pass:with:colons");
        assert_eq!(
            minted.auths[1].registry,
            "444455556666.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            minted.expires_at,
            UNIX_EPOCH + Duration::from_secs(1_800_000_000)
        );
    }

    #[test]
    fn bad_answers_say_what_is_wrong_without_the_token() {
        let entry = |tok: &str, at: serde_json::Value, proxy: &str| {
            serde_json::json!({"authorizationData": [
                {"authorizationToken": tok, "expiresAt": at, "proxyEndpoint": proxy}]})
            .to_string()
        };
        let good = token("AWS:secret-password");
        let cases = [
            ("garbage".to_string(), "not a GetAuthorizationToken answer"),
            (r#"{"authorizationData": []}"#.to_string(), "empty"),
            (
                entry("bm90IGEgcGFpcg==", 1.0.into(), "https://h"),
                "authorizationToken",
            ),
            (entry("%%%", 1.0.into(), "https://h"), "authorizationToken"),
            (entry(&good, (-5.0).into(), "https://h"), "expiresAt"),
            (entry(&good, 1.0.into(), "https://"), "proxyEndpoint"),
            (
                entry(&good, "secret-password".into(), "https://h"),
                "line 1",
            ),
        ];
        for (body, want) in cases {
            let err = parse_authorization(&body).unwrap_err();
            assert!(err.contains(want), "{body}: {err}");
            assert!(!err.contains("secret-password"), "{err}");
        }
    }

    #[test]
    fn token_splits_at_the_first_colon() {
        assert_eq!(
            split_token(&token("AWS:a:b")),
            Some(("AWS".into(), "a:b".into()))
        );
        assert_eq!(split_token(&token("no-colon")), None);
        assert_eq!(split_token(&token(":nouser")), None);
        assert_eq!(split_token("not base64!"), None);
    }

    #[test]
    fn error_bodies_of_both_protocols_give_code_and_message() {
        let json = r#"{"__type":"com.amazonaws.ecr#AccessDeniedException","message":"no"}"#;
        assert_eq!(
            aws_error(json),
            Some(("AccessDeniedException".into(), "no".into()))
        );
        let xml = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                   <Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>bad \
                   token</Message></Error><RequestId>r</RequestId></ErrorResponse>";
        assert_eq!(
            aws_error(xml),
            Some(("InvalidIdentityToken".into(), "bad token".into()))
        );
        let nested = "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch\
                      </Code><Message>m</Message></Error></Errors></ErrorResponse>";
        assert_eq!(
            aws_error(nested),
            Some(("SignatureDoesNotMatch".into(), "m".into()))
        );
        assert_eq!(aws_error("<html>502</html>"), None);
        assert_eq!(aws_error(r#"{"message":"no code"}"#), None);
    }

    #[test]
    fn secrets_are_scrubbed_from_details() {
        let text = "canonical request: x-amz-security-token:SESSIONTOKEN key SECRETKEY".into();
        let out = scrub(text, &["SESSIONTOKEN", "SECRETKEY"]);
        assert_eq!(
            out,
            "canonical request: x-amz-security-token:<redacted> key <redacted>"
        );
    }

    #[test]
    fn signature_covers_target_and_session_token() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), None, "t");
        let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let headers = sign_request(
            "https://api.ecr.eu-west-1.amazonaws.com/",
            b"{}",
            "eu-west-1",
            &creds,
            now,
        )
        .unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
        };
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/ecr/aws4_request"
            ),
            "{auth}"
        );
        assert!(
            auth.contains(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
            ),
            "{auth}"
        );
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(get("x-amz-security-token"), Some("session"));
    }
}
