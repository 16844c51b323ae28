//! How each list (and each atomic struct or map) of the served types patches, as the Go types
//! declare it: the `patchStrategy`/`patchMergeKey` struct tags drive strategic merge
//! (`k8s.io/apimachinery/pkg/util/strategicpatch`, through the versioned Go struct), and the
//! `+listType`/`+listMapKey`/`+structType`/`+mapType` markers drive server-side apply
//! (structured-merge-diff, through the OpenAPI schema generated from the same markers).
//!
//! The table was written from `k8s.io/api` v0.36.0 (`core/v1/types.go`,
//! `admissionregistration/v1/types.go`) and `k8s.io/apimachinery` v0.36.0
//! (`pkg/apis/meta/v1/types.go`, ObjectMeta), walking every field reachable from Namespace,
//! Secret, ServiceAccount, ConfigMap, Pod, Event, Lease and MutatingWebhookConfiguration. It lists only
//! what is not the default: a list without `patchStrategy` is replaced whole by a strategic
//! merge patch, and a list without `+listType` (or with `atomic`) is replaced whole by apply.
//! `status` is left out: the fake, like kube, keeps a Pod's and a Namespace's status across
//! writes to the main resource (status is a subresource), and no other served kind has lists
//! in its status.
//!
//! Paths name map keys from the object's root with list levels left out, so that
//! `spec.containers.env` is the `env` list of every container.

/// `+listType` of a list, for apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    /// Replaced whole (also what a list without the marker is).
    Atomic,
    /// Items merge by these keys (`+listMapKey`).
    Map(&'static [&'static str]),
    /// A set of primitives: union.
    Set,
}

/// How one list patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListSchema {
    /// `patchStrategy:"merge"`: Some(`patchMergeKey`), `Some("")` for a list of primitives
    /// (merged as a set); None: a strategic merge patch replaces the list.
    pub merge_key: Option<&'static str>,
    /// `+listType` and its keys.
    pub list_type: ListType,
    /// The items are `+structType=atomic` structs: apply replaces an item whole.
    pub atomic_items: bool,
}

impl ListSchema {
    const ATOMIC: ListSchema = ListSchema {
        merge_key: None,
        list_type: ListType::Atomic,
        atomic_items: false,
    };
}

const fn merged(key: &'static str, keys: &'static [&'static str]) -> ListSchema {
    ListSchema {
        merge_key: Some(key),
        list_type: ListType::Map(keys),
        atomic_items: false,
    }
}

const fn merged_atomic_items(key: &'static str, keys: &'static [&'static str]) -> ListSchema {
    ListSchema {
        atomic_items: true,
        ..merged(key, keys)
    }
}

const NAME: &[&str] = &["name"];

/// ObjectMeta's lists (`pkg/apis/meta/v1/types.go`), under every object's `metadata` and under a
/// Pod's ephemeral volume claim template. `ownerReferences`: `patchStrategy:"merge"
/// patchMergeKey:"uid"`, `+listType=map +listMapKey=uid`, and OwnerReference is
/// `+structType=atomic`. `finalizers`: `patchStrategy:"merge"`, `+listType=set`.
/// `managedFields` is `+listType=atomic` (the default).
fn object_meta_list(field: &str) -> Option<ListSchema> {
    match field {
        "ownerReferences" => Some(merged_atomic_items("uid", &["uid"])),
        "finalizers" => Some(ListSchema {
            merge_key: Some(""),
            list_type: ListType::Set,
            atomic_items: false,
        }),
        _ => None,
    }
}

/// Lists of a Container (and EphemeralContainer, which inlines the same fields).
fn container_list(field: &str) -> Option<ListSchema> {
    match field {
        "ports" => Some(merged("containerPort", &["containerPort", "protocol"])),
        "env" => Some(merged("name", NAME)),
        "volumeMounts" => Some(merged("mountPath", &["mountPath"])),
        "volumeDevices" => Some(merged("devicePath", &["devicePath"])),
        // ResourceRequirements.claims: `+listType=map +listMapKey=name`, no patchStrategy.
        "resources.claims" => Some(ListSchema {
            merge_key: None,
            list_type: ListType::Map(NAME),
            atomic_items: false,
        }),
        _ => None,
    }
}

/// The schema of the list at `path` in an object of `kind`.
pub(crate) fn list_schema(kind: &str, path: &str) -> ListSchema {
    if let Some(field) = path.strip_prefix("metadata.") {
        return object_meta_list(field).unwrap_or(ListSchema::ATOMIC);
    }
    let found = match kind {
        // ServiceAccount.secrets: `patchStrategy:"merge" patchMergeKey:"name"`,
        // `+listType=map +listMapKey=name`, ObjectReference is `+structType=atomic`.
        // ServiceAccount.imagePullSecrets has no patchStrategy and is `+listType=atomic`: both
        // patch types replace it whole.
        "ServiceAccount" => match path {
            "secrets" => Some(merged_atomic_items("name", NAME)),
            _ => None,
        },
        "Pod" => pod_list(path),
        // MutatingWebhookConfiguration.webhooks and MutatingWebhook.matchConditions:
        // `patchStrategy:"merge" patchMergeKey:"name"`, `+listType=map +listMapKey=name`.
        "MutatingWebhookConfiguration" => match path {
            "webhooks" | "webhooks.matchConditions" => Some(merged("name", NAME)),
            _ => None,
        },
        // Namespace.spec.finalizers is atomic; Secret, ConfigMap and Event have no other lists.
        _ => None,
    };
    found.unwrap_or(ListSchema::ATOMIC)
}

fn pod_list(path: &str) -> Option<ListSchema> {
    let rest = path.strip_prefix("spec.")?;
    for containers in ["containers.", "initContainers.", "ephemeralContainers."] {
        if let Some(field) = rest.strip_prefix(containers) {
            return container_list(field);
        }
    }
    if let Some(field) = rest.strip_prefix("volumes.ephemeral.volumeClaimTemplate.metadata.") {
        return object_meta_list(field);
    }
    match rest {
        "containers" | "initContainers" | "ephemeralContainers" | "schedulingGates" => {
            Some(merged("name", NAME))
        }
        // `patchStrategy:"merge,retainKeys"`: the `$retainKeys` directive applies to items.
        "volumes" | "resourceClaims" => Some(merged("name", NAME)),
        // PodSpec.imagePullSecrets: `patchStrategy:"merge" patchMergeKey:"name"`,
        // `+listType=map`; LocalObjectReference is `+structType=atomic`.
        "imagePullSecrets" => Some(merged_atomic_items("name", NAME)),
        "hostAliases" => Some(merged("ip", &["ip"])),
        "topologySpreadConstraints" => {
            Some(merged("topologyKey", &["topologyKey", "whenUnsatisfiable"]))
        }
        "resources.claims" => Some(ListSchema {
            merge_key: None,
            list_type: ListType::Map(NAME),
            atomic_items: false,
        }),
        _ => None,
    }
}

/// Whether apply replaces the struct or map at `path` whole (`+structType=atomic`,
/// `+mapType=atomic`). Strategic merge ignores these markers and merges them field by field.
pub(crate) fn atomic_for_apply(kind: &str, path: &str) -> bool {
    match kind {
        // ObjectReference.
        "Event" => matches!(path, "involvedObject" | "related"),
        // metav1.LabelSelector.
        "MutatingWebhookConfiguration" => {
            matches!(
                path,
                "webhooks.namespaceSelector" | "webhooks.objectSelector"
            )
        }
        "Pod" => {
            let Some(rest) = path.strip_prefix("spec.") else {
                return false;
            };
            for containers in ["containers.", "initContainers.", "ephemeralContainers."] {
                if let Some(field) = rest.strip_prefix(containers) {
                    // EnvVarSource's selectors are all atomic structs.
                    return field.starts_with("env.valueFrom.") && field.matches('.').count() == 2;
                }
            }
            matches!(
                rest,
                "nodeSelector"
                    | "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                    | "topologySpreadConstraints.labelSelector"
                    | "volumes.configMap"
                    | "volumes.iscsi.secretRef"
                    | "volumes.rbd.secretRef"
                    | "volumes.flexVolume.secretRef"
                    | "volumes.cinder.secretRef"
                    | "volumes.cephfs.secretRef"
                    | "volumes.scaleIO.secretRef"
                    | "volumes.storageos.secretRef"
                    | "volumes.csi.nodePublishSecretRef"
                    | "volumes.ephemeral.volumeClaimTemplate.spec.selector"
                    | "volumes.ephemeral.volumeClaimTemplate.spec.dataSource"
            )
        }
        _ => false,
    }
}

/// Whether the object at `path` is a Go map (not a struct): `encoding/json`'s `omitempty`
/// leaves an empty map out, and storage keeps none (protobuf has no empty map), so an empty
/// one is never seen again. Every map of the served types is `omitempty`.
fn is_map_field(kind: &str, path: &str) -> bool {
    // ObjectMeta's maps, at the root and in templates; a LabelSelector's; a ResourceList.
    if ["metadata.labels", "metadata.annotations", ".matchLabels"]
        .iter()
        .chain(&["resources.limits", "resources.requests"])
        .any(|suffix| path.ends_with(suffix))
        || path == "matchLabels"
    {
        return true;
    }
    match kind {
        "Secret" => matches!(path, "data" | "stringData"),
        "ConfigMap" => matches!(path, "data" | "binaryData"),
        "Pod" => matches!(
            path,
            "spec.nodeSelector"
                | "spec.overhead"
                | "spec.volumes.flexVolume.options"
                | "spec.volumes.csi.volumeAttributes"
                | "spec.volumes.projected.sources.podCertificate.userAnnotations"
        ),
        _ => false,
    }
}

/// Whether the list at `path` is one of the few without `omitempty`, whose emptiness shows.
fn keeps_empty_list(kind: &str, path: &str) -> bool {
    match kind {
        "Pod" => matches!(
            path,
            "spec.containers"
                | "spec.volumes.rbd.monitors"
                | "spec.volumes.cephfs.monitors"
                | "spec.volumes.projected.sources"
                | "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        ),
        "MutatingWebhookConfiguration" => path == "webhooks.admissionReviewVersions",
        _ => false,
    }
}

/// Drops nulls, and the empty maps and lists that kube never returns: `omitempty` in every encoding of
/// the typed object (responses, watch events, AdmissionReviews, the document a JSON patch is
/// applied to). So an emptied `imagePullSecrets` or `labels` is absent afterwards, and a JSON
/// patch `add` under it needs the parent created first.
pub(crate) fn omit_empty(kind: &str, value: &mut serde_json::Value) {
    fn walk(kind: &str, path: &str, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::Object(map) => {
                map.retain(|k, v| {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(kind, &child, v);
                    match v {
                        // A null is the field's zero value to the decoder: left out.
                        Value::Null => false,
                        Value::Array(items) => !items.is_empty() || keeps_empty_list(kind, &child),
                        Value::Object(m) => !m.is_empty() || !is_map_field(kind, &child),
                        _ => true,
                    }
                });
            }
            Value::Array(items) => {
                for item in items {
                    walk(kind, path, item);
                }
            }
            _ => {}
        }
    }
    walk(kind, "", value);
}
