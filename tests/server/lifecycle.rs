//! Readiness, metrics and shutdown.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_config_and_a_bad_reload_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = make_certs(dir.path());
    let setup = examples().join("docker-hub");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "credentials: [").expect("write");
    let server = start_with(
        args(
            &config,
            vec![setup.join("cluster")],
            dir.path(),
            Limits::default(),
        ),
        g.ca_pem.clone(),
    )
    .await;
    let c = client(&server.ca_pem, false);

    let ready = c.get(server.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
    let reason = ready.text().await.expect("text");
    assert!(reason.contains("config.yaml"), "{reason}");
    assert_eq!(
        c.get(server.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    // Not ready: pods are allowed untouched, with a warning saying why.
    let (status, answer) = post_review(&c, &server.url("/mutate"), hub_review()).await;
    assert_eq!(status, 200);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("not ready"),
        "{answer}"
    );

    std::fs::copy(setup.join("config.yaml"), &config).expect("fix config");
    eventually("ready after the config is fixed", || async {
        c.get(server.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let (_, answer) = post_review(&c, &server.url("/mutate"), hub_review()).await;
    assert!(answer["response"]["patch"].is_string(), "{answer}");

    std::fs::write(&config, "credentials: [").expect("break config");
    eventually("the broken reload to be counted", || async {
        metric_value(
            &server,
            r#"pull_secret_injector_config_reloads_total{result="error"}"#,
        )
        .await
            == Some(2.0)
    })
    .await;
    assert_eq!(
        c.get(server.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );
    let (_, answer) = post_review(&c, &server.url("/mutate"), hub_review()).await;
    assert!(
        answer["response"]["patch"].is_string(),
        "still served: {answer}"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_injections_warnings_and_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_example("docker-hub", dir.path(), Limits::default()).await;
    let c = client(&server.ca_pem, false);
    let reviews = examples().join("docker-hub/reviews");
    for file in [
        "pod-nginx.json",
        "pod-bad-image.json",
        "sa-default-batch.json",
    ] {
        let body = std::fs::read(reviews.join(file)).expect("review");
        let (status, _) = post_review(&c, &server.url("/mutate"), body).await;
        assert_eq!(status, 200);
    }
    let response = reqwest::get(server.metrics_url()).await.expect("metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("text");
    for expected in [
        r#"pull_secret_injector_admission_requests_total{kind="Pod",operation="CREATE",outcome="patched"} 2"#,
        r#"pull_secret_injector_admission_requests_total{kind="ServiceAccount",operation="CREATE",outcome="patched"} 1"#,
        "pull_secret_injector_admission_duration_seconds_count 3",
        r#"pull_secret_injector_injections_total{credential="dockerhub"} 3"#,
        r#"pull_secret_injector_warnings_total{reason="invalid_image"} 1"#,
        r#"pull_secret_injector_config_reloads_total{result="success"} 1"#,
        "pull_secret_injector_config_credentials 1",
        "pull_secret_injector_build_info{version=",
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
    // Nothing in the metrics names a namespace, an image or secret content.
    assert!(!text.contains("shop") && !text.contains("nginx"), "{text}");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start_example("docker-hub", dir.path(), Limits::default()).await;
    let port = server.running.admission_addr.port();

    // A request whose body is still arriving when the shutdown starts.
    let tls = tls_connect(port, &[&server.ca_pem], &[b"h2"]).await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let (mut tx, channel) = Channel::<Bytes, std::convert::Infallible>::new(1);
    let body = hub_review();
    let (head, tail) = body.split_at(body.len() / 2);
    tx.send_data(Bytes::copy_from_slice(head))
        .await
        .expect("first half");
    let in_flight = tokio::spawn(async move {
        let response = sender
            .send_request(
                Request::post("https://127.0.0.1/mutate")
                    .header("content-type", "application/json")
                    .body(channel)
                    .expect("request"),
            )
            .await
            .expect("in-flight request answered");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body)
    });
    eventually("the request to be in flight", || async {
        metric_value(&server, "pull_secret_injector_admission_in_flight ").await == Some(1.0)
    })
    .await;

    if let Some(stop) = server.stop.take() {
        let _ = stop.send(());
    }
    eventually("new connections to be refused", || async {
        TcpStream::connect(("127.0.0.1", port)).await.is_err()
    })
    .await;
    tx.send_data(Bytes::copy_from_slice(tail))
        .await
        .expect("second half");
    drop(tx);
    let (status, body) = in_flight.await.expect("in-flight task");
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert!(answer["response"]["patch"].is_string(), "{answer}");
    server
        .stop()
        .await
        .expect("server stops cleanly after finishing");
}
