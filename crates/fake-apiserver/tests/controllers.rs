use fake_apiserver::{FakeApiServer, eventually};
use serde_json::json;
use std::time::Duration;

fn ns(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}
async fn has_default(server: &FakeApiServer, n: &str) {
    eventually(&format!("default of {n}"), || async {
        server.get("serviceaccounts", Some(n), "default").is_some()
    })
    .await;
}

#[tokio::test]
async fn namespaces_made_in_the_gap_get_their_account() {
    let server = FakeApiServer::start().await;
    server.create(ns("before")).await.unwrap();
    has_default(&server, "before").await;
    // Current-thread runtime: the controller has not run between these.
    server.drop_watches();
    server.create(ns("gap1")).await.unwrap();
    has_default(&server, "gap1").await;
    server.expire_history();
    server.create(ns("gap2")).await.unwrap();
    server
        .delete("serviceaccounts", Some("before"), "default")
        .await
        .unwrap();
    has_default(&server, "gap2").await;
    has_default(&server, "before").await;
    // And events after the resubscription still reach it.
    server.create(ns("after")).await.unwrap();
    has_default(&server, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_creation_is_not_doubled_by_a_relist() {
    let server = FakeApiServer::start().await;
    server.hold_default_service_accounts(true);
    server.create(ns("h")).await.unwrap();
    eventually("held", || async {
        server.held_default_service_accounts() == ["h"]
    })
    .await;
    server.drop_watches();
    server.expire_history();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        server
            .get("serviceaccounts", Some("h"), "default")
            .is_none()
    );
    assert_eq!(server.held_default_service_accounts(), ["h"]);
    server.release_default_service_account("h");
    has_default(&server, "h").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.held_default_service_accounts().is_empty());
    // Removals by the namespace controller hold nothing.
    server.create(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x", "namespace": "h"}})).await.unwrap();
    server.delete("namespaces", None, "h").await.unwrap();
    server.finish_namespace_deletion("h");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.held_default_service_accounts().is_empty());
    // A deleted account in an Active namespace is held again.
    server.create(ns("k")).await.unwrap();
    eventually("held k", || async {
        server.held_default_service_accounts() == ["k"]
    })
    .await;
    server.release_default_service_account("k");
    has_default(&server, "k").await;
    server
        .delete("serviceaccounts", Some("k"), "default")
        .await
        .unwrap();
    eventually("held k again", || async {
        server.held_default_service_accounts() == ["k"]
    })
    .await;
    server.hold_default_service_accounts(false);
    has_default(&server, "k").await;
}

#[tokio::test]
async fn the_controller_stops_with_the_server() {
    let server = FakeApiServer::start().await;
    server.create(ns("a")).await.unwrap();
    has_default(&server, "a").await;
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
}
