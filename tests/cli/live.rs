//! `check`, `validate` and `audit` against a live cluster (the fake API server): loaded with an
//! example's manifests, the live answers are the ones the same manifests give offline; a user
//! whose RBAC lacks reads is told each permission it needs, and the ClusterRole in
//! docs/inspector-rbac.yaml is enough.

use std::path::{Path, PathBuf};

use fake_apiserver::FakeApiServer;
use serde::Deserialize;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::{Run, bin, error_message, examples, run, write};

const ICR: &str = "ibm-cloud-all-icr-io";
const VIEWER: (&str, &str) = ("tools", "viewer");

/// A fake API server on its own runtime, and a kubeconfig for it.
struct Live {
    runtime: tokio::runtime::Runtime,
    fake: FakeApiServer,
    dir: TempDir,
}

impl Live {
    fn start() -> Live {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fake = runtime.block_on(FakeApiServer::start());
        // Only the manifests' ServiceAccounts, as offline: no `default` made by the controller.
        fake.hold_default_service_accounts(true);
        Live {
            runtime,
            fake,
            dir: TempDir::new().unwrap(),
        }
    }

    fn kubeconfig(&self, token: &str, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, self.fake.kubeconfig(token)).unwrap();
        path
    }

    fn admin(&self) -> PathBuf {
        self.kubeconfig(FakeApiServer::ADMIN_TOKEN, "admin.kubeconfig")
    }

    fn viewer(&self) -> PathBuf {
        let token = self.fake.service_account_token(VIEWER.0, VIEWER.1);
        self.kubeconfig(&token, "viewer.kubeconfig")
    }

    /// Creates every object of the YAML files, Namespaces first, as an admin would apply them.
    fn apply(&self, files: &[PathBuf]) {
        let mut objects: Vec<Value> = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value = Value::deserialize(doc).unwrap();
                if !value.is_null() {
                    objects.push(value);
                }
            }
        }
        objects.sort_by_key(|o| o["kind"] != "Namespace");
        self.runtime.block_on(async {
            for object in objects {
                if object["kind"] == "Namespace" {
                    let name = object["metadata"]["name"].as_str().unwrap();
                    if self.fake.get("namespaces", None, name).is_some() {
                        self.fake.replace(object).await.unwrap();
                        continue;
                    }
                }
                let what = format!("{} {}", object["kind"], object["metadata"]["name"]);
                self.fake
                    .create(object)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            }
        });
    }

    /// The example's config as the installed ConfigMap, its cluster and its running pods.
    fn install_example(&self, example: &str) {
        let dir = examples().join(example);
        let config = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
        self.apply(
            &[dir.join("cluster")]
                .iter()
                .flat_map(|d| files(d))
                .collect::<Vec<_>>(),
        );
        let running = dir.join("running");
        if running.exists() {
            // Without a kubelet a pod never finishes: the finished ones stay out of the
            // comparison (offline, they are not reported either).
            let pods: Vec<PathBuf> = files(&running);
            let kept = self.dir.path().join("running.yaml");
            let mut text = String::new();
            for file in pods {
                for doc in
                    serde_yaml::Deserializer::from_str(&std::fs::read_to_string(file).unwrap())
                {
                    let value = Value::deserialize(doc).unwrap();
                    if value.is_null() || value["status"]["phase"] == "Succeeded" {
                        continue;
                    }
                    text.push_str("---\n");
                    text.push_str(&serde_yaml::to_string(&value).unwrap());
                }
            }
            std::fs::write(&kept, text).unwrap();
            self.apply(&[kept]);
        }
        self.runtime.block_on(async {
            if self.fake.get("namespaces", None, "pull-secret-injector").is_none() {
                self.fake
                    .create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pull-secret-injector"}}))
                    .await
                    .unwrap();
            }
            self.fake
                .create(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "pull-secret-injector", "namespace": "pull-secret-injector"},
                    "data": {"config.yaml": config},
                }))
                .await
                .unwrap();
        });
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    out
}

fn offline(args: &[&str], example: &str) -> Run {
    let dir = examples().join(example);
    let mut cmd = bin();
    cmd.args(args)
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .arg("--cluster")
        .arg(dir.join("cluster"));
    if dir.join("running").exists() {
        cmd.arg("--cluster").arg(dir.join("running"));
    }
    run(&mut cmd)
}

fn live(args: &[&str], kubeconfig: &Path) -> Run {
    run(bin().args(args).arg("--kubeconfig").arg(kubeconfig))
}

#[test]
fn audit_check_and_validate_read_the_live_cluster_as_they_read_its_manifests() {
    let l = Live::start();
    l.install_example(ICR);
    let k = l.admin();
    for args in [
        &["audit", "--fix-commands"][..],
        &["audit", "-o", "json"],
        &[
            "check",
            "-n",
            "workshop",
            "us.icr.io/mofi-kube/os-signal:0.0.1",
            "nginx",
        ],
        &[
            "check",
            "-n",
            "payments",
            "-o",
            "json",
            "private.us.icr.io/payments/api:2.1",
        ],
    ] {
        let off = offline(args, ICR);
        let on = live(args, &k);
        assert_eq!(on.code, off.code, "{args:?}: {}", on.stderr);
        assert_eq!(on.stdout, off.stdout, "{args:?}");
        assert!(!on.stdout.is_empty(), "{args:?}");
    }
    // The audit found the example's pods: the comparison is not of two empty answers.
    let audit = live(&["audit", "--fail-on-findings"], &k);
    assert_eq!(audit.code, 1, "{}", audit.stderr);
    assert!(
        audit
            .stdout
            .contains("workshop Deployment/os-signal: 2 pods lack all-icr-io"),
        "{}",
        audit.stdout
    );
    // validate names the ConfigMap it read.
    let v = live(&["validate"], &k);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(
        v.stdout,
        "ConfigMap pull-secret-injector/pull-secret-injector: valid (1 credential)\n"
    );
}

#[test]
fn a_config_file_replaces_the_installed_config_map() {
    let l = Live::start();
    l.install_example(ICR);
    let dir = TempDir::new().unwrap();
    // The same credential, out of workshop's scope: only the file says so.
    let narrower = std::fs::read_to_string(examples().join(ICR).join("config.yaml"))
        .unwrap()
        .replace(
            "- default               #",
            "- workshop\n            - default               #",
        );
    assert!(narrower.contains("- workshop"));
    let config = write(&dir, "config.yaml", &narrower);
    let r = run(bin()
        .args(["check", "-n", "workshop", "us.icr.io/x/y:1", "--config"])
        .arg(&config)
        .arg("--kubeconfig")
        .arg(l.admin()));
    let installed = live(&["check", "-n", "workshop", "us.icr.io/x/y:1"], &l.admin());
    assert_eq!(installed.code, 0, "{}", installed.stderr);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        installed.stdout.contains("all-icr-io"),
        "{}",
        installed.stdout
    );
    assert!(
        r.stdout
            .contains("excluded by namespaces.exclude \"workshop\""),
        "the file was not used:\n{}",
        r.stdout
    );
}

#[test]
fn every_missing_permission_is_named_and_the_documented_cluster_role_is_enough() {
    let l = Live::start();
    l.install_example(ICR);
    let viewer = l.viewer();
    // Namespaces and ConfigMaps only: every secret, ServiceAccount and pod read is refused.
    l.fake
        .load_rbac(&format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: partial}}
rules:
- {{apiGroups: [""], resources: [namespaces, configmaps], verbs: [get, list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: partial}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: partial}}
subjects: [{{kind: ServiceAccount, namespace: {}, name: {}}}]
"#,
            VIEWER.0, VIEWER.1
        ))
        .unwrap();
    let r = live(&["audit"], &viewer);
    let message = error_message(&r);
    for needed in [
        "get secrets \"all-icr-io\" in namespace default: to read the source secret default/all-icr-io",
        "list secrets (cluster scope): to list the injector's copies (app.kubernetes.io/managed-by=pull-secret-injector) in every namespace",
        "list serviceaccounts (cluster scope): to list ServiceAccounts named default in every namespace",
        "list pods (cluster scope): to list pods in every namespace",
    ] {
        assert!(message.contains(needed), "{needed:?} not in:\n{message}");
    }
    assert!(
        message.starts_with(
            "error: the API server refused 5 reads (403 Forbidden); your credentials need:"
        ),
        "{message}"
    );
    assert!(message.contains("docs/cli.md"), "{message}");

    // The documented ClusterRole, bound to the same user, reads everything.
    let role = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/inspector-rbac.yaml"),
    )
    .unwrap();
    l.fake.load_rbac(&role).unwrap();
    l.fake
        .load_rbac(&format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: pull-secret-injector-inspector}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pull-secret-injector-inspector}}
subjects: [{{kind: ServiceAccount, namespace: {}, name: {}}}]
"#,
            VIEWER.0, VIEWER.1
        ))
        .unwrap();
    let as_viewer = live(&["audit"], &viewer);
    let as_admin = live(&["audit"], &l.admin());
    assert_eq!(as_viewer.code, 0, "{}", as_viewer.stderr);
    assert_eq!(as_viewer.stdout, as_admin.stdout);
    // Read-only: the tool made no write of any kind.
    let writes: Vec<_> = l
        .fake
        .requests()
        .into_iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[test]
fn a_missing_config_map_and_an_unreachable_server_are_explained() {
    let l = Live::start();
    let r = live(&["audit"], &l.admin());
    assert_eq!(
        error_message(&r),
        "error: ConfigMap pull-secret-injector/pull-secret-injector not found: is the injector installed in that namespace? (name another with --config-map NAMESPACE/NAME, or give a config file with --config)\n"
    );
    let r = live(&["audit", "--config-map", "nope"], &l.admin());
    assert_eq!(
        error_message(&r),
        "error: --config-map \"nope\": expected NAMESPACE/NAME\n"
    );
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("absent");
    let r = run(bin().args(["audit", "--kubeconfig"]).arg(&missing));
    let message = error_message(&r);
    assert!(
        message.starts_with(&format!(
            "error: cannot connect: --kubeconfig {}:",
            missing.display()
        )),
        "{message}"
    );
    // --cluster and a live cluster are one or the other.
    let r = run(bin()
        .args(["audit", "--config", "x", "--cluster", "y", "--kubeconfig"])
        .arg(l.admin()));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot be used with"), "{}", r.stderr);
}
