//! Decoding, defaulting and validation: the subset of kube's strategies (PrepareForCreate,
//! Validate, ValidateUpdate) that clients of these resources can observe.

use base64::Engine;
use serde_json::{Value, json};

use super::meta::{ResourceInfo, meta_mut, meta_str};
use super::status::{Failure, FieldError};

/// Fails like kube's decoder when the body is not a valid object of the kind.
pub(crate) fn check_typed(kind: &str, obj: &Value) -> Result<(), String> {
    use k8s_openapi::api::core::v1 as core;
    fn de<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<(), String> {
        T::deserialize(obj).map(|_| ()).map_err(|e| e.to_string())
    }
    match kind {
        "Namespace" => de::<core::Namespace>(obj),
        "Secret" => de::<core::Secret>(obj),
        "ServiceAccount" => de::<core::ServiceAccount>(obj),
        "ConfigMap" => de::<core::ConfigMap>(obj),
        "Pod" => de::<core::Pod>(obj),
        "Event" => de::<core::Event>(obj),
        "Lease" => de::<k8s_openapi::api::coordination::v1::Lease>(obj),
        "MutatingWebhookConfiguration" => {
            de::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>(obj)
        }
        other => Err(format!("no kind {other:?} is registered")),
    }
}

pub(crate) fn decode(info: &ResourceInfo, obj: &Value) -> Result<(), Failure> {
    if !obj.is_object() {
        return Err(Failure::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: the body is not a JSON object",
            info.kind, info.version, info.kind
        )));
    }
    check_typed(info.kind, obj).map_err(|e| {
        Failure::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            info.kind, info.version, info.kind
        ))
    })
}

/// Checks and fills `kind`/`apiVersion`, which a body may leave out.
pub(crate) fn check_type_meta(info: &ResourceInfo, obj: &mut Value) -> Result<(), Failure> {
    let Some(map) = obj.as_object_mut() else {
        return Err(Failure::bad_request(
            "the body of the request is not a JSON object",
        ));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or(info.kind);
    let expected = info.api_version();
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or(&expected);
    if api_version != expected {
        return Err(Failure::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expected})"
        )));
    }
    if kind != info.kind {
        return Err(Failure::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            info.kind
        )));
    }
    map.insert("kind".into(), json!(info.kind));
    map.insert("apiVersion".into(), json!(expected));
    Ok(())
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

fn name_errors(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let name = meta_str(obj, "name");
    if name.is_empty() {
        return vec![FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )];
    }
    // Namespaces become DNS labels in Service names, hence the stricter rule.
    let (ok, msg) = if info.resource == "namespaces" {
        (is_label(name), DNS1123_LABEL_MSG)
    } else {
        (is_subdomain(name), DNS1123_SUBDOMAIN_MSG)
    };
    if ok {
        vec![]
    } else {
        vec![FieldError::invalid("metadata.name", json!(name), msg)]
    }
}

fn secret_errors(obj: &Value) -> Vec<FieldError> {
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    let required_key = match ty {
        "kubernetes.io/dockerconfigjson" => ".dockerconfigjson",
        "kubernetes.io/dockercfg" => ".dockercfg",
        _ => return vec![],
    };
    let field = format!("data[{required_key}]");
    let Some(encoded) = obj
        .get("data")
        .and_then(|d| d.get(required_key))
        .and_then(Value::as_str)
    else {
        return vec![FieldError::required(&field, "")];
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(_) => vec![],
        Err(e) => vec![FieldError::invalid(
            &field,
            json!("<secret contents redacted>"),
            &e.to_string(),
        )],
    }
}

/// The part of `ValidateMutatingWebhookConfiguration` (v1) that a misconfiguration would trip.
fn webhook_errors(obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let hooks = obj.get("webhooks").and_then(Value::as_array);
    for (i, hook) in hooks.into_iter().flatten().enumerate() {
        let at = |field: &str| format!("webhooks[{i}].{field}");
        let name = hook.get("name").and_then(Value::as_str).unwrap_or("");
        if name.split('.').count() < 3 || !is_subdomain(name) {
            errors.push(FieldError::invalid(
                &at("name"),
                json!(name),
                "should be a domain with at least three segments separated by dots",
            ));
        }
        if !seen.insert(name) {
            errors.push(FieldError::duplicate(&at("name"), json!(name)));
        }
        let side_effects = hook.get("sideEffects").and_then(Value::as_str);
        if !matches!(side_effects, Some("None" | "NoneOnDryRun")) {
            errors.push(FieldError::not_supported(
                &at("sideEffects"),
                json!(side_effects.unwrap_or("")),
                &["None", "NoneOnDryRun"],
            ));
        }
        let policy = hook.get("failurePolicy").and_then(Value::as_str);
        if policy.is_some_and(|p| !matches!(p, "Fail" | "Ignore")) {
            errors.push(FieldError::not_supported(
                &at("failurePolicy"),
                json!(policy),
                &["Fail", "Ignore"],
            ));
        }
        let versions: Vec<&str> = hook
            .get("admissionReviewVersions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !versions.iter().any(|v| matches!(*v, "v1" | "v1beta1")) {
            errors.push(FieldError::required(
                &at("admissionReviewVersions"),
                "must specify one of v1, v1beta1",
            ));
        }
        let config = hook.get("clientConfig");
        let has = |f: &str| config.and_then(|c| c.get(f)).is_some_and(|v| !v.is_null());
        if has("url") == has("service") {
            errors.push(FieldError::required(
                &at("clientConfig"),
                "exactly one of url or service is required",
            ));
        }
        if let Some(t) = hook.get("timeoutSeconds").and_then(Value::as_i64)
            && !(1..=30).contains(&t)
        {
            errors.push(FieldError::invalid(
                &at("timeoutSeconds"),
                json!(t),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
    }
    errors
}

/// The create-time validation of each kind's strategy (`Validate`), as field errors.
fn errors_of(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errors = name_errors(info, obj);
    if info.kind == "Secret" {
        errors.extend(secret_errors(obj));
    }
    if info.kind == "MutatingWebhookConfiguration" {
        errors.extend(webhook_errors(obj));
    }
    if info.kind == "Lease" {
        errors.extend(lease_errors(obj));
    }
    errors
}

/// `ValidateLeaseSpec` (`pkg/apis/coordination/validation/validation.go`): the numbers a
/// leader elector writes.
fn lease_errors(obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = &obj["spec"];
    if let Some(d) = spec["leaseDurationSeconds"].as_i64()
        && d <= 0
    {
        errors.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            json!(d),
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec["leaseTransitions"].as_i64()
        && t < 0
    {
        errors.push(FieldError::invalid(
            "spec.leaseTransitions",
            json!(t),
            "must be greater than or equal to 0",
        ));
    }
    errors
}

fn invalid_unless_empty(
    info: &ResourceInfo,
    obj: &Value,
    errors: &[FieldError],
) -> Result<(), Failure> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::invalid(
            &info.qualified_kind(),
            meta_str(obj, "name"),
            errors,
        ))
    }
}

pub(crate) fn validate(info: &ResourceInfo, obj: &Value) -> Result<(), Failure> {
    invalid_unless_empty(info, obj, &errors_of(info, obj))
}

const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

/// A `data`-like map; absent, null and empty are the same (kube stores an empty map as none).
fn bag(obj: &Value, field: &str) -> Option<Value> {
    obj.get(field)
        .filter(|v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()))
        .cloned()
}

fn is_immutable(obj: &Value) -> bool {
    obj.get("immutable").and_then(Value::as_bool) == Some(true)
}

/// `ValidateSecretUpdate` and `ValidateConfigMapUpdate` (`pkg/apis/core/validation/validation.go`):
/// a Secret's `type` never changes; once `immutable: true`, `immutable` stays true and `data`
/// (and a ConfigMap's `binaryData`) stay as they are. The errors come in kube's order, then
/// the create-time validation of the new object.
pub(crate) fn validate_update(
    info: &ResourceInfo,
    old: &Value,
    new: &Value,
) -> Result<(), Failure> {
    let mut errors = Vec::new();
    let bags: &[&str] = match info.kind {
        "Secret" => &["data"],
        "ConfigMap" => &["data", "binaryData"],
        _ => &[],
    };
    if info.kind == "Secret" && old.get("type") != new.get("type") {
        let ty = new.get("type").cloned().unwrap_or(Value::Null);
        errors.push(FieldError::invalid("type", ty, "field is immutable"));
    }
    if !bags.is_empty() && is_immutable(old) {
        if !is_immutable(new) {
            errors.push(FieldError::forbidden("immutable", IMMUTABLE_WHEN_SET));
        }
        for field in bags {
            if bag(old, field) != bag(new, field) {
                errors.push(FieldError::forbidden(field, IMMUTABLE_WHEN_SET));
            }
        }
    }
    errors.extend(errors_of(info, new));
    invalid_unless_empty(info, new, &errors)
}

/// Defaults applied when a body is decoded, before admission sees it.
pub(crate) fn default_on_decode(info: &ResourceInfo, obj: &mut Value) {
    fold_and_default(info, obj);
    super::schema::omit_empty(info.kind, obj);
}

fn fold_and_default(info: &ResourceInfo, obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    if info.kind == "MutatingWebhookConfiguration" {
        default_webhooks(map);
    }
    if info.kind == "Secret" {
        map.entry("type").or_insert_with(|| json!("Opaque"));
        // stringData is write-only: `Convert_v1_Secret_To_core_Secret`
        // (pkg/apis/core/v1/conversion.go) writes each entry over `data` when the v1 object
        // is decoded (a create or update body, a patched object), and the internal Secret has
        // no stringData, so it is never stored, returned, watched or shown to webhooks.
        if let Some(Value::Object(string_data)) = map.remove("stringData")
            && !string_data.is_empty()
        {
            let data = map.entry("data").or_insert_with(|| json!({}));
            if let Some(data) = data.as_object_mut() {
                for (k, v) in string_data {
                    let text = v.as_str().unwrap_or_default().to_string();
                    data.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(text)),
                    );
                }
            }
        }
    }
}

/// `SetDefaults_MutatingWebhook` and `SetDefaults_Rule` (admissionregistration/v1).
fn default_webhooks(map: &mut serde_json::Map<String, Value>) {
    let hooks = map.get_mut("webhooks").and_then(Value::as_array_mut);
    for hook in hooks.into_iter().flatten() {
        let Some(hook) = hook.as_object_mut() else {
            continue;
        };
        for (field, value) in [
            ("failurePolicy", json!("Fail")),
            ("matchPolicy", json!("Equivalent")),
            ("namespaceSelector", json!({})),
            ("objectSelector", json!({})),
            ("timeoutSeconds", json!(10)),
            ("reinvocationPolicy", json!("Never")),
        ] {
            if hook.get(field).is_none_or(Value::is_null) {
                hook.insert(field.into(), value);
            }
        }
        let rules = hook.get_mut("rules").and_then(Value::as_array_mut);
        for rule in rules.into_iter().flatten() {
            if let Some(rule) = rule.as_object_mut()
                && rule.get("scope").is_none_or(Value::is_null)
            {
                rule.insert("scope".into(), json!("*"));
            }
        }
        let service = hook
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut);
        if let Some(service) = service
            && service.get("port").is_none_or(Value::is_null)
        {
            service.insert("port".into(), json!(443));
        }
    }
}

/// What the strategies' PrepareForCreate set, after admission.
pub(crate) fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    if info.kind == "Namespace" {
        let name = meta_str(obj, "name").to_string();
        let meta = meta_mut(obj);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        if let Some(map) = obj.as_object_mut() {
            map.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            map.insert("status".into(), json!({"phase": "Active"}));
        }
    }
    if info.kind == "MutatingWebhookConfiguration" {
        meta_mut(obj).insert("generation".into(), json!(1));
    }
    if info.kind == "Pod" {
        meta_mut(obj).insert("generation".into(), json!(1));
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({"phase": "Pending"}));
        }
    }
}
