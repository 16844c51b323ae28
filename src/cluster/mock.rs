//! A scripted kube API for the cluster module's unit tests, the way kube-rs' controller-rs
//! tests its reconciler: a real `kube::Client` over tower-test's mock service, and a script
//! that takes each request the code under test makes, checks its method, path, query and
//! body, and answers as kube-apiserver would (kube `Status` objects for errors).
//!
//! Nothing listens on a socket and nothing sleeps. Every wait is bounded by [`WAIT`], so that
//! a call the script does not expect, or one it expects and never comes, fails the test with
//! a message naming the request instead of hanging it.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

use super::{ClusterArgs, ClusterOptions, Shared};

/// How long the script waits for a request, and a whole exchange may last. Generous: only a
/// failing test waits this long, and the shared CPU cores may be busy compiling meanwhile.
const WAIT: Duration = Duration::from_secs(10);

/// The injector's own namespace in the tests, where the config ConfigMap and its Events live.
pub(super) const OWN_NAMESPACE: &str = "pull-secret-injector";

/// A `Shared` (default options, no watch running) whose client talks to the returned mock;
/// `config_yaml` sets which copies the index admits (see [`Shared::for_tests`]).
///
/// Must be called inside a runtime: the client's buffer spawns its worker.
pub(super) fn shared(config_yaml: Option<&str>) -> (Arc<Shared>, ApiMock) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let args = ClusterArgs::new(ClusterOptions::default(), OWN_NAMESPACE).expect("cluster args");
    (
        Shared::for_tests(client, args, config_yaml),
        ApiMock { handle },
    )
}

/// The API side of the mock: the requests the client sent, in order.
pub(super) struct ApiMock {
    handle: Handle<Request<Body>, Response<Body>>,
}

impl ApiMock {
    /// The next request, read whole; fails the test when none comes within [`WAIT`]
    /// (`expected` says which request the script was waiting for).
    pub(super) async fn next(&mut self, expected: &str) -> Call {
        let (request, reply) = tokio::time::timeout(WAIT, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("waited {WAIT:?} for {expected}; no request came"))
            .expect("the client is gone");
        Call::read(request, reply).await
    }

    /// Fails the test if a request is waiting that the script did not take. Answered calls
    /// leave nothing behind, so anything here is a call the code made beyond the script.
    pub(super) fn assert_idle(&mut self) {
        if let Poll::Ready(Some((request, _))) = self.handle.poll_request() {
            panic!(
                "unexpected request beyond the script: {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

/// Runs `code` while `script` answers its requests, both bounded by [`WAIT`], then checks
/// that no request was left unanswered; returns what `code` returned.
///
/// `code` must await everything it sends, so that a request beyond the script keeps it
/// waiting: once the script is done, such a request fails the test at once, named.
pub(super) async fn exchange<T>(
    api: &mut ApiMock,
    script: impl AsyncFnOnce(&mut ApiMock),
    code: impl Future<Output = T>,
) -> T {
    let mut code = std::pin::pin!(code);
    let run = async {
        let mut finished = None;
        {
            let mut script = std::pin::pin!(script(&mut *api));
            tokio::select! {
                out = &mut code => {
                    finished = Some(out);
                    // It may still wait for a request the code never made: its own
                    // timeout names it.
                    script.await;
                }
                () = &mut script => {}
            }
        }
        match finished {
            Some(out) => out,
            None => tokio::select! {
                out = &mut code => out,
                Some((request, _)) = api.handle.next_request() => panic!(
                    "unexpected request beyond the script: {} {}",
                    request.method(),
                    request.uri()
                ),
            },
        }
    };
    let out = tokio::time::timeout(WAIT, run)
        .await
        .unwrap_or_else(|_| panic!("the exchange did not finish within {WAIT:?}"));
    api.assert_idle();
    out
}

/// A request the code under test made, read whole, waiting for its answer.
pub(super) struct Call {
    /// The HTTP method.
    pub(super) method: Method,
    /// The path, without the query.
    pub(super) path: String,
    /// The query parameters, decoded, in order.
    query: Vec<(String, String)>,
    /// The `Content-Type` header.
    pub(super) content_type: Option<String>,
    /// The body as JSON; `Null` when empty.
    pub(super) body: Value,
    reply: SendResponse<Response<Body>>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("content_type", &self.content_type)
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl Call {
    async fn read(request: Request<Body>, reply: SendResponse<Response<Body>>) -> Call {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("the request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{} {}: the body is not JSON ({e}): {}",
                    parts.method,
                    parts.uri,
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(parse_query).unwrap_or_default(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body,
            reply,
        }
    }

    /// Asserts the method and path (the whole call is shown when they differ).
    pub(super) fn assert_is(&self, method: Method, path: &str) {
        assert!(
            self.method == method && self.path == path,
            "expected {method} {path}, got {self:#?}"
        );
    }

    /// [`Call::assert_is`], passing the call on to be answered.
    pub(super) fn expect(self, method: Method, path: &str) -> Self {
        self.assert_is(method, path);
        self
    }

    /// One query parameter, decoded.
    pub(super) fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Answers with `status` and a JSON body.
    pub(super) fn respond(self, status: u16, body: Value) {
        let response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("a JSON body")))
            .expect("a response");
        self.reply.send_response(response);
    }

    /// Answers with a kube `Status` failure, as kube-apiserver does.
    pub(super) fn fail(self, code: u16, reason: &str, message: &str) {
        self.respond(code, status(code, reason, message));
    }
}

/// A kube `Status` failure object, as kube-apiserver answers an error.
pub(super) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// `object` as the API stores it: with a uid and `resource_version` (a create's answer).
pub(super) fn stored(mut object: Value, resource_version: &str) -> Value {
    let meta = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("an object with metadata");
    meta.insert("resourceVersion".into(), json!(resource_version));
    meta.entry("uid")
        .or_insert_with(|| json!("6f1c2a8e-4d3b-4b8a-9d61-0c5e7a1b2c3d"));
    meta.entry("creationTimestamp")
        .or_insert_with(|| json!("2025-01-01T00:00:00Z"));
    object
}

/// `a=b&c=d`, percent- and `+`-decoded (what kube's query builder encodes).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
