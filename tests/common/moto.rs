//! A real moto server (PyPI `moto[server]`) on 127.0.0.1: it speaks ECR's
//! `GetAuthorizationToken` (ECR API reference, AWS JSON 1.1 protocol), STS
//! `AssumeRoleWithWebIdentity` (STS API reference, query protocol) and IAM, and, after
//! `INITIAL_NO_AUTH_ACTION_COUNT` free actions, verifies SigV4 signatures against the access
//! keys it issued (moto/core/authorization.py, moto/iam/access_control.py).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto's account when a request names none (moto.core.DEFAULT_ACCOUNT_ID).
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// A running moto server, killed on drop.
pub struct Moto {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    child: Child,
    log: tempfile::NamedTempFile,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$PSI_MOTO_SERVER`, else the copy `.ci/run` installs (its `MOTO_VERSION`) run with
/// `python3 -m moto.server`.
fn command() -> Command {
    if let Some(path) = std::env::var_os("PSI_MOTO_SERVER") {
        return Command::new(path);
    }
    let ci_run = std::fs::read_to_string(repo().join(".ci/run")).unwrap_or_default();
    let version = ci_run
        .lines()
        .find_map(|l| l.strip_prefix("MOTO_VERSION="))
        .unwrap_or("unknown");
    let dir = repo().join(format!("target/ci-tools/moto-{version}"));
    if !dir.join("moto/server.py").is_file() {
        panic!(
            "these tests run a real moto server: run .ci/run, which installs moto[server] \
             {version} into {}, or pip install 'moto[server]' and set PSI_MOTO_SERVER to its \
             moto_server",
            dir.display()
        );
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "moto.server"]).env("PYTHONPATH", dir);
    cmd
}

/// A port nothing listens on now; moto cannot be asked to pick one and say which.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Moto {
    /// Starts moto; with `free_actions`, it checks signatures after that many actions.
    pub async fn start(free_actions: Option<u32>) -> Moto {
        let mut last_error = String::new();
        // The port may be taken between picking and binding: try a few.
        for _ in 0..3 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("log file");
            let mut cmd = command();
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
                .env_remove("MOTO_ACCOUNT_ID")
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("log"))
                .stderr(log.reopen().expect("log"));
            if let Some(n) = free_actions {
                cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
            }
            let child = cmd.spawn().unwrap_or_else(|e| {
                panic!(
                    "cannot run {:?} ({e}): check PSI_MOTO_SERVER, or run .ci/run",
                    cmd.get_program()
                )
            });
            let mut moto = Moto {
                url: format!("http://127.0.0.1:{port}/"),
                child,
                log,
            };
            match moto.wait_ready().await {
                Ok(()) => return moto,
                Err(why) => last_error = format!("{why}; its log:\n{}", moto.log()),
            }
        }
        panic!("moto did not start: {last_error}");
    }

    /// What moto printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    // moto's own API answers without counting as an action, so the free actions stay free.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = format!("{}moto-api/data.json", self.url);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto exited: {status}"));
            }
            match client.get(&probe).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => return Err(format!("{probe} answered {}", r.status())),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => return Err(format!("{probe} does not answer: {e}")),
            }
        }
    }

    /// An IAM query-protocol action, one of the free ones. The Authorization header only
    /// routes it to IAM: moto checks no signature while actions are free.
    pub async fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut form = vec![("Version", "2010-05-08")];
        form.extend_from_slice(params);
        let response = reqwest::Client::new()
            .post(&self.url)
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDSETUP/20260101/us-east-1/iam/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .form(&form)
            .send()
            .await
            .expect("moto IAM answers");
        let status = response.status();
        let text = response.text().await.expect("IAM body");
        assert!(status.is_success(), "IAM {params:?}: {status}: {text}");
        text
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the first `<tag>` element of an XML answer.
pub fn element(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + open.len();
    let end = xml[start..]
        .find(&format!("</{tag}>"))
        .expect("closing tag")
        + start;
    xml[start..end].to_string()
}
