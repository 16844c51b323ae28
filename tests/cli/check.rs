//! `check`: which secrets, and why.

use super::*;

#[test]
fn check_text_names_the_secret_the_credential_and_the_key() {
    let r = check_hub("shop", &["nginx:1.27"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let text = &r.stdout;
    assert!(
        text.starts_with("namespace shop: imagePullSecrets += dockerhub-pull\n"),
        "{text}"
    );
    assert!(text.contains("nginx:1.27 (registry docker.io)"), "{text}");
    assert!(
        text.contains(
            "dockerhub-pull from credential dockerhub (key \"https://index.docker.io/v1/\")"
        ),
        "{text}"
    );
    assert!(
        text.contains("copy creates shop/dockerhub-pull from registry-creds/dockerhub-pull"),
        "{text}"
    );
    assert!(!text.contains("warning"), "{text}");
    assert_no_secret(&r, "fake-password-1");
}

#[test]
fn check_text_says_when_no_credential_matches() {
    let r = check_hub("shop", &["registry-1.docker.io/acme/app"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("nothing injected in namespace shop\n"),
        "{}",
        r.stdout
    );
    // Why, credential by credential: kubelet never matches a Docker Hub key to
    // registry-1.docker.io, the host Docker's API lives on.
    assert!(
        r.stdout.contains(
            "    nothing injected for it:\n      dockerhub: no key it serves matches registry-1.docker.io/acme/app (registry registry-1.docker.io); it serves [\"https://index.docker.io/v1/\"]\n"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn check_in_kube_system_injects_nothing_and_says_why() {
    let r = check_hub("kube-system", &["nginx"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with(
            "nothing injected in namespace kube-system: namespace kube-system is a system namespace\n"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("imagePullSecrets +="), "{}", r.stdout);

    let r = check_hub("kube-system", &["--json", "nginx"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["namespace"], "kube-system");
    assert_eq!(report["imagePullSecrets"], json!([]));
}

#[test]
fn check_namespace_label_opt_out_says_why() {
    let r = check_hub(
        "shop",
        &[
            "--namespace-label",
            "pull-secret-injector/inject=false",
            "nginx",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("nothing injected in namespace shop: "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("pull-secret-injector/inject=false"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_namespace_label_without_equals_exits_2() {
    for bad in ["tier", "=prod"] {
        let r = check_hub("shop", &["--namespace-label", bad, "nginx"]);
        let message = error_message(&r);
        assert!(message.contains("--namespace-label"), "{message}");
        assert!(message.contains(&format!("{bad:?}")), "{message}");
        assert!(message.contains("expected key=value"), "{message}");
    }
}

#[test]
fn check_of_an_invalid_image_reference_warns_naming_it() {
    let r = check_hub("shop", &["Acme/App:1.0", "nginx"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("Acme/App:1.0 (not a valid image reference)"),
        "{}",
        r.stdout
    );
    let warning = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning:\n{}", r.stdout));
    assert!(warning.contains("\"Acme/App:1.0\""), "{warning}");
    assert!(warning.contains("lowercase"), "{warning}");
    // The valid image is still served.
    assert!(
        r.stdout.contains("imagePullSecrets += dockerhub-pull"),
        "{}",
        r.stdout
    );

    let r = check_hub("shop", &["--json", "Acme/App:1.0"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["images"][0]["image"], "Acme/App:1.0");
    assert_eq!(report["images"][0]["registry"], Value::Null);
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("\"Acme/App:1.0\""),
        "{report}"
    );
}

#[test]
fn missing_required_flags_are_usage_errors() {
    // No image.
    let r = run(bin()
        .arg("check")
        .arg("--config")
        .arg(hub_config())
        .args(["--namespace", "shop"]));
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("nothing to check: give image references, or manifests with -f"),
        "{}",
        r.stderr
    );
    // No --config.
    let r = run(bin().arg("validate"));
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--config"), "{}", r.stderr);
}
