//! The ECR client against a real moto server (ECR, STS and IAM, with SigV4 checked where it
//! matters) and against a scripted fake for the failures.

mod fake;
#[path = "../common/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pull_secret_injector::config::token::{AwsAuth, EcrSpec, SecretKeyRef};
use pull_secret_injector::token::{MintContext, MintError, Minted, ecr};

use fake::Fake;
use moto::{DEFAULT_ACCOUNT, Moto, element};

const REGION: &str = "eu-west-1";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/puller";
const ALLOW_ECR: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"}]}"#;

fn spec(endpoint: &str, auth: AwsAuth, registry_ids: &[&str]) -> EcrSpec {
    EcrSpec {
        region: REGION.into(),
        registry_ids: registry_ids.iter().map(|s| s.to_string()).collect(),
        auth,
        endpoint: Some(endpoint.into()),
        sts_endpoint: Some(endpoint.into()),
    }
}

fn secret_auth() -> AwsAuth {
    AwsAuth::Secret(SecretKeyRef {
        namespace: "psi".into(),
        name: "ecr-keys".into(),
    })
}

fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn static_keys(id: &str, secret: &str) -> BTreeMap<String, Vec<u8>> {
    keys(&[("AWS_ACCESS_KEY_ID", id), ("AWS_SECRET_ACCESS_KEY", secret)])
}

async fn mint_with(
    spec: &EcrSpec,
    key: Option<&BTreeMap<String, Vec<u8>>>,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<Minted, MintError> {
    let http = pull_secret_injector::token::http_client().expect("client");
    let cx = MintContext {
        http: &http,
        key,
        now: SystemTime::now(),
        env,
    };
    ecr::mint(spec, &cx).await
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn hosts(minted: &Minted) -> Vec<String> {
    minted.auths.iter().map(|a| a.registry.clone()).collect()
}

fn host(account: &str) -> String {
    format!("{account}.dkr.ecr.{REGION}.amazonaws.com")
}

// moto 5 answers every token with this fixed expiry (moto/ecr/responses.py), which is why the
// value is compared instead of "later than now".
fn moto_expiry() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_420_070_400)
}

#[tokio::test]
async fn static_keys_mint_one_auth_per_registry_id_and_the_own_account_by_default() {
    let moto = Moto::start(None).await;
    let key = static_keys("AKIDEXAMPLE", "not-checked-here");
    let asked = ["111122223333", "444455556666"];
    let minted = mint_with(&spec(&moto.url, secret_auth(), &asked), Some(&key), &no_env)
        .await
        .unwrap_or_else(|e| panic!("{e}; moto's log:\n{}", moto.log()));
    assert_eq!(hosts(&minted), [host(asked[0]), host(asked[1])]);
    for (auth, account) in minted.auths.iter().zip(asked) {
        assert_eq!(auth.username, "AWS");
        assert_eq!(auth.password, format!("{account}-auth-token"));
    }
    assert_eq!(minted.expires_at, moto_expiry());

    let own = mint_with(&spec(&moto.url, secret_auth(), &[]), Some(&key), &no_env)
        .await
        .expect("mint for the caller's account");
    assert_eq!(hosts(&own), [host(DEFAULT_ACCOUNT)]);
}

#[tokio::test]
async fn signature_is_verified_by_moto_and_a_wrong_secret_is_rejected_without_secrets() {
    // Three free actions set up the user; from the fourth on, moto checks every signature.
    let moto = Moto::start(Some(3)).await;
    moto.iam(&[("Action", "CreateUser"), ("UserName", "puller")])
        .await;
    moto.iam(&[
        ("Action", "PutUserPolicy"),
        ("UserName", "puller"),
        ("PolicyName", "ecr"),
        ("PolicyDocument", ALLOW_ECR),
    ])
    .await;
    let created = moto
        .iam(&[("Action", "CreateAccessKey"), ("UserName", "puller")])
        .await;
    let id = element(&created, "AccessKeyId");
    let secret = element(&created, "SecretAccessKey");

    let minted = mint_with(
        &spec(&moto.url, secret_auth(), &[]),
        Some(&static_keys(&id, &secret)),
        &no_env,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; moto's log:\n{}", moto.log()));
    assert_eq!(hosts(&minted), [host(DEFAULT_ACCOUNT)]);

    let wrong = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGKEY";
    let err = mint_with(
        &spec(&moto.url, secret_auth(), &[]),
        Some(&static_keys(&id, wrong)),
        &no_env,
    )
    .await
    .expect_err("a wrong secret key is refused");
    assert!(
        matches!(&err, MintError::Rejected { detail, .. }
            if detail.starts_with("403 Forbidden: SignatureDoesNotMatch: ")),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains(&secret) && !text.contains(wrong), "{text}");
}

#[tokio::test]
async fn web_identity_assumes_the_role_and_signs_with_its_session_credentials() {
    // CreateRole, PutRolePolicy and AssumeRoleWithWebIdentity (unsigned by nature) are free;
    // the ECR call is checked, with the session token, against the keys STS issued.
    let moto = Moto::start(Some(3)).await;
    moto.iam(&[
        ("Action", "CreateRole"),
        ("RoleName", "puller"),
        (
            "AssumeRolePolicyDocument",
            r#"{"Version":"2012-10-17","Statement":[]}"#,
        ),
    ])
    .await;
    moto.iam(&[
        ("Action", "PutRolePolicy"),
        ("RoleName", "puller"),
        ("PolicyName", "ecr"),
        ("PolicyDocument", ALLOW_ECR),
    ])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl\n").expect("token file");
    let env = |var: &str| (var == "AWS_ROLE_ARN").then(|| ROLE_ARN.to_string());
    let auth = AwsAuth::WebIdentity {
        role_arn: None,
        token_file: Some(token_file),
    };
    let minted = mint_with(&spec(&moto.url, auth, &["111122223333"]), None, &env)
        .await
        .unwrap_or_else(|e| panic!("{e}; moto's log:\n{}", moto.log()));
    assert_eq!(hosts(&minted), [host("111122223333")]);
    assert_eq!(minted.auths[0].username, "AWS");
}

#[tokio::test]
async fn failures_map_to_rejected_unreachable_and_protocol() {
    let key = static_keys("AKIDEXAMPLE", "secret-key-never-shown");
    let denied = Fake::start(
        400,
        r#"{"__type":"AccessDeniedException","message":"User is not authorized to perform: ecr:GetAuthorizationToken"}"#,
    )
    .await;
    let failing = Fake::start(500, r#"{"__type":"ServerException","message":"oops"}"#).await;
    let garbage = Fake::start(200, "<html>not json</html>").await;
    let closed = format!(
        "http://127.0.0.1:{}/",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port()
    );
    let mint = |url: String| {
        let key = key.clone();
        async move { mint_with(&spec(&url, secret_auth(), &[]), Some(&key), &no_env).await }
    };

    let err = mint(denied.url.clone()).await.expect_err("denied");
    match &err {
        MintError::Rejected { endpoint, detail } => {
            assert_eq!(endpoint, &denied.url);
            assert!(
                detail.starts_with("400 Bad Request: AccessDeniedException: User is not"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    let err = mint(failing.url.clone()).await.expect_err("failing");
    assert!(
        matches!(&err, MintError::Unreachable { detail, .. } if detail.contains("ServerException")),
        "{err:?}"
    );
    let err = mint(garbage.url.clone()).await.expect_err("garbage");
    assert!(matches!(&err, MintError::Protocol { .. }), "{err:?}");
    let err = mint(closed).await.expect_err("closed port");
    assert!(matches!(&err, MintError::Unreachable { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("secret-key-never-shown"));
}

#[tokio::test]
async fn sts_refusal_is_rejected_without_the_web_identity_token() {
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2VjcmV0LXNpZ25hdHVyZQ";
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).expect("token file");
    let auth = AwsAuth::WebIdentity {
        role_arn: Some(ROLE_ARN.into()),
        token_file: Some(token_file),
    };
    // STS's documented refusal, echoing the token as a careless server might.
    let refusal = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
         <Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn't retrieve \
         verification key from your identity provider for {token}</Message></Error>\
         <RequestId>r</RequestId></ErrorResponse>"
    );
    let sts = Fake::sts(400, refusal).await;
    let mut ecr_spec = spec("http://127.0.0.1:9/", auth, &[]);
    ecr_spec.sts_endpoint = Some(sts.url.clone());
    let err = mint_with(&ecr_spec, None, &no_env)
        .await
        .expect_err("refused");
    match &err {
        MintError::Rejected { endpoint, detail } => {
            assert_eq!(endpoint, &sts.url);
            assert!(
                detail.starts_with("400 Bad Request: InvalidIdentityToken: Couldn't retrieve"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains(token), "{err:?}");

    let garbage = Fake::sts(200, "<html>a portal</html>").await;
    ecr_spec.sts_endpoint = Some(garbage.url.clone());
    let err = mint_with(&ecr_spec, None, &no_env)
        .await
        .expect_err("garbage");
    assert!(matches!(&err, MintError::Protocol { .. }), "{err:?}");
}

#[tokio::test]
async fn missing_key_material_is_a_config_error_naming_it() {
    let nowhere = "http://127.0.0.1:9/";
    let only_id = keys(&[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")]);
    let err = mint_with(&spec(nowhere, secret_auth(), &[]), Some(&only_id), &no_env)
        .await
        .expect_err("no secret key");
    assert!(
        matches!(&err, MintError::Config(m) if m.contains("AWS_SECRET_ACCESS_KEY")),
        "{err:?}"
    );

    let web = |role_arn: Option<&str>, token_file: Option<&str>| AwsAuth::WebIdentity {
        role_arn: role_arn.map(str::to_string),
        token_file: token_file.map(Into::into),
    };
    let err = mint_with(&spec(nowhere, web(None, Some("/t")), &[]), None, &no_env)
        .await
        .expect_err("no role");
    assert!(
        matches!(&err, MintError::Config(m) if m.contains("AWS_ROLE_ARN")),
        "{err:?}"
    );
    let err = mint_with(
        &spec(nowhere, web(Some(ROLE_ARN), None), &[]),
        None,
        &no_env,
    )
    .await
    .expect_err("no token file");
    assert!(
        matches!(&err, MintError::Config(m) if m.contains("AWS_WEB_IDENTITY_TOKEN_FILE")),
        "{err:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("absent-token");
    let env =
        |var: &str| (var == "AWS_WEB_IDENTITY_TOKEN_FILE").then(|| missing.display().to_string());
    let err = mint_with(&spec(nowhere, web(Some(ROLE_ARN), None), &[]), None, &env)
        .await
        .expect_err("unreadable token file");
    assert!(
        matches!(&err, MintError::Config(m) if m.contains(&missing.display().to_string())),
        "{err:?}"
    );
}
