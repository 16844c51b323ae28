//! acr: the ACR client against fakes of Entra ID's v2.0 token endpoint (client credentials
//! with a secret or a federated client assertion) and of the registry's `/oauth2/exchange`
//! (fakes/azure.rs).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use pull_secret_injector::config::token::{AcrSpec, AzureAuth, SecretKeyRef};
use pull_secret_injector::token::{MintContext, MintError, Minted, acr};

use crate::fakes::azure::{self, Aad, Proof, Registry};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "5a1c0de5-0000-4000-8000-00000000c11e";
const SECRET: &str = "Xy8Q~fake-client-secret-value-0123456789";
const AAD_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJodHRwczovL2NvbnRhaW5lcnJlZ2lzdHJ5In0.c2ln";
const REGISTRY: &str = "myregistry.azurecr.io";
const EXP: u64 = 1_800_010_800;

struct Fakes {
    authority: String,
    registry: String,
}

async fn fakes(proof: Proof, failing: bool) -> Fakes {
    let authority = azure::aad(Aad {
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        proof,
        access_token: AAD_TOKEN.into(),
    })
    .await;
    let registry = azure::registry(Registry {
        host: REGISTRY.into(),
        tenant: TENANT.into(),
        aad_token: AAD_TOKEN.into(),
        refresh_exp: EXP,
        failing,
    })
    .await;
    Fakes {
        authority,
        registry,
    }
}

fn spec(fakes: &Fakes, auth: AzureAuth, authority: bool) -> AcrSpec {
    AcrSpec {
        registry: REGISTRY.into(),
        tenant_id: None,
        auth,
        authority_host: authority.then(|| fakes.authority.clone()),
        endpoint: Some(fakes.registry.clone()),
    }
}

fn secret_auth() -> AzureAuth {
    AzureAuth::ClientSecret(SecretKeyRef {
        namespace: "psi-system".into(),
        name: "acr-sp".into(),
    })
}

fn sp_key(secret: &str) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("clientId".to_string(), CLIENT_ID.as_bytes().to_vec()),
        ("clientSecret".to_string(), secret.as_bytes().to_vec()),
        ("tenantId".to_string(), TENANT.as_bytes().to_vec()),
    ])
}

async fn mint(
    spec: &AcrSpec,
    key: Option<&BTreeMap<String, Vec<u8>>>,
    env: BTreeMap<&str, String>,
) -> Result<Minted, MintError> {
    let http = pull_secret_injector::token::http_client().unwrap();
    let env = move |name: &str| env.get(name).cloned();
    let cx = MintContext {
        http: &http,
        key,
        now: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        env: &env,
    };
    acr::mint(spec, &cx).await
}

fn assert_refresh_token(minted: &Minted) {
    assert_eq!(minted.auths.len(), 1);
    let auth = &minted.auths[0];
    assert_eq!(auth.registry, REGISTRY);
    assert_eq!(auth.username, "00000000-0000-0000-0000-000000000000");
    assert_eq!(auth.password, azure::refresh_token(EXP));
    assert_eq!(minted.expires_at, UNIX_EPOCH + Duration::from_secs(EXP));
}

/// Neither the client secret, nor the AAD token, nor any JWT is in a message.
fn assert_no_secret(err: &MintError) {
    let message = format!("{err} {err:?}");
    for secret in [SECRET, "wrong-secret-value-0123456789", AAD_TOKEN, "eyJ"] {
        assert!(!message.contains(secret), "{secret} in {message}");
    }
}

#[tokio::test]
async fn a_service_principal_mints_the_refresh_token_until_its_exp() {
    let fakes = fakes(Proof::Secret(SECRET.into()), false).await;
    let key = sp_key(SECRET);
    // The tenant comes from the key Secret, since the spec names none.
    let minted = mint(
        &spec(&fakes, secret_auth(), true),
        Some(&key),
        BTreeMap::new(),
    )
    .await
    .unwrap();
    assert_refresh_token(&minted);
    assert!(!format!("{minted:?}").contains("eyJ"), "{minted:?}");
}

#[tokio::test]
async fn workload_identity_sends_the_token_file_as_client_assertion() {
    let assertion = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cHNpIn0.c2ln";
    let fakes = fakes(Proof::Assertion(assertion.into()), false).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, format!("{assertion}\n")).unwrap();
    // What the Azure workload identity webhook puts in the pod's environment.
    let env = BTreeMap::from([
        ("AZURE_CLIENT_ID", CLIENT_ID.to_string()),
        ("AZURE_TENANT_ID", TENANT.to_string()),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AZURE_AUTHORITY_HOST", format!("{}/", fakes.authority)),
    ]);
    let auth = AzureAuth::WorkloadIdentity {
        client_id: None,
        token_file: None,
    };
    let minted = mint(&spec(&fakes, auth, false), None, env).await.unwrap();
    assert_refresh_token(&minted);

    // Another token in the file: refused, and the message holds no token.
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.b3RoZXI.c2ln").unwrap();
    let mut fixed = spec(
        &fakes,
        AzureAuth::WorkloadIdentity {
            client_id: Some(CLIENT_ID.into()),
            token_file: Some(token_file),
        },
        true,
    );
    fixed.tenant_id = Some(TENANT.into());
    let err = mint(&fixed, None, BTreeMap::new()).await.unwrap_err();
    assert!(matches!(err, MintError::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("AADSTS700211"), "{err}");
    assert_no_secret(&err);
}

#[tokio::test]
async fn a_wrong_client_secret_is_rejected_without_the_secret() {
    let fakes = fakes(Proof::Secret(SECRET.into()), false).await;
    let key = sp_key("wrong-secret-value-0123456789");
    let err = mint(
        &spec(&fakes, secret_auth(), true),
        Some(&key),
        BTreeMap::new(),
    )
    .await
    .unwrap_err();
    match &err {
        MintError::Rejected { endpoint, detail } => {
            assert_eq!(
                endpoint,
                &format!("{}/{TENANT}/oauth2/v2.0/token", fakes.authority)
            );
            assert!(
                detail.starts_with("401 Unauthorized: invalid_client: AADSTS7000215"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_no_secret(&err);
}

#[tokio::test]
async fn a_registry_answering_500_is_unreachable() {
    let fakes = fakes(Proof::Secret(SECRET.into()), true).await;
    let key = sp_key(SECRET);
    let err = mint(
        &spec(&fakes, secret_auth(), true),
        Some(&key),
        BTreeMap::new(),
    )
    .await
    .unwrap_err();
    match &err {
        MintError::Unreachable { endpoint, detail } => {
            assert_eq!(endpoint, &format!("{}/oauth2/exchange", fakes.registry));
            assert!(detail.starts_with("500 Internal Server Error"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.metric_label(), "unreachable");
    assert_no_secret(&err);
}

#[tokio::test]
async fn missing_key_material_is_a_config_error() {
    let fakes = fakes(Proof::Secret(SECRET.into()), false).await;
    let mut key = sp_key(SECRET);
    key.remove("clientSecret");
    let err = mint(
        &spec(&fakes, secret_auth(), true),
        Some(&key),
        BTreeMap::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        MintError::Config("acr: the key Secret has no key clientSecret".into())
    );
    // No tenant anywhere.
    let mut key = sp_key(SECRET);
    key.remove("tenantId");
    let err = mint(
        &spec(&fakes, secret_auth(), true),
        Some(&key),
        BTreeMap::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no tenant"), "{err}");
}
