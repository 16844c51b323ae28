//! The HTTPS front: TLS, bearer-token authentication, routing of kube's URL shapes (`/api/v1/...`
//! for the core group, `/apis/{group}/{version}/...` for the others) to verbs, discovery, fault
//! injection, RBAC, and request records.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::api::{self, ListQuery};
use super::ctx::Ctx;
use super::faults::FaultKind;
use super::meta::{RESOURCES, ResourceInfo, by_group_resource, parse_query, partial};
use super::patch::PatchKind;
use super::rbac::{Attributes, UserInfo, denial};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::Failure;
use super::watch::{self, WatchQuery};
use super::{Core, RequestRecord, lock};

pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// kube-apiserver's default request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub(crate) async fn serve(core: Arc<Core>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut shutdown = core.shutdown.clone();
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let acceptor = acceptor.clone();
        let core = core.clone();
        tokio::spawn(async move {
            let mut shutdown = core.shutdown.clone();
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| handle(core.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn json_response(code: u16, value: &Value, warnings: &[String]) -> Response<Body> {
    let mut builder = Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json");
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        builder = builder.header(header::WARNING, format!("299 - \"{escaped}\""));
    }
    builder
        .body(full(value.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn failure_response(failure: &Failure) -> Response<Body> {
    let mut response = json_response(failure.code, &failure.to_json(), &[]);
    if let Some(secs) = failure.retry_after
        && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// A request on a resource, in authorization terms.
struct Target {
    info: &'static ResourceInfo,
    namespace: Option<String>,
    name: Option<String>,
    verb: &'static str,
}

enum Route {
    Public(Value),
    Discovery(Value),
    Resource(Target),
    Fail(Failure),
}

/// The APIResourceList of one group version.
fn discovery_resources(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.resource,
                "singularName": r.kind.to_lowercase(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            })
        })
        .collect();
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// The named groups (everything but core), each with its one version.
fn api_groups() -> Vec<Value> {
    let mut groups: Vec<(&str, &str)> = RESOURCES
        .iter()
        .filter(|r| !r.group.is_empty())
        .map(|r| (r.group, r.version))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
        .into_iter()
        .map(|(group, version)| {
            let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect()
}

fn route(method: &str, path: &str, watch: bool) -> Route {
    let segments: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => {
            return Route::Public(json!({
                "major": "1", "minor": "35", "gitVersion": "v1.35.0-fake", "gitCommit": "",
                "gitTreeState": "clean", "buildDate": "2025-12-17T00:00:00Z", "goVersion": "go1.25",
                "compiler": "gc", "platform": "linux/amd64",
            }));
        }
        ["api"] => {
            return Route::Discovery(
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
            );
        }
        ["apis"] => {
            return Route::Discovery(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": api_groups()}),
            );
        }
        ["apis", group] => {
            return match api_groups().into_iter().find(|g| g["name"] == *group) {
                Some(mut g) => {
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    Route::Discovery(g)
                }
                None => Route::Fail(Failure::no_such_path()),
            };
        }
        ["api", "v1"] => return Route::Discovery(discovery_resources("", "v1")),
        ["apis", group, version] => {
            let served = RESOURCES
                .iter()
                .any(|r| r.group == *group && r.version == *version);
            return if served {
                Route::Discovery(discovery_resources(group, version))
            } else {
                Route::Fail(Failure::no_such_path())
            };
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        // The core group has no /apis path: "" would otherwise match an empty segment.
        ["apis", group, version, rest @ ..] if !group.is_empty() => (*group, *version, rest),
        _ => return Route::Fail(Failure::no_such_path()),
    };
    let (resource, namespace, name) = match rest {
        [resource] => (*resource, None, None),
        ["namespaces", name] => ("namespaces", None, Some(*name)),
        ["namespaces", ns, resource] => (*resource, Some(*ns), None),
        ["namespaces", ns, resource, name] => (*resource, Some(*ns), Some(*name)),
        [resource, name] => (*resource, None, Some(*name)),
        _ => return Route::Fail(Failure::no_such_path()),
    };
    let Some(info) = by_group_resource(group, version, resource) else {
        return Route::Fail(Failure::no_such_path());
    };
    // A namespaced resource by name needs its namespace; a cluster one must not have one.
    if (info.namespaced && name.is_some() && namespace.is_none())
        || (!info.namespaced && namespace.is_some())
    {
        return Route::Fail(Failure::no_such_path());
    }
    let verb = match (method, name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", false) if !info.namespaced || namespace.is_some() => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        _ => return Route::Fail(Failure::method_not_allowed()),
    };
    Route::Resource(Target {
        info,
        namespace: namespace.map(String::from),
        name: name.map(String::from),
        verb,
    })
}

async fn handle(core: Arc<Core>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let query = parse_query(req.uri().query().unwrap_or(""));
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let header_str = |h: header::HeaderName| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let accept = header_str(header::ACCEPT);
    let content_type = header_str(header::CONTENT_TYPE);
    let token = header_str(header::AUTHORIZATION)
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string());
    let user = token.and_then(|t| lock(&core.tokens).get(&t).cloned());
    let metadata_only = accept.contains("as=PartialObjectMetadata");
    let watch = matches!(param("watch").as_deref(), Some("true" | "1"));
    let dry_run = param("dryRun");

    let route = route(&method, &path, watch);
    let mut record = RequestRecord {
        verb: String::new(),
        resource: String::new(),
        namespace: None,
        name: None,
        user: user
            .as_ref()
            .map(|u| u.username.clone())
            .unwrap_or_default(),
        status: 0,
        dry_run: dry_run.as_deref() == Some("All"),
        metadata_only,
    };
    if let Route::Resource(t) = &route {
        record.verb = t.verb.into();
        record.resource = t.info.resource.into();
        record.namespace = t.namespace.clone();
        record.name = t.name.clone();
    }
    let response = match (route, user) {
        (Route::Public(v), _) => json_response(200, &v, &[]),
        (_, None) => failure_response(&Failure::unauthorized()),
        (Route::Discovery(v), Some(_)) => json_response(200, &v, &[]),
        (Route::Fail(f), Some(_)) => failure_response(&f),
        (Route::Resource(target), Some(user)) => {
            let fault = lock(&core.faults).take(
                &method,
                target.verb,
                &path_and_query,
                target.verb == "watch",
            );
            match fault {
                Some(FaultKind::Status(code)) => failure_response(&Failure::injected(code)),
                latency => {
                    if let Some(FaultKind::Latency(d)) = latency {
                        tokio::time::sleep(d).await;
                    }
                    let request = Params {
                        query: &query,
                        content_type: &content_type,
                        metadata_only,
                        dry_run,
                    };
                    serve_resource(&core, user, &target, request, req.into_body(), &mut record)
                        .await
                }
            }
        }
    };
    record.status = response.status().as_u16();
    lock(&core.requests).push(record);
    Ok(response)
}

/// The parts of a request the verbs need besides the target.
struct Params<'a> {
    query: &'a [(String, String)],
    content_type: &'a str,
    metadata_only: bool,
    dry_run: Option<String>,
}

impl Params<'_> {
    fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

async fn serve_resource(
    core: &Arc<Core>,
    user: UserInfo,
    target: &Target,
    req: Params<'_>,
    body: Incoming,
    record: &mut RequestRecord,
) -> Response<Body> {
    match serve_resource_inner(core, user, target, &req, body, record).await {
        Ok(response) => response,
        Err(failure) => failure_response(&failure),
    }
}

async fn serve_resource_inner(
    core: &Arc<Core>,
    user: UserInfo,
    target: &Target,
    req: &Params<'_>,
    body: Incoming,
    record: &mut RequestRecord,
) -> Result<Response<Body>, Failure> {
    let info = target.info;
    let namespace = target.namespace.as_deref();
    let name = target.name.as_deref().unwrap_or("");
    let labels = LabelSelector::parse(req.param("labelSelector").unwrap_or(""))
        .map_err(Failure::bad_request)?;
    let fields = FieldSelector::parse(req.param("fieldSelector").unwrap_or(""), info.resource)
        .map_err(Failure::bad_request)?;

    if !user.is_master() {
        // kube authorizes a Namespace request in that namespace, and a list or watch pinned
        // to one name (metadata.name=X) as a request for X.
        let auth_ns = if info.resource == "namespaces" {
            target.name.as_deref()
        } else {
            namespace
        };
        let auth_name = target.name.as_deref().or(match target.verb {
            "list" | "watch" => fields.single_name(),
            _ => None,
        });
        let attrs = Attributes {
            verb: target.verb,
            api_group: info.group,
            resource: info.resource,
            namespace: auth_ns,
            name: auth_name,
        };
        if !lock(&core.rbac).allows(&user, &attrs) {
            return Err(Failure::forbidden(
                &info.qualified_resource(),
                target.name.as_deref().unwrap_or(""),
                &denial(&user, &attrs),
            ));
        }
    }

    let dry_run = match req.dry_run.as_deref() {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(Failure::bad_request(format!(
                "Invalid dryRun value: {other:?}; only \"All\" is supported"
            )));
        }
    };
    let mut ctx = Ctx::new(user, dry_run);
    ctx.field_manager = req.param("fieldManager").map(String::from);
    let shape = |obj: Value| {
        if req.metadata_only {
            partial(&obj)
        } else {
            obj
        }
    };

    match target.verb {
        "get" => Ok(json_response(
            200,
            &shape(api::get(core, info, namespace, name)?),
            &[],
        )),
        "list" => {
            let q = ListQuery {
                labels,
                fields,
                limit: req.param("limit").and_then(|l| l.parse().ok()),
                continue_token: req.param("continue").map(String::from),
                resource_version: req.param("resourceVersion").map(String::from),
                resource_version_match: req.param("resourceVersionMatch").map(String::from),
                metadata_only: req.metadata_only,
            };
            Ok(json_response(
                200,
                &api::list(core, info, namespace, &q)?,
                &[],
            ))
        }
        "watch" => {
            let q = WatchQuery {
                info,
                namespace: namespace.map(String::from),
                labels,
                fields,
                resource_version: req.param("resourceVersion").unwrap_or("").to_string(),
                bookmarks: matches!(req.param("allowWatchBookmarks"), Some("true" | "1")),
                send_initial_events: matches!(req.param("sendInitialEvents"), Some("true" | "1")),
                timeout: req
                    .param("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(std::time::Duration::from_secs),
                metadata_only: req.metadata_only,
            };
            let rx = watch::start(core, q)?;
            let stream =
                futures::stream::unfold(
                    rx,
                    |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
                );
            Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json")
                .body(StreamBody::new(stream).boxed_unsync())
                .map_err(|e| Failure::internal(&e.to_string()))
        }
        verb => {
            let bytes = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    Failure::new(
                        413,
                        "RequestEntityTooLarge",
                        format!("Request entity too large: {e}"),
                    )
                })?
                .to_bytes();
            let parse = |bytes: &Bytes| -> Result<Value, Failure> {
                serde_json::from_slice(bytes).map_err(|e| {
                    Failure::bad_request(format!(
                        "couldn't get version/kind; json parse error: {e}"
                    ))
                })
            };
            match verb {
                "create" => {
                    let obj = api::create(core, &mut ctx, info, namespace, parse(&bytes)?).await?;
                    Ok(json_response(201, &shape(obj), &ctx.warnings))
                }
                "update" => {
                    let obj = api::update(core, &ctx, info, namespace, name, parse(&bytes)?)?;
                    Ok(json_response(200, &shape(obj), &ctx.warnings))
                }
                "patch" => {
                    let kind = PatchKind::from_content_type(req.content_type).ok_or_else(|| {
                        Failure::new(415, "UnsupportedMediaType", format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {:?})",
                            req.content_type
                        ))
                    })?;
                    let existed = api::get(core, info, namespace, name).is_ok();
                    let obj =
                        api::patch(core, &mut ctx, info, namespace, name, kind, &bytes).await?;
                    let code = if existed { 200 } else { 201 };
                    Ok(json_response(code, &shape(obj), &ctx.warnings))
                }
                "delete" => {
                    let options = if bytes.is_empty() {
                        None
                    } else {
                        Some(parse(&bytes)?)
                    };
                    // DeleteOptions travel in the body, dryRun included.
                    let body_dry_run = options
                        .as_ref()
                        .and_then(|o| o.get("dryRun"))
                        .and_then(Value::as_array)
                        .is_some_and(|d| d.iter().any(|v| v == "All"));
                    if body_dry_run {
                        ctx.dry_run = true;
                        record.dry_run = true;
                    }
                    let obj = api::delete(core, &ctx, info, namespace, name, options.as_ref())?;
                    Ok(json_response(200, &shape(obj), &[]))
                }
                _ => Err(Failure::method_not_allowed()),
            }
        }
    }
}
