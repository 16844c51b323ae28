use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::config::Config;
use crate::marks::*;
use crate::registry::dockerconfig::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DockerConfig,
};
use crate::view::ClusterState;
use crate::view::NamespaceInfo;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A fake pull secret holding one entry per key.
fn pull_secret(ns: &str, name: &str, keys: &[&str], labels: &[(&str, &str)]) -> Secret {
    let auths: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let auth = STANDARD.encode(format!("user{i}:fake-password-{i}"));
            (k.to_string(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    let data = serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        type_: Some(DOCKER_CONFIG_JSON_TYPE.into()),
        data: Some(BTreeMap::from([(
            DOCKER_CONFIG_JSON_KEY.to_string(),
            ByteString(data),
        )])),
        ..Default::default()
    }
}

const CONFIG: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    registries: ["icr.io", "*.icr.io"]
    namespaces: {include: ["*"], exclude: ["openshift-*"]}
  - name: hub
    secret: registry-creds/dockerhub
    namespaces: {include: ["team-*", "default"]}
  - name: quay
    secret: registry-creds/quay
    namespaces: {include: ["team-*"], selector: {matchLabels: {quay: "yes"}}}
"#;

fn cluster() -> ClusterState {
    let mut state = ClusterState::new();
    state.insert_secret(pull_secret(
        "default",
        "all-icr-io",
        &["icr.io", "us.icr.io", "de.icr.io", "quay.io"],
        &[],
    ));
    state.insert_secret(pull_secret(
        "registry-creds",
        "dockerhub",
        &["https://index.docker.io/v1/"],
        &[],
    ));
    state.insert_secret(pull_secret("registry-creds", "quay", &["quay.io"], &[]));
    state
}

fn catalog(config: &str, state: &ClusterState) -> Catalog {
    Catalog::build(
        Config::from_yaml(config).unwrap(),
        state,
        Some("pull-secret-injector"),
    )
}

fn pod<'a>(images: &[&'a str], existing: &[&'a str]) -> Subject<'a> {
    Subject {
        kind: SubjectKind::Pod,
        name: None,
        images: images.to_vec(),
        existing: existing.to_vec(),
        labels: None,
        annotations: None,
    }
}

fn sa(name: &str) -> Subject<'_> {
    Subject {
        kind: SubjectKind::ServiceAccount,
        name: Some(name),
        images: Vec::new(),
        existing: Vec::new(),
        labels: None,
        annotations: None,
    }
}

fn ns(name: &str, labels: &[(&str, &str)]) -> NamespaceInfo {
    NamespaceInfo {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn reasons(d: &Decision) -> Vec<WarningReason> {
    d.warnings.iter().map(|w| w.reason).collect()
}

#[test]
fn pod_gets_exactly_the_credentials_kubelet_would_use() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    let d = c.explain(
        &pod(
            &[
                "us.icr.io/team/app:1",
                "nginx",
                "quay.io/org/x",
                "gcr.io/p/x",
            ],
            &[],
        ),
        &ns("team-a", &[]),
        &state,
        false,
    );
    assert_eq!(d.add, ["all-icr-io", "dockerhub"]);
    assert_eq!(d.credentials, ["icr", "hub"]);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    // quay.io is in all-icr-io's secret but icr's registries do not select it.
    let quay = d
        .images
        .iter()
        .find(|i| i.image == "quay.io/org/x")
        .unwrap();
    assert!(quay.matches.is_empty());
    let hub = d.images.iter().find(|i| i.image == "nginx").unwrap();
    assert_eq!(hub.registry.as_deref(), Some("docker.io"));
    assert_eq!(
        hub.matches,
        [MatchReport {
            credential: "hub".into(),
            secret: "dockerhub".into(),
            pattern: "https://index.docker.io/v1/".into()
        }]
    );
    let names: Vec<&str> = d.copies.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["all-icr-io", "dockerhub"]);
    assert!(
        d.copies
            .iter()
            .all(|c| c.namespace == "team-a" && !c.update)
    );
}

#[test]
fn copies_hold_only_the_selected_registries() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    let d = c.decide(
        &pod(&["us.icr.io/a/b"], &[]),
        &ns("team-a", &[]),
        &state,
        false,
    );
    let copy = d.copies[0].source.copy_secret("team-a");
    let data = &copy.data.as_ref().unwrap()[DOCKER_CONFIG_JSON_KEY].0;
    let parsed = DockerConfig::from_dockerconfigjson(data).unwrap();
    let keys: Vec<&str> = parsed.keys().collect();
    assert_eq!(keys, ["de.icr.io", "icr.io", "us.icr.io"]);
    let annotations = copy.metadata.annotations.unwrap();
    assert_eq!(annotations[CREDENTIAL_ANNOTATION], "icr");
    assert_eq!(annotations[SOURCE_ANNOTATION], "default/all-icr-io");
    assert_eq!(annotations[CONTENT_HASH_ANNOTATION], parsed.content_hash());
    assert_eq!(
        copy.metadata.labels.unwrap()[MANAGED_BY_LABEL],
        MANAGED_BY_VALUE
    );
    assert_eq!(copy.type_.as_deref(), Some(DOCKER_CONFIG_JSON_TYPE));
}

#[test]
fn names_follow_config_order_and_existing_entries_are_kept() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    let team = ns("team-a", &[("quay", "yes")]);
    let d = c.decide(
        &pod(
            &["quay.io/org/x", "busybox", "icr.io/ns/y"],
            &["dockerhub", "mine"],
        ),
        &team,
        &state,
        false,
    );
    // dockerhub is already there: not added again, but its copy is still ensured.
    assert_eq!(d.add, ["all-icr-io", "quay"]);
    assert!(d.copies.iter().any(|c| c.name() == "dockerhub"));
}

#[test]
fn all_container_lists_count() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    // The admission layer flattens init, regular and ephemeral containers into images;
    // duplicates are looked up once.
    let d = c.explain(
        &pod(&["icr.io/a/init", "nginx", "nginx", "icr.io/a/debug"], &[]),
        &ns("team-a", &[]),
        &state,
        false,
    );
    assert_eq!(d.add, ["all-icr-io", "dockerhub"]);
    assert_eq!(d.images.len(), 3);
}

#[test]
fn the_source_namespace_references_the_source_itself() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    let d = c.decide(
        &pod(&["us.icr.io/a/b"], &[]),
        &ns("default", &[]),
        &state,
        false,
    );
    assert_eq!(d.add, ["all-icr-io"]);
    assert!(d.copies.is_empty());
}

#[test]
fn namespaces_never_touched() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    let subject = pod(&["us.icr.io/a/b"], &[]);
    for name in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "pull-secret-injector",
    ] {
        let d = c.decide(&subject, &ns(name, &[]), &state, false);
        assert!(d.add.is_empty() && d.copies.is_empty(), "{name}");
        assert!(d.skipped.is_some(), "{name}");
    }
    let labelled = ns("team-a", &[(OPT_OUT_KEY, "false")]);
    assert!(c.decide(&subject, &labelled, &state, false).add.is_empty());
    let mut annotated = ns("team-a", &[]);
    annotated
        .annotations
        .insert(OPT_OUT_KEY.into(), "false".into());
    assert!(c.decide(&subject, &annotated, &state, false).add.is_empty());
    // Scope: icr excludes openshift-*.
    assert!(
        c.decide(&subject, &ns("openshift-x", &[]), &state, false)
            .add
            .is_empty()
    );
}

#[test]
fn objects_can_opt_out() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    let labels = BTreeMap::from([(OPT_OUT_KEY.to_string(), "false".to_string())]);
    let mut subject = pod(&["us.icr.io/a/b"], &[]);
    subject.labels = Some(&labels);
    assert!(
        c.decide(&subject, &ns("team-a", &[]), &state, false)
            .add
            .is_empty()
    );
    let mut subject = pod(&["us.icr.io/a/b"], &[]);
    subject.annotations = Some(&labels);
    assert!(
        c.decide(&subject, &ns("team-a", &[]), &state, false)
            .add
            .is_empty()
    );
}

#[test]
fn terminating_namespaces_are_skipped_with_a_warning() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    let mut gone = ns("team-a", &[]);
    gone.terminating = true;
    let d = c.decide(&pod(&["us.icr.io/a/b"], &[]), &gone, &state, false);
    assert!(d.add.is_empty() && d.copies.is_empty());
    assert_eq!(reasons(&d), [WarningReason::NamespaceTerminating]);
}

#[test]
fn dry_run_returns_the_same_names_and_no_copies() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    let subject = pod(&["us.icr.io/a/b", "nginx"], &[]);
    let wet = c.decide(&subject, &ns("team-a", &[]), &state, false);
    let dry = c.decide(&subject, &ns("team-a", &[]), &state, true);
    assert_eq!(wet.add, dry.add);
    assert_eq!(wet.copies.len(), 2);
    assert!(dry.copies.is_empty());
}

#[test]
fn foreign_secrets_are_never_overwritten() {
    let mut state = cluster();
    state.insert_secret(pull_secret("team-a", "all-icr-io", &["us.icr.io"], &[]));
    let c = catalog(CONFIG, &state);
    let d = c.decide(
        &pod(&["us.icr.io/a/b"], &[]),
        &ns("team-a", &[]),
        &state,
        false,
    );
    assert!(d.add.is_empty());
    assert!(d.copies.is_empty());
    assert_eq!(reasons(&d), [WarningReason::NameTaken]);
    assert!(
        d.warnings[0].message.contains("team-a/all-icr-io"),
        "{}",
        d.warnings[0]
    );
}

#[test]
fn managed_copies_are_reused_or_refreshed() {
    let mut state = cluster();
    let c = catalog(CONFIG, &state);
    let subject = pod(&["us.icr.io/a/b"], &[]);
    let first = c.decide(&subject, &ns("team-a", &[]), &state, false);
    let mut copy = first.copies[0].source.copy_secret("team-a");
    state.insert_secret(copy.clone());
    let again = c.decide(&subject, &ns("team-a", &[]), &state, false);
    assert_eq!(again.add, ["all-icr-io"]);
    assert!(
        again.copies.is_empty(),
        "an up-to-date copy is not rewritten"
    );

    // What a copy holds counts, not what its annotation claims: a claim alone changes
    // nothing, replaced data makes it stale even with the claim intact.
    copy.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(CONTENT_HASH_ANNOTATION.into(), "sha256:old".into());
    state.insert_secret(copy.clone());
    let claimed = c.decide(&subject, &ns("team-a", &[]), &state, false);
    assert!(claimed.copies.is_empty());
    let mut tampered = first.copies[0].source.copy_secret("team-a");
    tampered.data = Some(BTreeMap::from([(
        DOCKER_CONFIG_JSON_KEY.to_string(),
        ByteString(br#"{"auths":{"us.icr.io":{"auth":"dTpw"}}}"#.to_vec()),
    )]));
    state.insert_secret(tampered);
    let stale = c.decide(&subject, &ns("team-a", &[]), &state, false);
    assert_eq!(stale.add, ["all-icr-io"]);
    assert!(stale.copies[0].update);

    // Another credential's copy under the name: the same content is as good as ours,
    // other content is a conflict.
    copy.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(CREDENTIAL_ANNOTATION.into(), "someone-else".into());
    state.insert_secret(copy.clone());
    let same = c.decide(&subject, &ns("team-a", &[]), &state, false);
    assert_eq!(same.add, ["all-icr-io"]);
    assert!(same.copies.is_empty());
    copy.data = Some(BTreeMap::from([(
        DOCKER_CONFIG_JSON_KEY.to_string(),
        ByteString(br#"{"auths":{"us.icr.io":{"auth":"dTpw"}}}"#.to_vec()),
    )]));
    state.insert_secret(copy);
    let conflict = c.decide(&subject, &ns("team-a", &[]), &state, false);
    assert!(conflict.add.is_empty());
    assert_eq!(reasons(&conflict), [WarningReason::CopyConflict]);
}

#[test]
fn missing_and_malformed_sources_are_reported_never_injected() {
    let mut state = cluster();
    let mut broken = pull_secret("registry-creds", "dockerhub", &[], &[]);
    broken.data = Some(BTreeMap::from([(
        DOCKER_CONFIG_JSON_KEY.to_string(),
        ByteString(br#"{"auths":{"https://index.docker.io/v1/":{"auth":5}}}"#.to_vec()),
    )]));
    state.insert_secret(broken);
    let config = format!(
        "{CONFIG}  - name: gone\n    secret: default/nope\n    registries: [\"gcr.io\"]\n    namespaces: {{include: [\"*\"]}}\n"
    );
    let c = catalog(&config, &state);
    assert_eq!(c.problems().len(), 2, "{:?}", c.problems());
    let d = c.decide(
        &pod(&["nginx", "gcr.io/p/a"], &[]),
        &ns("team-a", &[]),
        &state,
        false,
    );
    assert!(d.add.is_empty(), "{:?}", d.add);
    assert_eq!(
        reasons(&d),
        [WarningReason::SourceInvalid, WarningReason::SourceMissing]
    );
    // Tenants hear which credential and what kind of problem, nothing of where the admin
    // keeps it; the whole story is in the catalog's problems (logs, Events).
    assert_eq!(
        d.warnings[1].message,
        "pull-secret-injector: credential gone not injected: its source secret does not exist; ask your cluster admin"
    );
    for w in &d.warnings {
        assert!(
            !w.message.contains("registry-creds") && !w.message.contains("default/nope"),
            "{w}"
        );
        assert!(!w.message.contains("index.docker.io"), "{w}");
    }
    assert!(c.problems().iter().any(|p| p.contains("default/nope")));
    // Neither broken credential serves us.icr.io (gone's registries, dockerhub's keys):
    // a pod pulling only from there hears of neither.
    let d = c.decide(
        &pod(&["us.icr.io/a/b"], &[]),
        &ns("team-a", &[]),
        &state,
        false,
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    // A ServiceAccount gets every credential in scope: it hears of both.
    let d = c.decide(&sa("default"), &ns("team-a", &[]), &state, false);
    assert_eq!(
        reasons(&d),
        [WarningReason::SourceInvalid, WarningReason::SourceMissing]
    );
}

#[test]
fn a_source_whose_keys_cannot_be_read_concerns_no_pod() {
    let mut state = cluster();
    let mut broken = pull_secret("registry-creds", "dockerhub", &[], &[]);
    broken.data = Some(BTreeMap::from([(
        DOCKER_CONFIG_JSON_KEY.to_string(),
        ByteString(b"not json".to_vec()),
    )]));
    state.insert_secret(broken);
    let c = catalog(CONFIG, &state);
    let d = c.decide(&pod(&["nginx"], &[]), &ns("team-a", &[]), &state, false);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let d = c.decide(&sa("default"), &ns("team-a", &[]), &state, false);
    assert_eq!(reasons(&d), [WarningReason::SourceInvalid]);
}

#[test]
fn invalid_images_are_reported_and_the_rest_injected() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    let d = c.decide(
        &pod(&["Nginx", "us.icr.io/a/b"], &[]),
        &ns("team-a", &[]),
        &state,
        false,
    );
    assert_eq!(d.add, ["all-icr-io"]);
    assert_eq!(reasons(&d), [WarningReason::InvalidImage]);
    assert!(d.warnings[0].message.contains("\"Nginx\""));
}

#[test]
fn service_accounts_receive_every_credential_in_scope() {
    let state = cluster();
    let c = catalog(CONFIG, &state);
    let d = c.decide(
        &sa("default"),
        &ns("team-a", &[("quay", "yes")]),
        &state,
        false,
    );
    assert_eq!(d.add, ["all-icr-io", "dockerhub", "quay"]);
    assert_eq!(d.copies.len(), 3);
    let d = c.decide(&sa("default"), &ns("team-b", &[]), &state, false);
    assert_eq!(d.add, ["all-icr-io", "dockerhub"]);
    let d = c.decide(&sa("builder"), &ns("team-a", &[]), &state, false);
    assert!(d.add.is_empty() && d.skipped.is_some());
}

#[test]
fn pods_false_turns_pod_injection_off() {
    let state = cluster();
    let c = catalog(&format!("{CONFIG}pods: false\n"), &state);
    let d = c.decide(
        &pod(&["us.icr.io/a/b"], &[]),
        &ns("team-a", &[]),
        &state,
        false,
    );
    assert!(d.add.is_empty() && d.skipped.is_some());
    let d = c.decide(&sa("default"), &ns("team-a", &[]), &state, false);
    assert_eq!(d.add, ["all-icr-io", "dockerhub"]);
}

#[test]
fn docker_hub_fallback_follows_the_pods_whole_keyring() {
    let mut state = cluster();
    state.insert_secret(pull_secret(
        "registry-creds",
        "hub-org",
        &["docker.io/myorg"],
        &[],
    ));
    let config = format!(
        "{CONFIG}  - name: hub-org\n    secret: registry-creds/hub-org\n    namespaces: {{include: [\"team-*\"]}}\n"
    );
    let c = catalog(&config, &state);
    let team = ns("team-a", &[]);
    // A direct docker.io/myorg match means kubelet never falls back to index.docker.io.
    let d = c.decide(&pod(&["myorg/app"], &[]), &team, &state, false);
    assert_eq!(d.add, ["hub-org"]);
    // Other Hub images still use the fallback.
    let d = c.decide(&pod(&["otherorg/app"], &[]), &team, &state, false);
    assert_eq!(d.add, ["dockerhub"]);
    // registry-1.docker.io is never a Hub match.
    let d = c.decide(
        &pod(&["registry-1.docker.io/myorg/app"], &[]),
        &team,
        &state,
        false,
    );
    assert!(d.add.is_empty());

    // When the direct match is blocked (foreign secret), it will not be referenced, so
    // kubelet would fall back: the fallback credential is injected.
    state.insert_secret(pull_secret("team-a", "hub-org", &["docker.io"], &[]));
    let c = catalog(&config, &state);
    let d = c.decide(&pod(&["myorg/app"], &[]), &team, &state, false);
    assert_eq!(d.add, ["dockerhub"]);
    assert_eq!(reasons(&d), [WarningReason::NameTaken]);
}

#[test]
fn keys_kubelet_ignores_are_reported_and_leave_the_fallback_to_apply() {
    let mut state = ClusterState::new();
    // kubelet 1.36 (Go 1.26) drops both mirror keys: a `[` inside a host is refused.
    state.insert_secret(pull_secret(
        "registry-creds",
        "mirror",
        &["docker.i[n-z]", "user:fake-password-9@quay.i[o]"],
        &[],
    ));
    state.insert_secret(pull_secret(
        "registry-creds",
        "dockerhub",
        &["https://index.docker.io/v1/"],
        &[],
    ));
    let config = r#"
credentials:
  - name: mirror
    secret: registry-creds/mirror
    namespaces: {include: ["team-*"]}
  - name: hub
    secret: registry-creds/dockerhub
    namespaces: {include: ["team-*"]}
"#;
    let c = catalog(config, &state);
    // No key matches docker.io/library/nginx, so kubelet falls back to the Hub key.
    let d = c.decide(&pod(&["nginx"], &[]), &ns("team-a", &[]), &state, false);
    assert_eq!(d.add, ["dockerhub"]);
    let problems = c.problems().join("\n");
    assert!(
            problems.contains(
                "credential mirror: secret registry-creds/mirror: key skipped, as kubelet never uses it: registry key \"docker.i[n-z]\" is not a valid URL: invalid IP-literal"
            ),
            "{problems}"
        );
    // The key is named, its userinfo is not.
    assert!(
        problems.contains("registry key \"***@quay.i[o]\""),
        "{problems}"
    );
    assert!(!problems.contains("fake-password"), "{problems}");
}

#[test]
fn local_secrets_are_referenced_not_copied() {
    let mut state = cluster();
    let local = [("pull-secret-injector/local", "true")];
    state.insert_secret(pull_secret(
        "runai-p1",
        "p1-hub",
        &["https://index.docker.io/v1/"],
        &local,
    ));
    state.insert_secret(pull_secret("runai-p1", "p1-nvcr", &["nvcr.io"], &local));
    let mut bad = pull_secret("runai-p1", "p1-bad", &["quay.io"], &local);
    bad.data = Some(BTreeMap::from([(
        DOCKER_CONFIG_JSON_KEY.to_string(),
        ByteString(b"not json".to_vec()),
    )]));
    state.insert_secret(bad);
    state.insert_secret(pull_secret("runai-p1", "unlabelled", &["quay.io"], &[]));
    let config = r#"
credentials:
  - name: project-local
    localSecretSelector: {matchLabels: {pull-secret-injector/local: "true"}}
    namespaces: {include: ["runai-*"]}
"#;
    let c = catalog(config, &state);
    let p1 = ns("runai-p1", &[]);
    let d = c.decide(
        &pod(
            &["python:3.11", "nvcr.io/nvidia/pytorch:24.01", "quay.io/x/y"],
            &[],
        ),
        &p1,
        &state,
        false,
    );
    assert_eq!(d.add, ["p1-hub", "p1-nvcr"]);
    assert!(d.copies.is_empty());
    assert_eq!(reasons(&d), [WarningReason::LocalSecretInvalid]);
    assert!(!d.warnings[0].message.contains("not json"));
    let d = c.decide(&sa("default"), &p1, &state, false);
    assert_eq!(d.add, ["p1-hub", "p1-nvcr"]);
    let d = c.decide(&sa("default"), &ns("team-a", &[]), &state, false);
    assert!(d.add.is_empty());
}

#[test]
fn secret_selector_copies_every_selected_secret_in_name_order() {
    let mut state = cluster();
    let wide = [("runai/cluster-wide", "true")];
    state.insert_secret(pull_secret(
        "runai",
        "z-hub",
        &["https://index.docker.io/v1/"],
        &wide,
    ));
    state.insert_secret(pull_secret("runai", "a-nvcr", &["nvcr.io"], &wide));
    state.insert_secret(pull_secret("runai", "other", &["nvcr.io"], &[]));
    let config = r#"
credentials:
  - name: runai-cluster-wide
    secretSelector: {namespace: runai, matchLabels: {runai/cluster-wide: "true"}}
    namespaces: {include: ["runai-*"]}
"#;
    let c = catalog(config, &state);
    let d = c.decide(&sa("default"), &ns("runai-p1", &[]), &state, false);
    assert_eq!(d.add, ["a-nvcr", "z-hub"]);
    let d = c.decide(
        &pod(&["nvcr.io/nvidia/x"], &[]),
        &ns("runai-p1", &[]),
        &state,
        false,
    );
    assert_eq!(d.add, ["a-nvcr"]);
}

#[test]
fn warnings_never_carry_secret_material() {
    let mut state = cluster();
    state.insert_secret(pull_secret("team-a", "all-icr-io", &["us.icr.io"], &[]));
    let c = catalog(CONFIG, &state);
    let d = c.decide(
        &pod(&["us.icr.io/a/b", "nginx"], &[]),
        &ns("team-a", &[]),
        &state,
        false,
    );
    let text = format!("{:?} {:?}", d.warnings, d.copies);
    assert!(!text.contains("fake-password"), "{text}");
    assert!(
        !text.contains(&STANDARD.encode("user0:fake-password-0")),
        "{text}"
    );
}

fn health(state: crate::view::ProbeState, rejections: u32) -> crate::view::RegistryHealth {
    crate::view::RegistryHealth {
        state,
        since: 1_796_083_200,
        rejections,
        expires: None,
    }
}

#[test]
fn a_rejected_credential_is_injected_with_a_warning_in_warn_mode() {
    use crate::view::{Health, ProbeState};
    let mut state = cluster();
    let mut h = Health::new();
    h.set("hub", "index.docker.io", health(ProbeState::Rejected, 5));
    state.set_health(h);
    let c = catalog(CONFIG, &state);
    let d = c.decide(&pod(&["nginx"], &[]), &ns("team-a", &[]), &state, false);
    assert_eq!(d.add, ["dockerhub"]);
    assert_eq!(reasons(&d), [WarningReason::CredentialRejected]);
    assert_eq!(
        d.warnings[0].message,
        "pull-secret-injector: credential hub is rejected by index.docker.io since 2026-12-01T00:00:00Z; pulls with it fail, even of public images; ask your cluster admin"
    );
    // Other registries of other credentials are not mentioned.
    let d = c.decide(
        &pod(&["icr.io/a/b"], &[]),
        &ns("team-a", &[]),
        &state,
        false,
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn skip_mode_withholds_after_two_rejections_never_for_unreachable() {
    use crate::view::{Health, ProbeState};
    let config = format!("verify: {{mode: skip}}\n{CONFIG}");
    let mut state = cluster();
    let team = ns("team-a", &[]);
    let subject = pod(&["us.icr.io/a/b"], &[]);
    for (probe, rejections, injected) in [
        (ProbeState::Rejected, 1, true),
        (ProbeState::Rejected, 2, false),
        (ProbeState::Unreachable, 0, true),
        (ProbeState::Ok, 0, true),
    ] {
        let mut h = Health::new();
        // A glob key (`*.icr.io`) is verified at the image's own host.
        h.set("icr", "us.icr.io", health(probe, rejections));
        state.set_health(h);
        let c = catalog(&config, &state);
        let d = c.decide(&subject, &team, &state, false);
        assert_eq!(!d.add.is_empty(), injected, "{probe:?} x{rejections}");
        if injected {
            assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        } else {
            assert_eq!(reasons(&d), [WarningReason::CredentialWithheld]);
            assert!(d.copies.is_empty(), "nothing is copied for it");
        }
    }
}

#[test]
fn a_withheld_direct_match_leaves_the_docker_hub_fallback_to_apply() {
    use crate::view::{Health, ProbeState};
    let mut state = cluster();
    state.insert_secret(pull_secret(
        "registry-creds",
        "hub-org",
        &["docker.io/myorg"],
        &[],
    ));
    let config = format!(
        "{CONFIG}  - name: hub-org\n    secret: registry-creds/hub-org\n    verify: {{mode: skip}}\n    namespaces: {{include: [\"team-*\"]}}\n"
    );
    let mut h = Health::new();
    h.set("hub-org", "docker.io", health(ProbeState::Rejected, 3));
    state.set_health(h);
    let c = catalog(&config, &state);
    let d = c.decide(&pod(&["myorg/app"], &[]), &ns("team-a", &[]), &state, false);
    // kubelet would not be given hub-org, so it falls back to index.docker.io.
    assert_eq!(d.add, ["dockerhub"]);
    assert_eq!(reasons(&d), [WarningReason::CredentialWithheld]);
}

#[test]
fn a_service_account_is_withheld_a_credential_every_probed_registry_rejects() {
    use crate::view::{Health, ProbeState};
    let config = format!("verify: {{mode: skip}}\n{CONFIG}");
    let mut state = cluster();
    let mut h = Health::new();
    h.set("icr", "icr.io", health(ProbeState::Rejected, 2));
    h.set("icr", "us.icr.io", health(ProbeState::Rejected, 2));
    state.set_health(h.clone());
    let c = catalog(&config, &state);
    let d = c.decide(&sa("default"), &ns("team-a", &[]), &state, false);
    assert_eq!(d.add, ["dockerhub"]);
    assert_eq!(reasons(&d), [WarningReason::CredentialWithheld]);
    // One registry still takes it: the ServiceAccount keeps it.
    h.set("icr", "us.icr.io", health(ProbeState::Ok, 0));
    state.set_health(h);
    let c = catalog(&config, &state);
    let d = c.decide(&sa("default"), &ns("team-a", &[]), &state, false);
    assert_eq!(d.add, ["all-icr-io", "dockerhub"]);
}

#[test]
fn glob_keys_report_the_concrete_registries_they_reached() {
    let mut state = cluster();
    state.insert_secret(pull_secret("registry-creds", "any-icr", &["*.icr.io"], &[]));
    let config = format!(
        "{CONFIG}  - name: any-icr\n    secret: registry-creds/any-icr\n    namespaces: {{include: [\"team-*\"]}}\n"
    );
    let c = catalog(&config, &state);
    let d = c.decide(
        &pod(&["us.icr.io/a/b", "de.icr.io/c/d", "nginx"], &[]),
        &ns("team-a", &[]),
        &state,
        false,
    );
    // Literal keys name their registry; the glob key is verified where it was used.
    assert_eq!(
        d.glob_registries,
        [
            ("any-icr".to_string(), "us.icr.io".to_string()),
            ("any-icr".to_string(), "de.icr.io".to_string())
        ]
    );
}

#[test]
fn a_minted_token_is_injected_until_it_is_marked_expired_and_then_the_pod_is_told_why() {
    const ECR: &str = r#"
credentials:
  - name: ecr
    token:
      ecr: {region: eu-west-1, registryIds: ["123456789012"], webIdentity: {}}
    namespaces: {include: ["team-*"]}
"#;
    let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    let image = format!("{host}/team/app:1");
    let mut state = ClusterState::new();
    state.insert_secret(pull_secret(
        "pull-secret-injector",
        "ecr-token",
        &[host],
        &[],
    ));
    let c = catalog(ECR, &state);
    let d = c.explain(&pod(&[&image], &[]), &ns("team-a", &[]), &state, false);
    assert_eq!(d.add, ["ecr-token"]);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);

    let mut expired = pull_secret("pull-secret-injector", "ecr-token", &[host], &[]);
    expired.metadata.annotations = Some(
        [(
            crate::marks::EXPIRED_ANNOTATION.to_string(),
            "https://api.ecr.eu-west-1.amazonaws.com/ unreachable: connection refused".to_string(),
        )]
        .into(),
    );
    state.insert_secret(expired);
    let c = catalog(ECR, &state);
    let d = c.explain(&pod(&[&image], &[]), &ns("team-a", &[]), &state, false);
    assert!(
        d.add.is_empty(),
        "an expired token is not spread: {:?}",
        d.add
    );
    assert_eq!(reasons(&d), [WarningReason::TokenExpired]);
    assert_eq!(
        d.warnings[0].message,
        "pull-secret-injector: credential ecr not injected: its registry token has expired and a new one cannot be minted now; ask your cluster admin"
    );
    assert_eq!(
        d.warnings[0].detail.as_deref().unwrap(),
        "credential ecr: its ecr token in pull-secret-injector/ecr-token has expired and minting a new one fails (https://api.ecr.eu-west-1.amazonaws.com/ unreachable: connection refused)"
    );
}
