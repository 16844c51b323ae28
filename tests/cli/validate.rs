//! `validate`: every problem listed, sources checked against manifests.

use super::*;

#[test]
fn validate_lists_every_problem_with_its_credential_and_field() {
    let dir = TempDir::new().unwrap();
    let config = write(&dir, "config.yaml", BAD_CONFIG);
    let r = run(bin().arg("validate").arg("--config").arg(&config));
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("{}: invalid configuration", shown(&config))),
        "{}",
        r.stdout
    );
    assert_lists_bad_config_problems(&r.stdout);
}

#[test]
fn validate_reports_config_that_is_not_yaml_or_lacks_the_configmap_key() {
    let dir = TempDir::new().unwrap();
    let not_yaml = write(&dir, "broken.yaml", "credentials: [\n");
    let r = run(bin().arg("validate").arg("--config").arg(&not_yaml));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&shown(&not_yaml)), "{}", r.stdout);
    assert!(r.stdout.contains("not valid YAML"), "{}", r.stdout);

    let configmap = write(
        &dir,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: injector-cfg}\ndata: {other.yaml: x}\n",
    );
    let r = run(bin().arg("validate").arg("--config").arg(&configmap));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&shown(&configmap)), "{}", r.stdout);
    assert!(
        r.stdout.contains("injector-cfg") && r.stdout.contains("config.yaml"),
        "{}",
        r.stdout
    );

    let unknown = write(
        &dir,
        "unknown.yaml",
        "credentials:\n  - name: a\n    secrets: default/x\n    namespaces: {include: [\"*\"]}\n",
    );
    let r = run(bin().arg("validate").arg("--config").arg(&unknown));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("unknown field `secrets`"), "{}", r.stdout);
}

#[test]
fn validate_accepts_valid_examples_and_counts_credentials() {
    bin()
        .arg("validate")
        .arg("--config")
        .arg(hub_config())
        .assert()
        .code(0)
        .stdout(predicate::str::ends_with("valid (1 credential)\n"));
    let farm = examples().join("openshift-ci-build-farm");
    let r = run(bin()
        .arg("validate")
        .arg("--config")
        .arg(farm.join("config.yaml"))
        .arg("--cluster")
        .arg(farm.join("cluster")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "{}: valid (3 credentials)\n",
            shown(&farm.join("config.yaml"))
        )
    );
    assert_no_secret(&r, "fake-password");
}

#[test]
fn validate_with_cluster_warns_about_a_missing_source_secret() {
    // Namespaces only: the source secret registry-creds/dockerhub-pull is not there.
    let r = run(bin()
        .arg("validate")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(hub_cluster().join("namespaces.yaml")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("valid (1 credential)"), "{}", r.stdout);
    let warning = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning line:\n{}", r.stdout));
    assert!(
        warning.contains("dockerhub") && warning.contains("registry-creds/dockerhub-pull"),
        "{warning}"
    );
    assert!(warning.contains("not found"), "{warning}");

    // The full cluster has the secret: no warning.
    let r = run(bin()
        .arg("validate")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(hub_cluster()));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("warning"), "{}", r.stdout);
}

#[test]
fn broken_source_secret_content_is_warned_about_without_its_content() {
    let dir = TempDir::new().unwrap();
    let cluster = dir.path().join("cluster");
    std::fs::create_dir(&cluster).unwrap();
    std::fs::copy(
        hub_cluster().join("namespaces.yaml"),
        cluster.join("namespaces.yaml"),
    )
    .unwrap();
    for (content, cause) in [
        ("fake-password-5 is not json", "not valid JSON"),
        (
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"fake-password-5"}}}"#,
            "not valid base64",
        ),
        (
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":12345,"password":"fake-password-5"}}}"#,
            "not a string",
        ),
    ] {
        let secret = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: dockerhub-pull, namespace: registry-creds}}\n\
             type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
            STANDARD.encode(content)
        );
        std::fs::write(cluster.join("secrets.yaml"), secret).unwrap();

        let r = run(bin()
            .arg("validate")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(&cluster));
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let warning = r
            .stdout
            .lines()
            .find(|l| l.contains("warning:"))
            .unwrap_or_else(|| panic!("no warning for {content}:\n{}", r.stdout));
        assert!(
            warning.contains("registry-creds/dockerhub-pull") && warning.contains(cause),
            "{warning}"
        );
        assert_no_secret(&r, "fake-password-5");

        let r = run(bin()
            .arg("check")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(&cluster)
            .args(["--namespace", "shop", "nginx"]));
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.starts_with("nothing injected in namespace shop"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains(cause), "{}", r.stdout);
        assert_no_secret(&r, "fake-password-5");
    }
}

#[test]
fn validate_strict_fails_on_a_warning_that_plain_validate_passes() {
    // Namespaces only: the source secret is missing, a warning.
    let validate = |strict: bool| {
        run(bin()
            .arg("validate")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(hub_cluster().join("namespaces.yaml"))
            .args(strict.then_some("--strict")))
    };
    let lenient = validate(false);
    assert_eq!(lenient.code, 0, "{}{}", lenient.stdout, lenient.stderr);
    assert!(lenient.stdout.contains("  warning: "), "{}", lenient.stdout);
    let strict = validate(true);
    assert_eq!(strict.code, 1, "{}{}", strict.stdout, strict.stderr);
    assert!(strict.stdout.contains("  error: "), "{}", strict.stdout);
    assert!(
        strict.stdout.contains("registry-creds/dockerhub-pull"),
        "{}",
        strict.stdout
    );
    // No warning: --strict passes.
    let r = run(bin()
        .arg("validate")
        .arg("--strict")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(hub_cluster()));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
