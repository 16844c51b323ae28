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
