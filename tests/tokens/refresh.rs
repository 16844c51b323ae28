//! The minter's schedule and election against the fake API server, with times the tests
//! choose: [`Minter::tick`] is one pass at a given time, and the provider is a script, so
//! nothing here waits for a clock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fake_apiserver::FakeApiServer;
use fake_apiserver::objects::namespace;
use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use pull_secret_injector::cluster::tokens::{LEASE_NAME, Mint, Minter, MinterSettings, Notices};
use pull_secret_injector::config::Config;
use pull_secret_injector::config::token::TokenSource;
use pull_secret_injector::marks::{EXPIRED_ANNOTATION, EXPIRES_ANNOTATION, REFRESH_ANNOTATION};
use pull_secret_injector::metrics::Metrics;
use pull_secret_injector::token::{MintError, Minted, MintedAuth};

const NS: &str = "psi";
const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const TWELVE_HOURS: u64 = 12 * 3600;

const CONFIG: &str = r#"
credentials:
  - name: ecr
    token:
      ecr: {region: eu-west-1, registryIds: ["123456789012"], webIdentity: {}}
    namespaces: {include: ["*"]}
"#;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000 + secs)
}

/// A provider that answers from a script (a token valid 12 hours from the mint by default)
/// and counts its calls.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Result<(), MintError>>>,
    calls: Mutex<Vec<SystemTime>>,
}

impl Script {
    fn fail_next(&self, n: usize) {
        let outage = MintError::Unreachable {
            endpoint: "https://api.ecr.eu-west-1.amazonaws.com/".into(),
            detail: "connection refused".into(),
        };
        let mut answers = self.answers.lock().unwrap();
        answers.extend(std::iter::repeat_n(Err(outage), n));
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl Mint for Script {
    fn mint<'a>(
        &'a self,
        _source: &'a TokenSource,
        _key: Option<&'a BTreeMap<String, Vec<u8>>>,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Minted, MintError>> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(now);
            calls.len()
        };
        let answer = self.answers.lock().unwrap().pop_front().unwrap_or(Ok(()));
        Box::pin(async move {
            answer.map(|()| Minted {
                auths: vec![MintedAuth {
                    registry: HOST.into(),
                    username: "AWS".into(),
                    password: format!("token-{n}"),
                }],
                expires_at: now + Duration::from_secs(TWELVE_HOURS),
            })
        })
    }
}

/// The Warnings the minter posts.
#[derive(Default)]
struct Recorded(Mutex<Vec<(&'static str, String)>>);

impl Notices for Recorded {
    fn warn(&self, reason: &'static str, message: String) -> BoxFuture<'_, ()> {
        self.0.lock().unwrap().push((reason, message));
        Box::pin(async {})
    }
}

impl Recorded {
    fn reasons(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().iter().map(|(r, _)| *r).collect()
    }
}

struct Setup {
    _server: FakeApiServer,
    _dir: tempfile::TempDir,
    client: kube::Client,
    config: Config,
}

async fn setup() -> Setup {
    let server = FakeApiServer::start().await;
    server.create(namespace(NS, &[])).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = server.write_kubeconfig(dir.path(), FakeApiServer::ADMIN_TOKEN);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let config = Config::from_yaml(CONFIG).unwrap().place_minted(NS);
    Setup {
        _server: server,
        _dir: dir,
        client,
        config,
    }
}

fn minter(
    s: &Setup,
    identity: &str,
    script: &Arc<Script>,
    notices: &Arc<Recorded>,
) -> (Minter, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let m = Minter::new(
        s.client.clone(),
        MinterSettings {
            namespace: NS.into(),
            identity: identity.into(),
        },
        script.clone(),
        notices.clone(),
        metrics.clone(),
        Box::new(|| 0.0),
    );
    (m, metrics)
}

async fn stored(s: &Setup) -> Secret {
    Api::<Secret>::namespaced(s.client.clone(), NS)
        .get("ecr-token")
        .await
        .expect("the managed Secret")
}

fn password(secret: &Secret) -> String {
    let data = &secret.data.as_ref().unwrap()[".dockerconfigjson"].0;
    let json: serde_json::Value = serde_json::from_slice(data).unwrap();
    json["auths"][HOST]["password"]
        .as_str()
        .unwrap()
        .to_string()
}

fn annotation(secret: &Secret, key: &str) -> Option<String> {
    secret.metadata.annotations.as_ref()?.get(key).cloned()
}

#[tokio::test]
async fn a_token_is_minted_into_its_managed_secret_and_refreshed_at_half_life() {
    let s = setup().await;
    let script = Arc::new(Script::default());
    let notices = Arc::new(Recorded::default());
    let (mut m, metrics) = minter(&s, "replica-a", &script, &notices);

    let next = m.tick(&s.config, t(0)).await;
    assert!(m.leading());
    assert_eq!(script.calls(), 1);
    let secret = stored(&s).await;
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert_eq!(password(&secret), "token-1");
    assert_eq!(
        annotation(&secret, EXPIRES_ANNOTATION).as_deref(),
        Some(
            humantime::format_rfc3339_seconds(t(TWELVE_HOURS))
                .to_string()
                .as_str()
        )
    );
    assert_eq!(
        annotation(&secret, REFRESH_ANNOTATION).as_deref(),
        Some(
            humantime::format_rfc3339_seconds(t(TWELVE_HOURS / 2))
                .to_string()
                .as_str()
        )
    );
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["pull-secret-injector/minted-for"],
        "ecr"
    );
    // The next pass is the Lease's renewal; the token is not due for hours.
    assert_eq!(next, t(5));
    let rendered = metrics.render();
    assert!(
        rendered.contains(&format!(
            "pull_secret_injector_token_expiry_timestamp_seconds{{credential=\"ecr\"}} {}",
            1_900_000_000 + TWELVE_HOURS
        )),
        "{rendered}"
    );
    assert!(rendered.contains("pull_secret_injector_token_minter 1"));

    // Passes before the refresh time mint nothing; the one at it mints again.
    for at in [5, 10, 3600, TWELVE_HOURS / 2 - 1] {
        m.tick(&s.config, t(at)).await;
    }
    assert_eq!(script.calls(), 1);
    m.tick(&s.config, t(TWELVE_HOURS / 2)).await;
    assert_eq!(script.calls(), 2);
    assert_eq!(password(&stored(&s).await), "token-2");
    assert!(notices.reasons().is_empty());

    // A changed source (another region) mints at once.
    let moved = Config::from_yaml(&CONFIG.replace("eu-west-1", "eu-central-1"))
        .unwrap()
        .place_minted(NS);
    m.tick(&moved, t(TWELVE_HOURS / 2 + 10)).await;
    assert_eq!(script.calls(), 3);
}

#[tokio::test]
async fn an_outage_keeps_the_last_token_until_it_expires_then_marks_it_and_recovers() {
    let s = setup().await;
    let script = Arc::new(Script::default());
    let notices = Arc::new(Recorded::default());
    let (mut m, metrics) = minter(&s, "replica-a", &script, &notices);
    m.tick(&s.config, t(0)).await;
    assert_eq!(password(&stored(&s).await), "token-1");

    // From the refresh time on, the provider is down: every retry fails.
    script.fail_next(1000);
    let mut now = TWELVE_HOURS / 2;
    let mut retries = Vec::new();
    while now < TWELVE_HOURS - 60 {
        let next = m.tick(&s.config, t(now)).await;
        let next = next.duration_since(UNIX_EPOCH).unwrap().as_secs() - 1_900_000_000;
        retries.push(next - now);
        now = next;
    }
    // Backoff: 5 s doubling to 5 minutes (lease renewals every 5 s come between).
    assert!(retries.iter().all(|d| *d <= 300), "{retries:?}");
    // Backed off, not every pass: six hours at 5 minutes is 72 tries, plus the first few.
    let tries = script.calls() - 1;
    assert!(
        (70..=85).contains(&tries),
        "{tries} mints tried in the outage"
    );
    let secret = stored(&s).await;
    assert_eq!(password(&secret), "token-1", "the last token stays");
    assert_eq!(annotation(&secret, EXPIRED_ANNOTATION), None);
    assert_eq!(notices.reasons(), ["TokenMintFailed"], "said once");
    assert!(metrics.render().contains(
        "pull_secret_injector_token_mints_total{credential=\"ecr\",result=\"unreachable\"}"
    ));

    // Past its expiry the token is marked, and that is said too.
    m.tick(&s.config, t(TWELVE_HOURS + 301)).await;
    let secret = stored(&s).await;
    let mark = annotation(&secret, EXPIRED_ANNOTATION).expect("marked expired");
    assert!(mark.contains("connection refused"), "{mark}");
    assert_eq!(notices.reasons(), ["TokenMintFailed", "TokenExpired"]);
    for (_, message) in notices.0.lock().unwrap().iter() {
        assert!(!message.contains("token-1"), "no token in {message}");
    }

    // The provider is back: a new token, the mark gone.
    script.answers.lock().unwrap().clear();
    m.tick(&s.config, t(TWELVE_HOURS + 2000)).await;
    let secret = stored(&s).await;
    assert_ne!(password(&secret), "token-1");
    assert_eq!(annotation(&secret, EXPIRED_ANNOTATION), None);
}

#[tokio::test]
async fn two_replicas_elect_one_minter_and_a_takeover_reuses_the_stored_token() {
    let s = setup().await;
    let script = Arc::new(Script::default());
    let notices = Arc::new(Recorded::default());
    let (mut a, _) = minter(&s, "replica-a", &script, &notices);
    let (mut b, _) = minter(&s, "replica-b", &script, &notices);

    // Both start at once and keep passing every 5 s for a minute: one minter, one mint.
    for at in (0..60).step_by(5) {
        a.tick(&s.config, t(at)).await;
        b.tick(&s.config, t(at)).await;
        assert!(a.leading() != b.leading(), "exactly one leads at {at}");
        assert!(a.leading(), "the first to claim keeps it");
    }
    assert_eq!(script.calls(), 1);
    let lease = Api::<Lease>::namespaced(s.client.clone(), NS)
        .get(LEASE_NAME)
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("replica-a")
    );

    // Replica a stops. b takes over once the Lease has stayed unchanged for its 15 s, and
    // reuses the stored token until its refresh time instead of minting.
    let mut at = 60;
    while !b.leading() {
        at += 5;
        b.tick(&s.config, t(at)).await;
        assert!(at <= 60 + 25, "b never took over");
    }
    assert!(at >= 55 + 15, "b took over a live claim at {at}");
    assert_eq!(script.calls(), 1);
    let lease = Api::<Lease>::namespaced(s.client.clone(), NS)
        .get(LEASE_NAME)
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(lease.lease_transitions, Some(1));
    b.tick(&s.config, t(TWELVE_HOURS / 2)).await;
    assert_eq!(script.calls(), 2);
    assert_eq!(password(&stored(&s).await), "token-2");

    // a comes back and follows.
    a.tick(&s.config, t(TWELVE_HOURS / 2 + 1)).await;
    assert!(!a.leading());
}

#[tokio::test]
async fn a_secret_of_the_same_name_not_minted_by_the_injector_is_left_alone() {
    let s = setup().await;
    let foreign = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "ecr-token", "namespace": NS},
        "type": "Opaque", "data": {"x": "eA=="},
    });
    Api::<Secret>::namespaced(s.client.clone(), NS)
        .create(
            &Default::default(),
            &serde_json::from_value(foreign).unwrap(),
        )
        .await
        .unwrap();
    let script = Arc::new(Script::default());
    let notices = Arc::new(Recorded::default());
    let (mut m, _) = minter(&s, "replica-a", &script, &notices);
    m.tick(&s.config, t(0)).await;
    assert_eq!(script.calls(), 0);
    assert_eq!(stored(&s).await.type_.as_deref(), Some("Opaque"));
    let said = notices.0.lock().unwrap().clone();
    assert_eq!(said.len(), 1);
    assert!(
        said[0].1.contains("was not minted by the injector"),
        "{said:?}"
    );
}

#[tokio::test]
async fn no_token_credential_no_lease() {
    let s = setup().await;
    let script = Arc::new(Script::default());
    let notices = Arc::new(Recorded::default());
    let (mut m, _) = minter(&s, "replica-a", &script, &notices);
    let plain =
        Config::from_yaml("credentials: [{name: x, secret: a/b, namespaces: {include: ['*']}}]\n")
            .unwrap();
    m.tick(&plain, t(0)).await;
    assert!(!m.leading());
    assert!(
        Api::<Lease>::namespaced(s.client.clone(), NS)
            .get_opt(LEASE_NAME)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_managed_secret_edited_or_deleted_by_someone_else_is_read_again() {
    let s = setup().await;
    let script = Arc::new(Script::default());
    let notices = Arc::new(Recorded::default());
    let (m, _) = minter(&s, "replica-a", &script, &notices);
    // What the source watch would report of the managed Secret's version.
    let watched: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = watched.clone();
    let mut m = m.observing(Arc::new(move |_name: &str| seen.lock().unwrap().clone()));
    let secrets = Api::<Secret>::namespaced(s.client.clone(), NS);
    let report = |secret: Option<&Secret>| {
        *watched.lock().unwrap() = secret.and_then(|s| s.metadata.resource_version.clone());
    };

    m.tick(&s.config, t(0)).await;
    report(Some(&stored(&s).await));
    m.tick(&s.config, t(5)).await;
    assert_eq!(script.calls(), 1);

    // An admin moves the refresh time to now: read again, due, minted.
    let patch = serde_json::json!({"metadata": {"annotations": {
        REFRESH_ANNOTATION: humantime::format_rfc3339_seconds(t(10)).to_string(),
    }}});
    let edited = secrets
        .patch(
            "ecr-token",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    report(Some(&edited));
    m.tick(&s.config, t(10)).await;
    assert_eq!(script.calls(), 2);
    assert_eq!(password(&stored(&s).await), "token-2");

    // Deleted: minted again into a new Secret.
    secrets
        .delete("ecr-token", &Default::default())
        .await
        .unwrap();
    report(None);
    m.tick(&s.config, t(15)).await;
    assert_eq!(script.calls(), 3);
    assert_eq!(password(&stored(&s).await), "token-3");
}
