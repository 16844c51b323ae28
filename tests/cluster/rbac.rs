//! `manifests/base/rbac.yaml` (with `components/prune`) grants exactly what the injector uses:
//! a scenario that drives every code path that talks to the API (watches, copies made, adopted
//! and refused, rotation, backfill, prune, an Event, a minted token and its Lease) runs with the
//! manifests enforced, and the requests the injector made are compared with the grants. Only
//! the fake enforces them.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::json;

use crate::harness::{INJECTOR, Injector, eventually, repo};
use crate::{ICR_CONFIG, auth_of, icr_cluster, icr_source, rotate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rbac_manifest_grants_exactly_what_the_injector_uses() {
    let (authority, registry) = crate::tokens::acr_fakes().await;
    let c = icr_cluster(&ICR_CONFIG.replace("prune: false", "prune: true")).await;
    // With a minted credential too: the Lease, the managed Secret and the key Secret.
    let acr = crate::tokens::acr_config(&c.own, &authority, &registry);
    let acr_credential = acr
        .split_once("credentials:\n")
        .and_then(|(_, rest)| rest.split_once("serviceAccounts:"))
        .map(|(credential, _)| credential.to_string())
        .expect("the ACR credential");
    let pruning = ICR_CONFIG
        .replace("prune: false", "prune: true")
        .replace("credentials:\n", &format!("credentials:\n{acr_credential}"));
    c.create(crate::tokens::service_principal(&c))
        .await
        .expect("service principal");
    c.set_config(&pruning).await;
    let fake = crate::fake_only!(c, "only the fake enforces RBAC and records every request");
    c.grant_prune();
    let a = c.namespace("team-a", json!({})).await;
    let b = c.namespace("team-b", json!({})).await;
    let f = c.namespace("team-f", json!({})).await;
    let mut foreign = icr_source(&c, "hand-made");
    foreign["metadata"]["namespace"] = json!(f);
    c.create(foreign).await.expect("foreign");
    // Self-signed, as installed: its Secret and the webhook's caBundle are written too.
    crate::self_signed::register_manifest_webhook(&c).await;
    let injector = Injector::start_self_signed(&c, "rbac").await;
    fake.route_service(
        &c.own,
        "pull-secret-injector",
        injector.running.admission_addr,
    );
    for ns in [&a, &b] {
        c.wait_for_reference(ns, "default", "all-icr-io").await;
        c.wait_for_reference(ns, "default", "acr-token").await;
    }
    // The minter renews its Lease every 5 s: wait for one renewal (an update).
    eventually("the minting Lease to be renewed", || async {
        c.get("leases", Some(&c.own), "pull-secret-injector-token-minter")
            .await
            .is_some_and(|l| l["spec"]["renewTime"] != l["spec"]["acquireTime"])
    })
    .await;
    // Rotation (patch), then a narrower scope (prune deletes team-b's copy).
    let new = rotate(&c, "2").await;
    eventually("the rotation", || async {
        c.secret(&a, "all-icr-io")
            .await
            .is_some_and(|s| auth_of(&s) == new)
    })
    .await;
    c.set_config(&pruning.replace("{P}team-*", "{P}team-a"))
        .await;
    eventually("the pruned copy", || async {
        c.secret(&b, "all-icr-io").await.is_none()
    })
    .await;
    c.set_config("credentials: [{name: x}]\n").await;
    eventually("an Event", || async {
        !c.list("events", Some(&c.own)).await.is_empty()
    })
    .await;
    injector.stop().await;

    let requests = fake.requests();
    let injector_requests: Vec<_> = requests.iter().filter(|r| r.user == INJECTOR).collect();
    let denied: Vec<_> = injector_requests
        .iter()
        .filter(|r| r.status == 403)
        .collect();
    assert!(denied.is_empty(), "denied: {denied:?}");
    let used: BTreeSet<(String, String)> = injector_requests
        .iter()
        .map(|r| (r.resource.clone(), r.verb.clone()))
        .collect();
    assert_eq!(used, granted(), "used (left) versus granted (right)");
    // The webhook grant is for one object: only the injector's own configuration was touched.
    assert!(
        injector_requests
            .iter()
            .filter(|r| r.resource == "mutatingwebhookconfigurations")
            .all(|r| r.name.as_deref() == Some("pull-secret-injector"))
    );
    // So is the Lease grant: reads and renewals name the minter's Lease only.
    assert!(
        injector_requests
            .iter()
            .filter(|r| r.resource == "leases" && r.verb != "create")
            .all(|r| r.name.as_deref() == Some("pull-secret-injector-token-minter"))
    );
}

/// Every (resource, verb) the manifests grant, from the Roles and ClusterRoles of the base and
/// of the prune component.
fn granted() -> BTreeSet<(String, String)> {
    let text = [
        "manifests/base/rbac.yaml",
        "manifests/components/prune/rbac.yaml",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(repo().join(f)).expect("rbac"))
    .collect::<Vec<_>>()
    .join("\n---\n");
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc).expect("yaml");
        let kind = value["kind"].as_str().unwrap_or("");
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        for rule in value["rules"].as_sequence().expect("rules") {
            let groups: Vec<&str> = rule["apiGroups"]
                .as_sequence()
                .expect("apiGroups")
                .iter()
                .filter_map(|g| g.as_str())
                .collect();
            assert!(
                groups == [""]
                    || groups == ["admissionregistration.k8s.io"]
                    || groups == ["coordination.k8s.io"],
                "only the core, admissionregistration and coordination groups are used: {groups:?}"
            );
            for resource in rule["resources"].as_sequence().expect("resources") {
                for verb in rule["verbs"].as_sequence().expect("verbs") {
                    let (r, v) = (resource.as_str().expect("r"), verb.as_str().expect("v"));
                    assert!(r != "*" && v != "*", "no wildcard in the RBAC manifest");
                    out.insert((r.to_string(), v.to_string()));
                }
            }
        }
    }
    out
}
