//! The install manifests: every object parses into its Kubernetes type, the properties the
//! injector's safety depends on hold (a test fails if someone drops `sideEffects:
//! NoneOnDryRun`, widens the RBAC, or removes the namespaceSelector), and `kubectl kustomize`
//! renders the base and the cert-manager overlay.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

use pull_secret_injector::config::Config;

const NAMESPACE: &str = "pull-secret-injector";
const NAME: &str = "pull-secret-injector";

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

/// Every YAML document of the manifest files under `dir` (kustomizations excluded), with the
/// file it came from.
fn documents(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("manifests dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
            if value.is_null() {
                continue;
            }
            let json: Value = serde_json::to_value(value).expect("json");
            out.push((file.display().to_string(), json));
        }
    }
    out
}

/// The base's objects by kind and name.
fn base() -> BTreeMap<(String, String), Value> {
    documents(&manifests().join("base"))
        .into_iter()
        .map(|(_, v)| {
            let kind = v["kind"].as_str().expect("kind").to_string();
            let name = v["metadata"]["name"].as_str().expect("name").to_string();
            ((kind, name), v)
        })
        .collect()
}

fn get<T: serde::de::DeserializeOwned>(kind: &str, name: &str) -> T {
    let objects = base();
    let value = objects
        .get(&(kind.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("the base has no {kind} {name}"))
        .clone();
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

/// Parses a document into the Kubernetes type of its kind (strictly for the known ones).
fn check_type(origin: &str, v: &Value) {
    let kind = v["kind"].as_str().unwrap_or("");
    let result = match kind {
        "Namespace" => serde_json::from_value::<Namespace>(v.clone()).map(|_| ()),
        "ServiceAccount" => serde_json::from_value::<ServiceAccount>(v.clone()).map(|_| ()),
        "ClusterRole" => serde_json::from_value::<ClusterRole>(v.clone()).map(|_| ()),
        "ClusterRoleBinding" => serde_json::from_value::<ClusterRoleBinding>(v.clone()).map(|_| ()),
        "Role" => serde_json::from_value::<Role>(v.clone()).map(|_| ()),
        "RoleBinding" => serde_json::from_value::<RoleBinding>(v.clone()).map(|_| ()),
        "ConfigMap" => serde_json::from_value::<ConfigMap>(v.clone()).map(|_| ()),
        "Deployment" => serde_json::from_value::<Deployment>(v.clone()).map(|_| ()),
        "PodDisruptionBudget" => {
            serde_json::from_value::<PodDisruptionBudget>(v.clone()).map(|_| ())
        }
        "Service" => serde_json::from_value::<Service>(v.clone()).map(|_| ()),
        "NetworkPolicy" => {
            serde_json::from_value::<k8s_openapi::api::networking::v1::NetworkPolicy>(v.clone())
                .map(|_| ())
        }
        "MutatingWebhookConfiguration" => {
            serde_json::from_value::<MutatingWebhookConfiguration>(v.clone()).map(|_| ())
        }
        // cert-manager's types have no Rust crate here: check the fields the overlay uses.
        "Issuer" => {
            assert_eq!(v["apiVersion"], "cert-manager.io/v1", "{origin}");
            assert!(
                v["spec"]["selfSigned"].is_object() || v["spec"]["ca"]["secretName"].is_string(),
                "{origin}: an Issuer is selfSigned or a CA"
            );
            Ok(())
        }
        "Certificate" => {
            assert_eq!(v["apiVersion"], "cert-manager.io/v1", "{origin}");
            assert!(v["spec"]["secretName"].is_string(), "{origin}");
            assert!(v["spec"]["issuerRef"]["name"].is_string(), "{origin}");
            Ok(())
        }
        other => panic!("{origin}: unexpected kind {other:?}"),
    };
    if let Err(e) = result {
        panic!("{origin}: {kind} does not fit its type: {e}");
    }
}

#[test]
fn every_manifest_parses_into_its_kubernetes_type() {
    let mut kinds = BTreeSet::new();
    for dir in ["base", "cert-manager"] {
        for (origin, v) in documents(&manifests().join(dir)) {
            check_type(&origin, &v);
            kinds.insert(v["kind"].as_str().unwrap_or("").to_string());
        }
    }
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "MutatingWebhookConfiguration",
        "Issuer",
        "Certificate",
    ] {
        assert!(kinds.contains(kind), "no {kind} in the manifests");
    }
}

fn webhook() -> MutatingWebhook {
    let config: MutatingWebhookConfiguration = get("MutatingWebhookConfiguration", NAME);
    let webhooks = config.webhooks.expect("webhooks");
    assert_eq!(webhooks.len(), 1);
    webhooks.into_iter().next().expect("webhook")
}

fn has_not_in(selector: &LabelSelector, key: &str, value: &str) -> bool {
    selector.match_expressions.iter().flatten().any(|e| {
        e.key == key && e.operator == "NotIn" && e.values.iter().flatten().any(|v| v == value)
    })
}

#[test]
fn the_webhook_never_blocks_never_writes_on_dry_run_and_skips_what_it_must() {
    let w = webhook();
    assert_eq!(w.admission_review_versions, ["v1"]);
    assert_eq!(w.side_effects, "NoneOnDryRun");
    assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert_eq!(w.match_policy.as_deref(), Some("Equivalent"));
    let timeout = w.timeout_seconds.expect("timeoutSeconds is set explicitly");
    // Above the 2 s copy budget, well below the 10 s default a pod creation would wait.
    assert!((3..=10).contains(&timeout), "timeoutSeconds {timeout}");

    let rules = w.rules.expect("rules");
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!(
        rule.operations.as_deref(),
        Some(&["CREATE".to_string()][..])
    );
    assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
    let resources: BTreeSet<&str> = rule
        .resources
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    assert_eq!(resources, BTreeSet::from(["pods", "serviceaccounts"]));

    let service = w.client_config.service.expect("a Service reference");
    assert_eq!(service.name, NAME);
    assert_eq!(service.namespace, NAMESPACE);
    assert_eq!(service.path.as_deref(), Some("/mutate"));
    assert_eq!(service.port, Some(443));
    assert!(w.client_config.url.is_none());

    let namespaces = w.namespace_selector.expect("namespaceSelector");
    for skipped in ["kube-system", NAMESPACE] {
        assert!(
            has_not_in(&namespaces, "kubernetes.io/metadata.name", skipped),
            "namespaceSelector must skip {skipped}"
        );
    }
    assert!(has_not_in(
        &namespaces,
        "pull-secret-injector/inject",
        "false"
    ));
    let objects = w.object_selector.expect("objectSelector");
    assert!(has_not_in(&objects, "pull-secret-injector/inject", "false"));
}

fn container() -> (Deployment, Container) {
    let deployment: Deployment = get("Deployment", NAME);
    let spec = deployment.spec.clone().expect("spec");
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.containers.len(), 1);
    let c = pod.containers[0].clone();
    (deployment, c)
}

#[test]
fn the_deployment_is_highly_available_probed_and_locked_down() {
    let (deployment, c) = container();
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(NAME));

    // Replicas spread across nodes.
    let anti = pod
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .expect("podAntiAffinity");
    let terms = anti
        .preferred_during_scheduling_ignored_during_execution
        .expect("preferred anti-affinity");
    assert!(
        terms
            .iter()
            .any(|t| t.pod_affinity_term.topology_key == "kubernetes.io/hostname")
    );

    // Probes on the endpoints serve answers.
    let probe_path = |p: Option<k8s_openapi::api::core::v1::Probe>| {
        p.and_then(|p| p.http_get).and_then(|h| h.path)
    };
    assert_eq!(
        probe_path(c.liveness_probe.clone()).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(c.readiness_probe.clone()).as_deref(),
        Some("/readyz")
    );

    // POD_NAMESPACE from the downward API: the injector's own namespace and config.
    let env = c.env.clone().unwrap_or_default();
    let pod_namespace = env
        .iter()
        .find(|e| e.name == "POD_NAMESPACE")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.clone());
    assert_eq!(pod_namespace.as_deref(), Some("metadata.namespace"));

    // Requests and a memory limit.
    let resources = c.resources.clone().expect("resources");
    let requests = resources.requests.expect("requests");
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    assert!(resources.limits.expect("limits").contains_key("memory"));

    // Non-root, read-only, no escalation, no capabilities, RuntimeDefault seccomp.
    let pod_security = pod.security_context.expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    let seccomp = pod_security.seccomp_profile.map(|s| s.type_).or_else(|| {
        c.security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.clone())
            .map(|s| s.type_)
    });
    assert_eq!(seccomp.as_deref(), Some("RuntimeDefault"));
    let security = c
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_ne!(security.privileged, Some(true));
    let dropped = security
        .capabilities
        .and_then(|c| c.drop)
        .unwrap_or_default();
    assert_eq!(dropped, ["ALL"]);

    // The base makes its own certificate.
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("serve"));
    assert!(args.iter().any(|a| a == "--self-signed"), "{args:?}");
}

#[test]
fn the_budget_and_the_service_select_the_deployment_s_pods() {
    let (deployment, c) = container();
    let labels = deployment
        .spec
        .expect("spec")
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");
    let pdb: PodDisruptionBudget = get("PodDisruptionBudget", NAME);
    let pdb_spec = pdb.spec.expect("spec");
    assert!(pdb_spec.min_available.is_some() || pdb_spec.max_unavailable.is_some());
    let selector = pdb_spec
        .selector
        .and_then(|s| s.match_labels)
        .expect("matchLabels");
    assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));

    let service: Service = get("Service", NAME);
    let spec = service.spec.expect("spec");
    let selector = spec.selector.expect("selector");
    assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let ports = spec.ports.expect("ports");
    let container_port = |name: &str| {
        c.ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
    };
    let https = ports
        .iter()
        .find(|p| p.port == 443)
        .expect("port 443 for kube-apiserver");
    let target = match &https.target_port {
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name)) => {
            container_port(name)
        }
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port)) => Some(*port),
        None => None,
    };
    assert_eq!(target, Some(8443));
    assert!(ports.iter().any(|p| p.name.as_deref() == Some("metrics")));
}

#[test]
fn the_rbac_has_no_wildcard_and_the_webhook_grant_covers_one_object() {
    let role: ClusterRole = get("ClusterRole", NAME);
    let mut webhook_rules = 0;
    for rule in role.rules.iter().flatten() {
        for list in [
            Some(&rule.verbs),
            rule.resources.as_ref(),
            rule.api_groups.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(
                !list.iter().any(|v| v.contains('*')),
                "wildcard in {rule:?}"
            );
        }
        if rule
            .resources
            .iter()
            .flatten()
            .any(|r| r == "mutatingwebhookconfigurations")
        {
            webhook_rules += 1;
            assert_eq!(
                rule.resource_names.as_deref(),
                Some(&[NAME.to_string()][..])
            );
            assert_eq!(rule.verbs, ["get", "patch"]);
        }
    }
    assert_eq!(webhook_rules, 1);
    let namespaced: Role = get("Role", NAME);
    assert_eq!(
        namespaced.metadata.namespace.as_deref(),
        Some(NAMESPACE),
        "configmaps and events only in the injector's namespace"
    );
    let binding: ClusterRoleBinding = get("ClusterRoleBinding", NAME);
    let subjects = binding.subjects.expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, NAME);
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
}

#[test]
fn the_starting_config_is_valid() {
    let cm: ConfigMap = get("ConfigMap", NAME);
    assert_eq!(cm.metadata.namespace.as_deref(), Some(NAMESPACE));
    let text = cm
        .data
        .and_then(|d| d.get("config.yaml").cloned())
        .expect("config.yaml");
    let config = Config::from_raw_yaml(&text).expect("the starting config is valid");
    assert!(config.credentials.is_empty());
}

/// The kubectl to render with: `$KUBECTL`, else the one `.ci/run` installs, else `kubectl`.
fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-tools/bin/kubectl");
    if installed.exists() {
        return installed;
    }
    PathBuf::from("kubectl")
}

fn kustomize(dir: &str) -> Vec<Value> {
    kustomize_path(&manifests().join(dir), &[])
}

fn kustomize_path(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let output = Command::new(kubectl())
        .args(["kustomize"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run kubectl ({e}); .ci/run installs kubectl 1.36 into target/ci-tools/bin, or set KUBECTL"
            )
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde_json::to_value(serde_yaml::Value::deserialize(d).expect("yaml")).expect("json")
        })
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn kustomize_renders_the_base_and_the_cert_manager_overlay() {
    let base = kustomize("");
    for v in &base {
        check_type("kubectl kustomize manifests/", v);
    }
    assert_eq!(base.len(), 11, "every object of the base");

    let overlay = kustomize("cert-manager");
    for v in &overlay {
        check_type("kubectl kustomize manifests/cert-manager/", v);
    }
    let deployment = overlay
        .iter()
        .find(|v| v["kind"] == "Deployment")
        .expect("deployment");
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!args.contains(&"--self-signed"), "{args:?}");
    assert!(args.contains(&"--tls-cert=/tls/tls.crt"), "{args:?}");
    let volume = &deployment["spec"]["template"]["spec"]["volumes"][0];
    let certificate = overlay
        .iter()
        .find(|v| v["kind"] == "Certificate" && v["metadata"]["name"] == NAME)
        .expect("serving Certificate");
    assert_eq!(
        volume["secret"]["secretName"],
        certificate["spec"]["secretName"]
    );
    let dns: Vec<&str> = certificate["spec"]["dnsNames"]
        .as_array()
        .expect("dnsNames")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(dns.contains(&"pull-secret-injector.pull-secret-injector.svc"));
    let webhook = overlay
        .iter()
        .find(|v| v["kind"] == "MutatingWebhookConfiguration")
        .expect("webhook");
    assert_eq!(
        webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NAMESPACE}/{NAME}")
    );
    // The overlay keeps the webhook's safety settings.
    assert_eq!(webhook["webhooks"][0]["sideEffects"], "NoneOnDryRun");
    assert_eq!(webhook["webhooks"][0]["failurePolicy"], "Ignore");
}

/// The optional components, each included from a kustomization of the user's own as the docs
/// say: prune adds exactly the delete grant; the NetworkPolicy admits the two ports only.
#[test]
fn kustomize_renders_the_prune_and_network_policy_components() {
    // Kustomize takes only relative paths: the user's kustomization sits in target/ here.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).expect("target dir");
    let dir = tempfile::tempdir_in(&target).expect("tempdir");
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
        resources:\n  - ../../manifests/base\ncomponents:\n  - ../../manifests/components/prune\n  \
        - ../../manifests/components/network-policy\n";
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization).expect("write");
    let rendered = kustomize_path(dir.path(), &["--load-restrictor", "LoadRestrictionsNone"]);
    for v in &rendered {
        check_type("kubectl kustomize with the components", v);
    }
    let prune = rendered
        .iter()
        .find(|v| {
            v["kind"] == "ClusterRole" && v["metadata"]["name"] == "pull-secret-injector-prune"
        })
        .expect("the prune ClusterRole");
    assert_eq!(
        prune["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]}])
    );
    let binding = rendered
        .iter()
        .find(|v| {
            v["kind"] == "ClusterRoleBinding"
                && v["metadata"]["name"] == "pull-secret-injector-prune"
        })
        .expect("its binding");
    assert_eq!(binding["subjects"][0]["name"], NAME);
    let policy = rendered
        .iter()
        .find(|v| v["kind"] == "NetworkPolicy")
        .expect("the NetworkPolicy");
    let ports: BTreeSet<i64> = policy["spec"]["ingress"]
        .as_array()
        .expect("ingress")
        .iter()
        .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(ports, BTreeSet::from([8443, 9090]));
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        NAME
    );
}

/// Without the prune component nothing is ever deleted: the base grants no delete.
#[test]
fn the_base_grants_no_delete() {
    let role: ClusterRole = get("ClusterRole", NAME);
    for rule in role.rules.iter().flatten() {
        assert!(!rule.verbs.iter().any(|v| v == "delete"), "{rule:?}");
    }
}
