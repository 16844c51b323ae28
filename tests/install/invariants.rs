//! The install's invariants: one set of checks that every rendering must pass, whether it
//! comes from `kubectl kustomize` (the base, each overlay, the components) or from `helm
//! template` (each certificate mode). Each check returns what is wrong, so that a test can also
//! prove a check bites by breaking a rendering on purpose.
//!
//! - every object fits its Kubernetes type, losing no field; no Secret is rendered (no secret
//!   value in the install); namespaced objects carry the injector's namespace;
//! - the webhook's safety settings: `v1` reviews, `sideEffects: NoneOnDryRun`,
//!   `failurePolicy: Ignore`, a short explicit timeout, CREATE of pods and ServiceAccounts only,
//!   reinvocation, the Service reference, and the selectors that skip kube-system, its own
//!   namespace and everything opted out;
//! - RBAC: no wildcard; exactly the base's grants (`manifests/base/rbac.yaml`, which the
//!   end-to-end suite checks against the code) plus the prune component's `delete` when prune is
//!   expected, and no `delete` otherwise; the webhook grant limited to the one configuration;
//!   bindings to the injector's ServiceAccount only;
//! - pod security: non-root, no fixed UID, group or fsGroup, no escalation, every capability
//!   dropped, a read-only root filesystem, `RuntimeDefault` seccomp, and OpenShift's
//!   restricted-v2 SCC (`restricted_v2`);
//! - the Deployment: replicas spread over nodes, probes, the downward API, resources;
//! - the certificate mode holds together: the flags, the mounted Secret, and whatever issues
//!   the certificate and fills `caBundle` (the injector, cert-manager, OpenShift's service CA,
//!   or the CA given);
//! - Services, the budget, the NetworkPolicy and the ServiceMonitor select the pods and ports
//!   they mean to; the config ConfigMap the injector reads exists and is valid; the
//!   PrometheusRule carries the rules file promtool tests.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::{Value, json};

use pull_secret_injector::config::Config;

use crate::render;
use crate::restricted_v2;

/// Where the serving certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certificates {
    SelfSigned,
    CertManager,
    OpenShiftServiceCa,
    ExistingSecret,
}

/// What a rendering is meant to install.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The injector's namespace.
    pub namespace: String,
    /// The name of its objects (ServiceAccount, Service, webhook configuration, roles).
    pub name: String,
    pub certificates: Certificates,
    /// Whether the delete grant of `prune: true` is part of it.
    pub prune: bool,
    /// The config ConfigMap is the user's, not part of the rendering.
    pub external_config: bool,
}

impl Expect {
    pub fn new(namespace: &str, name: &str, certificates: Certificates) -> Expect {
        Expect {
            namespace: namespace.to_string(),
            name: name.to_string(),
            certificates,
            prune: false,
            external_config: false,
        }
    }

    pub fn with_prune(mut self) -> Expect {
        self.prune = true;
        self
    }
}

/// The objects one command rendered, and that command.
#[derive(Debug, Clone)]
pub struct Rendering {
    pub origin: String,
    pub objects: Vec<Value>,
}

impl Rendering {
    pub fn new(origin: impl Into<String>, objects: Vec<Value>) -> Rendering {
        Rendering {
            origin: origin.into(),
            objects,
        }
    }

    fn all<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Value> + 'a {
        let kind = kind.to_string();
        self.objects
            .iter()
            .filter(move |o| o["kind"] == kind.as_str())
    }

    fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.all(kind).find(|o| o["metadata"]["name"] == name)
    }

    /// The Deployment's object, mutable: for tests that break a rendering on purpose.
    pub fn object_mut(&mut self, kind: &str, name: &str) -> &mut Value {
        self.objects
            .iter_mut()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }
}

/// Everything wrong with `r`, given what it is meant to install.
pub fn violations(r: &Rendering, e: &Expect) -> Vec<String> {
    let mut out = Vec::new();
    types(r, &mut out);
    namespaces(r, e, &mut out);
    webhook(r, e, &mut out);
    rbac(r, e, &mut out);
    match deployment(r, e) {
        Ok(d) => {
            pod_security(&d, &mut out);
            workload(&d, &mut out);
            certificates(r, e, &d, &mut out);
            selection(r, e, &d, &mut out);
            config(r, e, &d, &mut out);
            network_policy(r, &d, &mut out);
            monitoring(r, &mut out);
        }
        Err(problem) => out.push(problem),
    }
    out
}

/// Fails with every violation, naming the rendering.
pub fn assert_holds(r: &Rendering, e: &Expect) {
    let found = violations(r, e);
    assert!(
        found.is_empty(),
        "{}: {} invariant(s) broken:\n  {}",
        r.origin,
        found.len(),
        found.join("\n  ")
    );
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn types(r: &Rendering, out: &mut Vec<String>) {
    for o in &r.objects {
        if let Err(problem) = crate::kinds::check(o) {
            out.push(format!(
                "{} {}: {problem}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            ));
        }
        if o["kind"] == "Secret" {
            out.push(format!(
                "renders Secret {}: the install must hold no secret value",
                o["metadata"]["name"]
            ));
        }
    }
}

const CLUSTER_SCOPED: [&str; 4] = [
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
];

fn namespaces(r: &Rendering, e: &Expect, out: &mut Vec<String>) {
    for o in &r.objects {
        let kind = o["kind"].as_str().unwrap_or("");
        let ns = o["metadata"]["namespace"].as_str();
        if CLUSTER_SCOPED.contains(&kind) {
            if ns.is_some() {
                out.push(format!("cluster-scoped {kind} has a namespace"));
            }
        } else if ns != Some(e.namespace.as_str()) {
            out.push(format!(
                "{kind} {} is in namespace {ns:?}, not {}",
                o["metadata"]["name"], e.namespace
            ));
        }
    }
    for n in r.all("Namespace") {
        if n["metadata"]["name"] != e.namespace.as_str() {
            out.push(format!(
                "creates another namespace {}",
                n["metadata"]["name"]
            ));
        }
        if n["metadata"]["labels"]["pull-secret-injector/inject"] != "false" {
            out.push("the injector's namespace is not labelled inject=false".into());
        }
    }
}

fn not_in(selector: &Value, key: &str, value: &str) -> bool {
    selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|x| x["key"] == key && x["operator"] == "NotIn" && strs(&x["values"]).contains(&value))
}

fn webhook(r: &Rendering, e: &Expect, out: &mut Vec<String>) {
    let configs: Vec<&Value> = r.all("MutatingWebhookConfiguration").collect();
    if configs.len() != 1 {
        out.push(format!(
            "{} MutatingWebhookConfigurations, not 1",
            configs.len()
        ));
        return;
    }
    let config = configs[0];
    if config["metadata"]["name"] != e.name.as_str() {
        out.push(format!(
            "the webhook configuration is {}, not {}",
            config["metadata"]["name"], e.name
        ));
    }
    let webhooks = config["webhooks"].as_array().cloned().unwrap_or_default();
    if webhooks.len() != 1 {
        out.push(format!("{} webhooks, not 1", webhooks.len()));
        return;
    }
    let w = &webhooks[0];
    let settings = [
        ("admissionReviewVersions", json!(["v1"])),
        ("sideEffects", json!("NoneOnDryRun")),
        ("failurePolicy", json!("Ignore")),
        ("reinvocationPolicy", json!("IfNeeded")),
        ("matchPolicy", json!("Equivalent")),
    ];
    for (field, want) in settings {
        if w[field] != want {
            out.push(format!("webhook {field} is {}, not {want}", w[field]));
        }
    }
    // Above the 2 s copy budget, well below the 10 s default a pod creation would wait.
    match w["timeoutSeconds"].as_i64() {
        Some(t) if (3..=10).contains(&t) => {}
        other => out.push(format!(
            "webhook timeoutSeconds {other:?}, not set within 3..=10"
        )),
    }
    let rules = w["rules"].as_array().cloned().unwrap_or_default();
    let rule = json!({
        "operations": ["CREATE"],
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": ["pods", "serviceaccounts"],
        "scope": "Namespaced",
    });
    if rules != [rule.clone()] {
        out.push(format!("webhook rules {rules:?}, not [{rule}]"));
    }
    let client = &w["clientConfig"];
    if !client["url"].is_null() {
        out.push("webhook calls a url, not the Service".into());
    }
    let service = &client["service"];
    let want = json!({"name": e.name, "namespace": e.namespace, "path": "/mutate", "port": 443});
    if *service != want {
        out.push(format!("webhook service {service}, not {want}"));
    }
    for skipped in ["kube-system", e.namespace.as_str()] {
        if !not_in(
            &w["namespaceSelector"],
            "kubernetes.io/metadata.name",
            skipped,
        ) {
            out.push(format!("the namespaceSelector does not skip {skipped}"));
        }
    }
    if !not_in(
        &w["namespaceSelector"],
        "pull-secret-injector/inject",
        "false",
    ) {
        out.push("the namespaceSelector does not skip namespaces labelled inject=false".into());
    }
    if !not_in(&w["objectSelector"], "pull-secret-injector/inject", "false") {
        out.push("the objectSelector does not skip objects labelled inject=false".into());
    }
}

/// A rule with its lists sorted, the webhook grant's resourceNames set to `name`.
fn normalized_rules(rules: &Value, from: &str, to: &str) -> BTreeSet<String> {
    rules
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| {
            let mut rule = rule.clone();
            if let Some(obj) = rule.as_object_mut() {
                for list in obj.values_mut() {
                    if let Some(items) = list.as_array_mut() {
                        for item in items.iter_mut() {
                            if *item == from {
                                *item = json!(to);
                            }
                        }
                        items.sort_by_key(ToString::to_string);
                    }
                }
            }
            rule.to_string()
        })
        .collect()
}

/// The rules of `kind` `name` in a manifest file of the repository.
fn file_rules(path: &str, kind: &str, name: &str) -> Value {
    let file = render::repo().join(path);
    let dir = file.parent().expect("dir");
    render::documents(dir)
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{path}: no {kind} {name}"))["rules"]
        .clone()
}

fn rbac(r: &Rendering, e: &Expect, out: &mut Vec<String>) {
    const BASE: &str = "pull-secret-injector";
    for role in r.all("ClusterRole").chain(r.all("Role")) {
        let name = role["metadata"]["name"].as_str().unwrap_or("?");
        for rule in role["rules"].as_array().into_iter().flatten() {
            for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
                if strs(&rule[field]).iter().any(|s| s.contains('*')) {
                    out.push(format!("{name}: wildcard in {field}: {rule}"));
                }
            }
            if strs(&rule["verbs"]).contains(&"delete") && name != format!("{}-prune", e.name) {
                out.push(format!(
                    "{name} grants delete outside the prune role: {rule}"
                ));
            }
            if strs(&rule["resources"]).contains(&"mutatingwebhookconfigurations")
                && (strs(&rule["resourceNames"]) != [e.name.as_str()]
                    || strs(&rule["verbs"]) != ["get", "patch"])
            {
                out.push(format!(
                    "{name}: the webhook grant must be get/patch of {} only: {rule}",
                    e.name
                ));
            }
        }
    }

    let mut cluster_roles = BTreeSet::from([e.name.clone()]);
    if e.prune {
        cluster_roles.insert(format!("{}-prune", e.name));
    }
    let rendered: BTreeSet<String> = r
        .all("ClusterRole")
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    if rendered != cluster_roles {
        out.push(format!("ClusterRoles {rendered:?}, not {cluster_roles:?}"));
    }
    let roles: BTreeSet<String> = r
        .all("Role")
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    if roles != BTreeSet::from([e.name.clone()]) {
        out.push(format!("Roles {roles:?}, not [{}]", e.name));
    }

    // The same grants as the base (which the end-to-end suite checks against the code).
    let compare = [
        (
            "ClusterRole",
            e.name.clone(),
            "manifests/base/rbac.yaml",
            BASE.to_string(),
        ),
        (
            "Role",
            e.name.clone(),
            "manifests/base/rbac.yaml",
            BASE.to_string(),
        ),
        (
            "ClusterRole",
            format!("{}-prune", e.name),
            "manifests/components/prune/rbac.yaml",
            format!("{BASE}-prune"),
        ),
    ];
    for (kind, name, file, base_name) in compare {
        let Some(role) = r.named(kind, &name) else {
            continue;
        };
        let want = normalized_rules(&file_rules(file, kind, &base_name), BASE, &e.name);
        let got = normalized_rules(&role["rules"], BASE, &e.name);
        if got != want {
            out.push(format!(
                "{kind} {name} grants {got:?}, not what {file} grants: {want:?}"
            ));
        }
    }

    let subject = json!([{"kind": "ServiceAccount", "name": e.name, "namespace": e.namespace}]);
    for binding in r.all("ClusterRoleBinding").chain(r.all("RoleBinding")) {
        let name = binding["metadata"]["name"].as_str().unwrap_or("?");
        if binding["subjects"] != subject {
            out.push(format!(
                "{name} binds {}, not {subject}",
                binding["subjects"]
            ));
        }
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or("");
        let role_name = binding["roleRef"]["name"].as_str().unwrap_or("");
        if r.named(role_kind, role_name).is_none() {
            out.push(format!(
                "{name} binds {role_kind} {role_name}, which is not installed"
            ));
        }
    }
    if r.named("ServiceAccount", &e.name).is_none() {
        out.push(format!("no ServiceAccount {}", e.name));
    }
}

/// The Deployment, its pod spec and its one container.
struct Workload {
    deployment: Value,
    pod: Value,
    container: Value,
    args: Vec<String>,
}

impl Workload {
    /// `--flag=value` or `--flag value`.
    fn flag(&self, flag: &str) -> Option<String> {
        let prefix = format!("{flag}=");
        self.args.iter().enumerate().find_map(|(i, a)| {
            if let Some(value) = a.strip_prefix(&prefix) {
                Some(value.to_string())
            } else if a == flag {
                self.args.get(i + 1).cloned()
            } else {
                None
            }
        })
    }

    fn has(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a == flag)
    }

    fn pod_labels(&self) -> BTreeMap<String, String> {
        labels(&self.deployment["spec"]["template"]["metadata"]["labels"])
    }

    fn container_port(&self, target: &Value) -> Option<i64> {
        match target {
            Value::Number(n) => n.as_i64(),
            Value::String(name) => self.container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_i64()),
            _ => None,
        }
    }
}

fn deployment(r: &Rendering, e: &Expect) -> Result<Workload, String> {
    let all: Vec<&Value> = r.all("Deployment").collect();
    let [d] = all.as_slice() else {
        return Err(format!("{} Deployments, not 1", all.len()));
    };
    if d["metadata"]["name"] != e.name.as_str() {
        return Err(format!(
            "the Deployment is {}, not {}",
            d["metadata"]["name"], e.name
        ));
    }
    let pod = d["spec"]["template"]["spec"].clone();
    let containers = pod["containers"].as_array().cloned().unwrap_or_default();
    let [container] = containers.as_slice() else {
        return Err(format!("{} containers, not 1", containers.len()));
    };
    let args = strs(&container["args"])
        .into_iter()
        .map(str::to_string)
        .collect();
    Ok(Workload {
        deployment: (*d).clone(),
        pod,
        container: container.clone(),
        args,
    })
}

fn pod_security(d: &Workload, out: &mut Vec<String>) {
    let pod = &d.pod["securityContext"];
    if pod["runAsNonRoot"] != true {
        out.push("pod securityContext.runAsNonRoot is not true".into());
    }
    for field in ["runAsUser", "runAsGroup", "fsGroup"] {
        if !pod[field].is_null() {
            out.push(format!(
                "pod securityContext.{field} is fixed ({})",
                pod[field]
            ));
        }
    }
    let sc = &d.container["securityContext"];
    for field in ["runAsUser", "runAsGroup"] {
        if !sc[field].is_null() {
            out.push(format!(
                "container securityContext.{field} is fixed ({})",
                sc[field]
            ));
        }
    }
    let want = [
        ("allowPrivilegeEscalation", json!(false)),
        ("readOnlyRootFilesystem", json!(true)),
    ];
    for (field, value) in want {
        if sc[field] != value {
            out.push(format!(
                "container securityContext.{field} is {}, not {value}",
                sc[field]
            ));
        }
    }
    if sc["privileged"] == true {
        out.push("the container is privileged".into());
    }
    if sc["capabilities"]["drop"] != json!(["ALL"]) || !sc["capabilities"]["add"].is_null() {
        out.push(format!(
            "capabilities {}, not drop [ALL] and nothing added",
            sc["capabilities"]
        ));
    }
    let seccomp = sc["seccompProfile"]["type"]
        .as_str()
        .or(pod["seccompProfile"]["type"].as_str());
    if seccomp != Some("RuntimeDefault") {
        out.push(format!("seccompProfile {seccomp:?}, not RuntimeDefault"));
    }
    if d.pod["automountServiceAccountToken"] == false {
        out.push("no ServiceAccount token: cluster mode needs the API".into());
    }
    for v in restricted_v2::violations(&d.pod) {
        out.push(format!("restricted-v2 refuses it: {v}"));
    }
}

fn workload(d: &Workload, out: &mut Vec<String>) {
    let spec = &d.deployment["spec"];
    if spec["replicas"].as_i64().unwrap_or(1) < 2 {
        out.push(format!("replicas {}, not at least 2", spec["replicas"]));
    }
    if spec["strategy"]["rollingUpdate"]["maxUnavailable"] != 0 {
        out.push("a rollout may take a replica away before its successor is ready".into());
    }
    let spread_by_affinity =
        d.pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname");
    let spread_by_constraint = d.pod["topologySpreadConstraints"]
        .as_array()
        .is_some_and(|c| !c.is_empty());
    if !spread_by_affinity && !spread_by_constraint {
        out.push("the replicas are not spread across nodes".into());
    }
    let c = &d.container;
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        if get["path"] != path
            || get["scheme"] != "HTTPS"
            || d.container_port(&get["port"]) != Some(8443)
        {
            out.push(format!("{probe} is {get}, not HTTPS {path} on 8443"));
        }
    }
    let pod_namespace = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "POD_NAMESPACE");
    if pod_namespace.map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"])
        != Some(&json!("metadata.namespace"))
    {
        out.push("POD_NAMESPACE does not come from metadata.namespace".into());
    }
    let resources = &c["resources"];
    if resources["requests"]["cpu"].is_null()
        || resources["requests"]["memory"].is_null()
        || resources["limits"]["memory"].is_null()
    {
        out.push(format!(
            "resources {resources}: requests and a memory limit are needed"
        ));
    }
    if d.args.first().map(String::as_str) != Some("serve") {
        out.push(format!("args {:?} do not run serve", d.args));
    }
    if d.pod_labels()
        .get("pull-secret-injector/inject")
        .map(String::as_str)
        != Some("false")
    {
        out.push("the pods are not labelled inject=false".into());
    }
    for (name, port) in [("https", 8443), ("metrics", 9090)] {
        if d.container_port(&json!(name)) != Some(port) {
            out.push(format!("no container port {name} {port}"));
        }
    }
}

fn certificates(r: &Rendering, e: &Expect, d: &Workload, out: &mut Vec<String>) {
    let Some(config) = r.all("MutatingWebhookConfiguration").next() else {
        return;
    };
    let annotations = labels(&config["metadata"]["annotations"]);
    let ca_bundle = &config["webhooks"][0]["clientConfig"]["caBundle"];
    let injectors = [
        ("cert-manager.io/inject-ca-from", Certificates::CertManager),
        (
            "service.beta.openshift.io/inject-cabundle",
            Certificates::OpenShiftServiceCa,
        ),
    ];
    for (annotation, mode) in injectors {
        if annotations.contains_key(annotation) != (e.certificates == mode) {
            out.push(format!(
                "{annotation} on the webhook configuration, in mode {:?}: {}",
                e.certificates,
                if e.certificates == mode {
                    "missing"
                } else {
                    "a second CA injector"
                }
            ));
        }
    }
    if ca_bundle.is_null() == (e.certificates == Certificates::ExistingSecret) {
        out.push(format!(
            "caBundle {} in the rendering, in mode {:?}",
            if ca_bundle.is_null() {
                "absent"
            } else {
                "present"
            },
            e.certificates
        ));
    }

    if e.certificates == Certificates::SelfSigned {
        if !d.has("--self-signed") || d.flag("--tls-cert").is_some() {
            out.push(format!("self-signed mode runs {:?}", d.args));
        }
        let names = [
            (
                "--webhook-configuration",
                config["metadata"]["name"].clone(),
            ),
            (
                "--service-name",
                config["webhooks"][0]["clientConfig"]["service"]["name"].clone(),
            ),
        ];
        for (flag, want) in names {
            let value = d
                .flag(flag)
                .unwrap_or_else(|| "pull-secret-injector".into());
            if want != value.as_str() {
                out.push(format!("{flag} is {value}, but the rendering has {want}"));
            }
        }
        if r.all("Certificate").next().is_some() {
            out.push("a cert-manager Certificate in self-signed mode".into());
        }
        return;
    }

    // A certificate served from a mounted Secret.
    if d.has("--self-signed") {
        out.push(format!("--self-signed in mode {:?}", e.certificates));
    }
    let (Some(cert), Some(key)) = (d.flag("--tls-cert"), d.flag("--tls-key")) else {
        out.push(format!("no --tls-cert/--tls-key in {:?}", d.args));
        return;
    };
    let dir = cert.strip_suffix("/tls.crt").unwrap_or("?").to_string();
    if key != format!("{dir}/tls.key") {
        out.push(format!(
            "--tls-cert {cert} and --tls-key {key} are not tls.crt/tls.key of one directory"
        ));
    }
    let mount = d.container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(dir.as_str()))
        .cloned();
    let Some(mount) = mount else {
        out.push(format!("nothing is mounted at {dir}"));
        return;
    };
    if mount["readOnly"] != true {
        out.push(format!("{dir} is mounted writable"));
    }
    let secret = d.pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .and_then(|v| v["secret"]["secretName"].as_str())
        .map(str::to_string);
    let Some(secret) = secret else {
        out.push(format!("{dir} is not a Secret volume"));
        return;
    };
    let service = r.named("Service", &e.name);
    match e.certificates {
        Certificates::CertManager => {
            let issued = r
                .all("Certificate")
                .find(|c| c["spec"]["secretName"] == secret.as_str());
            let Some(issued) = issued else {
                out.push(format!("no Certificate writes the mounted Secret {secret}"));
                return;
            };
            let dns = format!("{}.{}.svc", e.name, e.namespace);
            if !strs(&issued["spec"]["dnsNames"]).contains(&dns.as_str()) {
                out.push(format!("the Certificate is not for {dns}"));
            }
            let from = format!(
                "{}/{}",
                e.namespace,
                issued["metadata"]["name"].as_str().unwrap_or("?")
            );
            if annotations.get("cert-manager.io/inject-ca-from") != Some(&from) {
                out.push(format!(
                    "inject-ca-from does not name the Certificate {from}"
                ));
            }
            let issuer = &issued["spec"]["issuerRef"];
            let kind = issuer["kind"].as_str().unwrap_or("Issuer");
            if kind == "Issuer"
                && r.named("Issuer", issuer["name"].as_str().unwrap_or(""))
                    .is_none()
            {
                out.push(format!(
                    "the Certificate's Issuer {} is not installed",
                    issuer["name"]
                ));
            }
        }
        Certificates::OpenShiftServiceCa => {
            let asked = service
                .map(|s| &s["metadata"]["annotations"]["service.beta.openshift.io/serving-cert-secret-name"]);
            if asked != Some(&json!(secret)) {
                out.push(format!(
                    "the Service does not ask the service CA for the mounted Secret {secret}"
                ));
            }
            if annotations
                .get("service.beta.openshift.io/inject-cabundle")
                .map(String::as_str)
                != Some("true")
            {
                out.push("inject-cabundle is not \"true\"".into());
            }
        }
        Certificates::ExistingSecret => {
            let pem = ca_bundle
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                out.push("caBundle is not a base64 PEM certificate".into());
            }
        }
        Certificates::SelfSigned => unreachable!(),
    }
    if e.certificates != Certificates::OpenShiftServiceCa
        && service.is_some_and(|s| {
            !s["metadata"]["annotations"]["service.beta.openshift.io/serving-cert-secret-name"]
                .is_null()
        })
    {
        out.push(
            "the Service asks OpenShift's service CA for a certificate it does not use".into(),
        );
    }
}

fn selection(r: &Rendering, e: &Expect, d: &Workload, out: &mut Vec<String>) {
    let pods = d.pod_labels();
    if !selects(
        &labels(&d.deployment["spec"]["selector"]["matchLabels"]),
        &pods,
    ) {
        out.push("the Deployment's selector does not match its pods".into());
    }
    match r.named("Service", &e.name) {
        None => out.push(format!("no Service {} for the webhook", e.name)),
        Some(s) => {
            if !selects(&labels(&s["spec"]["selector"]), &pods) {
                out.push("the webhook's Service does not select the pods".into());
            }
            let https = s["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["port"] == 443);
            if https.and_then(|p| d.container_port(&p["targetPort"])) != Some(8443) {
                out.push("the webhook's Service does not send port 443 to 8443".into());
            }
        }
    }
    let metrics = r.all("Service").any(|s| {
        selects(&labels(&s["spec"]["selector"]), &pods)
            && s["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "metrics" && d.container_port(&p["targetPort"]) == Some(9090))
    });
    if !metrics {
        out.push("no Service exposes the pods' metrics port 9090".into());
    }
    let budgets: Vec<&Value> = r.all("PodDisruptionBudget").collect();
    if budgets.len() != 1 {
        out.push(format!("{} PodDisruptionBudgets, not 1", budgets.len()));
    }
    for pdb in budgets {
        if !selects(&labels(&pdb["spec"]["selector"]["matchLabels"]), &pods) {
            out.push("the PodDisruptionBudget does not select the pods".into());
        }
        if pdb["spec"]["minAvailable"].is_null() && pdb["spec"]["maxUnavailable"].is_null() {
            out.push("the PodDisruptionBudget allows every disruption".into());
        }
    }
}

fn config(r: &Rendering, e: &Expect, d: &Workload, out: &mut Vec<String>) {
    let reference = d
        .flag("--config-map")
        .unwrap_or_else(|| format!("{}/pull-secret-injector", e.namespace));
    let Some((namespace, name)) = reference.split_once('/') else {
        out.push(format!("--config-map {reference} is not NAMESPACE/NAME"));
        return;
    };
    // The Role that lets it read ConfigMaps is in its own namespace only.
    if namespace != e.namespace {
        out.push(format!(
            "the config is read from {namespace}, outside the injector's namespace"
        ));
    }
    match r.named("ConfigMap", name) {
        None if e.external_config => {}
        None => out.push(format!("the config ConfigMap {name} is not installed")),
        Some(cm) => {
            let text = cm["data"]["config.yaml"].as_str().unwrap_or("");
            match Config::from_raw_yaml(text) {
                Err(err) => out.push(format!("the installed config is invalid: {err}")),
                Ok(config) => {
                    if config.prune && !e.prune {
                        out.push("the config prunes, but nothing grants delete".into());
                    }
                }
            }
        }
    }
}

fn network_policy(r: &Rendering, d: &Workload, out: &mut Vec<String>) {
    for policy in r.all("NetworkPolicy") {
        if !selects(
            &labels(&policy["spec"]["podSelector"]["matchLabels"]),
            &d.pod_labels(),
        ) {
            out.push("the NetworkPolicy does not select the pods".into());
        }
        if strs(&policy["spec"]["policyTypes"]) != ["Ingress"] {
            out.push("the NetworkPolicy is not an ingress policy".into());
        }
        let ports: BTreeSet<i64> = policy["spec"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["port"].as_i64())
            .collect();
        if ports != BTreeSet::from([8443, 9090]) {
            out.push(format!(
                "the NetworkPolicy admits ports {ports:?}, not 8443 and 9090"
            ));
        }
    }
}

/// The groups of the rules file promtool checks and tests.
pub fn canonical_rules() -> Value {
    let path = render::chart().join("files/prometheus-rules.yaml");
    let text = std::fs::read_to_string(&path).expect("rules file");
    render::parse_stream(&text, "prometheus-rules.yaml")
        .pop()
        .expect("a rules document")
}

fn monitoring(r: &Rendering, out: &mut Vec<String>) {
    for rule in r.all("PrometheusRule") {
        if rule["spec"] != canonical_rules() {
            out.push("the PrometheusRule differs from charts/pull-secret-injector/files/prometheus-rules.yaml".into());
        }
    }
    for monitor in r.all("ServiceMonitor") {
        let selector = labels(&monitor["spec"]["selector"]["matchLabels"]);
        let namespaces = strs(&monitor["spec"]["namespaceSelector"]["matchNames"]);
        let scraped: Vec<&Value> = r
            .all("Service")
            .filter(|s| selects(&selector, &labels(&s["metadata"]["labels"])))
            .filter(|s| namespaces.contains(&s["metadata"]["namespace"].as_str().unwrap_or("")))
            .collect();
        if scraped.is_empty() {
            out.push("the ServiceMonitor selects no Service".into());
        }
        for endpoint in monitor["spec"]["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let port = &endpoint["port"];
            let served = scraped.iter().any(|s| {
                s["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == *port)
            });
            if !served || endpoint["path"] != "/metrics" {
                out.push(format!(
                    "the ServiceMonitor scrapes {endpoint}, which no selected Service serves"
                ));
            }
        }
    }
}
