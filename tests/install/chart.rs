//! The Helm chart, rendered with `helm template` in every certificate mode (its `ci/` values
//! files), must keep the invariants the kustomize base keeps, grant what the base grants, and
//! refuse bad values with a message that names them.

use serde_json::{Value, json};

use crate::invariants::{Certificates, Expect, Rendering, assert_holds, violations};
use crate::render;
use crate::restricted_v2;

const NAMESPACE: &str = "pull-secret-injector";
const NAME: &str = "pull-secret-injector";

fn template(args: &[&str]) -> Vec<Value> {
    render::helm_template(NAME, NAMESPACE, args)
        .unwrap_or_else(|e| panic!("helm template {args:?}: {e}"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// Each CI values file, with what it is meant to install; and the defaults under another
/// release name and namespace, so that every name is shown to follow the release.
fn chart_renderings() -> Vec<(Rendering, Expect)> {
    let mut out = Vec::new();
    for file in render::chart_ci_values() {
        let stem = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .trim_end_matches("-values.yaml")
            .to_string();
        let certificates = match stem.as_str() {
            "self-signed" | "everything" | "token-workload-identity" => Certificates::SelfSigned,
            "cert-manager" | "cert-manager-issuer" => Certificates::CertManager,
            "openshift-service-ca" => Certificates::OpenShiftServiceCa,
            "existing-secret" => Certificates::ExistingSecret,
            other => panic!("ci/{other}-values.yaml: say what it installs here"),
        };
        let mut expect = Expect::new(NAMESPACE, NAME, certificates);
        if stem == "everything" {
            expect = expect.with_prune();
        }
        let path = file.to_str().expect("utf-8").to_string();
        out.push((
            Rendering::new(
                format!("helm template -f ci/{stem}-values.yaml"),
                template(&["-f", &path]),
            ),
            expect,
        ));
    }
    assert!(
        out.len() >= 6,
        "a values file per certificate mode, and one with everything"
    );
    let other = render::helm_template("psi", "platform-tools", &[]).expect("helm template");
    out.push((
        Rendering::new("helm template psi --namespace platform-tools", other),
        Expect::new(
            "platform-tools",
            "psi-pull-secret-injector",
            Certificates::SelfSigned,
        ),
    ));
    out
}

#[test]
fn every_certificate_mode_of_the_chart_keeps_the_invariants() {
    for (rendering, expect) in chart_renderings() {
        assert_holds(&rendering, &expect);
    }
}

#[test]
fn every_certificate_mode_of_the_chart_is_admitted_by_restricted_v2() {
    for (rendering, _) in chart_renderings() {
        let deployment = rendering
            .objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("Deployment");
        let spec = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            restricted_v2::violations(spec),
            Vec::<String>::new(),
            "{}",
            rendering.origin
        );
    }
}

/// Exactly the base's rules, in the base's order, and the prune component's with prune.
#[test]
fn the_chart_grants_what_the_base_grants() {
    let base = render::documents(&render::manifests().join("base"));
    let prune = render::documents(&render::manifests().join("components/prune"));
    let rules = |docs: &[(String, Value)], kind: &str, name: &str| {
        docs.iter()
            .find(|(_, v)| v["kind"] == kind && v["metadata"]["name"] == name)
            .map(|(_, v)| v["rules"].clone())
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let chart = template(&["--set", "rbac.prune=true"]);
    for kind in ["ClusterRole", "Role"] {
        assert_eq!(
            find(&chart, kind, NAME).expect("rendered")["rules"],
            rules(&base, kind, NAME),
            "{kind}"
        );
    }
    let prune_name = format!("{NAME}-prune");
    assert_eq!(
        find(&chart, "ClusterRole", &prune_name).expect("prune role")["rules"],
        rules(&prune, "ClusterRole", &prune_name)
    );
}

/// The chart's webhook is the base's, field for field, when installed under the base's names.
#[test]
fn the_chart_s_webhook_is_the_base_s() {
    let base = render::documents(&render::manifests().join("base"));
    let (_, base_webhook) = base
        .iter()
        .find(|(_, v)| v["kind"] == "MutatingWebhookConfiguration")
        .expect("base webhook");
    let chart = template(&[]);
    let webhook = find(&chart, "MutatingWebhookConfiguration", NAME).expect("chart webhook");
    assert_eq!(webhook["webhooks"], base_webhook["webhooks"]);
}

fn prune_granted(objects: &[Value]) -> bool {
    find(objects, "ClusterRole", &format!("{NAME}-prune")).is_some()
}

#[test]
fn the_delete_grant_follows_the_config_unless_rbac_prune_says_otherwise() {
    let pruning = "credentials: []\nprune: true\n";
    assert!(!prune_granted(&template(&[])));
    assert!(prune_granted(&template(&[
        "--set-string",
        &format!("config.configYaml={pruning}")
    ])));
    assert!(!prune_granted(&template(&[
        "--set-string",
        &format!("config.configYaml={pruning}"),
        "--set",
        "rbac.prune=false",
    ])));
    assert!(prune_granted(&template(&["--set", "rbac.prune=true"])));
    // The invariants see a config that prunes without the grant.
    let objects = template(&[
        "--set-string",
        &format!("config.configYaml={pruning}"),
        "--set",
        "rbac.prune=false",
    ]);
    let found = violations(
        &Rendering::new("prune without grant", objects),
        &Expect::new(NAMESPACE, NAME, Certificates::SelfSigned),
    );
    assert!(
        found.iter().any(|v| v.contains("the config prunes")),
        "{found:?}"
    );
}

#[test]
fn an_existing_config_map_is_read_and_none_is_installed() {
    let objects = template(&["--set", "config.existingConfigMap=platform-config"]);
    assert!(objects.iter().all(|o| o["kind"] != "ConfigMap"));
    let mut expect = Expect::new(NAMESPACE, NAME, Certificates::SelfSigned);
    expect.external_config = true;
    let rendering = Rendering::new("existingConfigMap", objects);
    assert_holds(&rendering, &expect);
    let deployment = rendering
        .objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("Deployment");
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .expect("args")
            .contains(&json!("--config-map=pull-secret-injector/platform-config")),
        "{args}"
    );
}

fn image(args: &[&str]) -> Value {
    let objects = template(args);
    find(&objects, "Deployment", NAME).expect("Deployment")["spec"]["template"]["spec"]
        ["containers"][0]["image"]
        .clone()
}

#[test]
fn the_image_is_the_app_version_unless_a_tag_or_digest_is_given() {
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        image(&[]),
        json!(format!(
            "ghcr.io/pull-secret-injector/pull-secret-injector:{version}"
        ))
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        image(&[
            "--set",
            "image.repository=registry.example.com/platform/psi",
            "--set",
            "image.tag=dev",
            "--set",
            &format!("image.digest={digest}"),
        ]),
        json!(format!("registry.example.com/platform/psi:dev@{digest}"))
    );
}

/// Bad values fail at install (helm template validates as helm install does), each with a
/// message that says which value and what is wrong.
#[test]
fn bad_values_fail_with_a_message_naming_them() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "certificate.mode=letsencrypt"],
            "/certificate/mode",
        ),
        (
            &["--set", "webhook.failurePolicy=Deny"],
            "/webhook/failurePolicy",
        ),
        (
            &["--set", "webhook.timeoutSeconds=1"],
            "/webhook/timeoutSeconds",
        ),
        (&["--set", "replicaCount=0"], "/replicaCount"),
        (&["--set", "logging.format=xml"], "/logging/format"),
        (&["--set", "image.digest=latest"], "/image/digest"),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            "/image/pullPolicy",
        ),
        (&["--set", "rbac.prune=yes"], "/rbac/prune"),
        (&["--set", "extraArgs[0]=serve"], "/extraArgs/0"),
        (&["--set", "certificat.mode=selfSigned"], "certificat"),
        (
            &[
                "--set",
                "webhook.namespaceSelector.matchExpressions[0].key=team",
                "--set",
                "webhook.namespaceSelector.matchExpressions[0].operator=Like",
            ],
            "operator",
        ),
        (
            &["--set", "certificate.mode=existingSecret"],
            "certificate.existingSecret.caBundle is required",
        ),
        (
            &[
                "--set",
                "certificate.mode=existingSecret",
                "--set",
                "certificate.existingSecret.caBundle=abc",
            ],
            "must be PEM",
        ),
        (
            &["--set", "clientCA.enabled=true"],
            "clientCA.enabled needs clientCA.configMap or clientCA.secret",
        ),
        (
            &[
                "--set",
                "certificate.mode=openshiftServiceCA",
                "--set",
                "podSecurityContext.runAsUser=1000",
            ],
            "runAsUser is set",
        ),
        (
            &["--set-string", "config.configYaml=credentials: [oops"],
            "config.configYaml is not YAML",
        ),
        (
            &[
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "metrics.service.enabled=false",
            ],
            "needs metrics.service.enabled",
        ),
    ];
    for (args, expected) in cases {
        match render::helm_template(NAME, NAMESPACE, args) {
            Ok(_) => panic!("helm template {args:?} succeeded"),
            Err(message) => assert!(message.contains(expected), "{args:?}: {message}"),
        }
    }
}

/// One replica renders no budget (minAvailable 1 would block every drain); the invariants,
/// which want two replicas, say so.
#[test]
fn one_replica_has_no_budget_and_the_invariants_say_it_is_not_highly_available() {
    let objects = template(&["--set", "replicaCount=1"]);
    assert!(objects.iter().all(|o| o["kind"] != "PodDisruptionBudget"));
    let found = violations(
        &Rendering::new("one replica", objects),
        &Expect::new(NAMESPACE, NAME, Certificates::SelfSigned),
    );
    assert!(found.iter().any(|v| v.contains("replicas 1")), "{found:?}");
}
