//! The `serve` and `certs` commands as processes: start-up errors and exit codes, the log line
//! per admission (text and JSON), no credential in any log line, and SIGTERM ending in exit 0.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pull-secret-injector"));
    cmd.env_remove("POD_NAMESPACE")
        .env_remove("RUST_LOG")
        .env_remove("TLS_CERT_FILE")
        .env_remove("TLS_KEY_FILE")
        .env_remove("LOG_FORMAT");
    cmd
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn write_certs(dir: &Path) {
    let out = bin()
        .args(["certs", "--dns", "127.0.0.1", "--dns", "localhost", "--out"])
        .arg(dir)
        .output()
        .expect("run certs");
    assert!(out.status.success(), "{out:?}");
}

/// A `serve` child process; killed if the test fails before stopping it.
struct Serving {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    addr: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serving {
    fn start(dir: &Path, extra: &[&str]) -> Serving {
        let setup = examples().join("docker-hub");
        let mut child = bin()
            .arg("serve")
            .arg("--config")
            .arg(setup.join("config.yaml"))
            .arg("--cluster")
            .arg(setup.join("cluster"))
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serving = Serving {
            child,
            lines,
            log: Vec::new(),
            addr: String::new(),
        };
        let line = serving.wait_for("admission listening on https://");
        let addr = line
            .split("https://")
            .nth(1)
            .and_then(|rest| rest.split(['"', ' ']).next())
            .expect("address in the listening line")
            .to_string();
        serving.addr = addr;
        serving
    }

    /// Reads log lines until one contains `needle`; fails after 30 s or at end of output.
    fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no log line with {needle:?} ({e}); log so far:\n{:#?}",
                    self.log
                ),
            }
        }
    }

    fn post(&self, dir: &Path, body: &[u8]) -> Value {
        let ca = std::fs::read(dir.join("ca.crt")).expect("ca");
        let client = https::blocking_client(&ca);
        client(&format!("https://{}/mutate?timeout=10s", self.addr), body)
    }

    /// Sends SIGTERM and returns the exit code and the rest of the log.
    fn terminate(mut self) -> (Option<i32>, Vec<String>) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: signals a child we started and have not reaped, so the pid is still ours.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill(SIGTERM) failed");
        let code = self.child.wait().expect("wait").code();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.log.push(line);
        }
        (code, std::mem::take(&mut self.log))
    }
}

/// A blocking HTTPS POST through a small current-thread runtime (the tests are sync).
mod https {
    pub fn blocking_client(ca_pem: &[u8]) -> impl Fn(&str, &[u8]) -> serde_json::Value {
        let ca = ::reqwest::Certificate::from_pem(ca_pem).expect("ca");
        let client = ::reqwest::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .build()
            .expect("client");
        move |url: &str, body: &[u8]| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_vec())
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 200);
                response.json().await.expect("json")
            })
        }
    }
}

/// The docker-hub example's fake credentials, as they appear in its secret and decoded.
const SECRETS: [&str; 3] = [
    "fake-password-1",
    "YWNtZS1ib3Q6ZmFrZS1wYXNzd29yZC0x",
    "eyJhdXRocyI6eyJodHRwczovL2luZGV4LmRvY2tlci5pby92MS8iOnsidXNlcm5hbWUiOiJhY21lLWJvdCIsInBhc3N3b3JkIjoiZmFrZS1wYXNzd29yZC0xIiwiYXV0aCI6IllXTnRaUzFpYjNRNlptRnJaUzF3WVhOemQyOXlaQzB4In19fQ",
];

#[test]
fn serve_logs_each_admission_without_credentials_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_certs(dir.path());
    let mut serving = Serving::start(dir.path(), &["--log-format", "json"]);
    let review =
        std::fs::read(examples().join("docker-hub/reviews/pod-nginx.json")).expect("review");
    let answer = serving.post(dir.path(), &review);
    assert!(answer["response"]["patch"].is_string(), "{answer}");
    let line = serving.wait_for("\"message\":\"admission\"");
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["namespace"], "shop");
    assert_eq!(entry["kind"], "Pod");
    assert_eq!(entry["injected"], "dockerhub-pull");
    assert_eq!(entry["outcome"], "patched");
    assert!(entry["latency_us"].is_u64(), "{entry}");

    // An unreadable object carrying something password-like: warned about, never echoed.
    let mut bad: Value = serde_json::from_slice(&review).expect("json");
    bad["request"]["object"]["spec"]["containers"][0]["image"] =
        json!({"password": "marker-password-in-a-review"});
    let answer = serving.post(dir.path(), bad.to_string().as_bytes());
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    assert!(!answer.to_string().contains("marker-password"), "{answer}");
    serving.wait_for("object not readable");

    let (code, log) = serving.terminate();
    assert_eq!(code, Some(0), "{log:#?}");
    let all = log.join("\n");
    assert!(all.contains("SIGTERM"), "{all}");
    for secret in SECRETS.iter().chain(&["marker-password"]) {
        assert!(!all.contains(secret), "log leaks {secret}:\n{all}");
    }
}

#[test]
fn text_logs_name_the_object_and_what_was_injected() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_certs(dir.path());
    let mut serving = Serving::start(dir.path(), &[]);
    let review =
        std::fs::read(examples().join("docker-hub/reviews/sa-default-batch.json")).expect("review");
    serving.post(dir.path(), &review);
    let line = serving.wait_for(" admission ");
    assert!(line.contains("kind=ServiceAccount"), "{line}");
    assert!(line.contains("namespace=batch"), "{line}");
    assert!(line.contains("name=default"), "{line}");
    assert!(line.contains("injected=dockerhub-pull"), "{line}");
    assert!(
        !line.contains('\u{1b}'),
        "no colour codes when not a terminal: {line:?}"
    );
    let (code, _) = serving.terminate();
    assert_eq!(code, Some(0));
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin().args(args).output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_refuses_to_start_with_a_clear_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let (cert, key) = (cert.to_str().expect("utf8"), key.to_str().expect("utf8"));
    let base = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];

    // Missing certificate files.
    let config = examples().join("docker-hub/config.yaml");
    let config = config.to_str().expect("utf8");
    let (code, _, stderr) = run(&[&base[..], &["--config", config]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("tls.crt"), "{stderr}");

    write_certs(dir.path());
    // No --config: cluster mode, which needs a readable kubeconfig (or in-cluster config).
    let missing = dir.path().join("no-such-kubeconfig");
    let missing = missing.to_str().expect("utf8");
    let (code, _, stderr) = run(&[&base[..], &["--kubeconfig", missing]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot read kubeconfig"), "{stderr}");
    assert!(stderr.contains("no-such-kubeconfig"), "{stderr}");
    // Self-signed mode keeps its certificate in a Secret: it needs cluster mode.
    let (code, _, stderr) = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--self-signed",
        "--config",
        config,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--self-signed needs cluster mode"),
        "{stderr}"
    );
    // Neither certificate files nor --self-signed.
    let (code, _, stderr) = run(&["serve", "--config", config]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--tls-cert"), "{stderr}");
    // A ConfigMap reference that is not NAMESPACE/NAME.
    let (code, _, stderr) = run(&[&base[..], &["--config-map", "just-a-name"]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("expected NAMESPACE/NAME"), "{stderr}");
    // --cluster alone.
    let (code, _, stderr) = run(&[&base[..], &["--cluster", "."]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--cluster needs --config"), "{stderr}");
    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    let mut args = base.to_vec();
    args[2] = &port;
    let (code, _, stderr) = run(&[&args[..], &["--config", config]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&port), "{stderr}");
}

#[test]
fn certs_writes_a_usable_pair_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("certs");
    let out_str = out.to_str().expect("utf8");
    let (code, stdout, stderr) = run(&["certs", "--dns", "psi.psi.svc", "--out", out_str]);
    assert_eq!(code, Some(0), "{stderr}");
    for file in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(stdout.contains(file), "{stdout}");
        assert!(out.join(file).is_file());
    }
    let (code, _, stderr) = run(&["certs", "--dns", "psi.psi.svc", "--out", out_str]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--force"), "{stderr}");
    let (code, _, stderr) = run(&["certs", "--dns", "psi.psi.svc", "--out", out_str, "--force"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = run(&["certs", "--dns", "not a name", "--out", out_str]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("\"not a name\""), "{stderr}");
}
