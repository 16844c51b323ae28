//! Cluster manifests that cannot be read, named by file, document and object.

use super::*;

#[test]
fn a_cluster_manifest_that_is_not_yaml_names_file_and_document() {
    let dir = TempDir::new().unwrap();
    // The first document is fine; the second is not YAML.
    let second = write(
        &dir,
        "second.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n: [\n",
    );
    let first = write(&dir, "first.yaml", "\t{{{ : not: [yaml");
    for (file, index) in [(&second, 2), (&first, 1)] {
        let r = run(bin()
            .arg("check")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(file)
            .args(["--namespace", "shop", "nginx"]));
        let message = error_message(&r);
        assert!(
            message.starts_with(&format!(
                "error: {}: document {index}: not valid YAML",
                shown(file)
            )),
            "{message}"
        );
    }

    // Found through a directory too, and reported by review and validate alike.
    let tree = TempDir::new().unwrap();
    let nested = tree.path().join("nested");
    std::fs::create_dir(&nested).unwrap();
    let bad = nested.join("bad.yml");
    std::fs::write(&bad, ": [\n").unwrap();
    let runs = [
        run(bin()
            .arg("review")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(tree.path())
            .arg(hub_review("pod-nginx.json"))),
        run(bin()
            .arg("validate")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(tree.path())),
    ];
    for r in runs {
        let message = error_message(&r);
        assert!(
            message.starts_with(&format!("error: {}: document 1: ", shown(&bad))),
            "{message}"
        );
    }
}

const NOT_BASE64_SECRET: &str = "apiVersion: v1
kind: Namespace
metadata: {name: registry-creds}
---
apiVersion: v1
kind: Secret
metadata: {name: leaky, namespace: registry-creds}
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: \"fake-password-1!!\"
";

#[test]
fn a_secret_whose_data_is_not_base64_names_file_document_kind_and_name_without_the_data() {
    let dir = TempDir::new().unwrap();
    let file = write(&dir, "secrets.yaml", NOT_BASE64_SECRET);
    let runs = [
        run(bin()
            .arg("check")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(&file)
            .args(["--namespace", "shop", "nginx"])),
        run(bin()
            .arg("validate")
            .arg("--config")
            .arg(hub_config())
            .arg("--cluster")
            .arg(&file)),
    ];
    for r in runs {
        let message = error_message(&r);
        assert!(
            message.starts_with(&format!(
                "error: {}: document 2 (Secret leaky): ",
                shown(&file)
            )),
            "{message}"
        );
        assert_no_secret(&r, "fake-password-1");
    }

    // A data value of the wrong type: named, not echoed.
    let file = write(
        &dir,
        "typed.yaml",
        "kind: Secret\nmetadata: {name: numeric, namespace: registry-creds}\ndata: {.dockerconfigjson: 987654321}\n",
    );
    let r = run(bin()
        .arg("check")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(&file)
        .args(["--namespace", "shop", "nginx"]));
    let message = error_message(&r);
    assert!(
        message.starts_with(&format!(
            "error: {}: document 1 (Secret numeric): ",
            shown(&file)
        )),
        "{message}"
    );
    assert_no_secret(&r, "987654321");
}

#[test]
fn a_secret_whose_data_is_not_base64_says_so_without_giving_away_characters() {
    let dir = TempDir::new().unwrap();
    let file = write(&dir, "secrets.yaml", NOT_BASE64_SECRET);
    let r = run(bin()
        .arg("check")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(&file)
        .args(["--namespace", "shop", "nginx"]));
    let message = error_message(&r);
    assert!(message.contains("base64"), "{message}");
    // '!' is byte 33: the offending character of the data must not be described either.
    assert!(!message.contains("symbol 33"), "{message}");
    assert_no_secret(&r, "fake-password-1");
}
