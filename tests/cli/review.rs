//! `review`: malformed bodies are refused without echoing them; answers are the webhook's.

use super::*;

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
