//! TLS: only clients trusting the CA get through; with --client-ca, only its clients get reviews answered; a rotated certificate reaches new connections.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_trusting_the_ca_get_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_example("docker-hub", dir.path(), Limits::default()).await;
    let other = certs::generate(&["127.0.0.1".into()], 1).expect("other CA");
    let stranger = client(&other.ca_pem, true);
    let err = stranger
        .get(server.url("/healthz"))
        .send()
        .await
        .expect_err("a client trusting another CA is refused");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    let ok = client(&server.ca_pem, true)
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(ok.status(), 200);
    server.stop().await.expect("clean stop");
}

/// With --client-ca, reviews need a client certificate from that CA, over HTTP/1.1 and HTTP/2;
/// the probes' paths need none (kubelet presents none); a certificate from another CA fails
/// the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_its_clients_get_reviews_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = make_certs(dir.path());
    let apiserver = certs::generate_client("kube-apiserver", 1).expect("client pair");
    let client_dir = dir.path().join("client");
    certs::write(&client_dir, &apiserver, true).expect("write client pair");
    let setup = examples().join("docker-hub");
    let mut serve = args(
        &setup.join("config.yaml"),
        vec![setup.join("cluster")],
        dir.path(),
        Limits::default(),
    );
    serve.client_ca = Some(client_dir.join(certs::CA_FILE));
    let server = start_with(serve, g.ca_pem.clone()).await;

    let with_identity = |pair: &certs::Generated, http1: bool| {
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", pair.cert_pem, pair.key_pem).as_bytes())
                .expect("identity");
        let builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(g.ca_pem.as_bytes()).expect("ca"))
            .tls_built_in_root_certs(false)
            .identity(identity)
            .timeout(Duration::from_secs(30));
        let builder = if http1 { builder.http1_only() } else { builder };
        builder.build().expect("client")
    };
    for http1 in [true, false] {
        let anonymous = client(&server.ca_pem, http1);
        let (status, _) = post_review(&anonymous, &server.url("/mutate"), hub_review()).await;
        assert_eq!(status, 403, "no client certificate");
        let health = anonymous
            .get(server.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(health.status(), 200, "probes need no certificate");

        let apiserver_client = with_identity(&apiserver, http1);
        let (status, review) =
            post_review(&apiserver_client, &server.url("/mutate"), hub_review()).await;
        assert_eq!(status, 200, "{review}");
        assert_eq!(review["response"]["allowed"], true);
    }
    // Refused before its body is read, a large review still gets its 403 read by the client.
    for proto in [Proto::Http1, Proto::Http2] {
        let (status, text) = post_chunks(
            &server,
            proto,
            "application/json",
            vec![b' '; 4 * 1024 * 1024],
            false,
        )
        .await
        .unwrap_or_else(|e| panic!("{proto:?}: {e}"));
        assert_eq!(status, 403, "{proto:?}: {text}");
        assert!(text.contains("--client-ca"), "{proto:?}: {text}");
    }
    let stranger = certs::generate_client("someone", 1).expect("other pair");
    let err = with_identity(&stranger, true)
        .post(server.url("/mutate"))
        .header("content-type", "application/json")
        .body(hub_review())
        .send()
        .await;
    assert!(
        err.as_ref().is_err() || err.as_ref().is_ok_and(|r| r.status() != 200),
        "a certificate from another CA is refused: {err:?}"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_to_new_connections_and_old_ones_carry_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = certs::generate(&["127.0.0.1".into()], 2).expect("first");
    let second = certs::generate(&["127.0.0.1".into()], 2).expect("second");
    let mut mount = MountedSecret::new(dir.path());
    mount.publish_pair(&first);
    let setup = examples().join("docker-hub");
    let server = start_with(
        args(
            &setup.join("config.yaml"),
            vec![setup.join("cluster")],
            dir.path(),
            Limits::default(),
        ),
        first.ca_pem.clone(),
    )
    .await;
    let port = server.running.admission_addr.port();
    let cas = [first.ca_pem.as_str(), second.ca_pem.as_str()];
    let der = |pem: &str| {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .as_ref()
            .to_vec()
    };

    // An HTTP/1.1 connection opened before the rotation.
    let tls = tls_connect(port, &cas, &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&tls), der(&first.cert_pem));
    let (mut old, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let post = || {
        Request::post("/mutate?timeout=10s")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(hub_review())))
            .expect("request")
    };
    let response = old.send_request(post()).await.expect("before rotation");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");

    mount.publish_pair(&second);
    eventually("the new certificate on new connections", || async {
        peer_leaf(&tls_connect(port, &cas, &[b"h2"]).await) == der(&second.cert_pem)
    })
    .await;
    let response = old
        .send_request(post())
        .await
        .expect("old connection still served");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");
    assert_eq!(
        metric_value(
            &server,
            r#"pull_secret_injector_certificate_reloads_total{result="success"}"#
        )
        .await,
        Some(1.0)
    );

    // A broken pair (a key of another certificate) is refused; the second pair stays.
    let third = certs::generate(&["127.0.0.1".into()], 2).expect("third");
    mount.publish(&[
        (certs::CERT_FILE, third.cert_pem.as_bytes()),
        (certs::KEY_FILE, first.key_pem.as_bytes()),
    ]);
    eventually("the broken pair to be reported", || async {
        metric_value(
            &server,
            r#"pull_secret_injector_certificate_reloads_total{result="error"}"#,
        )
        .await
            == Some(1.0)
    })
    .await;
    let tls = tls_connect(port, &cas, &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&tls), der(&second.cert_pem));
    server.stop().await.expect("clean stop");
}
