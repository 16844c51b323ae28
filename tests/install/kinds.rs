//! Every object parses into its Kubernetes type, and loses nothing doing so: k8s-openapi's
//! types skip fields they do not know, so a misspelt field (`readOnlyRootFileSystem`) would
//! parse and be ignored by the API server too. Serializing the parsed object again must give
//! back exactly what was rendered. The CRDs without a Rust type here (cert-manager's, the
//! Prometheus Operator's) are checked by the fields the install uses.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The first place two JSON values differ, as a path.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                let sub = format!("{path}.{key}");
                match (x.get(key), y.get(key)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = first_difference(&sub, u, v) {
                            return Some(d);
                        }
                    }
                    (Some(u), None) => return Some(format!("{sub} ({u}) is not a field")),
                    (None, Some(_)) => return Some(format!("{sub} appears when serialized")),
                    (None, None) => {}
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(&format!("{path}[{i}]"), u, v)),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} becomes {b}")),
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value, strict: bool) -> Result<(), String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    if !strict {
        return Ok(());
    }
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match first_difference("", v, &back) {
        None => Ok(()),
        Some(d) => Err(d),
    }
}

fn require(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}

/// Checks one rendered object against its kind's type: it parses, and loses no field.
pub fn check(v: &Value) -> Result<(), String> {
    check_with(v, true)
}

/// Checks that a manifest file's document parses into its kind's type. Kustomize patches are
/// partial objects, which the API would complete from the base: they are not compared back.
pub fn parses(v: &Value) -> Result<(), String> {
    check_with(v, false)
}

fn check_with(v: &Value, strict: bool) -> Result<(), String> {
    let kind = v["kind"].as_str().unwrap_or("");
    match kind {
        "Namespace" => roundtrip::<Namespace>(v, strict),
        "ServiceAccount" => roundtrip::<ServiceAccount>(v, strict),
        "ClusterRole" => roundtrip::<ClusterRole>(v, strict),
        "ClusterRoleBinding" => roundtrip::<ClusterRoleBinding>(v, strict),
        "Role" => roundtrip::<Role>(v, strict),
        "RoleBinding" => roundtrip::<RoleBinding>(v, strict),
        "ConfigMap" => roundtrip::<ConfigMap>(v, strict),
        "Deployment" => roundtrip::<Deployment>(v, strict),
        "PodDisruptionBudget" => roundtrip::<PodDisruptionBudget>(v, strict),
        "Service" => roundtrip::<Service>(v, strict),
        "NetworkPolicy" => roundtrip::<NetworkPolicy>(v, strict),
        "MutatingWebhookConfiguration" => roundtrip::<MutatingWebhookConfiguration>(v, strict),
        "Issuer" => {
            require(v["apiVersion"] == "cert-manager.io/v1", "apiVersion")?;
            require(
                v["spec"]["selfSigned"].is_object() || v["spec"]["ca"]["secretName"].is_string(),
                "an Issuer is selfSigned or a CA",
            )
        }
        "Certificate" => {
            require(v["apiVersion"] == "cert-manager.io/v1", "apiVersion")?;
            require(v["spec"]["secretName"].is_string(), "spec.secretName")?;
            require(
                v["spec"]["issuerRef"]["name"].is_string(),
                "spec.issuerRef.name",
            )?;
            require(
                v["spec"]["dnsNames"].is_array() || v["spec"]["isCA"] == true,
                "dnsNames",
            )
        }
        "ServiceMonitor" => {
            require(v["apiVersion"] == "monitoring.coreos.com/v1", "apiVersion")?;
            require(
                v["spec"]["selector"]["matchLabels"].is_object(),
                "spec.selector",
            )?;
            require(
                v["spec"]["endpoints"][0]["port"].is_string(),
                "endpoints[].port",
            )
        }
        "PrometheusRule" => {
            require(v["apiVersion"] == "monitoring.coreos.com/v1", "apiVersion")?;
            require(
                v["spec"]["groups"][0]["rules"].is_array(),
                "spec.groups[].rules",
            )
        }
        other => Err(format!("unexpected kind {other:?}")),
    }
}
