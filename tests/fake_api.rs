//! The fake apiserver behaves like kube-apiserver, as kube-rs sees it.

mod support;

use support::FakeApiServer;

#[tokio::test]
async fn starts() {
    let server = FakeApiServer::start().await;
    assert!(server.url().starts_with("https://127.0.0.1:"));
}
