//! A tiny ECR endpoint on 127.0.0.1 that answers every `GetAuthorizationToken` with one
//! scripted answer, for the failures moto does not produce on demand. It follows the AWS JSON
//! 1.1 protocol as the ECR API reference describes it: a POST with `X-Amz-Target` and
//! `application/x-amz-json-1.1`, errors as `{"__type": ..., "message": ...}`.

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// A running fake; it stops with the test's runtime.
pub struct Fake {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
}

impl Fake {
    /// Answers `status` with `body` to a well-formed call, 400 to anything else.
    pub async fn start(status: u16, body: &'static str) -> Fake {
        let status = StatusCode::from_u16(status).expect("status");
        let app = axum::Router::new().route(
            "/",
            post(move |headers: HeaderMap| async move {
                let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                let well_formed = header("x-amz-target")
                    == Some("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
                    && header("content-type") == Some("application/x-amz-json-1.1")
                    && header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256"));
                if well_formed {
                    (status, body)
                } else {
                    (
                        StatusCode::BAD_REQUEST,
                        r#"{"__type":"UnknownOperationException","message":"malformed call"}"#,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { url }
    }
}
