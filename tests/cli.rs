//! Runs the built binary on bad inputs of every kind (configs, cluster manifests, AdmissionReview
//! bodies, flags) and on a few good ones, and checks the exit code and that the message names
//! the file or object and the cause, and never carries secret data.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use predicates::prelude::*;
use serde_json::{Value, json};
use tempfile::TempDir;

/// What a finished command left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Both streams, for "never anywhere" assertions.
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("pull-secret-injector").unwrap();
    cmd.env_remove("POD_NAMESPACE");
    cmd
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().expect("terminated by a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The docker-hub setup: one credential `dockerhub`, source `registry-creds/dockerhub-pull`.
fn hub() -> PathBuf {
    examples().join("docker-hub")
}

fn hub_config() -> PathBuf {
    hub().join("config.yaml")
}

fn hub_cluster() -> PathBuf {
    hub().join("cluster")
}

fn hub_review(name: &str) -> PathBuf {
    hub().join("reviews").join(name)
}

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Asserts that an error run exited 2 with a single `error:` message and returns that message.
fn error_message(r: &Run) -> &str {
    assert_eq!(r.code, 2, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.is_empty(),
        "an error printed an answer: {}",
        r.stdout
    );
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    &r.stderr
}

fn assert_no_secret(r: &Run, secret: &str) {
    assert!(
        !r.all().contains(secret),
        "secret data {secret:?} leaked:\nstdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
}

/// A review from the docker-hub examples, as JSON.
fn hub_review_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(hub_review(name)).unwrap()).unwrap()
}

fn review_hub(body: &Value) -> Run {
    run(bin()
        .arg("review")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(hub_cluster())
        .arg("-")
        .write_stdin(serde_json::to_vec(body).unwrap()))
}

fn review_file(path: &Path) -> Run {
    run(bin()
        .arg("review")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(hub_cluster())
        .arg(path))
}

fn check_hub(namespace: &str, extra: &[&str]) -> Run {
    run(bin()
        .arg("check")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(hub_cluster())
        .args(["--namespace", namespace])
        .args(extra))
}

/// The answered AdmissionReview's `response`.
fn response_of(r: &Run) -> Value {
    assert_eq!(r.code, 0, "stderr:\n{}", r.stderr);
    let review: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    review["response"].clone()
}

// ---------------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------------

const BAD_CONFIG: &str = r#"
credentials:
  - name: hub
    secret: registry-creds/dockerhub-pull
    namespaces: {include: ["*"]}
  - name: hub
    secret: registry-creds/other
    namespaces: {include: ["*"]}
  - name: two-sources
    secret: registry-creds/x
    localSecretSelector: {matchLabels: {a: b}}
    namespaces: {include: ["*"]}
  - name: globby
    secret: registry-creds/x
    namespaces: {include: ["["]}
  - name: no-registries
    secret: registry-creds/x
    registries: []
    namespaces: {include: ["*"]}
"#;

/// Each problem of `BAD_CONFIG`: the credential, the field and a word of the cause.
const BAD_CONFIG_PROBLEMS: [(&str, &str, &str); 4] = [
    ("credentials[1] (hub)", "name", "duplicate name \"hub\""),
    ("credentials[2] (two-sources)", "secret", "several sources"),
    (
        "credentials[3] (globby)",
        "namespaces.include[0]",
        "invalid glob",
    ),
    ("credentials[4] (no-registries)", "registries", "is empty"),
];

fn assert_lists_bad_config_problems(text: &str) {
    assert!(text.contains("4 problems"), "{text}");
    for (credential, field, cause) in BAD_CONFIG_PROBLEMS {
        let line = text
            .lines()
            .find(|l| l.contains(credential))
            .unwrap_or_else(|| panic!("no problem names {credential}:\n{text}"));
        assert!(
            line.contains(&format!("{credential}: {field}: ")) && line.contains(cause),
            "{credential}: want field {field:?} and cause {cause:?}, got {line:?}"
        );
    }
}

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

// ---------------------------------------------------------------------------------------------
// invalid config, missing files
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// cluster manifests
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// review: malformed bodies
// ---------------------------------------------------------------------------------------------

#[test]
fn review_of_a_body_that_is_not_json_exits_2() {
    let dir = TempDir::new().unwrap();
    let file = write(&dir, "review.json", "this is not json");
    let r = review_file(&file);
    let message = error_message(&r);
    assert!(
        message.starts_with(&format!(
            "error: {}: malformed AdmissionReview: ",
            shown(&file)
        )),
        "{message}"
    );
    assert!(message.contains("not valid JSON"), "{message}");

    // From standard input, the origin is named as such.
    let r = run(bin()
        .arg("review")
        .arg("--config")
        .arg(hub_config())
        .write_stdin("{ not json"));
    let message = error_message(&r);
    assert!(
        message.starts_with("error: standard input: malformed AdmissionReview: "),
        "{message}"
    );
}

#[test]
fn review_of_json_that_is_not_an_admission_review_exits_2() {
    let dir = TempDir::new().unwrap();
    let no_request = write(
        &dir,
        "no-request.json",
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    );
    let r = review_file(&no_request);
    let message = error_message(&r);
    assert_eq!(
        message,
        format!(
            "error: {}: malformed AdmissionReview: it has no request\n",
            shown(&no_request)
        )
    );

    // JSON of other shapes.
    for (body, cause) in [
        ("[1, 2, 3]", "expected struct AdmissionReview"),
        ("{}", "missing field `apiVersion`"),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"x"}"#,
            "expected struct AdmissionRequest",
        ),
    ] {
        let r = run(bin()
            .arg("review")
            .arg("--config")
            .arg(hub_config())
            .write_stdin(body));
        let message = error_message(&r);
        assert!(
            message.starts_with("error: standard input: malformed AdmissionReview: "),
            "{message}"
        );
        assert!(message.contains(cause), "want {cause:?}: {message}");
    }

    // A Pod, not a review: refused (its apiVersion `v1` is what is reported).
    let pod = hub_review_json("pod-nginx.json")["request"]["object"].clone();
    let r = review_hub(&pod);
    let message = error_message(&r);
    assert!(message.starts_with("error: standard input: "), "{message}");
    assert!(message.contains("AdmissionReview"), "{message}");
}

#[test]
fn review_of_admission_k8s_io_v1beta1_exits_2() {
    let mut body = hub_review_json("pod-nginx.json");
    body["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let r = review_hub(&body);
    let message = error_message(&r);
    assert!(message.contains("admission.k8s.io/v1beta1"), "{message}");
    assert!(
        message.contains("only admission.k8s.io/v1 is served"),
        "{message}"
    );
}

#[test]
fn review_errors_never_echo_values_of_the_body() {
    let base = hub_review_json("pod-nginx.json");
    let mut cases = Vec::new();

    // A uid of the wrong type next to a secret-looking string.
    let mut body = base.clone();
    body["request"]["uid"] = json!(12345);
    body["request"]["name"] = json!("fake-password-2");
    cases.push((serde_json::to_string(&body).unwrap(), "expected a string"));

    // The secret-looking string itself in the wrong place.
    let mut body = base.clone();
    body["request"]["dryRun"] = json!("fake-password-2");
    cases.push((serde_json::to_string(&body).unwrap(), "expected a boolean"));
    let mut body = base.clone();
    body["request"]["uid"] = json!(["fake-password-2"]);
    cases.push((serde_json::to_string(&body).unwrap(), "expected a string"));

    // A syntax error right after it.
    cases.push((
        r#"{"apiVersion":"admission.k8s.io/v1","request":{"uid":"fake-password-2" oops}}"#
            .to_string(),
        "not valid JSON",
    ));

    for (body, cause) in cases {
        let r = run(bin()
            .arg("review")
            .arg("--config")
            .arg(hub_config())
            .arg("-")
            .write_stdin(body));
        let message = error_message(&r);
        assert!(
            message.starts_with("error: standard input: malformed AdmissionReview: "),
            "{message}"
        );
        assert!(message.contains(cause), "want {cause:?}: {message}");
        assert_no_secret(&r, "fake-password-2");
    }
}

#[test]
fn review_of_an_unknown_operation_is_allowed_unchanged_and_not_echoed() {
    let mut body = hub_review_json("pod-nginx.json");
    body["request"]["operation"] = json!("fake-password-2");
    let r = review_hub(&body);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let answer: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    assert_no_secret(&r, "fake-password-2");
}

// ---------------------------------------------------------------------------------------------
// review: answers
// ---------------------------------------------------------------------------------------------

#[test]
fn review_from_stdin_answers_a_pod_with_a_patch_that_applies() {
    let request = hub_review_json("pod-nginx.json");
    let r = run(bin()
        .arg("review")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(hub_cluster())
        .arg("-")
        .write_stdin(std::fs::read(hub_review("pod-nginx.json")).unwrap()));
    let response = response_of(&r);
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["uid"], request["request"]["uid"], "{response}");
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    assert!(response.get("warnings").is_none(), "{response}");

    let bytes = STANDARD
        .decode(response["patch"].as_str().expect("a patch"))
        .expect("the patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSONPatch");
    let mut object = request["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).expect("the patch applies");
    assert_eq!(
        object["spec"]["imagePullSecrets"],
        json!([{"name": "dockerhub-pull"}])
    );
    assert_eq!(
        object["metadata"]["annotations"]["pull-secret-injector/injected"],
        "dockerhub-pull"
    );
    // Everything else is untouched.
    let mut restored = object.clone();
    restored["spec"]
        .as_object_mut()
        .unwrap()
        .remove("imagePullSecrets");
    restored["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    assert_eq!(restored, request["request"]["object"]);

    // The copy the real request would make is said on stderr, without its content.
    assert!(
        r.stderr
            .contains("would create secret shop/dockerhub-pull from registry-creds/dockerhub-pull"),
        "{}",
        r.stderr
    );
    assert_no_secret(&r, "fake-password-1");
    assert_no_secret(&r, "YWNtZS1ib3Q6ZmFrZS1wYXNzd29yZC0x");
}

#[test]
fn review_of_an_update_is_allowed_without_a_patch() {
    let mut body = hub_review_json("pod-nginx.json");
    body["request"]["operation"] = json!("UPDATE");
    body["request"]["oldObject"] = body["request"]["object"].clone();
    let response = response_of(&review_hub(&body));
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["uid"], body["request"]["uid"], "{response}");
    assert!(response.get("patch").is_none(), "{response}");
    assert!(response.get("patchType").is_none(), "{response}");
}

#[test]
fn review_of_a_deployment_is_allowed_without_a_patch() {
    let mut body = hub_review_json("pod-nginx.json");
    let gvk = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let gvr = json!({"group": "apps", "version": "v1", "resource": "deployments"});
    body["request"]["kind"] = gvk.clone();
    body["request"]["requestKind"] = gvk;
    body["request"]["resource"] = gvr.clone();
    body["request"]["requestResource"] = gvr;
    body["request"]["object"] = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}
            }
        }
    });
    let r = review_hub(&body);
    let response = response_of(&r);
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["uid"], body["request"]["uid"], "{response}");
    assert!(response.get("patch").is_none(), "{response}");
    assert!(response.get("warnings").is_none(), "{response}");
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn review_of_a_pod_whose_containers_are_not_a_list_warns_without_a_patch() {
    let mut body = hub_review_json("pod-nginx.json");
    body["request"]["object"]["spec"]["containers"] = json!({"name": "nginx", "image": "nginx"});
    let response = response_of(&review_hub(&body));
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["uid"], body["request"]["uid"], "{response}");
    assert!(response.get("patch").is_none(), "{response}");
    let warnings = response["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{response}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains("spec.containers is not a list"),
        "{warning}"
    );
    assert!(warning.contains("shop/frontend-hs2rn2jj98-"), "{warning}");
}

#[test]
fn review_of_a_pod_with_an_invalid_image_warns_and_injects_for_the_rest() {
    let r = review_file(&hub_review("pod-bad-image.json"));
    let response = response_of(&r);
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response["patch"].is_string(), "{response}");
    let warnings = response["warnings"].as_array().expect("warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("\"Acme/App:1.0\"")),
        "{response}"
    );
}

// ---------------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------------

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
    assert!(
        r.stdout
            .contains("nothing injected for it: no usable credential in scope matches"),
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
    assert!(r.stderr.contains("IMAGES"), "{}", r.stderr);
    // No --config.
    let r = run(bin().arg("validate"));
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--config"), "{}", r.stderr);
}
