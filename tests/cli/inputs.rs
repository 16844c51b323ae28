//! Inputs that cannot be used: an invalid config, missing files.

use super::*;

#[test]
fn check_and_review_with_an_invalid_config_exit_2_naming_file_and_problems() {
    let dir = TempDir::new().unwrap();
    let config = write(&dir, "config.yaml", BAD_CONFIG);
    let check =
        run(bin()
            .arg("check")
            .arg("--config")
            .arg(&config)
            .args(["--namespace", "shop", "nginx"]));
    let review = run(bin()
        .arg("review")
        .arg("--config")
        .arg(&config)
        .arg(hub_review("pod-nginx.json")));
    for r in [check, review] {
        let message = error_message(&r);
        assert!(
            message.starts_with(&format!("error: {}: invalid configuration", shown(&config))),
            "{message}"
        );
        assert_lists_bad_config_problems(message);
    }
}

#[test]
fn a_missing_config_file_exits_2_naming_the_path() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("no-such-config.yaml");
    let runs = [
        run(bin().arg("check").arg("--config").arg(&missing).args([
            "--namespace",
            "shop",
            "nginx",
        ])),
        run(bin()
            .arg("review")
            .arg("--config")
            .arg(&missing)
            .arg(hub_review("pod-nginx.json"))),
        run(bin().arg("validate").arg("--config").arg(&missing)),
    ];
    for r in runs {
        let message = error_message(&r);
        assert!(
            message.starts_with(&format!("error: cannot read {}: ", shown(&missing))),
            "{message}"
        );
        assert!(message.contains("No such file"), "{message}");
    }
}

#[test]
fn a_missing_cluster_path_exits_2_naming_the_path() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("no-such-cluster");
    let runs = [
        run(bin()
            .arg("check")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(&missing)
            .args(["--namespace", "shop", "nginx"])),
        run(bin()
            .arg("review")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(hub_cluster())
            .arg("--cluster")
            .arg(&missing)
            .arg(hub_review("pod-nginx.json"))),
        run(bin()
            .arg("validate")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(&missing)),
    ];
    for r in runs {
        let message = error_message(&r);
        assert!(
            message.starts_with(&format!("error: cannot read {}: ", shown(&missing))),
            "{message}"
        );
    }
}

#[test]
fn a_missing_review_file_exits_2_naming_the_path() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("no-such-review.json");
    let r = review_file(&missing);
    let message = error_message(&r);
    assert!(
        message.starts_with(&format!("error: cannot read {}: ", shown(&missing))),
        "{message}"
    );
}

/// The docker-hub source secret's `.dockerconfigjson`, decoded (its password is fake).
fn hub_dockerconfigjson() -> String {
    let text = std::fs::read_to_string(hub_cluster().join("secrets.yaml")).unwrap();
    let encoded = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(".dockerconfigjson: "))
        .expect("the example secret's data");
    String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap()
}

/// A cluster directory with the docker-hub namespaces and this text as its secrets.
fn hub_cluster_with_secrets(dir: &TempDir, secrets: &str) -> PathBuf {
    let cluster = dir.path().join("cluster");
    std::fs::create_dir(&cluster).unwrap();
    std::fs::copy(
        hub_cluster().join("namespaces.yaml"),
        cluster.join("namespaces.yaml"),
    )
    .unwrap();
    std::fs::write(cluster.join("secrets.yaml"), secrets).unwrap();
    cluster
}

#[test]
fn a_source_secret_written_with_string_data_is_read_as_kube_apiserver_stores_it() {
    let dir = TempDir::new().unwrap();
    // stringData wins over data for the same key, as on a write to kube-apiserver: the data
    // value here is not even a pull secret.
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: dockerhub-pull, namespace: registry-creds}}\n\
         type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n\
         stringData:\n  .dockerconfigjson: '{}'\n",
        STANDARD.encode("not a pull secret"),
        hub_dockerconfigjson()
    );
    let cluster = hub_cluster_with_secrets(&dir, &secret);
    let r = run(bin()
        .arg("check")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(&cluster)
        .args(["-n", "shop", "nginx"]));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .starts_with("namespace shop: imagePullSecrets += dockerhub-pull\n"),
        "{}",
        r.stdout
    );
    assert_no_secret(&r, "fake-password-1");

    // Only stringData: the source is usable, validate has nothing to warn about.
    let only = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: dockerhub-pull, namespace: registry-creds}}\n\
         type: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{}'\n",
        hub_dockerconfigjson()
    );
    std::fs::write(cluster.join("secrets.yaml"), only).unwrap();
    let r = run(bin()
        .arg("validate")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(&cluster));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        format!("{}: valid (1 credential)\n", shown(&hub_config()))
    );
}

#[test]
fn check_refuses_a_namespace_that_is_not_a_namespace_name_with_kube_apiservers_words() {
    let long = "a".repeat(64);
    for bad in ["Bad", "-shop", "shop-", "sh_op", "", long.as_str()] {
        // `=` so that a value starting with '-' is not read as a flag.
        let r = run(bin()
            .arg("check")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(hub_cluster())
            .arg(format!("--namespace={bad}"))
            .arg("nginx"));
        let message = error_message(&r);
        assert_eq!(
            message,
            format!(
                "error: -n {bad:?}: a namespace name must consist of lower case alphanumeric characters or '-', start and end with an alphanumeric character, and be at most 63 characters (e.g. 'my-name')\n"
            )
        );
    }
    let r = check_hub(&"a".repeat(63), &["nginx"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// A credential scoped by a namespace label selector.
const SELECTOR_CONFIG: &str = r#"
credentials:
  - name: dockerhub
    secret: registry-creds/dockerhub-pull
    namespaces:
      include: ["*"]
      selector: {matchLabels: {team: shop}}
"#;

#[test]
fn check_says_when_a_selector_needs_labels_of_a_namespace_the_cluster_lacks() {
    let dir = TempDir::new().unwrap();
    let config = write(&dir, "config.yaml", SELECTOR_CONFIG);
    let check = |namespace: &str, extra: &[&str]| {
        run(bin()
            .arg("check")
            .arg("--config")
            .arg(&config)
            .arg("--cluster")
            .arg(hub_cluster())
            .args(["-n", namespace])
            .args(extra)
            .arg("nginx"))
    };
    let r = check("payments", &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "    dockerhub: not injected: namespaces.selector (team=shop) needs the labels of namespace payments, which are not known: give its Namespace manifest, or --namespace-label\n"
        ),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stderr,
        "warning: namespace payments is not among the --cluster manifests, so its labels are not known and the namespaces.selector of dockerhub cannot be evaluated: give them with --namespace-label KEY=VALUE, or add the Namespace manifest to --cluster\n"
    );
    // The same hint with -o json, whose standard output stays one JSON document.
    let r = check("payments", &["-o", "json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    serde_json::from_str::<Value>(&r.stdout).unwrap();
    assert!(r.stderr.contains("namespace payments"), "{}", r.stderr);

    // Labels given: decided, and nothing to warn about.
    let r = check("payments", &["--namespace-label", "team=shop"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .starts_with("namespace payments: imagePullSecrets += dockerhub-pull")
    );
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    // A namespace of the manifests: its labels are known (and do not match), no warning.
    let r = check("shop", &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("labels do not match"), "{}", r.stdout);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn review_of_empty_input_says_so() {
    let dir = TempDir::new().unwrap();
    let empty = write(&dir, "empty.json", "");
    let r = review_file(&empty);
    assert_eq!(
        error_message(&r),
        format!("error: {}: empty input\n", shown(&empty))
    );
    for stdin in ["", " \n"] {
        let r = run(bin()
            .arg("review")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(hub_cluster())
            .write_stdin(stdin));
        assert_eq!(error_message(&r), "error: standard input: empty input\n");
    }
}

/// Runs `validate` on a config text and returns its standard output (exit 1: invalid).
fn validate_text(dir: &TempDir, text: &str) -> (PathBuf, String) {
    let config = write(dir, "config.yaml", text);
    let r = run(bin().arg("validate").arg("--config").arg(&config));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    (config, r.stdout)
}

#[test]
fn shape_errors_of_several_credentials_are_all_listed_with_their_lines() {
    let dir = TempDir::new().unwrap();
    let (config, out) = validate_text(
        &dir,
        "credentials:\n  - name: a\n    secrets: default/x\n    namespaces: {include: [\"*\"]}\n\
         \x20 - name: b\n    secret: default/y\n    namespaces: {include: \"*\"}\n\
         \x20 - name: c\n    secret: default/z\n    namespaces: {include: [\"*\"]}\n\
         \x20 - name: Bad_Name\n    secret: default/w\n    namespaces: {include: [\"*\"]}\n",
    );
    assert_eq!(
        out,
        format!(
            "{}: invalid configuration (3 problems):\n\
             \x20 - credentials[0] (a): unknown field `secrets`, expected one of `name`, `secret`, `secretSelector`, `localSecretSelector`, `registries`, `namespaces`, `copyName`, `verify`, `token` at line 3 column 5\n\
             \x20 - credentials[1] (b): namespaces.include: invalid type: string \"*\", expected a sequence at line 7 column 27\n\
             \x20 - credentials[3] (Bad_Name): name: \"Bad_Name\" is not a DNS label: must consist of lower case letters, digits and '-'\n",
            shown(&config)
        )
    );
}

#[test]
fn errors_in_a_configmaps_config_yaml_give_lines_of_the_file() {
    let dir = TempDir::new().unwrap();
    // config.yaml's line 3 is the file's line 9, and its column 5 the file's column 9.
    let (config, out) = validate_text(
        &dir,
        "# The injector's config.\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: psi\ndata:\n  config.yaml: |\n    credentials:\n      - name: a\n        secrets: default/x\n",
    );
    assert!(
        out.contains("credentials[0] (a): unknown field `secrets`")
            && out.ends_with("at line 10 column 9\n"),
        "{out}"
    );
    // A syntax error inside the block, in check's error too.
    let config_text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: psi}\ndata:\n  config.yaml: |-\n    credentials: [\n";
    std::fs::write(&config, config_text).unwrap();
    let r = run(bin()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .args(["-n", "shop", "nginx"]));
    let message = error_message(&r);
    assert!(
        message.starts_with(&format!(
            "error: {}: invalid configuration (1 problem):\n  - (document): ",
            shown(&config)
        )),
        "{message}"
    );
    assert!(message.contains("at line 7 column 5"), "{message}");
}

#[test]
fn a_multi_document_config_file_is_read_when_one_configmap_holds_the_config() {
    let dir = TempDir::new().unwrap();
    let hub = std::fs::read_to_string(hub_config()).unwrap();
    // kustomize's output: the Namespace, the config's ConfigMap and another.
    let stream = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: pull-secret-injector}}\n---\n{hub}---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other}}\ndata: {{a: b}}\n---\n"
    );
    let config = write(&dir, "install.yaml", &stream);
    let r = run(bin().arg("validate").arg("--config").arg(&config));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        format!("{}: valid (1 credential)\n", shown(&config))
    );

    // Two ConfigMaps holding config.yaml, or none: which one is meant is not known.
    let two = write(&dir, "two.yaml", &format!("{hub}---\n{hub}"));
    let none = write(
        &dir,
        "none.yaml",
        "credentials: []\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
    );
    for (path, n) in [(&two, 2), (&none, 2)] {
        let want = format!(
            "{}: holds {n} YAML documents; give the config alone or the one ConfigMap that holds config.yaml",
            shown(path)
        );
        let r = run(bin().arg("validate").arg("--config").arg(path));
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        assert_eq!(r.stdout, format!("{want}\n"));
        let r = run(bin()
            .arg("check")
            .arg("--config")
            .arg(path)
            .args(["-n", "shop", "nginx"]));
        assert_eq!(error_message(&r), format!("error: {want}\n"));
    }
}
