//! The verbs: create, update, patch, delete, get and list, with kube's admission order (namespace
//! lifecycle, built-in admission, webhooks, then defaulting of server fields and validation, then
//! storage) and its preconditions.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use super::admission;
use super::ctx::Ctx;
use super::meta::{ResourceInfo, meta_mut, meta_str, name_suffix, new_uid, now, partial};
use super::patch::{PatchKind, apply_patch, check_applied, parse_apply};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{Failure, FieldError, TERMINATING_CAUSE};
use super::store::{Store, key};
use super::validation::{
    check_type_meta, decode, default_on_decode, prepare_for_create, validate, validate_update,
};
use super::{Core, lock};

fn ns_key(info: &ResourceInfo, namespace: Option<&str>) -> String {
    if info.namespaced {
        namespace.unwrap_or("").to_string()
    } else {
        String::new()
    }
}

/// The NamespaceLifecycle admission plugin.
fn namespace_lifecycle(
    store: &Store,
    info: &ResourceInfo,
    namespace: &str,
    display_name: &str,
) -> Result<(), Failure> {
    if !info.namespaced {
        return Ok(());
    }
    let Some(ns) = store.get("namespaces", "", namespace) else {
        return Err(Failure::not_found("namespaces", namespace));
    };
    if ns
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some()
    {
        // NamespaceLifecycle (`pkg/admission/plugin/namespace/lifecycle/admission.go`) adds
        // the NamespaceTerminating cause, by which the service account controller, for one,
        // tells this refusal from others.
        let mut failure = Failure::forbidden(
            info.resource,
            display_name,
            &format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
        );
        if let Some(Value::Object(details)) = failure.details.as_mut() {
            details.insert(
                "causes".into(),
                json!([{
                    "reason": TERMINATING_CAUSE,
                    "message": format!("namespace {namespace} is being terminated"),
                    "field": "metadata.namespace",
                }]),
            );
        }
        return Err(failure);
    }
    Ok(())
}

pub(crate) async fn create(
    core: &Arc<Core>,
    ctx: &mut Ctx,
    info: &'static ResourceInfo,
    url_namespace: Option<&str>,
    mut obj: Value,
) -> Result<Value, Failure> {
    check_type_meta(info, &mut obj)?;
    let namespace = if info.namespaced {
        let body_ns = meta_str(&obj, "namespace").to_string();
        let ns = match url_namespace {
            Some(url_ns) if !body_ns.is_empty() && body_ns != url_ns => {
                return Err(Failure::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            Some(url_ns) => url_ns.to_string(),
            None => body_ns,
        };
        meta_mut(&mut obj).insert("namespace".into(), json!(ns));
        ns
    } else {
        meta_mut(&mut obj).remove("namespace");
        String::new()
    };
    decode(info, &obj)?;
    if !meta_str(&obj, "resourceVersion").is_empty() {
        return Err(Failure::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    default_on_decode(info, &mut obj);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "generation",
    ] {
        meta_mut(&mut obj).remove(field);
    }
    // admission.NewForbidden names a generateName object by its prefix.
    let display_name = match meta_str(&obj, "name") {
        "" => meta_str(&obj, "generateName").to_string(),
        name => name.to_string(),
    };
    namespace_lifecycle(&lock(&core.store), info, &namespace, &display_name)?;
    if info.kind == "Pod" {
        admission::service_account(core, &namespace, &mut obj, &display_name)?;
    }
    admission::run_webhooks(core, ctx, info, &namespace, &mut obj).await?;

    let generate_name = match meta_str(&obj, "name") {
        "" => meta_str(&obj, "generateName").to_string(),
        _ => String::new(),
    };
    if !generate_name.is_empty() {
        let name = format!("{generate_name}{}", next_suffix(core));
        meta_mut(&mut obj).insert("name".into(), json!(name));
    }
    // What the webhooks' patches left empty is gone once the object is encoded.
    super::schema::omit_empty(info.kind, &mut obj);
    validate(info, &obj)?;
    prepare_for_create(info, &mut obj);
    let meta = meta_mut(&mut obj);
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert("creationTimestamp".into(), json!(now()));
    let mut name = meta_str(&obj, "name").to_string();

    let mut store = lock(&core.store);
    // A generated name that collides is drawn again, up to 8 attempts in all, as
    // genericregistry.Store.createWithGenerateNameRetry does (apiserver
    // pkg/registry/generic/registry/store.go, maxNameGenerationCreateAttempts); only then
    // is it AlreadyExists.
    for _ in 1..MAX_GENERATE_NAME_ATTEMPTS {
        if generate_name.is_empty() || store.get(info.resource, &namespace, &name).is_none() {
            break;
        }
        name = format!("{generate_name}{}", next_suffix(core));
        meta_mut(&mut obj).insert("name".into(), json!(name));
    }
    if store.get(info.resource, &namespace, &name).is_some() {
        return Err(Failure::already_exists(&info.qualified_resource(), &name));
    }
    // The namespace may have gone while the webhooks ran.
    namespace_lifecycle(&store, info, &namespace, &name)?;
    if ctx.dry_run {
        return Ok(obj);
    }
    Ok(store.put(key(info.resource, &namespace, &name), obj))
}

/// A scripted suffix if the test left one, else a random one.
fn next_suffix(core: &Core) -> String {
    lock(&core.scripted_suffixes)
        .pop_front()
        .unwrap_or_else(name_suffix)
}

/// How many names a `generateName` create tries before it fails (kube's
/// `maxNameGenerationCreateAttempts`).
const MAX_GENERATE_NAME_ATTEMPTS: usize = 8;

/// The update path shared by PUT and PATCH; runs under the store lock so that the
/// resourceVersion check and the write are one step.
fn update_locked(
    store: &mut Store,
    ctx: &Ctx,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
    mut obj: Value,
) -> Result<Value, Failure> {
    check_type_meta(info, &mut obj)?;
    let body_name = meta_str(&obj, "name").to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(Failure::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_ns = meta_str(&obj, "namespace").to_string();
    if info.namespaced && !body_ns.is_empty() && body_ns != namespace {
        return Err(Failure::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    decode(info, &obj)?;
    let Some(old) = store.get(info.resource, namespace, name).cloned() else {
        return Err(Failure::not_found(&info.qualified_resource(), name));
    };
    let rv = meta_str(&obj, "resourceVersion");
    if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
        return Err(Failure::stale(&info.qualified_resource(), name));
    }
    default_on_decode(info, &mut obj);
    let meta = meta_mut(&mut obj);
    meta.insert("name".into(), json!(name));
    if info.namespaced {
        meta.insert("namespace".into(), json!(namespace));
    } else {
        meta.remove("namespace");
    }
    // Fields the server owns survive whatever the client sent.
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "generation",
        "resourceVersion",
    ] {
        match old.get("metadata").and_then(|m| m.get(field)) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    if info.kind == "Namespace" {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    // status is a subresource for these kinds: PUT on the object leaves it alone.
    if matches!(info.kind, "Pod" | "Namespace")
        && let Some(map) = obj.as_object_mut()
    {
        match old.get("status") {
            Some(s) => map.insert("status".into(), s.clone()),
            None => map.remove("status"),
        };
        if info.kind == "Namespace"
            && let Some(spec) = old.get("spec")
        {
            map.insert("spec".into(), spec.clone());
        }
    }
    validate_update(info, &old, &obj)?;
    if obj == old {
        // kube skips the write (no new resourceVersion, no event) when nothing changed.
        return Ok(old);
    }
    // The generation follows the spec: a Pod's spec, a webhook configuration's webhooks.
    let spec_field = match info.kind {
        "Pod" => Some("spec"),
        "MutatingWebhookConfiguration" => Some("webhooks"),
        _ => None,
    };
    if let Some(field) = spec_field
        && obj.get(field) != old.get(field)
    {
        let generation = meta_i64(&old, "generation").unwrap_or(1);
        meta_mut(&mut obj).insert("generation".into(), json!(generation + 1));
    }
    if ctx.dry_run {
        return Ok(obj);
    }
    Ok(store.put(key(info.resource, namespace, name), obj))
}

pub(crate) fn update(
    core: &Core,
    ctx: &Ctx,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    obj: Value,
) -> Result<Value, Failure> {
    let namespace = ns_key(info, namespace);
    let mut store = lock(&core.store);
    update_locked(&mut store, ctx, info, &namespace, name, obj)
}

pub(crate) async fn patch(
    core: &Arc<Core>,
    ctx: &mut Ctx,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    kind: PatchKind,
    body: &[u8],
) -> Result<Value, Failure> {
    let ns = ns_key(info, namespace);
    if kind == PatchKind::Apply {
        if ctx.field_manager.as_deref().unwrap_or("").is_empty() {
            return Err(Failure::invalid(
                "PatchOptions",
                "",
                &[FieldError::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            ));
        }
        let applied = parse_apply(body)?;
        check_applied(&applied, &info.api_version())?;
        let exists = lock(&core.store).get(info.resource, &ns, name).is_some();
        if !exists {
            // Apply creates what is missing, through the whole create path.
            let body_name = meta_str(&applied, "name");
            if !body_name.is_empty() && body_name != name {
                return Err(Failure::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            let mut obj = applied;
            meta_mut(&mut obj).insert("name".into(), json!(name));
            return create(core, ctx, info, namespace, obj).await;
        }
    }
    let mut store = lock(&core.store);
    let Some(current) = store.get(info.resource, &ns, name).cloned() else {
        return Err(Failure::not_found(&info.qualified_resource(), name));
    };
    let patched = apply_patch(kind, info.kind, &current, body)?;
    update_locked(&mut store, ctx, info, &ns, name, patched)
}

pub(crate) fn delete(
    core: &Arc<Core>,
    ctx: &Ctx,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    options: Option<&Value>,
) -> Result<Value, Failure> {
    let ns = ns_key(info, namespace);
    let mut store = lock(&core.store);
    let Some(current) = store.get(info.resource, &ns, name).cloned() else {
        return Err(Failure::not_found(&info.qualified_resource(), name));
    };
    let preconditions = options.and_then(|o| o.get("preconditions"));
    let wanted = |field: &str| {
        preconditions
            .and_then(|p| p.get(field))
            .and_then(Value::as_str)
            .map(String::from)
    };
    // UID first, then resourceVersion, in both places kube checks them.
    for (field, label, what) in [
        ("uid", "UID", "deleted and then recreated"),
        ("resourceVersion", "ResourceVersion", "modified"),
    ] {
        let Some(wanted) = wanted(field) else {
            continue;
        };
        let actual = meta_str(&current, field);
        if wanted == actual {
            continue;
        }
        return Err(if info.kind == "Namespace" {
            // The namespace registry's own Delete (pkg/registry/core/namespace/storage).
            Failure::conflict(
                "namespaces",
                name,
                &format!(
                    "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
                ),
            )
        } else {
            // `rest.BeforeDelete` (staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go)
            // names the resource by its kind.
            Failure::conflict(
                &info.qualified_kind(),
                name,
                &format!(
                    "the {label} in the precondition ({wanted}) does not match the {label} in record ({actual}). The object might have been {what}"
                ),
            )
        });
    }
    if info.kind == "Namespace" {
        // Namespaces finalise: they stay, Terminating, until their content is gone.
        if current
            .get("metadata")
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some()
        {
            return Err(Failure::conflict(
                "namespaces",
                name,
                "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
            ));
        }
        let mut obj = current;
        meta_mut(&mut obj).insert("deletionTimestamp".into(), json!(now()));
        obj["status"] = json!({"phase": "Terminating"});
        if ctx.dry_run {
            return Ok(obj);
        }
        if core
            .finish_namespaces
            .load(std::sync::atomic::Ordering::Relaxed)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let core = core.clone();
            let name = name.to_string();
            runtime.spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                core.finish_namespace(&name);
            });
        }
        return Ok(store.put(key(info.resource, &ns, name), obj));
    }
    if ctx.dry_run {
        return Ok(current);
    }
    Ok(store
        .remove(&key(info.resource, &ns, name))
        .unwrap_or(current))
}

/// Stores `obj` as given (created, or replacing the object of its name), with defaults and
/// the server's metadata but without validation or admission: what the direct registration of
/// a webhook configuration needs, since tests register some a real apiserver would refuse.
pub(crate) fn put_unchecked(
    core: &Core,
    info: &'static ResourceInfo,
    mut obj: Value,
) -> Result<Value, Failure> {
    check_type_meta(info, &mut obj)?;
    default_on_decode(info, &mut obj);
    let name = meta_str(&obj, "name").to_string();
    if name.is_empty() {
        return Err(Failure::invalid(
            &info.qualified_kind(),
            "",
            &[FieldError::required("metadata.name", "name is required")],
        ));
    }
    let namespace = if info.namespaced {
        meta_str(&obj, "namespace").to_string()
    } else {
        meta_mut(&mut obj).remove("namespace");
        String::new()
    };
    let mut store = lock(&core.store);
    let old = store.get(info.resource, &namespace, &name).cloned();
    let meta = meta_mut(&mut obj);
    meta.remove("resourceVersion");
    match &old {
        Some(old) => {
            for field in ["uid", "creationTimestamp", "generation"] {
                match old.get("metadata").and_then(|m| m.get(field)) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
        }
        None => {
            meta.insert("uid".into(), json!(new_uid()));
            meta.insert("creationTimestamp".into(), json!(now()));
            meta.insert("generation".into(), json!(1));
        }
    }
    if let Some(old) = &old {
        let mut unchanged = old.clone();
        meta_mut(&mut unchanged).remove("resourceVersion");
        if unchanged == obj {
            return Ok(old.clone());
        }
        if obj.get("webhooks") != old.get("webhooks") {
            let generation = meta_i64(old, "generation").unwrap_or(1);
            meta_mut(&mut obj).insert("generation".into(), json!(generation + 1));
        }
    }
    Ok(store.put(key(info.resource, &namespace, &name), obj))
}

fn meta_i64(obj: &Value, field: &str) -> Option<i64> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_i64)
}

pub(crate) fn get(
    core: &Core,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, Failure> {
    let ns = ns_key(info, namespace);
    lock(&core.store)
        .get(info.resource, &ns, name)
        .cloned()
        .ok_or_else(|| Failure::not_found(&info.qualified_resource(), name))
}

pub(crate) struct ListQuery {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub metadata_only: bool,
}

/// kube's continue token: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":KEY}`.
fn encode_continue(rv: u64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), Failure> {
    let bad = |why: &str| Failure::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad("not base64"))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad("not JSON"))?;
    let rv = v
        .get("rv")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("no rv"))?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no start"))?;
    Ok((rv, start.to_string()))
}

pub(crate) fn list(
    core: &Core,
    info: &ResourceInfo,
    namespace: Option<&str>,
    q: &ListQuery,
) -> Result<Value, Failure> {
    let store = lock(&core.store);
    let mut list_rv = store.rv;
    let mut start_after: Option<String> = None;
    if let Some(token) = q.continue_token.as_deref().filter(|t| !t.is_empty()) {
        let (rv, start) = decode_continue(token)?;
        if rv < store.floor {
            return Err(Failure::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        list_rv = rv;
        start_after = Some(start);
    } else if let Some(rv) = q
        .resource_version
        .as_deref()
        .filter(|rv| !rv.is_empty() && *rv != "0")
    {
        let wanted: u64 = rv.parse().map_err(|_| {
            Failure::invalid(
                "ListOptions",
                "",
                &[FieldError::invalid(
                    "resourceVersion",
                    json!(rv),
                    "must be a valid integer",
                )],
            )
        })?;
        if wanted > store.rv {
            return Err(Failure {
                details: Some(
                    json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
                ),
                retry_after: Some(1),
                ..Failure::new(
                    504,
                    "Timeout",
                    format!(
                        "Too large resource version: {wanted}, current: {}",
                        store.rv
                    ),
                )
            });
        }
        if q.resource_version_match.as_deref() == Some("Exact") && wanted < store.floor {
            return Err(Failure::expired(format!(
                "too old resource version: {wanted} ({})",
                store.floor
            )));
        }
    }
    let ns = namespace.filter(|_| info.namespaced);
    let mut items = Vec::new();
    let mut next_start = None;
    let mut remaining = 0usize;
    for ((resource, obj_ns, obj_name), obj) in store.objects.iter() {
        if resource != info.resource || ns.is_some_and(|n| n != obj_ns) {
            continue;
        }
        // NUL sorts before any name character, so comparing these strings orders them as the
        // (namespace, name) keys are ordered.
        let position = format!("{obj_ns}\u{0}{obj_name}");
        if start_after
            .as_deref()
            .is_some_and(|s| position.as_str() <= s)
        {
            continue;
        }
        if !q.labels.matches(&super::meta::labels(obj)) || !q.fields.matches(obj) {
            continue;
        }
        if q.limit.is_some_and(|l| l > 0 && items.len() >= l) {
            remaining += 1;
            continue;
        }
        if q.limit.is_some_and(|l| l > 0 && items.len() + 1 == l) {
            next_start = Some(position);
        }
        items.push(if q.metadata_only {
            partial(obj)
        } else {
            obj.clone()
        });
    }
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if remaining > 0
        && let Some(start) = next_start
    {
        metadata["continue"] = json!(encode_continue(list_rv, &start));
        metadata["remainingItemCount"] = json!(remaining);
    }
    Ok(if q.metadata_only {
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items})
    } else {
        json!({"kind": format!("{}List", info.kind), "apiVersion": info.api_version(), "metadata": metadata, "items": items})
    })
}
