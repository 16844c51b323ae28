//! Verification end to end: a real registry (`docker-registry`, htpasswd, TLS) on 127.0.0.1,
//! a credential for it whose source holds a wrong password, and what pods, the source Secret's
//! Events and the metrics show in `warn` and `skip` mode, until the password is fixed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::harness::{Cluster, Injector, eventually, pull_secrets};
use crate::registry::{Auth, PASSWORD, Registry};

const WRONG: &str = "expired-password";

/// One credential, `lab`, for the registry, trusting its CA, in `mode`.
fn config(registry: &Registry, mode: &str) -> String {
    format!(
        r#"
verify: {{mode: {mode}}}
credentials:
  - name: lab
    secret: "{{P}}default/lab"
    namespaces: {{include: ["{{P}}team-*"]}}
    verify:
      caBundle: {}
serviceAccounts: []
pods: true
"#,
        serde_json::to_string(&registry.ca_pem).expect("json")
    )
}

fn source(c: &Cluster, registry: &Registry, password: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "lab", "namespace": c.ns("default")},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(registry.dockerconfig(password))},
    })
}

/// The registry, a cluster whose `lab` source holds the wrong password, a team namespace with
/// the pods' ServiceAccount, and a running injector.
async fn setup(mode: &str) -> (Registry, Cluster, String, Injector) {
    let registry = Registry::start(Auth::Htpasswd).await;
    let (c, team, injector) = cluster(&registry, mode, WRONG).await;
    (registry, c, team, injector)
}

/// A cluster whose `lab` source holds `password` for `registry`.
async fn cluster(registry: &Registry, mode: &str, password: &str) -> (Cluster, String, Injector) {
    let c = Cluster::new(&config(registry, mode)).await;
    let default = c.ns("default");
    if c.get("namespaces", None, &default).await.is_none() {
        c.namespace("default", json!({})).await;
    }
    c.create(source(&c, registry, password))
        .await
        .expect("source");
    let team = c.namespace("team-a", json!({})).await;
    c.runner(&team).await;
    let injector = c.start_injector().await;
    (c, team, injector)
}

fn state_metric(registry: &Registry, state: &str) -> String {
    format!(
        "pull_secret_injector_credential_verification_state{{credential=\"lab\",registry=\"{}\",state=\"{state}\"}}",
        registry.host
    )
}

/// Puts the right password in the source.
async fn fix_password(c: &Cluster, registry: &Registry) {
    let current = c.secret(&c.ns("default"), "lab").await.expect("source");
    let mut fixed = source(c, registry, PASSWORD);
    fixed["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    c.replace(fixed).await.expect("fixed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_mode_injects_a_rejected_credential_and_says_so_on_the_pod_the_source_and_the_metrics()
{
    let (registry, c, team, injector) = setup("warn").await;
    let image = format!("{}/team/app:1", registry.host);
    let rejected = state_metric(&registry, "rejected");
    eventually("the probe to find the password rejected", || async {
        injector.metric(&rejected).await == 1.0
    })
    .await;

    let (pod, warnings) = c.create_pod_with(&team, &[&image], false).await;
    assert_eq!(pull_secrets(&pod), ["lab"], "warn mode still injects it");
    let expected = format!(
        "pull-secret-injector: credential lab is rejected by {} since ",
        registry.host
    );
    assert!(
        warnings.iter().any(|w| w.starts_with(&expected)),
        "{warnings:?}"
    );

    let default = c.ns("default");
    let is_rejection = |e: &Value| {
        e["reason"] == "CredentialRejected"
            && e["involvedObject"]["kind"] == "Secret"
            && e["involvedObject"]["name"] == "lab"
    };
    eventually("a CredentialRejected Event on the source", || async {
        c.list("events", Some(&default))
            .await
            .iter()
            .any(is_rejection)
    })
    .await;
    let events: Vec<Value> = c.list("events", Some(&default)).await;
    let found: Vec<&Value> = events.iter().filter(|e| is_rejection(e)).collect();
    assert_eq!(found.len(), 1, "one Event, however many probes: {found:?}");
    let event = found[0];
    assert_eq!(event["type"], "Warning");
    let message = event["message"].as_str().expect("message");
    assert!(message.contains(&registry.host), "{message}");
    for text in [
        message.to_string(),
        warnings.join("\n"),
        injector.metrics().await,
    ] {
        assert!(
            !text.contains(WRONG) && !text.contains(&STANDARD.encode(format!("robot:{WRONG}")))
        );
    }
    assert!(
        injector
            .metric("pull_secret_injector_verification_probes_total{result=\"rejected\"}")
            .await
            >= 1.0
    );

    // Fixed in the source: probed again at once, not an interval later.
    fix_password(&c, &registry).await;
    let ok = state_metric(&registry, "ok");
    eventually("the fixed password to be verified", || async {
        injector.metric(&ok).await == 1.0
    })
    .await;
    let (pod, warnings) = c.create_pod_with(&team, &[&image], false).await;
    assert_eq!(pull_secrets(&pod), ["lab"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_mode_stops_injecting_a_credential_rejected_twice_and_injects_it_again_once_fixed() {
    let (registry, c, team, injector) = setup("skip").await;
    let image = format!("{}/team/app:1", registry.host);
    // The first pods may still get it: one rejection withholds nothing; the confirming probe
    // follows within seconds.
    eventually("the credential to be withheld", || async {
        let (pod, _) = c.create_pod_with(&team, &[&image], false).await;
        pull_secrets(&pod).is_empty()
    })
    .await;
    let (pod, warnings) = c.create_pod_with(&team, &[&image], false).await;
    assert!(pull_secrets(&pod).is_empty());
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("credential lab") && w.contains(&registry.host)),
        "the pod is told why: {warnings:?}"
    );
    // Existing copies are left as they are.
    assert!(c.secret(&team, "lab").await.is_some());

    fix_password(&c, &registry).await;
    eventually("the fixed credential to be injected again", || async {
        let (pod, _) = c.create_pod_with(&team, &[&image], false).await;
        pull_secrets(&pod) == ["lab"]
    })
    .await;
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_password_near_its_expiry_is_exported_and_announced_on_the_source() {
    // A JWT used as the password, as `oc whoami -t` tokens and robot tokens are: the registry
    // accepts it, and it expires in a day, inside the 72 h warning window.
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 86_400;
    let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let token = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#.to_string()),
        b64(format!(r#"{{"sub":"robot","exp":{exp}}}"#))
    );
    let registry = Registry::start_with(Auth::Htpasswd, &token).await;
    let (c, _team, injector) = cluster(&registry, "warn", &token).await;
    let expiry = format!(
        "pull_secret_injector_credential_expiry_timestamp_seconds{{credential=\"lab\",registry=\"{}\"}}",
        registry.host
    );
    eventually("the expiry to be exported", || async {
        injector.metric(&expiry).await == exp as f64
    })
    .await;
    assert_eq!(injector.metric(&state_metric(&registry, "ok")).await, 1.0);
    let default = c.ns("default");
    eventually("a CredentialExpiresSoon Event on the source", || async {
        c.list("events", Some(&default)).await.iter().any(|e| {
            e["reason"] == "CredentialExpiresSoon"
                && e["involvedObject"]["name"] == "lab"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("expires at"))
        })
    })
    .await;
    let events = c.list("events", Some(&default)).await;
    assert!(
        events
            .iter()
            .all(|e| !e["message"].as_str().unwrap_or("").contains(&token)),
        "no Event carries the token"
    );
    assert!(!injector.metrics().await.contains(&token));
    injector.stop().await;
}
