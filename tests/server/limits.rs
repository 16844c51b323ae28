//! Bad requests get a readable 4xx and the server carries on; slow clients are cut off; concurrency is bounded.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx_and_the_server_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_example("docker-hub", dir.path(), Limits::default()).await;
    let c = client(&server.ca_pem, true);
    let url = server.url("/mutate");

    // Wrong or missing content type.
    for content_type in [Some("text/plain"), Some("application/yaml"), None] {
        let mut request = c.post(&url).body(hub_review());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 415, "{content_type:?}");
        let text = response.text().await.expect("text");
        assert!(text.contains("application/json"), "{text}");
    }
    // Parameters and case are fine.
    let response = c
        .post(&url)
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(hub_review())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);

    // Too large, declared up front (answered before the body is sent) and streamed without a
    // length.
    let mut tls = tls_connect(
        server.running.admission_addr.port(),
        &[&server.ca_pem],
        &[b"http/1.1"],
    )
    .await;
    tls.write_all(
        format!(
            "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            8 * 1024 * 1024 + 1
        )
        .as_bytes(),
    )
    .await
    .expect("write headers");
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("8388608-byte limit"), "{answer}");
    let big = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "padding": "x".repeat(9 * 1024 * 1024)}
    }))
    .expect("json");
    let status = streamed_post(&server, big).await;
    assert_eq!(status, 413);

    // Not JSON, not an AdmissionReview, no request, wrong version.
    let secret_marker = "fake-password-not-for-logs";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not valid JSON"),
        (
            format!("{{\"x\": \"{secret_marker}").into_bytes(),
            "ends too early",
        ),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})
                .to_string()
                .into_bytes(),
            "no request",
        ),
        (
            {
                let mut r: Value = serde_json::from_slice(&hub_review()).expect("json");
                r["apiVersion"] = json!("admission.k8s.io/v1beta1");
                r.to_string().into_bytes()
            },
            "only admission.k8s.io/v1",
        ),
        (
            {
                let mut r: Value = serde_json::from_slice(&hub_review()).expect("json");
                r["request"]["uid"] = json!(7);
                r["request"]["name"] = json!(secret_marker);
                r.to_string().into_bytes()
            },
            "AdmissionReview",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = post_review(&c, &url, body).await;
        assert_eq!(status, 400, "{answer}");
        let text = answer.as_str().unwrap_or_default();
        assert!(text.contains(expected), "{text:?} lacks {expected:?}");
        assert!(!text.contains(secret_marker), "{text}");
    }

    // Kinds and operations the injector does not handle: allowed, no patch.
    let mut review: Value = serde_json::from_slice(&hub_review()).expect("json");
    let mut update = review.clone();
    update["request"]["operation"] = json!("UPDATE");
    let mut deployment = review.clone();
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let mut delete = review.clone();
    delete["request"]["operation"] = json!("DELETE");
    delete["request"]["oldObject"] = delete["request"]["object"].take();
    let mut future_operation = review.clone();
    future_operation["request"]["operation"] = json!("SOMETHING_NEW");
    for body in [update, deployment, delete, future_operation] {
        let (status, answer) = post_review(&c, &url, body.to_string().into_bytes()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["response"]["allowed"], true);
        assert!(answer["response"].get("patch").is_none(), "{answer}");
    }

    // Wrong method and unknown path.
    let get = c.get(&url).send().await.expect("get");
    assert_eq!(get.status(), 405);
    let missing = c.post(server.url("/validate")).send().await.expect("post");
    assert_eq!(missing.status(), 404);

    // Arbitrary bytes never take the server down.
    for body in [
        vec![0u8; 100],
        vec![0xff; 3],
        b"[]".to_vec(),
        b"null".to_vec(),
        b"{}".to_vec(),
    ] {
        let (status, _) = post_review(&c, &url, body).await;
        assert!(status == 400 || status == 200, "{status}");
    }
    review["request"]["object"]["spec"]["containers"] = json!("not a list");
    let (status, answer) = post_review(&c, &url, review.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    assert!(answer["response"].get("patch").is_none());
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("is not a list")
    );

    let health = c.get(server.url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(server.metrics_url())
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            r#"admission_requests_total{kind="unknown",operation="unknown",outcome="rejected"}"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains(secret_marker));
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_concurrency_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = Limits {
        body_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_millis(300),
        max_concurrent: 1,
        ..Limits::default()
    };
    let server = start_example("docker-hub", dir.path(), limits).await;
    let port = server.running.admission_addr.port();

    // Headers that never end: the connection is closed.
    let mut tls = tls_connect(port, &[&server.ca_pem], &[b"http/1.1"]).await;
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a connection with unfinished headers open"
    );

    // A body that never ends holds the only slot until it times out with 408; a second
    // request waits for the slot instead of running beside it.
    let tls = tls_connect(port, &[&server.ca_pem], &[b"http/1.1"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let (mut tx, channel) = Channel::<Bytes, std::convert::Infallible>::new(1);
    tx.send_data(Bytes::from_static(b"{\"apiVersion\":"))
        .await
        .expect("first chunk");
    let slow = tokio::spawn(async move {
        let response = sender
            .send_request(
                Request::post("/mutate")
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json")
                    .body(channel)
                    .expect("request"),
            )
            .await
            .expect("response");
        drop(tx);
        response.status().as_u16()
    });
    let c = client(&server.ca_pem, true);
    let (status, answer) = post_review(&c, &server.url("/mutate"), hub_review()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(slow.await.expect("slow task"), 408);
    server.stop().await.expect("clean stop");
}

/// Every request refused before its body is read is read by the client as its status, over
/// HTTP/1.1 and HTTP/2, however the client goes on writing: the server reads the rest of the
/// body (bounded) while it answers, so it neither resets the stream before the answer (HTTP/2)
/// nor closes under a writing client (HTTP/1.1). Repeated, because the failure it replaces was
/// a race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_early_rejection_is_read_as_its_status_over_http1_and_http2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = Limits {
        body_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = start_example("docker-hub", dir.path(), limits).await;
    let big = vec![b' '; 9 * 1024 * 1024];
    for proto in [Proto::Http1, Proto::Http2] {
        for round in 0..3 {
            let (status, text) =
                post_chunks(&server, proto, "application/json", big.clone(), false)
                    .await
                    .unwrap_or_else(|e| panic!("{proto:?} 413, round {round}: {e}"));
            assert_eq!(status, 413, "{proto:?}: {text}");
            assert!(text.contains("8388608-byte limit"), "{proto:?}: {text}");

            let (status, text) = post_chunks(&server, proto, "text/plain", big.clone(), false)
                .await
                .unwrap_or_else(|e| panic!("{proto:?} 415, round {round}: {e}"));
            assert_eq!(status, 415, "{proto:?}: {text}");
            assert!(text.contains("application/json"), "{proto:?}: {text}");
        }
        let (status, text) = post_chunks(&server, proto, "application/json", big.clone(), true)
            .await
            .unwrap_or_else(|e| panic!("{proto:?} 408: {e}"));
        assert_eq!(status, 408, "{proto:?}: {text}");
        assert!(text.contains("not received within"), "{proto:?}: {text}");
        // And the server carries on.
        let (status, review) = post_review(
            &client(&server.ca_pem, proto == Proto::Http1),
            &server.url("/mutate"),
            hub_review(),
        )
        .await;
        assert_eq!(status, 200, "{proto:?}: {review}");
    }
}

/// When every slot stays busy for half of kube-apiserver's timeout (`?timeout=`), a review is
/// answered at once, allowed, without a patch and with a warning, instead of timing out; it is
/// counted as `outcome="overloaded"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_past_half_the_timeout_are_answered_at_once_without_injecting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = Limits {
        body_timeout: Duration::from_secs(20),
        max_concurrent: 1,
        ..Limits::default()
    };
    let server = start_example("docker-hub", dir.path(), limits).await;
    // A body that never ends holds the only slot (for 20 s).
    {
        let holder = post_chunks(
            &server,
            Proto::Http2,
            "application/json",
            vec![b' '; 10],
            true,
        );
        tokio::pin!(holder);
        let checks = async {
            let c = client(&server.ca_pem, false);
            // Wait until the holder has the slot: the in-flight gauge says so.
            eventually("the slot taken", || async {
                metric_value(&server, "pull_secret_injector_admission_in_flight").await == Some(1.0)
            })
            .await;
            let (status, review) =
                post_review(&c, &server.url("/mutate?timeout=2s"), hub_review()).await;
            assert_eq!(status, 200, "{review}");
            let response = &review["response"];
            assert_eq!(response["allowed"], true, "{review}");
            assert!(response.get("patch").is_none(), "{review}");
            let warning = response["warnings"][0].as_str().unwrap_or_default();
            assert!(
        warning.starts_with("pull-secret-injector was busy for ")
            && warning.ends_with("answered without injecting pull secrets; if this pod cannot pull its images, create it again"),
        "{review}"
    );
            let metrics = reqwest::get(server.metrics_url())
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            assert!(metrics.contains("outcome=\"overloaded\""), "{metrics}");
        };
        tokio::select! {
            answered = &mut holder => panic!("the request holding the slot was answered: {answered:?}"),
            () = checks => {}
        }
    }
    server.stop().await.expect("clean stop");
}
