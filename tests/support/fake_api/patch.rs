//! The four PATCH flavours. Strategic merge knows the merge keys of the lists these tests touch;
//! apply reuses it, since server-side apply merges associative lists by the same keys.

use serde_json::{Map, Value};

use super::status::Failure;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        match mime {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("error decoding patch: {e}")))
}

/// The applied configuration of an apply patch (YAML, of which JSON is a subset).
pub(crate) fn parse_apply(body: &[u8]) -> Result<Value, Failure> {
    let value: Value = serde_yaml::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("error decoding YAML: {e}")))?;
    if !value.is_object() {
        return Err(Failure::bad_request("apply patch must be an object"));
    }
    Ok(value)
}

/// `target` with the patch applied; `kind` picks the strategic merge keys.
pub(crate) fn apply_patch(
    patch: PatchKind,
    kind: &str,
    target: &Value,
    body: &[u8],
) -> Result<Value, Failure> {
    let mut doc = target.clone();
    match patch {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(parse_json(body)?)
                .map_err(|e| Failure::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| Failure::new(422, "Invalid", e.to_string()))?;
        }
        PatchKind::Merge => json_patch::merge(&mut doc, &parse_json(body)?),
        PatchKind::Strategic => {
            let p = parse_json(body)?;
            if !p.is_object() {
                return Err(Failure::bad_request(
                    "strategic merge patch must be an object",
                ));
            }
            strategic_merge(&mut doc, &p, &mut Vec::new(), kind);
        }
        PatchKind::Apply => strategic_merge(&mut doc, &parse_apply(body)?, &mut Vec::new(), kind),
    }
    Ok(doc)
}

/// The merge key of the list at `path` (map keys from the root, list indices left out).
fn merge_key(kind: &str, path: &[String]) -> Option<&'static str> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match (kind, path.as_slice()) {
        (_, ["metadata", "ownerReferences"]) => Some("uid"),
        ("ServiceAccount", ["imagePullSecrets"] | ["secrets"]) => Some("name"),
        ("MutatingWebhookConfiguration", ["webhooks"]) => Some("name"),
        (
            "Pod",
            [
                "spec",
                "imagePullSecrets"
                | "containers"
                | "initContainers"
                | "ephemeralContainers"
                | "volumes",
            ],
        ) => Some("name"),
        ("Pod", ["spec", "containers" | "initContainers", "env"]) => Some("name"),
        ("Pod", ["spec", "containers" | "initContainers", "ports"]) => Some("containerPort"),
        ("Pod", ["spec", "containers" | "initContainers", "volumeMounts"]) => Some("mountPath"),
        _ => None,
    }
}

/// A patch fragment without its `$` directives and nulls, for a place nothing exists yet.
fn clean(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(clean).collect()),
        other => other.clone(),
    }
}

fn strategic_merge(target: &mut Value, patch: &Value, path: &mut Vec<String>, kind: &str) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = clean(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (k, v) in patch_map {
        if k.starts_with('$') {
            continue;
        }
        path.push(k.clone());
        match v {
            Value::Null => {
                target_map.remove(k);
            }
            Value::Object(_) => {
                let slot = target_map.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(slot, v, path, kind);
            }
            Value::Array(items) => match (merge_key(kind, path), target_map.get_mut(k)) {
                (Some(key), Some(Value::Array(existing))) => {
                    merge_list(existing, items, key, path, kind);
                }
                _ => {
                    let kept: Vec<Value> = items
                        .iter()
                        .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                        .map(clean)
                        .collect();
                    target_map.insert(k.clone(), Value::Array(kept));
                }
            },
            other => {
                target_map.insert(k.clone(), other.clone());
            }
        }
        path.pop();
    }
}

/// Merges by key: existing items keep their place, new ones go to the end.
fn merge_list(
    existing: &mut Vec<Value>,
    items: &[Value],
    key: &str,
    path: &mut Vec<String>,
    kind: &str,
) {
    for item in items {
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        let Some(wanted) = item.get(key) else {
            if !delete {
                existing.push(clean(item));
            }
            continue;
        };
        match existing.iter().position(|e| e.get(key) == Some(wanted)) {
            Some(pos) if delete => {
                existing.remove(pos);
            }
            Some(pos) => strategic_merge(&mut existing[pos], item, path, kind),
            None if delete => {}
            None => existing.push(clean(item)),
        }
    }
}
