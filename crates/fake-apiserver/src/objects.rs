//! Builders for the objects end-to-end tests create, as plain JSON so that tests can add fields.

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use serde_json::{Value, json};

fn labels_map(labels: &[(&str, &str)]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels_map(labels)}})
}

/// A `kubernetes.io/dockerconfigjson` Secret. `auths` is the `auths` map, or a whole config
/// (anything with an `auths` key is used as is).
pub fn dockerconfigjson_secret(namespace: &str, name: &str, auths: &Value) -> Value {
    let config = if auths.get("auths").is_some() {
        auths.clone()
    } else {
        json!({"auths": auths})
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(config.to_string());
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": encoded},
    })
}

/// An `auths` entry for a registry, with the `auth` field kubelet reads.
pub fn registry_auth(registry: &str, user: &str, password: &str) -> Value {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    json!({registry: {"username": user, "password": password, "auth": auth}})
}

pub fn opaque_secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                json!(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "type": "Opaque", "data": data})
}

pub fn service_account(namespace: &str, name: &str, image_pull_secrets: &[&str]) -> Value {
    let secrets: Vec<Value> = image_pull_secrets
        .iter()
        .map(|s| json!({"name": s}))
        .collect();
    let mut sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}});
    if !secrets.is_empty() {
        sa["imagePullSecrets"] = Value::Array(secrets);
    }
    sa
}

/// A pod with one container per image (named c0, c1, ...).
pub fn pod(namespace: &str, name: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": {"containers": containers}})
}

pub fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data})
}

/// A MutatingWebhookConfiguration with one webhook on pod and serviceaccount CREATE, like the
/// injector's own manifest: failurePolicy and namespaceSelector are for the test to adjust.
pub fn webhook_config(
    name: &str,
    url: &str,
    ca_pem: &str,
    failure_policy: &str,
) -> MutatingWebhookConfiguration {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": format!("{name}.example.com"),
            "clientConfig": {"url": url, "caBundle": ca},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "serviceaccounts"]}],
            "failurePolicy": failure_policy,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    }))
    .expect("valid MutatingWebhookConfiguration")
}
