//! Would OpenShift's default `restricted-v2` SecurityContextConstraints admit this pod?
//!
//! The rules, from OpenShift's documentation, "Managing security context constraints"
//! (Authentication and authorization, OpenShift Container Platform 4.11 and later), and the
//! `restricted-v2` SCC it describes:
//!
//! - `allowPrivilegedContainer: false`; `allowHostNetwork`, `allowHostPID`, `allowHostIPC`,
//!   `allowHostPorts` and `allowHostDirVolumePlugin` false;
//! - `allowPrivilegeEscalation: false`, and Pod Security's restricted profile (which OpenShift
//!   also enforces or warns with) wants it written;
//! - `requiredDropCapabilities: [ALL]`, `allowedCapabilities: [NET_BIND_SERVICE]`;
//! - `runAsUser: MustRunAsRange`: a UID from the namespace's `openshift.io/sa.scc.uid-range`
//!   is assigned; a fixed `runAsUser` outside it (65532 always is) is refused, an absent one is
//!   fine. The range differs per namespace, so any fixed UID is treated as refused;
//! - `seLinuxContext: MustRunAs` (the namespace's level; a fixed `seLinuxOptions` is refused
//!   unless it happens to match, so none may be set), `fsGroup: MustRunAs` (likewise, from the
//!   namespace's range), `supplementalGroups: RunAsAny`;
//! - `seccompProfiles: [runtime/default]`: `RuntimeDefault` must be set;
//! - `volumes`: configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim,
//!   projected, secret;
//! - no `sysctls` (none are allowed).
//!
//! The SCC has no strategy for `runAsGroup`; the install leaves it unset all the same (checked
//! in `invariants`), so that no part of the pod's identity is fixed.

use serde_json::Value;

const ALLOWED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Every reason restricted-v2 would refuse the pod `spec`, empty when it would be admitted.
pub fn violations(spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[host] == true {
            out.push(format!("{host}: true"));
        }
    }
    let pod = &spec["securityContext"];
    if pod["runAsUser"].is_number() {
        out.push(format!(
            "pod runAsUser {} (MustRunAsRange assigns the UID)",
            pod["runAsUser"]
        ));
    }
    if pod["fsGroup"].is_number() {
        out.push(format!(
            "pod fsGroup {} (MustRunAs assigns it)",
            pod["fsGroup"]
        ));
    }
    if !pod["seLinuxOptions"].is_null() {
        out.push("pod seLinuxOptions (MustRunAs assigns them)".into());
    }
    if pod["sysctls"].as_array().is_some_and(|s| !s.is_empty()) {
        out.push("sysctls".into());
    }
    let pod_seccomp = pod["seccompProfile"]["type"].as_str();
    if pod_seccomp.is_some_and(|t| t != "RuntimeDefault") {
        out.push(format!("pod seccompProfile {pod_seccomp:?}"));
    }

    for volume in spec["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or("?");
        let types: Vec<&str> = volume
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .map(String::as_str)
            .filter(|k| *k != "name")
            .collect();
        for t in types {
            if !ALLOWED_VOLUMES.contains(&t) {
                out.push(format!("volume {name}: type {t} is not allowed"));
            }
        }
    }

    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|k| spec[k].as_array().cloned().unwrap_or_default());
    for c in containers {
        let name = c["name"].as_str().unwrap_or("?").to_string();
        let sc = &c["securityContext"];
        if sc["privileged"] == true {
            out.push(format!("container {name}: privileged"));
        }
        if sc["allowPrivilegeEscalation"] != false {
            out.push(format!(
                "container {name}: allowPrivilegeEscalation is not false"
            ));
        }
        let drop: Vec<&str> = sc["capabilities"]["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !drop.contains(&"ALL") {
            out.push(format!("container {name}: capabilities do not drop ALL"));
        }
        for add in sc["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if add != "NET_BIND_SERVICE" {
                out.push(format!("container {name}: adds capability {add}"));
            }
        }
        if sc["runAsUser"].is_number() {
            out.push(format!(
                "container {name}: runAsUser {} (MustRunAsRange assigns the UID)",
                sc["runAsUser"]
            ));
        }
        if !sc["seLinuxOptions"].is_null() {
            out.push(format!("container {name}: seLinuxOptions"));
        }
        match sc["seccompProfile"]["type"].as_str().or(pod_seccomp) {
            Some("RuntimeDefault") => {}
            other => out.push(format!(
                "container {name}: seccompProfile {other:?}, not RuntimeDefault"
            )),
        }
        for port in c["ports"].as_array().into_iter().flatten() {
            if port["hostPort"].as_i64().is_some_and(|p| p != 0) {
                out.push(format!("container {name}: hostPort {}", port["hostPort"]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::violations;
    use serde_json::json;

    fn admitted() -> serde_json::Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "injector",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}
                }
            }],
            "volumes": [{"name": "tls", "secret": {"secretName": "x"}}]
        })
    }

    #[test]
    fn a_locked_down_pod_is_admitted_and_net_bind_service_may_be_added() {
        assert_eq!(violations(&admitted()), Vec::<String>::new());
        let mut pod = admitted();
        pod["containers"][0]["securityContext"]["capabilities"]["add"] =
            json!(["NET_BIND_SERVICE"]);
        assert_eq!(violations(&pod), Vec::<String>::new());
    }

    type Mutation = fn(&mut serde_json::Value);

    #[test]
    fn each_rule_refuses_what_it_must() {
        let cases: [(&str, Mutation); 12] = [
            ("pod runAsUser 65532", |p| {
                p["securityContext"]["runAsUser"] = json!(65532)
            }),
            ("container injector: runAsUser 1000", |p| {
                p["containers"][0]["securityContext"]["runAsUser"] = json!(1000)
            }),
            ("pod fsGroup 65532", |p| {
                p["securityContext"]["fsGroup"] = json!(65532)
            }),
            ("hostNetwork", |p| p["hostNetwork"] = json!(true)),
            ("privileged", |p| {
                p["containers"][0]["securityContext"]["privileged"] = json!(true)
            }),
            ("allowPrivilegeEscalation", |p| {
                p["containers"][0]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("allowPrivilegeEscalation");
            }),
            ("adds capability SYS_ADMIN", |p| {
                p["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"])
            }),
            ("do not drop ALL", |p| {
                p["containers"][0]["securityContext"]["capabilities"]["drop"] = json!(["NET_RAW"])
            }),
            ("type hostPath", |p| {
                p["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}])
            }),
            ("seccompProfile", |p| {
                p["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"})
            }),
            ("seLinuxOptions", |p| {
                p["securityContext"]["seLinuxOptions"] = json!({"level": "s0:c1,c2"})
            }),
            ("hostPort", |p| {
                p["containers"][0]["ports"] = json!([{"containerPort": 8443, "hostPort": 8443}])
            }),
        ];
        for (expected, mutate) in cases {
            let mut pod = admitted();
            mutate(&mut pod);
            let found = violations(&pod);
            assert!(
                found.iter().any(|v| v.contains(expected)),
                "{expected:?} not among {found:?}"
            );
        }
    }
}
