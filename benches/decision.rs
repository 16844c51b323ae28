//! Decision time for a pod with 10 containers against 100 credentials (target: under 10 µs),
//! and the whole offline admission path (parse review, decide, build patch, serialise).
//!
//! Run: `cargo bench --bench decision`

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use pull_secret_injector::admission;
use pull_secret_injector::config::Config;
use pull_secret_injector::image::ImageRef;
use pull_secret_injector::policy::{Catalog, Subject, SubjectKind};
use pull_secret_injector::state::{ClusterState, NamespaceInfo};

const CREDENTIALS: usize = 100;

fn secret(ns: &str, name: &str, keys: &[String]) -> Secret {
    let auths: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .map(|k| {
            let auth = STANDARD.encode(format!("bench:fake-{k}"));
            (k.clone(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap()),
        )])),
        ..Default::default()
    }
}

/// 100 credentials, each with its own source secret: literal hosts, path keys, host globs, and
/// namespace scopes with include/exclude globs. `hub_keys` of them also hold a Docker Hub key:
/// 1 is the usual setup; 20 is a stress case where one Hub image pulls in 20 secrets.
fn setup(hub_keys: usize) -> (Catalog, ClusterState) {
    let mut state = ClusterState::new();
    let mut config = String::from("credentials:\n");
    for i in 0..CREDENTIALS {
        let keys = match i % 5 {
            0 => vec![
                format!("registry{i}.example.com"),
                format!("https://mirror{i}.example.com"),
            ],
            1 => vec![format!("registry{i}.example.com/team/project")],
            2 => vec![format!("*.registry{i}.example.com")],
            3 => vec![format!("registry{i}.example.com:5000")],
            _ if i / 5 < hub_keys => vec![
                format!("registry{i}.example.com"),
                "https://index.docker.io/v1/".to_string(),
            ],
            _ => vec![format!("registry{i}.example.com")],
        };
        state.insert_secret(secret("creds", &format!("pull-{i}"), &keys));
        config.push_str(&format!(
            "  - name: cred-{i}\n    secret: creds/pull-{i}\n    namespaces: {{include: [\"team-*\", \"prod-*\"], exclude: [\"team-legacy\"]}}\n"
        ));
    }
    state.insert_namespace(NamespaceInfo::named("team-a"));
    let catalog = Catalog::build(Config::from_yaml(&config).unwrap(), &state, Some("psi"));
    (catalog, state)
}

const IMAGES: [&str; 10] = [
    "registry10.example.com/app/api:1.2.3",
    "registry11.example.com/team/project/worker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "eu.registry12.example.com/x/y:latest",
    "registry13.example.com:5000/a/b",
    "nginx:1.25",
    "quay.io/prometheus/node-exporter:v1.7.0",
    "registry50.example.com/app/cache",
    "gcr.io/distroless/static:nonroot",
    "mirror95.example.com/library/busybox",
    "us.icr.io/ns/os-signal:1",
];

fn review_body() -> Vec<u8> {
    let containers: Vec<serde_json::Value> = IMAGES
        .iter()
        .enumerate()
        .map(|(i, image)| {
            serde_json::json!({
                "name": format!("c{i}"), "image": image,
                "resources": {}, "terminationMessagePath": "/dev/termination-log",
                "volumeMounts": [{"name": "kube-api-access-abcde", "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "api-7d9c8b-", "namespace": "team-a",
                    "labels": {"app": "api", "pod-template-hash": "7d9c8b"}},
                "spec": {"serviceAccountName": "default", "containers": containers,
                    "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}]}
            },
            "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    }))
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let (catalog, state) = setup(1);
    let ns = NamespaceInfo::named("team-a");
    let subject = Subject {
        kind: SubjectKind::Pod,
        name: None,
        images: IMAGES.to_vec(),
        existing: Vec::new(),
        labels: None,
        annotations: None,
    };
    let decision = catalog.decide(&subject, &ns, &state, false);
    assert!(
        decision.add.len() == 7,
        "bench setup must exercise matches: {:?}",
        decision.add
    );

    c.bench_function("decide/pod-10-containers/100-credentials", |b| {
        b.iter(|| catalog.decide(black_box(&subject), &ns, &state, false))
    });
    let (stress, stress_state) = setup(20);
    let stressed = stress.decide(&subject, &ns, &stress_state, false);
    assert_eq!(stressed.add.len(), 26, "{:?}", stressed.add);
    c.bench_function(
        "decide/pod-10-containers/100-credentials/20-match-one-image",
        |b| b.iter(|| stress.decide(black_box(&subject), &ns, &stress_state, false)),
    );
    c.bench_function("image/parse", |b| {
        b.iter(|| ImageRef::parse(black_box(IMAGES[1])))
    });
    let body = review_body();
    c.bench_function("admission/review-10-containers/100-credentials", |b| {
        b.iter(|| admission::review(&catalog, &state, black_box(&body)).unwrap())
    });
}

criterion_group!(decision, benches);
criterion_main!(decision);
