//! The install, in every form it ships: the kustomize base and its overlays (`kubectl
//! kustomize`), the components, and the Helm chart in each certificate mode (`helm template`).
//! Every rendering must pass one shared set of invariants (`install/invariants.rs`: webhook
//! safety settings, RBAC equal to the base's and without wildcards, pod security including
//! OpenShift's restricted-v2 SCC, a certificate mode that holds together), every object parses
//! into its k8s-openapi type without losing a field, and each invariant is shown to fail when
//! the install is broken the way it guards against. The alert rules are checked against the
//! binary's real metrics (`install/monitoring.rs`).
//!
//! Needs kubectl 1.36 and Helm (`.ci/run` installs both into target/ci-tools/bin; or set
//! `KUBECTL` and `HELM`).

#[path = "install/chart.rs"]
mod chart;
#[path = "install/invariants.rs"]
mod invariants;
#[path = "install/kinds.rs"]
mod kinds;
#[path = "install/monitoring.rs"]
mod monitoring;
#[path = "install/render.rs"]
mod render;
#[path = "install/restricted_v2.rs"]
mod restricted_v2;

use std::collections::BTreeSet;

use serde_json::{Value, json};

use invariants::{Certificates, Expect, Rendering, assert_holds, violations};
use pull_secret_injector::config::Config;

const NAMESPACE: &str = "pull-secret-injector";
const NAME: &str = "pull-secret-injector";

fn base() -> Rendering {
    Rendering::new(
        "kubectl kustomize manifests/",
        render::kustomize(&render::manifests(), &[]),
    )
}

/// The base, each overlay, and a kustomization of the user's own with both components and the
/// monitoring objects, each with what it is meant to install.
fn kustomize_renderings() -> Vec<(Rendering, Expect)> {
    let overlay = |dir: &str| {
        Rendering::new(
            format!("kubectl kustomize manifests/{dir}/"),
            render::kustomize(&render::manifests().join(dir), &[]),
        )
    };
    let own = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
        resources:\n  - ../../manifests\n  - ../../manifests/monitoring\n\
        components:\n  - ../../manifests/components/prune\n  \
        - ../../manifests/components/network-policy\n";
    let own_openshift = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
        resources:\n  - ../../manifests/openshift\n\
        components:\n  - ../../manifests/components/network-policy\n";
    vec![
        (
            base(),
            Expect::new(NAMESPACE, NAME, Certificates::SelfSigned),
        ),
        (
            overlay("cert-manager"),
            Expect::new(NAMESPACE, NAME, Certificates::CertManager),
        ),
        (
            overlay("openshift"),
            Expect::new(NAMESPACE, NAME, Certificates::OpenShiftServiceCa),
        ),
        (
            Rendering::new(
                "base, components prune and network-policy, monitoring",
                render::user_overlay(own),
            ),
            Expect::new(NAMESPACE, NAME, Certificates::SelfSigned).with_prune(),
        ),
        (
            Rendering::new(
                "openshift with the network-policy component",
                render::user_overlay(own_openshift),
            ),
            Expect::new(NAMESPACE, NAME, Certificates::OpenShiftServiceCa),
        ),
    ]
}

#[test]
fn every_kustomize_rendering_keeps_the_invariants() {
    for (rendering, expect) in kustomize_renderings() {
        assert_holds(&rendering, &expect);
    }
}

fn pod_spec(r: &Rendering) -> Value {
    r.objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment")["spec"]["template"]["spec"]
        .clone()
}

/// The base as it stands, explicitly: OpenShift's default SCC admits it, and so does every
/// overlay and component.
#[test]
fn the_base_and_every_overlay_are_admitted_by_restricted_v2() {
    let base = base();
    assert_eq!(
        restricted_v2::violations(&pod_spec(&base)),
        Vec::<String>::new(),
        "the base"
    );
    let security = &pod_spec(&base)["securityContext"];
    assert_eq!(
        *security,
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}),
        "no UID, group or fsGroup is fixed: OpenShift assigns them"
    );
    for (rendering, _) in kustomize_renderings() {
        assert_eq!(
            restricted_v2::violations(&pod_spec(&rendering)),
            Vec::<String>::new(),
            "{}",
            rendering.origin
        );
    }
}

/// Every manifest file parses into its type, patches and the monitoring objects included.
#[test]
fn every_manifest_file_parses_into_its_kubernetes_type() {
    let mut kinds = BTreeSet::new();
    for dir in [
        "base",
        "cert-manager",
        "openshift",
        "components/prune",
        "components/network-policy",
        "monitoring",
    ] {
        for (origin, v) in render::documents(&render::manifests().join(dir)) {
            if let Err(problem) = kinds::parses(&v) {
                panic!("{origin}: {problem}");
            }
            kinds.insert(v["kind"].as_str().unwrap_or("").to_string());
        }
    }
    assert_eq!(kinds.len(), 16, "{kinds:?}");
}

#[test]
fn the_starting_config_is_valid_and_holds_no_credential() {
    let cm = base()
        .objects
        .into_iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("ConfigMap");
    let config = Config::from_raw_yaml(cm["data"]["config.yaml"].as_str().expect("config.yaml"))
        .expect("valid");
    assert!(config.credentials.is_empty());
    assert!(!config.prune);
}

/// The OpenShift overlay changes where the certificate comes from, and nothing else: the RBAC,
/// the webhook's rules and the pod's security are the base's.
#[test]
fn the_openshift_overlay_changes_only_the_certificate() {
    let base = base();
    let openshift = render::kustomize(&render::manifests().join("openshift"), &[]);
    assert_eq!(openshift.len(), base.objects.len());
    for ours in &openshift {
        let theirs = base
            .objects
            .iter()
            .find(|o| {
                o["kind"] == ours["kind"] && o["metadata"]["name"] == ours["metadata"]["name"]
            })
            .unwrap_or_else(|| panic!("the overlay adds {}", ours["kind"]));
        let mut ours = ours.clone();
        let mut theirs = theirs.clone();
        match ours["kind"].as_str() {
            Some("Service") | Some("MutatingWebhookConfiguration") => {
                ours["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("annotations");
            }
            Some("Deployment") => {
                for o in [&mut ours, &mut theirs] {
                    let pod = &mut o["spec"]["template"]["spec"];
                    pod.as_object_mut().expect("pod").remove("volumes");
                    let c = pod["containers"][0].as_object_mut().expect("container");
                    c.remove("args");
                    c.remove("volumeMounts");
                }
            }
            _ => {}
        }
        assert_eq!(
            ours, theirs,
            "the OpenShift overlay changes {}",
            ours["kind"]
        );
    }
}

/// The version the install names is the one the crate builds, the chart's appVersion included.
#[test]
fn the_manifests_and_the_chart_name_the_crate_s_version() {
    let version = env!("CARGO_PKG_VERSION");
    let chart = std::fs::read_to_string(render::chart().join("Chart.yaml")).expect("Chart.yaml");
    let chart = &render::parse_stream(&chart, "Chart.yaml")[0];
    assert_eq!(chart["appVersion"], version);
    let base = base();
    let image = pod_spec(&base)["containers"][0]["image"].clone();
    assert_eq!(
        image,
        json!(format!(
            "ghcr.io/pull-secret-injector/pull-secret-injector:{version}"
        ))
    );
    let values = std::fs::read_to_string(render::chart().join("values.yaml")).expect("values");
    let values = &render::parse_stream(&values, "values.yaml")[0];
    assert_eq!(
        values["image"]["repository"],
        "ghcr.io/pull-secret-injector/pull-secret-injector"
    );
}

/// A broken install is caught: each mutation is one someone could make, and each must be
/// reported. The checks are the same for the chart.
#[test]
fn the_invariants_catch_a_fixed_uid_a_dropped_safety_setting_wider_rbac_and_a_broken_certificate() {
    let expect = Expect::new(NAMESPACE, NAME, Certificates::SelfSigned);
    assert_eq!(violations(&base(), &expect), Vec::<String>::new());

    type Break = fn(&mut Rendering);
    let cases: [(&str, Break, &[&str]); 12] = [
        (
            "a fixed UID back",
            |r| {
                r.object_mut("Deployment", NAME)["spec"]["template"]["spec"]["securityContext"]["runAsUser"] =
                    json!(65532);
            },
            &[
                "pod securityContext.runAsUser is fixed",
                "restricted-v2 refuses it: pod runAsUser 65532",
            ],
        ),
        (
            "a fixed group",
            |r| {
                r.object_mut("Deployment", NAME)["spec"]["template"]["spec"]["securityContext"]["runAsGroup"] =
                    json!(65532);
            },
            &["pod securityContext.runAsGroup is fixed"],
        ),
        (
            "privilege escalation",
            |r| {
                r.object_mut("Deployment", NAME)["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                .as_object_mut()
                .expect("securityContext")
                .remove("allowPrivilegeEscalation");
            },
            &[
                "allowPrivilegeEscalation is null",
                "restricted-v2 refuses it: container injector: allowPrivilegeEscalation",
            ],
        ),
        (
            "a writable root filesystem",
            |r| {
                r.object_mut("Deployment", NAME)["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                    ["readOnlyRootFilesystem"] = json!(false);
            },
            &["readOnlyRootFilesystem is false"],
        ),
        (
            "no sideEffects",
            |r| {
                r.object_mut("MutatingWebhookConfiguration", NAME)["webhooks"][0]["sideEffects"] =
                    json!("Some");
            },
            &["webhook sideEffects is \"Some\""],
        ),
        (
            "failurePolicy Fail",
            |r| {
                r.object_mut("MutatingWebhookConfiguration", NAME)["webhooks"][0]["failurePolicy"] =
                    json!("Fail");
            },
            &["webhook failurePolicy is \"Fail\""],
        ),
        (
            "no namespaceSelector",
            |r| {
                r.object_mut("MutatingWebhookConfiguration", NAME)["webhooks"][0]
                    .as_object_mut()
                    .expect("webhook")
                    .remove("namespaceSelector");
            },
            &["does not skip kube-system"],
        ),
        (
            "a wildcard verb",
            |r| {
                r.object_mut("ClusterRole", NAME)["rules"][0]["verbs"] = json!(["*"]);
            },
            &["wildcard in verbs", "grants"],
        ),
        (
            "delete without prune",
            |r| {
                r.object_mut("ClusterRole", NAME)["rules"][1]["verbs"]
                    .as_array_mut()
                    .expect("verbs")
                    .push(json!("delete"));
            },
            &["grants delete outside the prune role"],
        ),
        (
            "every webhook configuration",
            |r| {
                r.object_mut("ClusterRole", NAME)["rules"]
                    .as_array_mut()
                    .expect("rules")
                    .iter_mut()
                    .find(|rule| rule["resources"][0] == "mutatingwebhookconfigurations")
                    .and_then(|rule| rule.as_object_mut())
                    .expect("the webhook rule")
                    .remove("resourceNames");
            },
            &["the webhook grant must be get/patch of pull-secret-injector only"],
        ),
        (
            "a self-signed Deployment without --self-signed",
            |r| {
                r.object_mut("Deployment", NAME)["spec"]["template"]["spec"]["containers"][0]["args"] =
                    json!(["serve", "--log-format=json"]);
            },
            &["self-signed mode runs"],
        ),
        (
            "a Secret in the install",
            |r| {
                r.objects.push(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "pull-secret-injector-tls", "namespace": NAMESPACE},
                    "type": "kubernetes.io/tls"
                }));
            },
            &["the install must hold no secret value"],
        ),
    ];
    for (what, mutate, expected) in cases {
        let mut broken = base();
        mutate(&mut broken);
        let found = violations(&broken, &expect);
        for e in expected {
            assert!(
                found.iter().any(|v| v.contains(e)),
                "{what}: no violation containing {e:?} among {found:#?}"
            );
        }
    }

    // The OpenShift overlay without its annotations, or with cert-manager's as well.
    let openshift = || {
        Rendering::new(
            "openshift",
            render::kustomize(&render::manifests().join("openshift"), &[]),
        )
    };
    let expect = Expect::new(NAMESPACE, NAME, Certificates::OpenShiftServiceCa);
    let mut broken = openshift();
    broken.object_mut("Service", NAME)["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("annotations");
    let found = violations(&broken, &expect);
    assert!(
        found
            .iter()
            .any(|v| v.contains("does not ask the service CA")),
        "{found:#?}"
    );
    let mut broken = openshift();
    broken.object_mut("MutatingWebhookConfiguration", NAME)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] =
        json!("pull-secret-injector/x");
    let found = violations(&broken, &expect);
    assert!(
        found.iter().any(|v| v.contains("a second CA injector")),
        "{found:#?}"
    );
}

/// A misspelt field parses (k8s-openapi skips unknown fields) but is caught by the round trip.
#[test]
fn a_misspelt_field_is_caught() {
    let mut broken = base();
    let sc = &mut broken.object_mut("Deployment", NAME)["spec"]["template"]["spec"]["containers"]
        [0]["securityContext"];
    sc["readOnlyRootFileSystem"] = json!(true);
    let found = violations(
        &broken,
        &Expect::new(NAMESPACE, NAME, Certificates::SelfSigned),
    );
    assert!(
        found
            .iter()
            .any(|v| v.contains("readOnlyRootFileSystem") && v.contains("is not a field")),
        "{found:#?}"
    );
}
