//! The JSONPatch the webhook answers always applies to the object it was computed for: a Pod
//! (or ServiceAccount) object from the fuzzer, wrapped in a CREATE review, reviewed with the
//! docker-hub example's config, and the patch applied with json-patch as kube-apiserver does.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use pull_secret_injector::admission;
use pull_secret_injector_fuzz as support;
use serde_json::{Value, json};

fuzz_target!(|bytes: &[u8]| {
    let Ok(object) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let kind = match object.get("kind").and_then(Value::as_str) {
        Some("ServiceAccount") => "serviceaccounts",
        _ => "pods",
    };
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "fuzz",
            "kind": {"group": "", "version": "v1", "kind": if kind == "pods" { "Pod" } else { "ServiceAccount" }},
            "resource": {"group": "", "version": "v1", "resource": kind},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "fuzz"},
            "object": object,
        }
    });
    let body = serde_json::to_vec(&review).expect("json");
    let (catalog, state) = support::docker_hub();
    let Ok(reviewed) = admission::review(catalog, state, &body) else {
        return;
    };
    let answer: Value = serde_json::from_slice(&reviewed.body).expect("the answer is JSON");
    let Some(patch) = answer["response"]["patch"].as_str() else {
        return;
    };
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("the patch is base64");
    let patch: json_patch::Patch =
        serde_json::from_slice(&patch).expect("the patch is a JSONPatch");
    let mut target = review["request"]["object"].clone();
    json_patch::patch(&mut target, &patch).expect("the patch applies to its object");
});
