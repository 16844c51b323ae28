//! `serve`'s start-up errors: each names the flag and the file, says the cause in words, and is
//! printed once.

use std::time::Duration;

use super::*;

/// `serve` in file mode with these certificate flags; it must stop by itself.
fn serve(cert: &Path, key: &Path, extra: &[&str]) -> Run {
    run(bin()
        .env_remove("TLS_CERT_FILE")
        .env_remove("TLS_KEY_FILE")
        .env_remove("CLIENT_CA_FILE")
        .env_remove("RUST_LOG")
        .arg("serve")
        .arg("--config")
        .arg(hub_config())
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(extra)
        .timeout(Duration::from_secs(30)))
}

/// Asserts that `serve` failed with exactly this message, printed once, and nothing else.
fn assert_fails_once_with(r: &Run, message: &str) {
    assert_eq!(r.code, 2, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(r.stderr, format!("error: {message}\n"));
    assert_eq!(r.all().matches(message).count(), 1, "{}", r.all());
}

fn pair(name: &str) -> rcgen::CertifiedKey<rcgen::KeyPair> {
    rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap()
}

#[test]
fn serve_names_the_flag_of_a_missing_certificate_or_key_once() {
    let dir = TempDir::new().unwrap();
    let cert = dir.path().join("missing.crt");
    let key = dir.path().join("missing.key");
    let r = serve(&cert, &key, &[]);
    assert_fails_once_with(
        &r,
        &format!(
            "--tls-cert {}: cannot read it: No such file or directory (os error 2)",
            shown(&cert)
        ),
    );

    let good = pair("localhost");
    let cert = write(&dir, "tls.crt", &good.cert.pem());
    let r = serve(&cert, &key, &[]);
    assert_fails_once_with(
        &r,
        &format!(
            "--tls-key {}: cannot read it: No such file or directory (os error 2)",
            shown(&key)
        ),
    );

    let key = write(&dir, "tls.key", &good.signing_key.serialize_pem());
    let ca = dir.path().join("missing-ca.crt");
    let r = serve(&cert, &key, &["--client-ca", ca.to_str().unwrap()]);
    assert_fails_once_with(
        &r,
        &format!(
            "--client-ca {}: cannot read it: No such file or directory (os error 2)",
            shown(&ca)
        ),
    );
}

#[test]
fn serve_says_in_words_what_is_wrong_with_a_certificate_or_key() {
    let dir = TempDir::new().unwrap();
    let one = pair("localhost");
    let other = pair("localhost");
    let cert = write(&dir, "tls.crt", &one.cert.pem());
    let key = write(&dir, "tls.key", &other.signing_key.serialize_pem());
    let r = serve(&cert, &key, &[]);
    assert_fails_once_with(
        &r,
        &format!(
            "--tls-cert {} and --tls-key {}: the key does not belong to the certificate",
            shown(&cert),
            shown(&key)
        ),
    );
    assert!(!r.all().contains("PRIVATE KEY"), "{}", r.all());

    // The files swapped: a key is no certificate, and a certificate is no key.
    let r = serve(&key, &cert, &[]);
    assert_fails_once_with(
        &r,
        &format!("--tls-cert {}: no PEM certificate in it", shown(&key)),
    );
    let garbage = write(&dir, "garbage.pem", "not PEM at all\n");
    let r = serve(&cert, &garbage, &[]);
    assert_fails_once_with(
        &r,
        &format!("--tls-key {}: no PEM private key in it", shown(&garbage)),
    );

    let key = write(&dir, "tls.key", &one.signing_key.serialize_pem());
    let r = serve(&cert, &key, &["--client-ca", garbage.to_str().unwrap()]);
    assert_fails_once_with(
        &r,
        &format!("--client-ca {}: no PEM certificate in it", shown(&garbage)),
    );
}
