//! gar: the Artifact Registry client against fakes of Google's OAuth2 token endpoint (the
//! JWT-bearer grant, verified as Google verifies it), of STS's token exchange and of IAM
//! Credentials' `generateAccessToken` (fakes/google.rs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pull_secret_injector::config::token::{GarSpec, GoogleAuth, SecretKeyRef};
use pull_secret_injector::token::{MintContext, MintError, Minted, gar};
use serde_json::json;

use crate::fakes::google::{self, Exchange, Impersonation, ServiceAccount};
use crate::fakes::rsa_keys;

const EMAIL: &str = "puller@my-project.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
const REGISTRIES: [&str; 2] = ["europe-docker.pkg.dev", "eu.gcr.io"];

fn key_json(private_pem: &str, token_uri: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": KEY_ID,
        "private_key": private_pem,
        "client_email": EMAIL,
        "client_id": "100000000000000000000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }))
    .unwrap()
}

fn spec(auth: GoogleAuth, token_endpoint: Option<String>) -> GarSpec {
    GarSpec {
        registries: REGISTRIES.iter().map(|r| r.to_string()).collect(),
        auth,
        token_endpoint,
    }
}

fn key_auth() -> GoogleAuth {
    GoogleAuth::ServiceAccountKey(SecretKeyRef {
        namespace: "psi-system".into(),
        name: "gar-key".into(),
    })
}

/// The fake OAuth2 endpoint, knowing the first test key.
async fn oauth2(access_token: &str) -> String {
    let account = ServiceAccount {
        email: EMAIL.into(),
        key_id: KEY_ID.into(),
        public_pem: rsa_keys()[0].public_pem.clone(),
    };
    google::oauth2(account, access_token, 3599).await
}

async fn mint_with_key(
    spec: &GarSpec,
    key_json: Vec<u8>,
    now: SystemTime,
) -> Result<Minted, MintError> {
    let http = pull_secret_injector::token::http_client().unwrap();
    let key = BTreeMap::from([("key.json".to_string(), key_json)]);
    let cx = MintContext {
        http: &http,
        key: Some(&key),
        now,
        env: &|_| None,
    };
    gar::mint(spec, &cx).await
}

fn assert_tokens(minted: &Minted, token: &str) {
    let got: Vec<_> = minted
        .auths
        .iter()
        .map(|a| {
            (
                a.registry.as_str(),
                a.username.as_str(),
                a.password.as_str(),
            )
        })
        .collect();
    let want: Vec<_> = REGISTRIES
        .iter()
        .map(|r| (*r, "oauth2accesstoken", token))
        .collect();
    assert_eq!(got, want);
}

/// Nothing of the key, nor an assertion (a JWT: `eyJ...`), is in a message.
fn assert_no_key_material(err: &MintError) {
    let message = format!("{err} {err:?}");
    for key in rsa_keys() {
        for line in key.private_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!message.contains(line), "key material in {message}");
        }
    }
    assert!(!message.contains("eyJ"), "a JWT in {message}");
}

#[tokio::test]
async fn a_service_account_key_mints_oauth2accesstoken_for_each_registry() {
    let url = oauth2("ya29.service-account-token").await;
    let now = SystemTime::now();
    let minted = mint_with_key(
        &spec(key_auth(), None),
        key_json(&rsa_keys()[0].private_pem, &url),
        now,
    )
    .await
    .unwrap();
    assert_tokens(&minted, "ya29.service-account-token");
    assert_eq!(minted.expires_at, now + Duration::from_secs(3599));
}

#[tokio::test]
async fn a_key_google_does_not_know_is_rejected() {
    let url = oauth2("ya29.never").await;
    // Same account and key id, another private key: the signature does not verify.
    let err = mint_with_key(
        &spec(key_auth(), None),
        key_json(&rsa_keys()[1].private_pem, &url),
        SystemTime::now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MintError::Rejected { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("invalid_grant: Invalid JWT Signature."),
        "{err}"
    );
    assert_no_key_material(&err);
}

#[tokio::test]
async fn an_assertion_for_another_audience_is_rejected() {
    let url = oauth2("ya29.never").await;
    // The override reaches the same server under another URL; the assertion's aud is the URL
    // posted to, which is not the endpoint's own.
    let elsewhere = url.replace("/token", "/v1/token");
    let err = mint_with_key(
        &spec(key_auth(), Some(elsewhere.clone())),
        key_json(&rsa_keys()[0].private_pem, &url),
        SystemTime::now(),
    )
    .await
    .unwrap_err();
    match &err {
        MintError::Rejected { endpoint, detail } => {
            assert_eq!(endpoint, &elsewhere);
            assert!(detail.contains("Failed audience check"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_no_key_material(&err);

    // An assertion issued an hour and more ago has expired by Google's clock.
    let err = mint_with_key(
        &spec(key_auth(), None),
        key_json(&rsa_keys()[0].private_pem, &url),
        SystemTime::now() - Duration::from_secs(3700),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("Token has expired"), "{err}");
}

#[tokio::test]
async fn a_malformed_key_json_is_a_config_error_naming_the_field() {
    let private_pem = &rsa_keys()[0].private_pem;
    let full: serde_json::Value =
        serde_json::from_slice(&key_json(private_pem, "http://127.0.0.1:9/token")).unwrap();
    let cases: [(&str, serde_json::Value, &str); 4] = [
        (
            "client_email",
            serde_json::Value::Null,
            "field client_email is missing",
        ),
        (
            "private_key_id",
            7.into(),
            "field private_key_id is not a string",
        ),
        (
            "type",
            "authorized_user".into(),
            "field type is not service_account",
        ),
        (
            "private_key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
            "field private_key is not an RSA private key",
        ),
    ];
    for (field, value, want) in cases {
        let mut json = full.clone();
        json[field] = value;
        let err = mint_with_key(
            &spec(key_auth(), None),
            serde_json::to_vec(&json).unwrap(),
            SystemTime::now(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, MintError::Config(_)), "{err:?}");
        assert!(err.to_string().contains(want), "{err} does not say {want}");
        assert_no_key_material(&err);
    }
    let err = mint_with_key(
        &spec(key_auth(), None),
        b"{\"type\":".to_vec(),
        SystemTime::now(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("key.json of the key Secret: not JSON"),
        "{err}"
    );
}

#[tokio::test]
async fn a_token_endpoint_that_does_not_answer_is_unreachable() {
    // Nothing listens on a port just closed: the connection is refused.
    let (listener, base) = crate::fakes::bind().await;
    drop(listener);
    let url = format!("{base}/token?from=test");
    let err = mint_with_key(
        &spec(key_auth(), None),
        key_json(&rsa_keys()[0].private_pem, &url),
        SystemTime::now(),
    )
    .await
    .unwrap_err();
    match &err {
        MintError::Unreachable { endpoint, detail } => {
            assert_eq!(endpoint, &format!("{base}/token"));
            assert!(detail.starts_with("cannot connect"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_no_key_material(&err);
}

/// An external_account JSON (AIP-4117) reading `token_file`, in `dir`.
fn external_account(
    dir: &tempfile::TempDir,
    token_url: &str,
    source: serde_json::Value,
    impersonation_url: Option<&str>,
) -> PathBuf {
    let mut json = json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": token_url,
        "credential_source": source,
    });
    if let Some(url) = impersonation_url {
        json["service_account_impersonation_url"] = url.into();
    }
    let path = dir.path().join("credentials.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

const AUDIENCE: &str =
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/k8s/providers/psi";
const SUBJECT_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln";

fn sts_exchange(access_token: &str) -> Exchange {
    Exchange {
        audience: AUDIENCE.into(),
        subject_token: SUBJECT_TOKEN.into(),
        subject_token_type: "urn:ietf:params:oauth:token-type:jwt".into(),
        access_token: access_token.into(),
        expires_in: 3600,
    }
}

async fn mint_federated(
    spec: &GarSpec,
    env: BTreeMap<&str, String>,
    now: SystemTime,
) -> Result<Minted, MintError> {
    let http = pull_secret_injector::token::http_client().unwrap();
    let env = move |name: &str| env.get(name).cloned();
    let cx = MintContext {
        http: &http,
        key: None,
        now,
        env: &env,
    };
    gar::mint(spec, &cx).await
}

#[tokio::test]
async fn workload_identity_exchanges_the_token_file_at_sts() {
    let sts = google::sts(sts_exchange("ya29.federated")).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    // A projected token file; the newline an editor leaves is not part of the token.
    std::fs::write(&token_file, format!("{SUBJECT_TOKEN}\n")).unwrap();
    let credentials = external_account(&dir, &sts, json!({"file": token_file}), None);
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);

    // The credentials file from GOOGLE_APPLICATION_CREDENTIALS, as Google's libraries read it.
    let env = BTreeMap::from([(
        "GOOGLE_APPLICATION_CREDENTIALS",
        credentials.display().to_string(),
    )]);
    let auth = GoogleAuth::WorkloadIdentity {
        credentials_file: None,
    };
    let minted = mint_federated(&spec(auth, None), env, now).await.unwrap();
    assert_tokens(&minted, "ya29.federated");
    assert_eq!(minted.expires_at, now + Duration::from_secs(3600));

    // Another subject token is refused, and the message holds neither token.
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.other.c2ln").unwrap();
    let auth = GoogleAuth::WorkloadIdentity {
        credentials_file: Some(credentials),
    };
    let err = mint_federated(&spec(auth, None), BTreeMap::new(), now)
        .await
        .unwrap_err();
    assert!(matches!(err, MintError::Rejected { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("unexpected value of subject_token"),
        "{err}"
    );
    assert!(!err.to_string().contains("eyJ"), "{err}");
}

#[tokio::test]
async fn workload_identity_impersonates_the_service_account() {
    let sts = google::sts(sts_exchange("ya29.federated")).await;
    let iam = google::iam(Impersonation {
        service_account: EMAIL.into(),
        bearer: "ya29.federated".into(),
        access_token: "ya29.impersonated".into(),
        expire_time: "2027-01-02T03:04:05Z".into(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token.json");
    std::fs::write(&token_file, json!({"id_token": SUBJECT_TOKEN}).to_string()).unwrap();
    let source = json!({
        "file": token_file,
        "format": {"type": "json", "subject_token_field_name": "id_token"},
    });
    let credentials = external_account(&dir, "http://127.0.0.1:9/unused", source, Some(&iam));
    let auth = GoogleAuth::WorkloadIdentity {
        credentials_file: Some(credentials),
    };
    // The spec's token endpoint wins over the file's token_url.
    let minted = mint_federated(&spec(auth, Some(sts)), BTreeMap::new(), SystemTime::now())
        .await
        .unwrap();
    assert_tokens(&minted, "ya29.impersonated");
    assert_eq!(
        minted.expires_at,
        UNIX_EPOCH + Duration::from_secs(1_798_859_045)
    );
}
