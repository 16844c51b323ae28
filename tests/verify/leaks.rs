//! Credentials go to the registry and to the token realm it names over https, and nowhere
//! else: not to a redirect target on another host, not to a plain-HTTP realm, not to a
//! registry that does not speak TLS. Each case has a server that records what it received, and
//! that would accept what it was sent, so that only the probe's own rules keep it empty.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pull_secret_injector::tls::certs::{self, Generated};
use pull_secret_injector::view::ProbeState;

use crate::https::{Answer, Seen, Server};
use crate::{assert_state, password, probe_with};

const USER: &str = "robot";
const PASSWORD: &str = "fake-secret-password";

fn basic() -> String {
    format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")))
}

fn tls() -> Generated {
    certs::generate(&["127.0.0.1".to_string(), "localhost".to_string()], 1).expect("certs")
}

/// A server on another host name (`localhost`, where the registry is `127.0.0.1`) that would
/// accept anything: a token, a ping.
async fn elsewhere(tls: &Generated) -> Server {
    Server::https(tls, |_| {
        Answer::new(200, r#"{"token":"stolen","access_token":"stolen"}"#)
    })
    .await
}

fn credentials_in(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| {
            s.authorization.is_some() || s.body.contains(PASSWORD) || s.target.contains(PASSWORD)
        })
        .collect()
}

#[tokio::test]
async fn an_authorised_ping_redirected_to_another_host_is_not_followed() {
    let tls = tls();
    let other = elsewhere(&tls).await;
    let location = format!("https://localhost:{}/v2/", other.addr.port());
    let registry = Server::https(&tls, move |seen| match &seen.authorization {
        None => Answer::new(401, "").header("WWW-Authenticate", "Basic realm=\"r\""),
        Some(_) => Answer::new(307, "").header("Location", location.clone()),
    })
    .await;
    let found = probe_with(
        &registry.addr.to_string(),
        password(USER, PASSWORD),
        Some(&tls.ca_pem),
        false,
    )
    .await;
    assert_state(&found, ProbeState::Unreachable);
    assert!(found.detail.contains("another host"), "{}", found.detail);
    assert!(
        other.seen().is_empty(),
        "the other host was asked: {:?}",
        other.seen()
    );
    assert_eq!(registry.seen().len(), 2);
}

#[tokio::test]
async fn a_token_realm_redirected_to_another_host_is_not_followed() {
    let tls = tls();
    let other = elsewhere(&tls).await;
    let location = format!("https://localhost:{}/token", other.addr.port());
    // The realm the registry names sends clients on to another host.
    let realm = Server::https(&tls, move |_| {
        Answer::new(302, "").header("Location", location.clone())
    })
    .await;
    let realm_url = format!("{}/token", realm.url("https"));
    let registry = Server::https(&tls, move |_| {
        Answer::new(401, "").header(
            "WWW-Authenticate",
            format!("Bearer realm=\"{realm_url}\",service=\"s\""),
        )
    })
    .await;
    let found = probe_with(
        &registry.addr.to_string(),
        password(USER, PASSWORD),
        Some(&tls.ca_pem),
        false,
    )
    .await;
    assert_state(&found, ProbeState::Unreachable);
    assert!(found.detail.contains("another host"), "{}", found.detail);
    assert!(
        other.seen().is_empty(),
        "the other host was asked: {:?}",
        other.seen()
    );
    // The realm itself got the credentials once: it is the one the registry named.
    let at_realm = realm.seen();
    assert_eq!(at_realm.len(), 1, "{at_realm:?}");
    assert_eq!(at_realm[0].authorization.as_deref(), Some(basic().as_str()));
}

#[tokio::test]
async fn a_plain_http_token_realm_receives_nothing() {
    let tls = tls();
    let realm_server = Server::http(|_| Answer::new(200, r#"{"token":"t"}"#)).await;
    let realm = format!("{}/token", realm_server.url("http"));
    let registry = Server::https(&tls, move |_| {
        Answer::new(401, "").header(
            "WWW-Authenticate",
            format!("Bearer realm=\"{realm}\",service=\"s\""),
        )
    })
    .await;
    let found = probe_with(
        &registry.addr.to_string(),
        password(USER, PASSWORD),
        Some(&tls.ca_pem),
        false,
    )
    .await;
    assert_state(&found, ProbeState::Unknown);
    assert!(
        found.detail.contains("plain-HTTP token realm"),
        "{}",
        found.detail
    );
    assert!(realm_server.seen().is_empty(), "{:?}", realm_server.seen());
    assert!(credentials_in(&registry.seen()).is_empty());
}

#[tokio::test]
async fn a_registry_without_tls_receives_nothing_unless_the_credential_is_insecure() {
    let registry = Server::http(|seen| match &seen.authorization {
        Some(a) if *a == basic() => Answer::new(200, "{}"),
        Some(_) => Answer::new(401, ""),
        None => Answer::new(401, "").header("WWW-Authenticate", "Basic realm=\"r\""),
    })
    .await;
    let host = registry.addr.to_string();
    let found = probe_with(&host, password(USER, PASSWORD), None, false).await;
    assert_state(&found, ProbeState::Unreachable);
    assert!(registry.seen().is_empty(), "{:?}", registry.seen());
    // `insecure: true` is the admin's explicit choice for a lab registry.
    let found = probe_with(&host, password(USER, PASSWORD), None, true).await;
    assert_state(&found, ProbeState::Ok);
    assert_eq!(credentials_in(&registry.seen()).len(), 1);
}

#[tokio::test]
async fn redirects_within_the_registry_and_a_realm_on_another_https_host_are_followed() {
    let tls = tls();
    let token = "issued-token";
    // The realm: on another host, as auth.docker.io is for registry-1.docker.io; it moves its
    // endpoint within its own origin.
    let realm = Server::https(&tls, move |seen| {
        if seen.target.starts_with("/old-token") {
            Answer::new(307, "").header("Location", "/token?moved=1")
        } else if seen.authorization.as_deref() == Some(basic().as_str()) {
            Answer::new(200, format!(r#"{{"access_token":"{token}"}}"#))
        } else {
            Answer::new(401, "")
        }
    })
    .await;
    let realm_url = format!("https://localhost:{}/old-token", realm.addr.port());
    let registry = Server::https(&tls, move |seen| {
        if seen.authorization.as_deref() == Some(&format!("Bearer {token}")) {
            Answer::new(200, "{}")
        } else {
            Answer::new(401, "").header(
                "WWW-Authenticate",
                format!("Bearer realm=\"{realm_url}\",service=\"registry.example\",scope=\"repository:a/b:pull\""),
            )
        }
    })
    .await;
    let found = probe_with(
        &registry.addr.to_string(),
        password(USER, PASSWORD),
        Some(&tls.ca_pem),
        false,
    )
    .await;
    assert_state(&found, ProbeState::Ok);
    let asked = realm.seen();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[1].target.contains("moved=1"), "{asked:?}");
    // The query the realm sees carries the challenge's service and scope.
    assert!(
        asked[0].target.contains("service=registry.example"),
        "{asked:?}"
    );
    assert!(
        asked[0].target.contains("scope=repository%3Aa%2Fb%3Apull"),
        "{asked:?}"
    );
}
