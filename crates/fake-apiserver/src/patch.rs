//! The four PATCH flavours, each as kube-apiserver applies it to the current (versioned) object.
//!
//! - JSON patch and merge patch: `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go`,
//!   `jsonPatcher.applyJSPatch` (evanphx/json-patch v4 there, the `json_patch` crate here).
//! - Strategic merge: `k8s.io/apimachinery/pkg/util/strategicpatch/patch.go` (`mergeMap`,
//!   `mergeSlice`, `normalizeElementOrder`, `mergeSortedSlice`), with the struct tags of
//!   [`super::schema`]. Directives: `$patch: replace|delete` (maps and list items),
//!   `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.
//! - Apply: the merge half of structured-merge-diff (`typed/merge.go`,
//!   `mergingWalker.visitListItems`), with the list markers of [`super::schema`]. There are no
//!   managedFields: fields a manager applied before and now leaves out are NOT removed, and no
//!   conflicts between managers are reported (see the module doc of the fake).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::schema::{ListType, atomic_for_apply, list_schema};
use super::status::{Failure, FieldError};
use super::validation::check_typed;

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

/// `maxJSONPatchOperations` in patch.go.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

fn parse_json(body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("error decoding patch: {e}")))
}

/// The applied configuration of an apply patch (YAML, of which JSON is a subset).
pub(crate) fn parse_apply(body: &[u8]) -> Result<Value, Failure> {
    let value: Value = serde_yaml::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("error decoding YAML: {e}")))?;
    if !value.is_object() {
        return Err(Failure::bad_request("error decoding YAML: not an object"));
    }
    Ok(value)
}

/// `structuredMergeManager.Apply`'s checks of the applied configuration itself.
pub(crate) fn check_applied(applied: &Value, api_version: &str) -> Result<(), Failure> {
    let given = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if given != api_version {
        return Err(Failure::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {given}, expected: {api_version}"
        )));
    }
    if applied
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|f| !f.is_null())
    {
        return Err(Failure::bad_request("metadata.managedFields must be nil"));
    }
    Ok(())
}

/// What kube answers when a JSON patch operation fails (a `test` that does not hold, a path
/// that is not there): `NewGenericServerResponse(422, ...)`, whose message is the generic one
/// for 422 — the json-patch error text itself is dropped — and whose details are empty.
fn json_patch_failed() -> Failure {
    Failure {
        details: Some(json!({})),
        ..Failure::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        )
    }
}

/// A patched object that no longer decodes as its kind: `NewInvalid(schema.GroupKind{}, "",
/// field.Invalid(field.NewPath("patch"), ...))` in `applyPatchToCurrentObject` and
/// `applyPatchToObject`.
fn undecodable(kind: &str, patched: &Value, patch_value: String) -> Result<(), Failure> {
    check_typed(kind, patched).map_err(|e| {
        Failure::invalid(
            "",
            "",
            &[FieldError::invalid("patch", json!(patch_value), &e)],
        )
    })
}

/// `target` with the patch applied; `kind` picks the schema of its lists.
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
            if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(Failure::new(
                    413,
                    "RequestEntityTooLarge",
                    format!(
                        "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                        ops.0.len()
                    ),
                ));
            }
            json_patch::patch(&mut doc, &ops).map_err(|_| json_patch_failed())?;
            undecodable(kind, &doc, doc.to_string())?;
        }
        PatchKind::Merge => {
            json_patch::merge(&mut doc, &parse_json(body)?);
            undecodable(kind, &doc, doc.to_string())?;
        }
        PatchKind::Strategic => {
            let p = serde_json::from_slice::<Value>(body)
                .map_err(|e| Failure::bad_request(e.to_string()))?;
            let Value::Object(p) = p else {
                return Err(Failure::bad_request(
                    "json: cannot unmarshal into Go value of type map[string]interface {}",
                ));
            };
            let original = match doc {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            let smp = Smp { kind };
            let merged = smp.merge_map(original, p.clone(), "")?;
            doc = strip_directives(Value::Object(merged));
            undecodable(kind, &doc, Value::Object(p).to_string())?;
        }
        PatchKind::Apply => {
            let applied = parse_apply(body)?;
            let ssa = Ssa { kind };
            doc = ssa
                .merge("", Some(&doc), Some(&applied))?
                .unwrap_or(json!({}));
        }
    }
    Ok(doc)
}

/// The result of a strategic merge as the typed decoder leaves it: `$` keys are unknown fields
/// (dropped) and nulls are zero values (omitted).
fn strip_directives(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k, strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_directives).collect()),
        other => other,
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// An error strategicpatch returns as a plain Go error, which the handler turns into a 500
/// (`responsewriters.ErrorToAPIStatus`: reason Unknown, i.e. none).
fn plain_error(message: String) -> Failure {
    Failure::new(500, "", message)
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// `mergepatch.ErrBadPatchFormatForRetainKeys`, answered 400 by `interpretStrategicMergePatchError`.
fn bad_retain_keys() -> Failure {
    Failure::bad_request("invalid patch format of retainKeys")
}

fn bad_set_element_order() -> Failure {
    Failure::bad_request("invalid patch format of setElementOrder list")
}

fn no_merge_key(item: &Value, key: &str) -> Failure {
    plain_error(format!(
        "map: {item} does not contain declared merge key: {key}"
    ))
}

/// `reflect.Kind` of a JSON value as strategicpatch sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ElemKind {
    Map,
    Slice,
    Other(u8),
}

fn elem_kind(v: &Value) -> ElemKind {
    match v {
        Value::Object(_) => ElemKind::Map,
        Value::Array(_) => ElemKind::Slice,
        Value::Null => ElemKind::Other(0),
        Value::Bool(_) => ElemKind::Other(1),
        Value::Number(n) if n.is_f64() => ElemKind::Other(2),
        Value::Number(_) => ElemKind::Other(3),
        Value::String(_) => ElemKind::Other(4),
    }
}

/// `sliceElementType`: every element of every slice is of one kind, and not a list.
fn slice_element_kind(slices: &[&[Value]]) -> Result<ElemKind, Failure> {
    let mut kind = None;
    for v in slices.iter().flat_map(|s| s.iter()) {
        let k = elem_kind(v);
        match kind {
            None if k == ElemKind::Slice => {
                // mergepatch.ErrNoListOfLists, answered 422.
                return Err(Failure::new(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                ));
            }
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(plain_error(
                    "list element types are not identical".to_string(),
                ));
            }
            Some(_) => {}
        }
    }
    kind.ok_or_else(|| plain_error("no elements in any of the given slices".to_string()))
}

/// The identity of a list item: the merge key's value, or the item itself for primitives.
fn item_id<'a>(item: &'a Value, key: &str, is_map: bool) -> Option<&'a Value> {
    if is_map { item.get(key) } else { Some(item) }
}

/// `index`: where `v` is in `list`, by merge key (maps) or by value.
fn index_of(list: &[Value], v: &Value, key: &str, is_map: bool) -> Option<usize> {
    let wanted = item_id(v, key, is_map);
    list.iter()
        .position(|x| item_id(x, key, is_map) == wanted && wanted.is_some())
}

/// `normalizeSliceOrder`: `items` sorted by their place in `order` (stable).
fn normalize_slice_order(
    mut items: Vec<Value>,
    order: &[Value],
    key: &str,
    is_map: bool,
) -> Result<Vec<Value>, Failure> {
    let mut to_delete = Vec::new();
    if is_map {
        for v in items.iter().chain(order) {
            if v.get(key).is_none() {
                return Err(no_merge_key(v, key));
            }
        }
        let (keep, delete): (Vec<Value>, Vec<Value>) = items
            .into_iter()
            .partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
        items = keep;
        to_delete = delete;
    }
    items.sort_by_key(|v| index_of(order, v, key, is_map).unwrap_or(usize::MAX));
    items.extend(to_delete);
    Ok(items)
}

/// `mergeSortedSlice`: server-only items (`left`) are inserted among the patch's items
/// (`right`), each before the first patch item that the live list had after it. A patch item
/// the live list did not have goes before any server-only item still waiting: this is why a
/// new item of a merged list comes FIRST when nothing else orders it.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    key: &str,
    is_map: bool,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let li = index_of(server_order, l, key, is_map);
                let ri = index_of(server_order, r, key, is_map);
                let left_first = matches!((li, ri), (Some(li), Some(ri)) if li < ri);
                if left_first {
                    out.extend(left.next());
                } else {
                    out.extend(right.next());
                }
            }
        }
    }
    out
}

/// `normalizeElementOrder`.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: &str,
    is_map: bool,
) -> Result<Vec<Value>, Failure> {
    let patch_items = normalize_slice_order(patch_items, patch_order, key, is_map)?;
    let server_only = normalize_slice_order(server_only, server_order, key, is_map)?;
    Ok(merge_sorted_slice(
        server_only,
        patch_items,
        server_order,
        key,
        is_map,
    ))
}

/// `partitionMapsByPresentInList` / `partitionPrimitivesByPresentInList`.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: &str,
    is_map: bool,
) -> Result<(Vec<Value>, Vec<Value>), Failure> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        if is_map && v.get(key).is_none() {
            return Err(no_merge_key(&v, key));
        }
        if index_of(by, &v, key, is_map).is_some() {
            in_patch.push(v);
        } else {
            server_only.push(v);
        }
    }
    Ok((in_patch, server_only))
}

/// `discardNullValuesFromPatch`.
fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// `removeDirectives`: None when the value itself is a directive (a map with `$patch`).
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                map.into_iter()
                    .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// The part after `prefix/` of a directive key (`extractKey`).
fn directive_target<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = key.split_once('/')?;
    (head == prefix).then_some(rest)
}

struct Smp<'a> {
    kind: &'a str,
}

impl Smp<'_> {
    /// `mergeMap` with the apiserver's options (`MergeParallelList`, `IgnoreUnmatchedNulls`).
    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        path: &str,
    ) -> Result<Map<String, Value>, Failure> {
        if let Some(directive) = patch.get(DIRECTIVE) {
            return match directive.as_str() {
                Some("replace") => {
                    patch.remove(DIRECTIVE);
                    Ok(patch)
                }
                Some("delete") => Ok(Map::new()),
                _ => Err(plain_error(format!(
                    "Unexpected patch type {directive}, patch: {}",
                    Value::Object(patch.clone())
                ))),
            };
        }
        self.apply_retain_keys(&mut original, &mut patch)?;
        self.merge_set_element_order(&mut original, &mut patch, path)?;

        for (k, patch_v) in patch {
            let (k, delete_list) = if k.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
                let target = directive_target(&k, DELETE_FROM_PRIMITIVE_LIST).ok_or_else(|| {
                    Failure::bad_request("invalid patch format of primitive list")
                })?;
                (target.to_string(), true)
            } else if k.starts_with('$') {
                // Any other `$` key is an unknown field to the decoder, which drops it.
                continue;
            } else {
                (k, false)
            };
            if patch_v.is_null() {
                original.remove(&k);
                continue;
            }
            let same_shape = original
                .get(&k)
                .is_some_and(|o| elem_kind(o) == elem_kind(&patch_v));
            if !same_shape {
                // Absent (or of another type): the patch's value, without its directives.
                if !delete_list {
                    let mut v = patch_v;
                    discard_nulls(&mut v);
                    match remove_directives(v) {
                        Some(v) => {
                            original.insert(k, v);
                        }
                        None => {
                            original.remove(&k);
                        }
                    }
                }
                continue;
            }
            let field_path = child(path, &k);
            let current = original.remove(&k).unwrap_or(Value::Null);
            let merged = match (current, patch_v) {
                (Value::Object(o), Value::Object(p)) => {
                    Some(Value::Object(self.merge_map(o, p, &field_path)?))
                }
                (Value::Array(o), Value::Array(p)) => Some(Value::Array(
                    self.merge_slice_handler(o, p, &field_path, delete_list)?,
                )),
                (_, p) => remove_directives(p),
            };
            if let Some(v) = merged {
                original.insert(k, v);
            }
        }
        Ok(original)
    }

    /// `applyRetainKeysDirective`.
    fn apply_retain_keys(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
    ) -> Result<(), Failure> {
        let Some(retain) = patch.remove(RETAIN_KEYS) else {
            return Ok(());
        };
        let Value::Array(retain) = retain else {
            return Err(bad_retain_keys());
        };
        let keep: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
        for (k, v) in patch.iter() {
            if v.is_null()
                || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                || k.starts_with(SET_ELEMENT_ORDER)
            {
                continue;
            }
            if !keep.contains(k.as_str()) {
                return Err(bad_retain_keys());
            }
        }
        original.retain(|k, _| keep.contains(k.as_str()));
        Ok(())
    }

    /// `mergePatchIntoOriginal`: every `$setElementOrder/<list>` with its list.
    fn merge_set_element_order(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), Failure> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for key in keys {
            let order = patch.remove(&key).unwrap_or(Value::Null);
            let Value::Array(order) = order else {
                return Err(plain_error(format!(
                    "expected a []interface {{}}, but got {order}"
                )));
            };
            let list_key = directive_target(&key, SET_ELEMENT_ORDER)
                .ok_or_else(bad_set_element_order)?
                .to_string();
            let as_list = |v: Option<&Value>| -> Result<Option<Vec<Value>>, Failure> {
                match v {
                    None => Ok(None),
                    Some(Value::Array(items)) => Ok(Some(items.clone())),
                    Some(other) => Err(plain_error(format!(
                        "expected a []interface {{}}, but got {other}"
                    ))),
                }
            };
            let original_list = as_list(original.get(&list_key))?;
            let patch_list = as_list(patch.get(&list_key))?;
            let list_path = child(path, &list_key);
            let merge_key = list_schema(self.kind, &list_path).merge_key.unwrap_or("");
            if let Some(p) = &patch_list {
                validate_patch_with_set_order_list(p, &order, merge_key)?;
            }
            let merged = match (&original_list, &patch_list) {
                (Some(o), None) => o.clone(),
                (None, Some(p)) => remove_directives(Value::Array(p.clone()))
                    .and_then(|v| match v {
                        Value::Array(items) => Some(items),
                        _ => None,
                    })
                    .unwrap_or_default(),
                (Some(o), Some(p)) => {
                    self.merge_slice_handler(o.clone(), p.clone(), &list_path, false)?
                }
                (None, None) => continue,
            };
            let empty = Vec::new();
            let kind = slice_element_kind(&[
                original_list.as_deref().unwrap_or(&empty),
                patch_list.as_deref().unwrap_or(&empty),
            ])?;
            let is_map = kind == ElemKind::Map;
            let key = if is_map { merge_key } else { "" };
            let (in_order, server_only) = partition(merged, &order, key, is_map)?;
            let both = normalize_element_order(
                in_order,
                server_only,
                &order,
                original_list.as_deref().unwrap_or(&empty),
                key,
                is_map,
            )?;
            original.insert(list_key.clone(), Value::Array(both));
            patch.remove(&list_key);
        }
        Ok(())
    }

    /// `mergeSliceHandler`: only lists with `patchStrategy:"merge"` (and deletion lists) merge;
    /// any other list is replaced by the patch's list as sent.
    fn merge_slice_handler(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        path: &str,
        delete_list: bool,
    ) -> Result<Vec<Value>, Failure> {
        let schema = list_schema(self.kind, path);
        match schema.merge_key {
            Some(key) => self.merge_slice(original, patch, key, path, delete_list),
            None if delete_list => self.merge_slice(original, patch, "", path, delete_list),
            None => Ok(patch),
        }
    }

    /// `mergeSlice`.
    fn merge_slice(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        key: &str,
        path: &str,
        delete_list: bool,
    ) -> Result<Vec<Value>, Failure> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let kind = slice_element_kind(&[&original, &patch])?;
        if kind != ElemKind::Map {
            if delete_list {
                // `deleteFromSlice`: the live order, less the listed values.
                return Ok(original
                    .into_iter()
                    .filter(|v| !patch.contains(v))
                    .collect());
            }
            // A set union; the order is settled below.
            let mut merged: Vec<Value> = Vec::new();
            for v in original.iter().chain(&patch) {
                if !merged.contains(v) {
                    merged.push(v.clone());
                }
            }
            let (in_patch, server_only) = partition(merged, &patch, "", false)?;
            return normalize_element_order(in_patch, server_only, &patch, &original, "", false);
        }
        if key.is_empty() {
            return Err(plain_error(format!(
                "cannot merge lists without merge key for {path}"
            )));
        }
        let (original, patch) = merge_slice_with_special_elements(original, patch, key)?;
        let mut merged = original.clone();
        for item in &patch {
            let Some(wanted) = item.get(key) else {
                return Err(no_merge_key(item, key));
            };
            match merged.iter().position(|o| o.get(key) == Some(wanted)) {
                Some(pos) => {
                    let current = match std::mem::take(&mut merged[pos]) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    let patch_item = match item {
                        Value::Object(m) => m.clone(),
                        _ => Map::new(),
                    };
                    merged[pos] = Value::Object(self.merge_map(current, patch_item, path)?);
                }
                // Appended as sent; the order is settled below.
                None => merged.push(item.clone()),
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, key, true)?;
        normalize_element_order(in_patch, server_only, &patch, &original, key, true)
    }
}

/// `mergeSliceWithSpecialElements`: `$patch: delete` items remove every live item of their
/// key, `$patch: replace` makes the rest of the patch list the whole list.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), Failure> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        match item.get(DIRECTIVE) {
            None => plain.push(item),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let Some(wanted) = item.get(key) else {
                        return Err(no_merge_key(&item, key));
                    };
                    original.retain(|o| o.get(key) != Some(wanted));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(plain_error(
                        "merging lists cannot yet be specified in the patch".to_string(),
                    ));
                }
                _ => {
                    return Err(plain_error(format!(
                        "Unexpected patch type {d}, patch: {item}"
                    )));
                }
            },
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

/// `validatePatchWithSetOrderList`: the patch list's items appear in `$setElementOrder`, in
/// the same relative order.
fn validate_patch_with_set_order_list(
    patch: &[Value],
    order: &[Value],
    key: &str,
) -> Result<(), Failure> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = if key.is_empty() {
        patch.iter().collect()
    } else {
        patch
            .iter()
            .filter(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
            .collect()
    };
    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < order.len() {
        let item = non_delete[pi];
        if item.get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        let equal = if key.is_empty() {
            item == &order[si]
        } else {
            let (Some(a), Some(b)) = (item.get(key), order[si].get(key)) else {
                return Err(no_merge_key(item, key));
            };
            a == b
        };
        if equal {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= order.len() {
        return Err(plain_error(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            Value::Array(patch.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

/// The merge of server-side apply: the applied configuration (rhs) over the live object (lhs).
struct Ssa<'a> {
    kind: &'a str,
}

/// A list item's identity in an associative list: its key fields' values, or (sets) itself.
type ItemKey = Vec<Value>;

impl Ssa<'_> {
    /// `mergingWalker.merge`; None: the field is absent from the result.
    fn merge(
        &self,
        path: &str,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
    ) -> Result<Option<Value>, Failure> {
        let leaf = || -> Option<Value> {
            match rhs {
                // An explicit null clears the field (the typed object gets its zero value).
                Some(Value::Null) => None,
                Some(r) => Some(r.clone()),
                None => lhs.cloned(),
            }
        };
        match rhs {
            Some(Value::Object(r)) if lhs.is_none_or(Value::is_object) => {
                let l = lhs.and_then(Value::as_object);
                let both_empty = l.is_none_or(Map::is_empty) && r.is_empty();
                if both_empty || atomic_for_apply(self.kind, path) {
                    return Ok(leaf());
                }
                let mut keys: Vec<&String> = l.into_iter().flat_map(|m| m.keys()).collect();
                keys.extend(r.keys());
                keys.sort();
                keys.dedup();
                let mut out = Map::new();
                for k in keys {
                    let merged = self.merge(
                        &child(path, k),
                        l.and_then(|m| m.get(k.as_str())),
                        r.get(k.as_str()),
                    )?;
                    if let Some(v) = merged {
                        out.insert(k.clone(), v);
                    }
                }
                Ok((!out.is_empty()).then_some(Value::Object(out)))
            }
            Some(Value::Array(r)) if lhs.is_none_or(Value::is_array) => {
                let l = lhs.and_then(Value::as_array);
                let schema = list_schema(self.kind, path);
                let both_empty = l.is_none_or(Vec::is_empty) && r.is_empty();
                if schema.list_type == ListType::Atomic || both_empty {
                    return Ok(leaf());
                }
                self.visit_list_items(path, l.map(Vec::as_slice).unwrap_or(&[]), r)
            }
            _ => Ok(leaf()),
        }
    }

    fn item_key(&self, path: &str, item: &Value) -> Result<ItemKey, Failure> {
        let schema = list_schema(self.kind, path);
        match schema.list_type {
            ListType::Map(keys) => keys
                .iter()
                .map(|k| match item.get(*k) {
                    Some(v) if !v.is_null() => Ok(v.clone()),
                    // The one key field with a schema default among the served types.
                    _ if *k == "protocol" => Ok(json!("TCP")),
                    _ => Err(plain_error(format!(
                        ".{path}: associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                    ))),
                })
                .collect(),
            _ => Ok(vec![item.clone()]),
        }
    }

    /// `visitListItems`: live items keep their places; applied items not yet live are
    /// inserted where the applied list has them relative to the shared ones (appended when
    /// nothing follows them).
    fn visit_list_items(
        &self,
        path: &str,
        lhs: &[Value],
        rhs: &[Value],
    ) -> Result<Option<Value>, Failure> {
        let schema = list_schema(self.kind, path);
        let mut rhs_keys = Vec::with_capacity(rhs.len());
        let mut observed_rhs: HashMap<String, &Value> = HashMap::new();
        for item in rhs {
            let key = self.item_key(path, item)?;
            let id = Value::Array(key.clone()).to_string();
            if observed_rhs.insert(id, item).is_some() {
                return Err(plain_error(format!(
                    "failed to create typed patch object: .{path}: duplicate entries for key {}",
                    Value::Array(key)
                )));
            }
            rhs_keys.push(key);
        }
        let mut lhs_keys = Vec::with_capacity(lhs.len());
        // Duplicated live items are not merged with the applied one (None).
        let mut observed_lhs: HashMap<String, Option<&Value>> = HashMap::new();
        for item in lhs {
            let key = self.item_key(path, item)?;
            let id = Value::Array(key.clone()).to_string();
            observed_lhs
                .entry(id)
                .and_modify(|v| *v = None)
                .or_insert(Some(item));
            lhs_keys.push(key);
        }
        let id = |k: &ItemKey| Value::Array(k.clone()).to_string();
        let mut shared: std::collections::VecDeque<&ItemKey> = rhs_keys
            .iter()
            .filter(|k| observed_lhs.contains_key(&id(k)))
            .collect();
        let mut next_shared = shared.pop_front();
        let mut merged_rhs: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let merge_item = |l: Option<&Value>, r: Option<&Value>| -> Result<Option<Value>, Failure> {
            if schema.atomic_items || !matches!(schema.list_type, ListType::Map(_)) {
                return Ok(r.or(l).cloned());
            }
            self.merge(path, l, r)
        };
        let (mut li, mut ri) = (0, 0);
        while li < lhs_keys.len() || ri < rhs_keys.len() {
            if li < lhs_keys.len() && ri < rhs_keys.len() {
                let pe = &lhs_keys[li];
                if *pe == rhs_keys[ri] {
                    let k = id(pe);
                    merged_rhs.insert(k.clone());
                    let l = observed_lhs.get(&k).copied().flatten();
                    out.extend(merge_item(l, observed_rhs.get(&k).copied())?);
                    li += 1;
                    ri += 1;
                    next_shared = shared.pop_front();
                    continue;
                }
                if observed_rhs.contains_key(&id(pe)) && next_shared.is_some_and(|n| n != pe) {
                    li += 1;
                    continue;
                }
            }
            if li < lhs_keys.len() {
                let k = id(&lhs_keys[li]);
                if !observed_rhs.contains_key(&k) {
                    out.extend(merge_item(Some(&lhs[li]), None)?);
                    li += 1;
                    continue;
                } else if merged_rhs.contains(&k) {
                    li += 1;
                }
            }
            if ri < rhs_keys.len() {
                let pe = &rhs_keys[ri];
                let k = id(pe);
                merged_rhs.insert(k.clone());
                let l = observed_lhs.get(&k).copied().flatten();
                out.extend(merge_item(l, observed_rhs.get(&k).copied())?);
                ri += 1;
                if next_shared == Some(pe) {
                    next_shared = shared.pop_front();
                }
            }
        }
        Ok((!out.is_empty()).then_some(Value::Array(out)))
    }
}
