//! `check` says why each credential is not injected: one case per reason the decision core
//! gives, in text (the line a user reads) and JSON (the `reason` a script keys on), and each
//! workload kind read from `-f`.

use serde::Deserialize;

use super::*;

/// A dockerconfigjson Secret manifest; FAKE credentials.
fn docker_secret(namespace: &str, name: &str, hosts: &[&str], extra: &str) -> String {
    let auths: serde_json::Map<String, Value> = hosts
        .iter()
        .map(|h| (h.to_string(), json!({"auth": STANDARD.encode("u:fake-pw")})))
        .collect();
    let data = STANDARD.encode(json!({ "auths": auths }).to_string());
    format!(
        "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/dockerconfigjson\nmetadata:\n  name: {name}\n  namespace: {namespace}\n{extra}data:\n  .dockerconfigjson: {data}\n---\n"
    )
}

fn namespace(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n---\n"
    )
}

struct Case {
    /// The reason's JSON tag.
    reason: &'static str,
    config: &'static str,
    cluster: String,
    namespace: &'static str,
    image: &'static str,
    /// The credential's text line, after `  credentials:`.
    line: &'static str,
    extra_args: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let source = docker_secret("creds", "pull", &["quay.io"], "");
    vec![
        Case {
            reason: "notIncluded",
            config: "credentials:\n- name: q\n  secret: creds/pull\n  namespaces: {include: [\"team-*\"]}\n",
            cluster: source.clone() + &namespace("shop", ""),
            namespace: "shop",
            image: "quay.io/a/b",
            line: "q: not injected: namespace shop matches none of namespaces.include [\"team-*\"]",
            extra_args: &[],
        },
        Case {
            reason: "excluded",
            config: "credentials:\n- name: q\n  secret: creds/pull\n  namespaces: {include: [\"*\"], exclude: [\"sh*\"]}\n",
            cluster: source.clone() + &namespace("shop", ""),
            namespace: "shop",
            image: "quay.io/a/b",
            line: "q: not injected: namespace shop is excluded by namespaces.exclude \"sh*\"",
            extra_args: &[],
        },
        Case {
            reason: "selectorMismatch",
            config: "credentials:\n- name: q\n  secret: creds/pull\n  namespaces:\n    include: [\"*\"]\n    selector:\n      matchLabels: {env: prod}\n      matchExpressions: [{key: tier, operator: In, values: [web]}]\n",
            cluster: source.clone() + &namespace("shop", "env: dev, tier: web"),
            namespace: "shop",
            image: "quay.io/a/b",
            line: "q: not injected: namespace shop's labels do not match namespaces.selector: env=prod: the namespace has env=dev",
            extra_args: &[],
        },
        Case {
            reason: "namespaceLabelsUnknown",
            config: "credentials:\n- name: q\n  secret: creds/pull\n  namespaces:\n    include: [\"*\"]\n    selector: {matchLabels: {env: prod}}\n",
            cluster: source.clone(),
            namespace: "shop",
            image: "quay.io/a/b",
            line: "q: not injected: namespaces.selector (env=prod) needs the labels of namespace shop, which are not known: give its Namespace manifest, or --namespace-label",
            extra_args: &[],
        },
        Case {
            reason: "sourceMissing",
            config: "credentials:\n- name: q\n  secret: creds/absent\n  namespaces: {include: [\"*\"]}\n",
            cluster: source.clone() + &namespace("shop", ""),
            namespace: "shop",
            image: "quay.io/a/b",
            line: "q: not injected: credential q: source secret creds/absent not found",
            extra_args: &[],
        },
        Case {
            reason: "sourceInvalid",
            config: "credentials:\n- name: q\n  secret: creds/bad\n  namespaces: {include: [\"*\"]}\n",
            cluster: format!(
                "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/dockerconfigjson\nmetadata: {{name: bad, namespace: creds}}\ndata:\n  .dockerconfigjson: {}\n---\n",
                STANDARD.encode("{not json")
            ) + &namespace("shop", ""),
            namespace: "shop",
            image: "quay.io/a/b",
            line: "q: not injected: credential q: secret creds/bad: .dockerconfigjson: not valid JSON (line 1 column 2)",
            extra_args: &[],
        },
        Case {
            reason: "sourceEmpty",
            config: "credentials:\n- name: q\n  secret: creds/pull\n  namespaces: {include: [\"*\"]}\n",
            cluster: docker_secret("creds", "pull", &[], "") + &namespace("shop", ""),
            namespace: "shop",
            image: "quay.io/a/b",
            line: "q: not injected: credential q: secret creds/pull has no registry entry selected by its registries",
            extra_args: &[],
        },
        Case {
            reason: "noLocalSecret",
            config: "credentials:\n- name: l\n  localSecretSelector: {matchLabels: {pull: \"yes\"}}\n  namespaces: {include: [\"*\"]}\n",
            cluster: namespace("shop", ""),
            namespace: "shop",
            image: "quay.io/a/b",
            line: "l: not injected: no secret in namespace shop matches its localSecretSelector (pull=yes)",
            extra_args: &[],
        },
        Case {
            reason: "noKeyMatches",
            config: "credentials:\n- name: q\n  secret: creds/pull\n  registries: [\"quay.io\"]\n  namespaces: {include: [\"*\"]}\n",
            cluster: docker_secret("creds", "pull", &["quay.io", "us.icr.io"], "")
                + &namespace("shop", ""),
            namespace: "shop",
            image: "us.icr.io/a/b",
            line: "q: not injected: no key it serves matches us.icr.io/a/b (registry us.icr.io); it serves [\"quay.io\"]; its registries drop [\"us.icr.io\"], which would match",
            extra_args: &[],
        },
        Case {
            reason: "fallbackOnly",
            config: "credentials:\n- name: hub\n  secret: creds/hub\n  namespaces: {include: [\"*\"]}\n- name: mirror\n  secret: creds/mirror\n  namespaces: {include: [\"*\"]}\n",
            cluster: docker_secret("creds", "hub", &["https://index.docker.io/v1/"], "")
                + &docker_secret("creds", "mirror", &["docker.io"], "")
                + &namespace("shop", ""),
            namespace: "shop",
            image: "nginx",
            line: "hub: not injected: only its Docker Hub key matches nginx, as kubelet's fallback, and another secret matches it directly: kubelet uses that one",
            extra_args: &[],
        },
        Case {
            reason: "nameTaken",
            config: "credentials:\n- name: q\n  secret: creds/pull\n  namespaces: {include: [\"*\"]}\n",
            cluster: source.clone()
                + &namespace("shop", "")
                + "apiVersion: v1\nkind: Secret\nmetadata: {name: pull, namespace: shop}\ndata: {token: eA==}\n---\n",
            namespace: "shop",
            image: "quay.io/a/b",
            line: "q: not injected: secret shop/pull exists and is not managed by pull-secret-injector; left alone",
            extra_args: &[],
        },
    ]
}

fn run_case(c: &Case, format: &str) -> Run {
    let dir = TempDir::new().unwrap();
    let config = write(&dir, "config.yaml", c.config);
    let cluster = write(&dir, "cluster.yaml", &c.cluster);
    run(bin()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .arg("--cluster")
        .arg(&cluster)
        .args(["-n", c.namespace, "-o", format, c.image])
        .args(c.extra_args))
}

#[test]
fn every_reason_not_to_inject_is_said_in_text_and_json() {
    let mut wrong = Vec::new();
    let cases = cases();
    for c in &cases {
        let text = run_case(c, "text");
        if !text
            .stdout
            .contains(&format!("  credentials:\n    {}\n", c.line))
        {
            wrong.push(format!(
                "{}: expected\n    {}\nin:\n{}{}",
                c.reason, c.line, text.stdout, text.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for c in &cases {
        let text = run_case(c, "text");
        assert_eq!(text.code, 0, "{}: {}", c.reason, text.stderr);
        assert_no_secret(&text, "fake-pw");
        let json = run_case(c, "json");
        assert_eq!(json.code, 0, "{}: {}", c.reason, json.stderr);
        let report: Value = serde_json::from_str(&json.stdout).unwrap();
        let credential = c.line.split(':').next().unwrap();
        let entry = report["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["credential"] == credential)
            .unwrap_or_else(|| panic!("{}: no {credential} in {report}", c.reason));
        assert_eq!(entry["outcome"], "notInjected", "{}: {entry}", c.reason);
        assert_eq!(entry["why"]["reason"], c.reason, "{}: {entry}", c.reason);
        // The text's words are the JSON's message: one wording.
        let words = c.line.split_once(": ").unwrap().1;
        assert_eq!(entry["message"], words, "{}", c.reason);
        assert_no_secret(&json, "fake-pw");
    }
}

#[test]
fn colour_only_when_asked_for_and_never_with_no_color() {
    let args = ["check", "-n", "shop", "quay.io/a/b", "--config"];
    let c = &cases()[0];
    let dir = TempDir::new().unwrap();
    let config = write(&dir, "config.yaml", c.config);
    let cluster = write(&dir, "cluster.yaml", &c.cluster);
    let go = |env: &[(&str, &str)]| {
        let mut cmd = bin();
        cmd.args(args).arg(&config).arg("--cluster").arg(&cluster);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    };
    // Not a terminal: plain, as scripts and pipes want it.
    assert!(!go(&[]).stdout.contains('\x1b'));
    let forced = go(&[("CLICOLOR_FORCE", "1")]);
    assert!(forced.stdout.contains("\x1b[31m"), "{}", forced.stdout);
    assert!(
        !go(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")])
            .stdout
            .contains('\x1b')
    );
    // Machine formats never.
    let mut cmd = bin();
    cmd.args(args)
        .arg(&config)
        .arg("--cluster")
        .arg(&cluster)
        .args(["-o", "json"])
        .env("CLICOLOR_FORCE", "1");
    assert!(!run(&mut cmd).stdout.contains('\x1b'));
}

const POD_SPEC: &str =
    "serviceAccountName: builder\n      containers: [{name: c, image: quay.io/a/b}]";

#[test]
fn every_workload_kind_is_checked_through_its_pod_template() {
    let dir = TempDir::new().unwrap();
    let config = write(
        &dir,
        "config.yaml",
        "credentials:\n- name: q\n  secret: creds/pull\n  namespaces: {include: [\"*\"]}\n",
    );
    let cluster = write(
        &dir,
        "cluster.yaml",
        &(docker_secret("creds", "pull", &["quay.io"], "") + &namespace("shop", "")),
    );
    let template = format!("template:\n    spec:\n      {POD_SPEC}");
    let kinds = [
        ("apps/v1", "Deployment", format!("spec:\n  {template}")),
        ("apps/v1", "StatefulSet", format!("spec:\n  {template}")),
        ("apps/v1", "DaemonSet", format!("spec:\n  {template}")),
        ("apps/v1", "ReplicaSet", format!("spec:\n  {template}")),
        (
            "v1",
            "ReplicationController",
            format!("spec:\n  {template}"),
        ),
        ("batch/v1", "Job", format!("spec:\n  {template}")),
        (
            "batch/v1",
            "CronJob",
            format!(
                "spec:\n  schedule: \"* * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          {}",
                POD_SPEC.replace("\n      ", "\n          ")
            ),
        ),
        (
            "v1",
            "Pod",
            format!("spec:\n  {}", POD_SPEC.replace("\n      ", "\n  ")),
        ),
    ];
    let mut all = String::new();
    for (api, kind, body) in &kinds {
        let manifest = format!(
            "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: w, namespace: shop}}\n{body}\n"
        );
        let file = write(&dir, &format!("{kind}.yaml"), &manifest);
        let r = run(bin()
            .arg("check")
            .arg("--config")
            .arg(&config)
            .arg("--cluster")
            .arg(&cluster)
            .arg("-f")
            .arg(&file));
        assert_eq!(r.code, 0, "{kind}: {}", r.stderr);
        assert!(
            r.stdout.starts_with(&format!("{kind} shop/w (")),
            "{kind}:\n{}",
            r.stdout
        );
        assert!(
            r.stdout
                .contains("  namespace shop: imagePullSecrets += pull\n"),
            "{kind}:\n{}",
            r.stdout
        );
        all.push_str(&manifest);
        all.push_str("---\n");
    }
    // The same objects as one List in JSON, from standard input.
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&all)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let r = run(bin()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .arg("--cluster")
        .arg(&cluster)
        .args(["-f", "-", "-o", "json"])
        .write_stdin(list.to_string()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let reports: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        reports.as_array().map(Vec::len),
        Some(kinds.len()),
        "{reports}"
    );
}

#[test]
fn the_service_account_pull_secrets_count_when_the_pod_names_none() {
    let dir = TempDir::new().unwrap();
    let config = write(
        &dir,
        "config.yaml",
        "credentials:\n- name: q\n  secret: creds/pull\n  namespaces: {include: [\"*\"]}\n",
    );
    let cluster = write(
        &dir,
        "cluster.yaml",
        &(docker_secret("creds", "pull", &["quay.io"], "")
            + &namespace("shop", "")
            + "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: builder, namespace: shop}\nimagePullSecrets: [{name: pull}]\n"),
    );
    let pod = write(
        &dir,
        "pod.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: shop}}\nspec:\n  {}\n",
            POD_SPEC.replace("\n      ", "\n  ")
        ),
    );
    let r = run(bin()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .arg("--cluster")
        .arg(&cluster)
        .arg("-f")
        .arg(&pod));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // kube-apiserver's ServiceAccount admission gives the pod builder's secret: nothing to add.
    assert!(
        r.stdout.contains("  nothing injected in namespace shop\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("already references pull"), "{}", r.stdout);
}

#[test]
fn version_names_the_commit_and_completions_are_scripts_for_each_shell() {
    let r = run(bin().args(["version", "-o", "json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    for field in ["gitCommit", "buildDate"] {
        assert!(
            v[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {v}"
        );
    }
    let text = run(bin().arg("version"));
    assert!(
        text.stdout.starts_with(&format!(
            "pull-secret-injector {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        text.stdout
    );
    for (shell, marker) in [
        ("bash", "complete -F _pull__secret__injector"),
        ("zsh", "#compdef pull-secret-injector"),
        ("fish", "complete -c pull-secret-injector "),
    ] {
        let r = run(bin().args(["completions", shell]));
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(r.stdout.contains(marker), "{shell}: no {marker:?}");
        // The new subcommands and their flags are completed too.
        assert!(
            r.stdout.contains("audit") && r.stdout.contains("fail-on-findings"),
            "{shell}"
        );
    }
    let r = run(bin().args(["completions", "tcsh"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("invalid value 'tcsh'"), "{}", r.stderr);
}
