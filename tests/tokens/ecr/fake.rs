//! Tiny ECR and STS endpoints on 127.0.0.1 that answer every well-formed call with one
//! scripted answer, for the failures moto does not produce on demand. ECR follows the AWS JSON
//! 1.1 protocol as the ECR API reference describes `GetAuthorizationToken`: a signed POST with
//! `X-Amz-Target` and `application/x-amz-json-1.1`, errors as `{"__type": ..., "message": ...}`.
//! STS follows the query protocol of the STS API reference's `AssumeRoleWithWebIdentity`: an
//! unsigned form POST, errors as XML `ErrorResponse/Error/{Code,Message}`.

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

const MALFORMED: &str = r#"{"__type":"UnknownOperationException","message":"malformed call"}"#;

/// A running fake; it stops with the test's runtime.
pub struct Fake {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
}

impl Fake {
    /// Answers `status` with `body` to a well-formed call, 400 to anything else.
    pub async fn start(status: u16, body: impl Into<String>) -> Fake {
        let status = StatusCode::from_u16(status).expect("status");
        let body: String = body.into();
        let app = axum::Router::new().route(
            "/",
            post(move |headers: HeaderMap| async move {
                let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                let well_formed = header("x-amz-target")
                    == Some("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
                    && header("content-type") == Some("application/x-amz-json-1.1")
                    && header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256"));
                if well_formed {
                    (status, body.clone())
                } else {
                    (StatusCode::BAD_REQUEST, MALFORMED.to_string())
                }
            }),
        );
        Fake::serve(app).await
    }

    /// An STS endpoint: `status` with `body` to an unsigned `AssumeRoleWithWebIdentity` form
    /// that carries every parameter the client must send, 400 to anything else.
    pub async fn sts(status: u16, body: impl Into<String>) -> Fake {
        let status = StatusCode::from_u16(status).expect("status");
        let body: String = body.into();
        let app = axum::Router::new().route(
            "/",
            post(move |headers: HeaderMap, form: String| async move {
                let fields: Vec<&str> = form.split('&').collect();
                let well_formed = headers.get("authorization").is_none()
                    && headers.get("content-type").and_then(|v| v.to_str().ok())
                        == Some("application/x-www-form-urlencoded")
                    && [
                        "Action=AssumeRoleWithWebIdentity",
                        "Version=2011-06-15",
                        "RoleSessionName=pull-secret-injector",
                        "DurationSeconds=3600",
                    ]
                    .iter()
                    .all(|f| fields.contains(f))
                    && ["RoleArn=", "WebIdentityToken="]
                        .iter()
                        .all(|p| fields.iter().any(|f| f.len() > p.len() && f.starts_with(p)));
                if well_formed {
                    (status, body.clone())
                } else {
                    (StatusCode::BAD_REQUEST, MALFORMED.to_string())
                }
            }),
        );
        Fake::serve(app).await
    }

    async fn serve(app: axum::Router) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { url }
    }
}
