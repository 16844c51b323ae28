//! Admission on CREATE: the built-in ServiceAccount plugin, then mutating webhooks called over
//! HTTPS exactly as kube-apiserver calls them (AdmissionReview v1, `?timeout=Ns`, the
//! certificates of caBundle as the only trust roots, failurePolicy, sideEffects on dry runs).
//! The webhooks are the MutatingWebhookConfigurations in the store, read afresh for every call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ctx::Ctx;
use super::meta::{ADMISSIONREGISTRATION, ResourceInfo, labels, meta_str, new_uid};
use super::selectors::k8s_selector_matches;
use super::status::Failure;
use super::validation::check_typed;
use super::{AdmissionCall, Core, lock};

/// The ServiceAccount admission plugin's part that clients observe: the default account, the
/// lookup, and inheriting the account's imagePullSecrets.
pub(crate) fn service_account(
    core: &Core,
    namespace: &str,
    pod: &mut Value,
    display_name: &str,
) -> Result<(), Failure> {
    let Some(map) = pod.as_object_mut() else {
        return Ok(());
    };
    let spec = map.entry("spec").or_insert_with(|| json!({}));
    let Some(spec) = spec.as_object_mut() else {
        return Ok(());
    };
    let sa_name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa_name));
    // The deprecated alias, which the v1 API still fills in.
    spec.insert("serviceAccount".into(), json!(sa_name));
    let sa = lock(&core.store)
        .get("serviceaccounts", namespace, &sa_name)
        .cloned();
    let Some(sa) = sa else {
        return Err(Failure::forbidden(
            "pods",
            display_name,
            &format!(
                "error looking up service account {namespace}/{sa_name}: serviceaccount \"{sa_name}\" not found"
            ),
        ));
    };
    let pod_has_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !pod_has_secrets {
        let inherited: Vec<Value> = sa
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|s| json!({"name": s.get("name").cloned().unwrap_or(json!(""))}))
            .collect();
        if !inherited.is_empty() {
            spec.insert("imagePullSecrets".into(), Value::Array(inherited));
        }
    }
    Ok(())
}

/// A client certificate and key for webhook calls, checked when set.
#[derive(Clone)]
pub(crate) struct ClientIdentity {
    pem: Vec<u8>,
}

impl ClientIdentity {
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let pem = format!("{cert_pem}\n{key_pem}\n").into_bytes();
        reqwest::Identity::from_pem(&pem).map_err(|e| chain(&e))?;
        Ok(ClientIdentity { pem })
    }

    fn identity(&self) -> Result<reqwest::Identity, String> {
        reqwest::Identity::from_pem(&self.pem).map_err(|e| chain(&e))
    }
}

/// The identity kube-apiserver's `defaultAuthenticationInfoResolver.clientConfig` picks for
/// `target` (`host:port`): the exact name, then `*.`-prefixed suffixes, then for port 443 the
/// same without the port, then `*`. (Its last resorts, the in-cluster config for
/// `kubernetes.default.svc:443` and the kubeconfig's current context, have no counterpart.)
fn identity_for<'a>(
    identities: &'a HashMap<String, ClientIdentity>,
    target: &str,
) -> Option<&'a ClientIdentity> {
    let exact_or_star = |name: &str| {
        identities.get(name).or_else(|| {
            let steps: Vec<&str> = name.split('.').collect();
            (1..steps.len()).find_map(|i| identities.get(&format!("*.{}", steps[i..].join("."))))
        })
    };
    exact_or_star(target)
        .or_else(|| {
            target
                .rsplit_once(':')
                .filter(|(_, port)| *port == "443")
                .and_then(|(host, _)| exact_or_star(host))
        })
        .or_else(|| identities.get("*"))
}

fn rules_match(hook: &MutatingWebhook, info: &ResourceInfo) -> bool {
    let has = |list: &Option<Vec<String>>, wanted: &str| {
        list.iter().flatten().any(|v| v == "*" || v == wanted)
    };
    hook.rules.iter().flatten().any(|r| {
        let ops = r
            .operations
            .iter()
            .flatten()
            .any(|o| o == "*" || o == "CREATE");
        let resources = r
            .resources
            .iter()
            .flatten()
            .any(|x| x == "*" || x == "*/*" || x == info.resource);
        let scope = match r.scope.as_deref() {
            Some("Namespaced") => info.namespaced,
            Some("Cluster") => !info.namespaced,
            _ => true,
        };
        ops && resources
            && scope
            && has(&r.api_groups, info.group)
            && has(&r.api_versions, info.version)
    })
}

/// The stored MutatingWebhookConfigurations, in name order (the store's key order), as they
/// are now: the admission path reads them at every call, so an update through the API (a new
/// caBundle, say) takes effect from the next call on.
fn stored_configs(core: &Core) -> Vec<MutatingWebhookConfiguration> {
    let store = lock(&core.store);
    // A range, not a scan: the store may hold 100,000 secrets (the cluster benchmark).
    store
        .objects
        .range(super::store::key(WEBHOOK_CONFIGS, "", "")..)
        .take_while(|((resource, _, _), _)| resource == WEBHOOK_CONFIGS)
        // Stored objects passed decoding; one that no longer would is skipped, not fatal.
        .filter_map(|(_, obj)| MutatingWebhookConfiguration::deserialize(obj).ok())
        .collect()
}

const WEBHOOK_CONFIGS: &str = "mutatingwebhookconfigurations";

/// Calls every matching webhook in kube's order (configurations by name, then webhooks as
/// listed), each seeing the previous one's mutations.
pub(crate) async fn run_webhooks(
    core: &Core,
    ctx: &mut Ctx,
    info: &'static ResourceInfo,
    namespace: &str,
    obj: &mut Value,
) -> Result<(), Failure> {
    // kube never calls webhooks on webhook configurations, so that none can lock itself out.
    if info.group == ADMISSIONREGISTRATION {
        return Ok(());
    }
    let configs = stored_configs(core);
    if configs.is_empty() {
        return Ok(());
    }
    // namespaceSelector looks at the object's namespace, or at a Namespace's own labels.
    let ns_labels = if info.namespaced {
        lock(&core.store)
            .get("namespaces", "", namespace)
            .map(labels)
            .unwrap_or_default()
    } else {
        labels(obj)
    };
    for config in configs {
        for hook in config.webhooks.iter().flatten() {
            if !rules_match(hook, info)
                || !k8s_selector_matches(hook.namespace_selector.as_ref(), &ns_labels)
                || !k8s_selector_matches(hook.object_selector.as_ref(), &labels(obj))
            {
                continue;
            }
            call_one(core, ctx, info, namespace, hook, obj).await?;
        }
    }
    Ok(())
}

async fn call_one(
    core: &Core,
    ctx: &mut Ctx,
    info: &'static ResourceInfo,
    namespace: &str,
    hook: &MutatingWebhook,
    obj: &mut Value,
) -> Result<(), Failure> {
    let mut call = AdmissionCall {
        webhook: hook.name.clone(),
        kind: info.kind.to_string(),
        namespace: namespace.to_string(),
        name: meta_str(obj, "name").to_string(),
        dry_run: ctx.dry_run,
        patched: false,
        error: None,
        warnings: Vec::new(),
    };
    let record = |call: AdmissionCall| lock(&core.admission_calls).push(call);
    if ctx.dry_run && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun") {
        let failure = Failure::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        ));
        call.error = Some(failure.message.clone());
        record(call);
        return Err(failure);
    }
    let routes = lock(&core.services).clone();
    let identities = lock(&core.webhook_identities).clone();
    match invoke(ctx, info, namespace, hook, obj, &routes, &identities).await {
        Ok(Outcome::Allowed { patched, warnings }) => {
            ctx.warnings.extend(warnings.iter().cloned());
            call.warnings = warnings;
            if let Some(patched) = patched {
                *obj = patched;
                call.patched = true;
            }
            record(call);
            Ok(())
        }
        Ok(Outcome::Denied { failure, warnings }) => {
            ctx.warnings.extend(warnings.iter().cloned());
            call.warnings = warnings;
            call.error = Some(failure.message.clone());
            record(call);
            Err(failure)
        }
        Err(why) => {
            let message = format!("failed calling webhook {:?}: {why}", hook.name);
            call.error = Some(message.clone());
            record(call);
            if hook.failure_policy.as_deref() == Some("Ignore") {
                Ok(())
            } else {
                Err(Failure::internal(&message))
            }
        }
    }
}

enum Outcome {
    Allowed {
        patched: Option<Value>,
        warnings: Vec<String>,
    },
    Denied {
        failure: Failure,
        warnings: Vec<String>,
    },
}

/// An error with its sources, since reqwest's own message rarely says what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn invoke(
    ctx: &Ctx,
    info: &ResourceInfo,
    namespace: &str,
    hook: &MutatingWebhook,
    obj: &Value,
    routes: &HashMap<(String, String), SocketAddr>,
    identities: &HashMap<String, ClientIdentity>,
) -> Result<Outcome, String> {
    if !hook.admission_review_versions.iter().any(|v| v == "v1") {
        return Err("webhook does not accept known AdmissionReview versions".into());
    }
    // A Service reference is dialled as kube-apiserver dials it: by the name
    // `service.namespace.svc` (which the certificate must hold), at an address standing for the
    // Service's endpoints (`FakeApiServer::route_service`).
    let mut resolved: Option<(String, SocketAddr)> = None;
    // The `host:port` kube looks the client identity up by (`webhook.ClientManager.HookClient`).
    let target;
    let base = match (&hook.client_config.url, &hook.client_config.service) {
        (Some(url), _) => {
            let parsed =
                reqwest::Url::parse(url).map_err(|e| format!("Unparsable URL: {}", chain(&e)))?;
            let host = parsed.host_str().unwrap_or("");
            target = match parsed.port() {
                Some(port) => format!("{host}:{port}"),
                None => format!("{host}:443"),
            };
            url.clone()
        }
        (None, Some(service)) => {
            let host = format!("{}.{}.svc", service.name, service.namespace);
            let addr = routes
                .get(&(service.namespace.clone(), service.name.clone()))
                .copied()
                .ok_or_else(|| {
                    format!(
                        "failed to call webhook: service {}/{} has no endpoints",
                        service.namespace, service.name
                    )
                })?;
            let port = service.port.unwrap_or(443);
            target = format!("{host}:{port}");
            let path = service.path.clone().unwrap_or_default();
            resolved = Some((host.clone(), addr));
            format!("https://{host}:{port}{path}")
        }
        (None, None) => return Err("clientConfig has neither url nor service".into()),
    };
    let timeout = u64::try_from(hook.timeout_seconds.unwrap_or(10).clamp(1, 30)).unwrap_or(10);
    let url = format!(
        "{base}{}timeout={timeout}s",
        if base.contains('?') { '&' } else { '?' }
    );
    let ca = hook
        .client_config
        .ca_bundle
        .as_ref()
        .map(|b| b.0.clone())
        .unwrap_or_default();
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(timeout));
    let roots = reqwest::Certificate::from_pem_bundle(&ca)
        .map_err(|e| format!("failed to call webhook: invalid caBundle: {}", chain(&e)))?;
    for root in roots {
        builder = builder.add_root_certificate(root);
    }
    if let Some((host, addr)) = &resolved {
        builder = builder.resolve(host, *addr);
    }
    if let Some(identity) = identity_for(identities, &target) {
        builder = builder.identity(
            identity
                .identity()
                .map_err(|e| format!("failed to call webhook: client certificate: {e}"))?,
        );
    }
    let client = builder
        .build()
        .map_err(|e| format!("failed to call webhook: {}", chain(&e)))?;

    let uid = new_uid();
    let name = meta_str(obj, "name");
    let mut options = json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"});
    if ctx.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    if let Some(fm) = &ctx.field_manager {
        options["fieldManager"] = json!(fm);
    }
    let mut request = json!({
        "uid": uid,
        "kind": {"group": info.group, "version": info.version, "kind": info.kind},
        "resource": {"group": info.group, "version": info.version, "resource": info.resource},
        "requestKind": {"group": info.group, "version": info.version, "kind": info.kind},
        "requestResource": {"group": info.group, "version": info.version, "resource": info.resource},
        "operation": "CREATE",
        "userInfo": {"username": ctx.user.username, "groups": ctx.user.groups},
        "object": obj,
        "oldObject": null,
        "dryRun": ctx.dry_run,
        "options": options,
    });
    // Both are omitempty in AdmissionRequest: a generateName create has no name yet.
    if !name.is_empty() {
        request["name"] = json!(name);
    }
    if !namespace.is_empty() {
        request["namespace"] = json!(namespace);
    }
    let review =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});

    let response = client
        .post(&url)
        .json(&review)
        .send()
        .await
        .map_err(|e| format!("failed to call webhook: Post {url:?}: {}", chain(&e)))?;
    let code = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("failed to call webhook: Post {url:?}: {}", chain(&e)))?;
    if !code.is_success() {
        return Err(format!(
            "failed to call webhook: an error on the server ({:?}) has prevented the request from succeeding",
            String::from_utf8_lossy(&body)
        ));
    }
    let invalid = |why: String| format!("received invalid webhook response: {why}");
    let review: Value = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(invalid(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        )));
    }
    let response = review
        .get("response")
        .ok_or_else(|| invalid("webhook response was absent".into()))?;
    let got_uid = response.get("uid").and_then(Value::as_str).unwrap_or("");
    if got_uid != uid {
        return Err(invalid(format!(
            "expected response.uid={uid:?}, got {got_uid:?}"
        )));
    }
    let warnings: Vec<String> = response
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(String::from))
        .collect();
    if !response
        .get("allowed")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Ok(Outcome::Denied {
            failure: denied(&hook.name, response.get("status")),
            warnings,
        });
    }
    let Some(patch) = response.get("patch").and_then(Value::as_str) else {
        return Ok(Outcome::Allowed {
            patched: None,
            warnings,
        });
    };
    match response.get("patchType").and_then(Value::as_str) {
        Some("JSONPatch") => {}
        Some(other) => return Err(invalid(format!("unsupported patch type {other:?}"))),
        None => {
            return Err(invalid(
                "webhook returned response.patch but not response.patchType".into(),
            ));
        }
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| invalid(format!("patch is not base64: {e}")))?;
    let ops: json_patch::Patch = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("patch is not a JSON patch: {e}")))?;
    if ops.0.is_empty() {
        return Ok(Outcome::Allowed {
            patched: None,
            warnings,
        });
    }
    let mut patched = obj.clone();
    json_patch::patch(&mut patched, &ops)
        .map_err(|e| invalid(format!("patch does not apply: {e}")))?;
    check_typed(info.kind, &patched)
        .map_err(|e| invalid(format!("patched object is not a valid {}: {e}", info.kind)))?;
    Ok(Outcome::Allowed {
        patched: Some(patched),
        warnings,
    })
}

/// kube's `toStatusErr`: the webhook's own Status, made a failure and prefixed with its name.
fn denied(webhook: &str, status: Option<&Value>) -> Failure {
    let status = status.cloned().unwrap_or_else(|| json!({}));
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let reason = status.get("reason").and_then(Value::as_str).unwrap_or("");
    let message = status.get("message").and_then(Value::as_str).unwrap_or("");
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let message = if !message.is_empty() {
        format!("{denied_by}: {message}")
    } else if !reason.is_empty() {
        format!("{denied_by}: {reason}")
    } else {
        format!("{denied_by} without explanation")
    };
    Failure {
        details: status.get("details").cloned(),
        ..Failure::new(code, reason, message)
    }
}
