//! Objects that make pods, read from manifests or the API: a Pod, or any workload with a pod
//! template (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
//! CronJob), reduced to what the decision reads of the pods it makes. Pure: no I/O.

use std::collections::BTreeMap;

use serde_json::Value;

/// The kinds whose objects make pods, and where their pod template is.
const TEMPLATES: [(&str, &str); 7] = [
    ("Deployment", "/spec/template"),
    ("StatefulSet", "/spec/template"),
    ("DaemonSet", "/spec/template"),
    ("ReplicaSet", "/spec/template"),
    ("ReplicationController", "/spec/template"),
    ("Job", "/spec/template"),
    ("CronJob", "/spec/jobTemplate/spec/template"),
];

/// One object that makes pods, and what its pods would be created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `Pod`, `Deployment` ...
    pub kind: String,
    /// Its name (`generateName` for a pod that has no name yet).
    pub name: String,
    /// Its namespace, when the object says.
    pub namespace: Option<String>,
    /// Every image of the pod: init, regular and ephemeral containers, in that order.
    pub images: Vec<String>,
    /// The pod's own `imagePullSecrets`, in order.
    pub pull_secrets: Vec<String>,
    /// `serviceAccountName` (kube-apiserver defaults it to `default`).
    pub service_account: String,
    /// The pod's labels (the template's).
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations (the template's).
    pub annotations: BTreeMap<String, String>,
    /// The owner, for a pod made by a controller: `Deployment/api` (a ReplicaSet's owner is
    /// read from the pod-template-hash its name ends with).
    pub owner: Option<String>,
    /// Where it was read from (`file.yaml, document 2`).
    pub origin: String,
    /// A pod whose phase is `Succeeded` or `Failed`: done, it pulls nothing more.
    pub finished: bool,
}

/// Why an object cannot be read as a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadError {
    /// Where it was read from.
    pub origin: String,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name.is_empty() {
            write!(f, "{}: {}", self.origin, self.reason)
        } else {
            write!(
                f,
                "{}: {} {}: {}",
                self.origin, self.kind, self.name, self.reason
            )
        }
    }
}

impl std::error::Error for WorkloadError {}

/// Whether objects of `kind` make pods.
pub fn makes_pods(kind: &str) -> bool {
    kind == "Pod" || TEMPLATES.iter().any(|(k, _)| *k == kind)
}

/// The workloads of one object (a `List`'s items, recursively); other kinds give none.
pub fn from_value(value: &Value, origin: &str) -> Result<Vec<Workload>, WorkloadError> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "List" || (kind.ends_with("List") && value.get("items").is_some()) {
        let mut out = Vec::new();
        for item in value
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.extend(from_value(item, origin)?);
        }
        return Ok(out);
    }
    if !makes_pods(kind) {
        return Ok(Vec::new());
    }
    let meta = value.get("metadata");
    let text = |v: Option<&Value>, key: &str| {
        v.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let name = text(meta, "name")
        .or_else(|| text(meta, "generateName"))
        .unwrap_or_else(|| "(unnamed)".to_string());
    let error = |reason: &str| WorkloadError {
        origin: origin.to_string(),
        kind: kind.to_string(),
        name: name.clone(),
        reason: reason.to_string(),
    };
    let (pod_meta, spec) = if kind == "Pod" {
        (meta, value.get("spec"))
    } else {
        let path = TEMPLATES
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| *p)
            .unwrap_or("/spec/template");
        let Some(template) = value.pointer(path) else {
            return Err(error(&format!(
                "has no pod template at {}",
                path.trim_start_matches('/').replace('/', ".")
            )));
        };
        (template.get("metadata"), template.get("spec"))
    };
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        return Err(error("has no pod spec"));
    };
    let mut images = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, container) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            match container.get("image") {
                Some(Value::String(image)) => images.push(image.clone()),
                // A template may leave the image to a later patch; nothing to match then.
                None => {}
                Some(_) => return Err(error(&format!("{list}[{i}].image is not a string"))),
            }
        }
    }
    let pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    let service_account = spec
        .get("serviceAccountName")
        .or_else(|| spec.get("serviceAccount"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    let map = |key: &str| -> BTreeMap<String, String> {
        pod_meta
            .and_then(|m| m.get(key))
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let labels = map("labels");
    Ok(vec![Workload {
        kind: kind.to_string(),
        name,
        namespace: text(meta, "namespace"),
        images,
        pull_secrets,
        service_account,
        annotations: map("annotations"),
        owner: owner_of(meta, &labels),
        labels,
        origin: origin.to_string(),
        finished: kind == "Pod"
            && matches!(
                value.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            ),
    }])
}

/// The controller that owns an object, by its `ownerReferences`: a ReplicaSet made by a
/// Deployment is named `<deployment>-<pod-template-hash>`, so the Deployment is read from it
/// without asking the API for the ReplicaSet; a Job made by a CronJob is left a Job.
fn owner_of(meta: Option<&Value>, labels: &BTreeMap<String, String>) -> Option<String> {
    let owner = meta?
        .get("ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))?;
    let kind = owner.get("kind")?.as_str()?;
    let name = owner.get("name")?.as_str()?;
    if kind == "ReplicaSet"
        && let Some(hash) = labels.get("pod-template-hash")
        && let Some(deployment) = name.strip_suffix(&format!("-{hash}"))
    {
        return Some(format!("Deployment/{deployment}"));
    }
    Some(format!("{kind}/{name}"))
}

/// Every workload of a YAML (multi-document) or JSON text, with the other objects it holds.
pub fn from_text(text: &str, origin: &str) -> Result<(Vec<Workload>, Vec<Value>), WorkloadError> {
    use serde::Deserialize;
    let mut workloads = Vec::new();
    let mut others = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = format!("{origin}, document {}", i + 1);
        let value = serde_yaml::Value::deserialize(document).map_err(|e| WorkloadError {
            origin: at.clone(),
            kind: "document".to_string(),
            name: String::new(),
            reason: format!("not valid YAML or JSON: {e}"),
        })?;
        if value.is_null() {
            continue;
        }
        let json: Value = serde_json::to_value(&value).map_err(|e| WorkloadError {
            origin: at.clone(),
            kind: "document".to_string(),
            name: String::new(),
            reason: e.to_string(),
        })?;
        let found = from_value(&json, &at)?;
        if found.is_empty() {
            others.push(json);
        }
        workloads.extend(found);
    }
    Ok((workloads, others))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_spec() -> Value {
        json!({
            "serviceAccountName": "builder",
            "imagePullSecrets": [{"name": "mine"}],
            "initContainers": [{"name": "i", "image": "busybox:1"}],
            "containers": [{"name": "c", "image": "us.icr.io/team/app:1"}],
        })
    }

    #[test]
    fn every_kind_with_a_pod_template_is_read_where_its_template_is() {
        let template = json!({"metadata": {"labels": {"app": "a"}}, "spec": pod_spec()});
        let objects = [
            json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "team-a", "labels": {"app": "a"}}, "spec": pod_spec()}),
            json!({"kind": "Deployment", "metadata": {"name": "d", "namespace": "team-a"}, "spec": {"template": template}}),
            json!({"kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"template": template}}),
            json!({"kind": "DaemonSet", "metadata": {"name": "ds"}, "spec": {"template": template}}),
            json!({"kind": "ReplicaSet", "metadata": {"name": "rs"}, "spec": {"template": template}}),
            json!({"kind": "ReplicationController", "metadata": {"name": "rc"}, "spec": {"template": template}}),
            json!({"kind": "Job", "metadata": {"name": "j"}, "spec": {"template": template}}),
            json!({"kind": "CronJob", "metadata": {"name": "cj"}, "spec": {"jobTemplate": {"spec": {"template": template}}}}),
        ];
        for object in objects {
            let found = from_value(&object, "test").expect("reads");
            assert_eq!(found.len(), 1, "{object}");
            let w = &found[0];
            assert_eq!(w.kind, object["kind"].as_str().unwrap());
            assert_eq!(
                w.images,
                ["busybox:1", "us.icr.io/team/app:1"],
                "{}",
                w.kind
            );
            assert_eq!(w.pull_secrets, ["mine"]);
            assert_eq!(w.service_account, "builder");
            assert_eq!(w.labels.get("app").map(String::as_str), Some("a"));
        }
    }

    #[test]
    fn lists_are_unpacked_and_other_kinds_give_no_workload() {
        let list = json!({"kind": "List", "items": [
            {"kind": "Service", "metadata": {"name": "svc"}},
            {"kind": "DeploymentList", "items": [
                {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"image": "nginx"}]}}}}
            ]},
        ]});
        let found = from_value(&list, "test").expect("reads");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].service_account, "default");
        assert!(
            from_value(&json!({"kind": "ConfigMap"}), "t")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_workload_without_a_pod_template_or_with_a_bad_image_is_named_with_the_cause() {
        let e = from_value(
            &json!({"kind": "CronJob", "metadata": {"name": "nightly"}, "spec": {}}),
            "f.yaml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.yaml: CronJob nightly: has no pod template at spec.jobTemplate.spec.template"
        );
        let e = from_value(
            &json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"image": 5}]}}),
            "f.yaml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.yaml: Pod p: containers[0].image is not a string"
        );
    }

    #[test]
    fn a_pods_owner_is_its_deployment_through_the_replica_sets_name() {
        let pod = json!({"kind": "Pod", "metadata": {
            "name": "api-7d9c8b-x2x", "namespace": "team-a",
            "labels": {"pod-template-hash": "7d9c8b"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "api-7d9c8b", "controller": true}],
        }, "spec": {"containers": [{"image": "nginx"}]}});
        assert_eq!(
            from_value(&pod, "t").unwrap()[0].owner.as_deref(),
            Some("Deployment/api")
        );
        let job_pod = json!({"kind": "Pod", "metadata": {"name": "x",
            "ownerReferences": [{"kind": "Job", "name": "nightly-29001", "controller": true}]},
            "spec": {"containers": [{"image": "nginx"}]}});
        assert_eq!(
            from_value(&job_pod, "t").unwrap()[0].owner.as_deref(),
            Some("Job/nightly-29001")
        );
    }

    #[test]
    fn multi_document_text_keeps_workloads_and_the_other_objects() {
        let text = "kind: Namespace\nmetadata: {name: team-a}\n---\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{image: nginx}]}\n";
        let (workloads, others) = from_text(text, "app.yaml").unwrap();
        assert_eq!(workloads.len(), 1);
        assert_eq!(workloads[0].origin, "app.yaml, document 2");
        assert_eq!(others.len(), 1);
        let e = from_text("kind: [", "bad.yaml").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("bad.yaml, document 1: not valid YAML"),
            "{e}"
        );
    }
}
