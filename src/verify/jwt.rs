//! The expiry of JWT-shaped secrets: OpenShift's `oc whoami -t` tokens, ACR refresh tokens,
//! many robot accounts' passwords. Only the payload's `exp` claim is read; the signature is
//! the registry's business, and nothing here trusts the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `exp` claim (Unix seconds) of a compact JWT (`header.payload.signature`, base64url),
/// or `None` for anything else: a plain password, a malformed token, one without `exp`.
pub fn expiry(token: &str) -> Option<i64> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    // A JWT's header is a JSON object naming its algorithm: a password with two dots is not.
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?).ok()?;
    header.get("alg")?;
    let payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?)
            .ok()?;
    let exp = payload.get("exp")?;
    exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(r#"{"alg":"RS256","typ":"JWT"}"#),
            b64(payload)
        )
    }

    #[test]
    fn exp_is_read_from_jwts_and_nothing_else() {
        let cases: [(String, Option<i64>); 8] = [
            (
                jwt(r#"{"sub":"robot","exp":1796083200}"#),
                Some(1_796_083_200),
            ),
            (jwt(r#"{"exp":1.7e9}"#), Some(1_700_000_000)),
            (jwt(r#"{"exp":1000}"#), Some(1000)),
            (jwt(r#"{"sub":"no exp"}"#), None),
            (jwt(r#"{"exp":"tomorrow"}"#), None),
            ("fake-password".to_string(), None),
            ("a.b.c".to_string(), None),
            (format!("{}.not-base64!.x", b64(r#"{"alg":"none"}"#)), None),
        ];
        for (token, want) in cases {
            assert_eq!(expiry(&token), want, "{token}");
        }
        // Padding some encoders leave is tolerated; more parts are not a JWT.
        let padded = format!(
            "{}=.{}=.sig",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"exp":5}"#)
        );
        assert_eq!(expiry(&padded), Some(5));
        assert_eq!(expiry(&format!("{}.extra", jwt(r#"{"exp":5}"#))), None);
    }
}
