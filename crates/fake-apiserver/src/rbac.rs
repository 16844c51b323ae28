//! RBAC as kube's authorizer applies it to ServiceAccount users: a RoleBinding grants only in its
//! namespace (whatever it refers to), a ClusterRoleBinding everywhere and at the cluster scope.
//! A rule applies to a request when its verbs, apiGroups, resources and (if any) resourceNames
//! all cover it.

use std::collections::HashMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use serde::de::DeserializeOwned;

/// Who made a request.
#[derive(Clone, Debug)]
pub(crate) struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn new(username: &str, groups: &[&str]) -> Self {
        UserInfo {
            username: username.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    pub fn service_account(namespace: &str, name: &str) -> Self {
        UserInfo::new(
            &format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
                "system:authenticated",
            ],
        )
    }

    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// An authorization question: `namespace` None is the cluster scope.
pub(crate) struct Attributes<'a> {
    pub verb: &'a str,
    /// "" for the core group.
    pub api_group: &'a str,
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

#[derive(Default)]
pub(crate) struct Rbac {
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_bindings: HashMap<String, ClusterRoleBinding>,
    bindings: HashMap<(String, String), RoleBinding>,
}

fn parse<T: DeserializeOwned>(doc: serde_yaml::Value) -> Result<T, String> {
    serde_yaml::from_value(doc).map_err(|e| e.to_string())
}

impl Rbac {
    /// Adds (or replaces by name) the RBAC objects of a multi-document YAML stream.
    pub fn load(&mut self, yaml: &str) -> Result<(), String> {
        use serde::Deserialize;
        for document in serde_yaml::Deserializer::from_str(yaml) {
            let doc = serde_yaml::Value::deserialize(document).map_err(|e| e.to_string())?;
            if doc.is_null() {
                continue;
            }
            let kind = doc
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_string();
            match kind.as_str() {
                "ClusterRole" => {
                    let role: ClusterRole = parse(doc)?;
                    let name = role.metadata.name.clone().unwrap_or_default();
                    self.cluster_roles
                        .insert(name, role.rules.unwrap_or_default());
                }
                "Role" => {
                    let role: Role = parse(doc)?;
                    let ns = role
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    let name = role.metadata.name.clone().unwrap_or_default();
                    self.roles
                        .insert((ns, name), role.rules.unwrap_or_default());
                }
                "ClusterRoleBinding" => {
                    let binding: ClusterRoleBinding = parse(doc)?;
                    let name = binding.metadata.name.clone().unwrap_or_default();
                    self.cluster_bindings.insert(name, binding);
                }
                "RoleBinding" => {
                    let binding: RoleBinding = parse(doc)?;
                    let ns = binding
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    let name = binding.metadata.name.clone().unwrap_or_default();
                    self.bindings.insert((ns, name), binding);
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn allows(&self, user: &UserInfo, attrs: &Attributes<'_>) -> bool {
        let cluster_wide = self.cluster_bindings.values().any(|b| {
            subjects_match(b.subjects.as_deref(), user, None)
                && b.role_ref.kind == "ClusterRole"
                && self
                    .cluster_roles
                    .get(&b.role_ref.name)
                    .is_some_and(|r| rules_allow(r, attrs))
        });
        if cluster_wide {
            return true;
        }
        let Some(ns) = attrs.namespace else {
            return false;
        };
        self.bindings.iter().any(|((bns, _), b)| {
            if bns != ns || !subjects_match(b.subjects.as_deref(), user, Some(bns)) {
                return false;
            }
            let rules = match b.role_ref.kind.as_str() {
                "ClusterRole" => self.cluster_roles.get(&b.role_ref.name),
                "Role" => self.roles.get(&(bns.clone(), b.role_ref.name.clone())),
                _ => None,
            };
            rules.is_some_and(|r| rules_allow(r, attrs))
        })
    }
}

fn subjects_match(
    subjects: Option<&[Subject]>,
    user: &UserInfo,
    binding_ns: Option<&String>,
) -> bool {
    subjects
        .unwrap_or_default()
        .iter()
        .any(|s| match s.kind.as_str() {
            "ServiceAccount" => {
                let ns = s
                    .namespace
                    .as_ref()
                    .or(binding_ns)
                    .map(String::as_str)
                    .unwrap_or("");
                user.username == format!("system:serviceaccount:{ns}:{}", s.name)
            }
            "User" => user.username == s.name,
            "Group" => user.groups.contains(&s.name),
            _ => false,
        })
}

fn rules_allow(rules: &[PolicyRule], attrs: &Attributes<'_>) -> bool {
    let has = |list: &Option<Vec<String>>, wanted: &str| {
        list.iter().flatten().any(|v| v == "*" || v == wanted)
    };
    rules.iter().any(|r| {
        r.verbs.iter().any(|v| v == "*" || v == attrs.verb)
            && has(&r.api_groups, attrs.api_group)
            && has(&r.resources, attrs.resource)
            && match r.resource_names.as_deref() {
                None | Some([]) => true,
                Some(names) => attrs.name.is_some_and(|n| names.iter().any(|x| x == n)),
            }
    })
}

/// kube's RBAC denial wording.
pub(crate) fn denial(user: &UserInfo, attrs: &Attributes<'_>) -> String {
    let scope = match attrs.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    format!(
        "User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        user.username, attrs.verb, attrs.resource, attrs.api_group
    )
}
