//! What the providers' fakes share: a server on 127.0.0.1 port 0, the
//! `application/x-www-form-urlencoded` bodies OAuth2 requests carry (RFC 6749 appendix B),
//! JSON answers, and RSA keys made at test time so that no private key is committed.

pub mod azure;
pub mod google;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A listener on a free loopback port and its base URL, bound before the router is built so
/// that a fake can know its own URL (Google checks an assertion's `aud` against it).
pub async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// Serves `router` on `listener` until the test's runtime ends.
pub fn spawn(listener: tokio::net::TcpListener, router: Router) {
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
}

/// A JSON answer.
pub fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// A form body's fields; an OAuth2 server refuses another content type or a repeated field.
pub fn form(headers: &HeaderMap, body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(format!("content type {content_type:?} is not a form"));
    }
    let body = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    let mut fields = BTreeMap::new();
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode(name)?, decode(value)?);
        if fields.insert(name.clone(), value).is_some() {
            return Err(format!("field {name} repeated"));
        }
    }
    Ok(fields)
}

/// Checks that `fields` are exactly `want`, naming the first that differs.
pub fn expect_fields(
    fields: &BTreeMap<String, String>,
    want: &[(&str, &str)],
) -> Result<(), String> {
    for (name, value) in want {
        match fields.get(*name) {
            None => return Err(format!("missing field {name}")),
            Some(got) if got != value => return Err(format!("unexpected value of {name}")),
            Some(_) => {}
        }
    }
    if let Some(extra) = fields.keys().find(|k| !want.iter().any(|(n, _)| n == k)) {
        return Err(format!("unexpected field {extra}"));
    }
    Ok(())
}

fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or("truncated percent escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad percent escape")?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "field is not UTF-8".to_string())
}

/// An RSA key pair in the PEM forms a service account key JSON and a verifier use.
pub struct RsaKey {
    /// PKCS#8 (`BEGIN PRIVATE KEY`), as in a service account key's `private_key`.
    pub private_pem: String,
    /// SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`), the form Google publishes a key's
    /// certificate key in.
    pub public_pem: String,
}

/// Two distinct 2048-bit keys (ring signs with nothing shorter), made once per test run.
pub fn rsa_keys() -> &'static [RsaKey; 2] {
    static KEYS: OnceLock<[RsaKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || {
            use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            RsaKey {
                private_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
                public_pem: key
                    .to_public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .unwrap(),
            }
        };
        let other = std::thread::spawn(make);
        [make(), other.join().unwrap()]
    })
}

#[test]
fn forms_decode_as_browsers_encode_them() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let fields = form(&headers, b"a=1+2&b=urn%3Aietf%3Ax&c=").unwrap();
    assert_eq!(fields["a"], "1 2");
    assert_eq!(fields["b"], "urn:ietf:x");
    assert_eq!(fields["c"], "");
    assert!(form(&headers, b"a=1&a=2").unwrap_err().contains("repeated"));
    assert!(
        form(&HeaderMap::new(), b"a=1")
            .unwrap_err()
            .contains("not a form")
    );
}
