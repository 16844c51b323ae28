//! A real registry answers the probe as it answers a container runtime's login.

use pull_secret_injector::registry::dockerconfig::Login;
use pull_secret_injector::view::ProbeState;

use crate::registry::{Auth, IDENTITY_TOKEN, PASSWORD, Registry, USER};
use crate::{assert_state, password, probe_with};

#[tokio::test]
async fn htpasswd_registry_accepts_the_right_password_rejects_a_wrong_one_and_is_unreachable_when_stopped()
 {
    let mut registry = Registry::start(Auth::Htpasswd).await;
    let ca_pem = registry.ca_pem.clone();
    let ca = Some(ca_pem.as_str());
    let right = probe_with(&registry.host, password(USER, PASSWORD), ca, false).await;
    assert_state(&right, ProbeState::Ok);
    assert!(right.detail.contains("Basic"), "{}", right.detail);
    let wrong = probe_with(&registry.host, password(USER, "wrong-password"), ca, false).await;
    assert_state(&wrong, ProbeState::Rejected);
    assert!(wrong.detail.contains("401"), "{}", wrong.detail);
    assert!(!wrong.detail.contains("wrong-password"));
    registry.stop();
    let stopped = probe_with(&registry.host, password(USER, PASSWORD), ca, false).await;
    assert_state(&stopped, ProbeState::Unreachable);
}

#[tokio::test]
async fn token_registry_accepts_a_token_the_realm_issued_for_the_right_password_only() {
    let registry = Registry::start(Auth::Token).await;
    let ca = Some(registry.ca_pem.as_str());
    let right = probe_with(&registry.host, password(USER, PASSWORD), ca, false).await;
    // ok means the registry itself accepted the signed token, not only the realm the password.
    assert_state(&right, ProbeState::Ok);
    assert!(right.detail.contains("token"), "{}", right.detail);
    let asked = registry.token_requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].method, "GET");
    assert!(
        asked[0].target.contains("service=psi-test-registry"),
        "the realm is asked for the service the challenge named: {}",
        asked[0].target
    );
    let wrong = probe_with(&registry.host, password(USER, "wrong-password"), ca, false).await;
    assert_state(&wrong, ProbeState::Rejected);
    assert!(wrong.detail.contains("token realm"), "{}", wrong.detail);
}

#[tokio::test]
async fn a_token_the_registry_cannot_verify_is_a_rejection_by_the_registry_itself() {
    let registry = Registry::start(Auth::TokenUntrustedSigner).await;
    let found = probe_with(
        &registry.host,
        password(USER, PASSWORD),
        Some(&registry.ca_pem),
        false,
    )
    .await;
    // The realm accepted the password (one token issued); the registry refused its token.
    assert_eq!(registry.token_requests().len(), 1);
    assert_state(&found, ProbeState::Rejected);
    assert!(
        found.detail.contains("refuses the token"),
        "{}",
        found.detail
    );
}

#[tokio::test]
async fn token_registry_accepts_an_identity_token_through_the_refresh_token_grant() {
    let registry = Registry::start(Auth::Token).await;
    let ca = Some(registry.ca_pem.as_str());
    let identity = |token: &str| Login {
        username: Some("<token>".to_string()),
        password: None,
        identity_token: Some(token.to_string()),
    };
    let right = probe_with(&registry.host, identity(IDENTITY_TOKEN), ca, false).await;
    assert_state(&right, ProbeState::Ok);
    let asked = registry.token_requests();
    assert_eq!(asked[0].method, "POST");
    assert!(
        asked[0].body.contains("grant_type=refresh_token"),
        "{}",
        asked[0].body
    );
    assert!(
        asked[0].authorization.is_none(),
        "a refresh token needs no Basic header"
    );
    let wrong = probe_with(&registry.host, identity("revoked-refresh-token"), ca, false).await;
    assert_state(&wrong, ProbeState::Rejected);
    assert!(wrong.detail.contains("invalid_grant"), "{}", wrong.detail);
}

#[tokio::test]
async fn a_registry_whose_certificate_chains_to_no_trusted_ca_is_unreachable_not_rejected() {
    let registry = Registry::start(Auth::Htpasswd).await;
    // No caBundle: the test CA is not among the system's roots.
    let found = probe_with(&registry.host, password(USER, PASSWORD), None, false).await;
    assert_state(&found, ProbeState::Unreachable);
    assert!(found.detail.contains("certificate"), "{}", found.detail);
}
