//! Token credentials end to end: the injector mints a registry token into its managed Secret
//! in its own namespace, pods in scoped namespaces get a copy, and a refresh reaches the copy.
//! The providers are local fakes that follow their public protocols (`tests/common/token_fakes`
//! for Entra ID and ACR's `/oauth2/exchange`) and, for ECR, moto.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::fakes::azure::{self, Aad, Proof, Registry};
use crate::harness::{Cluster, Injector, annotation, eventually, pull_secrets};

const ACR: &str = "lab.azurecr.io";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "5b9e6b8f-0000-4000-8000-000000000001";
const CLIENT_SECRET: &str = "FAKE-client-secret-for-tests";
const AAD_TOKEN: &str = "FAKE-aad-access-token-for-tests";

/// The ACR refresh token's expiry: three hours from now, as ACR's are.
fn three_hours() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3 * 3600
}

/// Entra ID and the registry's exchange on 127.0.0.1; their base URLs.
pub async fn acr_fakes() -> (String, String) {
    let authority = azure::aad(Aad {
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        proof: Proof::Secret(CLIENT_SECRET.into()),
        access_token: AAD_TOKEN.into(),
    })
    .await;
    let registry = azure::registry(Registry {
        host: ACR.into(),
        tenant: TENANT.into(),
        aad_token: AAD_TOKEN.into(),
        refresh_exp: three_hours(),
        failing: false,
    })
    .await;
    (authority, registry)
}

/// An `acr` token credential for `{P}team-*`, its service principal in the injector's
/// namespace; `{AUTHORITY}` and `{REGISTRY}` stand for the fakes.
pub const ACR_CONFIG: &str = r#"
credentials:
  - name: acr
    token:
      acr:
        registry: lab.azurecr.io
        tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
        clientSecret: "{OWN}/acr-sp"
        authorityHost: "{AUTHORITY}"
        endpoint: "{REGISTRY}"
    namespaces: {include: ["{P}team-*"]}
serviceAccounts: []
pods: true
"#;

/// The config for the fakes, in the cluster's own namespace.
pub fn acr_config(own: &str, authority: &str, registry: &str) -> String {
    ACR_CONFIG
        .replace("{OWN}", own)
        .replace("{AUTHORITY}", authority)
        .replace("{REGISTRY}", registry)
}

/// The service principal's Secret, in the injector's namespace.
pub fn service_principal(c: &Cluster) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "acr-sp", "namespace": c.own},
        "type": "Opaque",
        "stringData": {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
    })
}

/// The password a pull secret holds for `host`.
fn password_for(secret: &Value, host: &str) -> Option<String> {
    let data = secret["data"][".dockerconfigjson"].as_str()?;
    let config: Value = serde_json::from_slice(&STANDARD.decode(data).ok()?).ok()?;
    config["auths"][host]["password"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acr_token_is_minted_injected_into_scoped_namespaces_and_its_refresh_reaches_the_copies()
{
    let (authority, registry) = acr_fakes().await;
    // The config names the own namespace, which the cluster makes: write it after.
    let c = Cluster::new("credentials: []\n").await;
    c.create(service_principal(&c))
        .await
        .expect("service principal");
    let team = c.namespace("team-a", json!({})).await;
    let other = c.namespace("other", json!({})).await;
    c.runner(&team).await;
    c.runner(&other).await;
    c.set_config(&acr_config(&c.own, &authority, &registry))
        .await;
    let injector = c.start_injector().await;

    let minted = wait_for("the minted token", || async {
        c.secret(&c.own, "acr-token").await
    })
    .await;
    assert_eq!(minted["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        minted["metadata"]["labels"]["pull-secret-injector/minted-for"],
        "acr"
    );
    assert_eq!(
        annotation(&minted, "pull-secret-injector/token-provider").as_deref(),
        Some("acr")
    );
    let first = password_for(&minted, ACR).expect("an entry for the registry");
    assert_eq!(first, azure::refresh_token(three_hours_of(&minted)));
    let secret = serde_json::to_string(&minted).expect("json");
    assert!(!secret.contains(CLIENT_SECRET) && !secret.contains(AAD_TOKEN));

    // A pod pulling from the registry in a scoped namespace gets a copy; one elsewhere not.
    let image = format!("{ACR}/team/app:1");
    // The first pods may come before the source watch has reported the minted Secret.
    eventually("a pod to get the token", || async {
        pull_secrets(&c.create_pod(&team, &[&image]).await) == ["acr-token"]
    })
    .await;
    let copy = c.secret(&team, "acr-token").await.expect("the copy");
    assert_eq!(password_for(&copy, ACR).as_deref(), Some(first.as_str()));
    let outside = c.create_pod(&other, &[&image]).await;
    assert!(pull_secrets(&outside).is_empty());

    // The admin asks for a refresh now (the refresh time moved to the past): a new token is
    // minted, and the copy follows.
    let mut due = minted.clone();
    due["metadata"]["annotations"]["pull-secret-injector/token-refresh-at"] =
        json!("2020-01-01T00:00:00Z");
    c.replace(due).await.expect("refresh time moved");
    let second = wait_for("a new token", || async {
        let now = c.secret(&c.own, "acr-token").await?;
        password_for(&now, ACR).filter(|p| *p != first)
    })
    .await;
    eventually("the copy to follow", || async {
        c.secret(&team, "acr-token")
            .await
            .and_then(|s| password_for(&s, ACR))
            .is_some_and(|p| p == second)
    })
    .await;
    assert!(
        injector
            .metric("pull_secret_injector_token_mints_total{credential=\"acr\",result=\"success\"}")
            .await
            >= 2.0
    );
    assert_eq!(
        injector.metric("pull_secret_injector_token_minter").await,
        1.0
    );
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_mint_once_and_the_survivor_takes_over_with_the_stored_token() {
    const MINTER: &str = "pull_secret_injector_token_minter ";
    const MINTED: &str =
        "pull_secret_injector_token_mints_total{credential=\"acr\",result=\"success\"}";
    let (authority, registry) = acr_fakes().await;
    let c = Cluster::new("credentials: []\n").await;
    c.create(service_principal(&c))
        .await
        .expect("service principal");
    c.set_config(&acr_config(&c.own, &authority, &registry))
        .await;
    let a = Injector::start(&c, "replica-a").await;
    let b = Injector::start(&c, "replica-b").await;

    let minted = wait_for("the minted token", || async {
        c.secret(&c.own, "acr-token").await
    })
    .await;
    let token = password_for(&minted, ACR).expect("token");
    // Both replicas have looked at the Lease (each reports the gauge): one mints.
    eventually("one minter of two", || async {
        let (ma, mb) = (a.metrics().await, b.metrics().await);
        ma.contains(MINTER)
            && mb.contains(MINTER)
            && a.metric(MINTER).await + b.metric(MINTER).await == 1.0
    })
    .await;
    assert_eq!(a.metric(MINTED).await + b.metric(MINTED).await, 1.0);
    let (leader, follower) = if a.metric(MINTER).await == 1.0 {
        (a, b)
    } else {
        (b, a)
    };

    // The minter goes; the other takes the Lease once it has stayed unchanged for its 15 s,
    // and keeps the stored token rather than minting a new one.
    leader.stop().await;
    eventually("the survivor to take over", || async {
        follower.metric(MINTER).await == 1.0
    })
    .await;
    assert_eq!(follower.metric(MINTED).await, 0.0);
    let kept = c.secret(&c.own, "acr-token").await.expect("minted");
    assert_eq!(password_for(&kept, ACR), Some(token));
    follower.stop().await;
}

/// An `ecr` token credential for `{P}team-*` with static keys in the injector's namespace,
/// minted by moto at `{ENDPOINT}` for the registries of `{IDS}`.
const ECR_CONFIG: &str = r#"
credentials:
  - name: ecr
    token:
      ecr:
        region: eu-west-1
        registryIds: {IDS}
        secret: "{OWN}/aws-keys"
        endpoint: "{ENDPOINT}"
    namespaces: {include: ["{P}team-*"]}
serviceAccounts: []
pods: true
"#;

/// The hosts a pull secret holds auths for.
fn hosts(secret: &Value) -> Vec<String> {
    let data = secret["data"][".dockerconfigjson"].as_str().unwrap_or("");
    let config: Value =
        serde_json::from_slice(&STANDARD.decode(data).unwrap_or_default()).unwrap_or_default();
    config["auths"]
        .as_object()
        .map(|a| a.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecr_token_from_moto_reaches_a_scoped_pod_and_a_new_registry_id_reaches_its_copy() {
    let moto = crate::moto::Moto::start(None).await;
    let ecr = |ids: &str, own: &str| {
        ECR_CONFIG
            .replace("{IDS}", ids)
            .replace("{OWN}", own)
            .replace("{ENDPOINT}", &moto.url)
    };
    let c = Cluster::new("credentials: []\n").await;
    c.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "aws-keys", "namespace": c.own},
        "type": "Opaque",
        "stringData": {"AWS_ACCESS_KEY_ID": "AKIAFAKEFORTESTS0001", "AWS_SECRET_ACCESS_KEY": "FAKE/secret/key/for/tests/only"},
    }))
    .await
    .expect("keys");
    let team = c.namespace("team-a", json!({})).await;
    c.runner(&team).await;
    c.set_config(&ecr(r#"["111111111111"]"#, &c.own)).await;
    let injector = c.start_injector().await;

    let first = "111111111111.dkr.ecr.eu-west-1.amazonaws.com";
    let second = "222222222222.dkr.ecr.eu-west-1.amazonaws.com";
    let image = format!("{first}/team/app:1");
    eventually("a pod to get the ECR token", || async {
        pull_secrets(&c.create_pod(&team, &[&image]).await) == ["ecr-token"]
    })
    .await;
    let copy = c.secret(&team, "ecr-token").await.expect("the copy");
    assert_eq!(hosts(&copy), [first]);
    // moto's token for an account is `AWS:<account>-auth-token`.
    assert_eq!(
        password_for(&copy, first).as_deref(),
        Some("111111111111-auth-token")
    );
    let minted = c.secret(&c.own, "ecr-token").await.expect("minted");
    assert_eq!(
        annotation(&minted, "pull-secret-injector/token-provider").as_deref(),
        Some("ecr")
    );

    // Another account's registry: minted anew at once, and the copy follows.
    c.set_config(&ecr(r#"["111111111111", "222222222222"]"#, &c.own))
        .await;
    eventually("the copy to hold both registries", || async {
        c.secret(&team, "ecr-token")
            .await
            .is_some_and(|s| hosts(&s) == [first, second])
    })
    .await;
    let image = format!("{second}/team/app:1");
    assert_eq!(
        pull_secrets(&c.create_pod(&team, &[&image]).await),
        ["ecr-token"]
    );
    injector.stop().await;
}

/// Polls `check` until it has an answer (30 s at most).
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `exp` the fake wrote into the first token, read back from the Secret's annotation.
fn three_hours_of(minted: &Value) -> u64 {
    let at = annotation(minted, "pull-secret-injector/token-expires-at").expect("expiry");
    humantime::parse_rfc3339(&at)
        .expect("RFC 3339")
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}
