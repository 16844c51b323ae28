//! The JSONPatch an admission answers with: it appends to `imagePullSecrets` (creating the
//! array when absent; a JSONPatch `add` to `/-` fails on a missing array) and records the
//! names in the injected annotation, cumulatively, since reinvocation can add more later.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::Value;

use super::PatchContext;
use crate::marks::INJECTED_ANNOTATION;
use crate::policy::SubjectKind;

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// The JSONPatch appending `names` to `imagePullSecrets` (creating the array when absent) and
/// recording them in the injected annotation (creating the annotations map when absent).
pub(super) fn injection_patch(ctx: &PatchContext, names: &[String]) -> Patch {
    let list: &[&str] = match ctx.kind {
        SubjectKind::Pod => &["spec", "imagePullSecrets"],
        SubjectKind::ServiceAccount => &["imagePullSecrets"],
    };
    let entry = |n: &String| serde_json::json!({ "name": n });
    let mut ops = Vec::with_capacity(names.len() + 1);
    if ctx.has_pull_secrets {
        for n in names {
            let mut path = PointerBuf::from_tokens(list.iter().copied());
            path.push_back("-");
            ops.push(add(path, entry(n)));
        }
    } else {
        ops.push(add(
            PointerBuf::from_tokens(list.iter().copied()),
            Value::Array(names.iter().map(entry).collect()),
        ));
    }
    // Reinvocation can add more names later: keep the record cumulative.
    let mut recorded: Vec<&str> = ctx
        .injected
        .as_deref()
        .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    for n in names {
        if !recorded.contains(&n.as_str()) {
            recorded.push(n);
        }
    }
    let value = Value::String(recorded.join(","));
    if !ctx.has_metadata {
        // An object without metadata (kube-apiserver always sends it; a hand-made review may
        // not): `add` into a missing parent fails, so the parent is added whole.
        ops.push(add(
            PointerBuf::from_tokens(["metadata"]),
            serde_json::json!({ "annotations": { INJECTED_ANNOTATION: value } }),
        ));
    } else if ctx.has_annotations {
        ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations", INJECTED_ANNOTATION]),
            value,
        ));
    } else {
        ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations"]),
            serde_json::json!({ INJECTED_ANNOTATION: value }),
        ));
    }
    Patch(ops)
}
