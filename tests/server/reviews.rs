//! Every example review, answered over HTTP/1.1 and HTTP/2 as `review` answers it, its patch applied.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_review_is_answered_over_http1_and_http2() {
    let text = std::fs::read_to_string(examples().join("expectations.json")).expect("read");
    let expectations: Vec<Expectation> = serde_json::from_str(&text).expect("parse");
    let mut setups: Vec<&str> = expectations.iter().map(|e| e.setup.as_str()).collect();
    setups.dedup();
    let mut checked = 0;
    for setup in setups {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = start_example(setup, dir.path(), Limits::default()).await;
        for http1 in [true, false] {
            let client = client(&server.ca_pem, http1);
            for e in expectations
                .iter()
                .filter(|e| e.setup == setup && e.kind == "review")
            {
                let file = e.review.as_deref().expect("review file");
                let path = examples().join(file);
                let body = std::fs::read(&path).expect("review");
                let review: Value = serde_json::from_slice(&body).expect("json");
                let response = client
                    .post(server.url("/mutate?timeout=10s"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                let expected_version = if http1 {
                    reqwest::Version::HTTP_11
                } else {
                    reqwest::Version::HTTP_2
                };
                assert_eq!(response.version(), expected_version, "{file}");
                assert_eq!(response.status(), 200, "{file}");
                let answer: Value = response.json().await.expect("json answer");
                assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
                assert_eq!(answer["kind"], "AdmissionReview");
                assert_eq!(
                    answer["response"]["uid"], review["request"]["uid"],
                    "{file}"
                );
                assert_eq!(answer["response"]["allowed"], true, "{file}");
                let kind = review["request"]["kind"]["kind"].as_str().unwrap_or("");
                let before = pull_secret_names(&review["request"]["object"], kind);
                let patched = apply(&review, &answer);
                let after = pull_secret_names(&patched, kind);
                let added: Vec<String> = after[before.len().min(after.len())..].to_vec();
                assert_eq!(added, e.expect_injected, "{setup}/{file}");
                let warned = answer["response"]["warnings"]
                    .as_array()
                    .is_some_and(|w| !w.is_empty());
                assert_eq!(warned, e.expect_warnings, "{setup}/{file}: {answer}");
                // The patched object is still a valid object of its kind.
                match kind {
                    "Pod" => drop(serde_json::from_value::<Pod>(patched).expect("valid Pod")),
                    "ServiceAccount" => {
                        drop(serde_json::from_value::<ServiceAccount>(patched).expect("valid SA"))
                    }
                    _ => {}
                }
                checked += 1;
            }
        }
        server.stop().await.expect("clean stop");
    }
    assert!(checked >= 100, "only {checked} reviews checked");
}
