//! Load benchmark of the served webhook: requests/s at saturation, latency at a fixed rate, and
//! memory, for OUR `serve` against a BASELINE server that only does what any webhook must
//! (TLS, HTTP, one JSON pass over the body, a constant answer). The ratio of the two says what
//! the injector's own work costs on top of the unavoidable part.
//!
//! Run: `cargo bench --bench load` (cargo builds the crate's binary first; nothing is built
//! here). One run takes about 100 s with the defaults.
//!
//! What it does, per round (baseline first, then ours, each as a fresh process):
//! 1. warm-up: every fixture once on one connection, checking that ours patches exactly the
//!    `patched-*` fixtures, then closed-loop load for `LOAD_WARMUP_SECS`;
//! 2. closed loop over `LOAD_CONNS` keep-alive HTTP/1.1 connections for `LOAD_SATURATE_SECS`:
//!    requests/s, with the server's and the generator's CPU use, so that a generator-bound run
//!    (both servers look alike, the ratio means nothing) is visible;
//! 3. the same over HTTP/2 (`LOAD_CONNS` streams on `LOAD_H2_CONNS` connections), as
//!    kube-apiserver speaks h2 to webhooks, for `LOAD_H2_SECS` (0 skips it);
//! 4. open loop at `LOAD_RATE` requests/s over the HTTP/1.1 connections for `LOAD_RATE_SECS`:
//!    sends are scheduled by the clock and latency is measured from the scheduled time, so a
//!    slow answer delays the next sends' clocks, not the measurement (no coordinated omission).
//!
//! Every answer is checked: status 200, `"allowed":true`, the request's uid echoed. Each request
//! has a fresh uid. Both servers get the same fixtures, connections and phases; rounds alternate
//! so machine noise hits both; the summary takes each server's best round for requests/s (other
//! processes can only lower it) and its quietest round for latency, and prints every round.
//!
//! The server runs on one CPU (`taskset -c`), the generator on the others (sched_setaffinity),
//! when taskset exists and at least 2 CPUs are allowed; the output says what was used.
//!
//! Ours runs as deployed: the Deployment's logging (`--log-format=json`, the default `info`
//! filter: one JSON line per admission) to a file.
//!
//! Environment (all optional):
//! - `LOAD_ROUNDS` (3): rounds, each running baseline then ours.
//! - `LOAD_WARMUP_SECS` (1), `LOAD_SATURATE_SECS` (5), `LOAD_H2_SECS` (3), `LOAD_RATE_SECS` (5):
//!   phase durations, fractional seconds allowed.
//! - `LOAD_RATE` (1000): open-loop requests/s.
//! - `LOAD_CONNS` (16): HTTP/1.1 connections, and HTTP/2 concurrent streams.
//! - `LOAD_H2_CONNS` (1): HTTP/2 connections the streams share.
//! - `LOAD_ONLY` (unset): `ours` or `baseline` to run one server (for profiling).
//! - `LOAD_OURS_BIN` (unset): another build of pull-secret-injector to serve as ours, e.g. one
//!   with frame pointers for `perf record -g`.
//! - `LOAD_LOG_FORMAT` (`json`): ours' `--log-format` (`text` to compare).
//! - `LOAD_WRAP` (unset): a command prefix both servers run under, e.g.
//!   `valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p` to count instructions.
//! - `LOAD_STRICT` (unset): `1` makes a FAIL against the targets exit with status 1.
//! - `LOAD_DISTINCT` (unset): `1` makes every body differ beyond its uid (an extra top-level
//!   field), so that ours reuses no answer and every review is read and decided: the cost of
//!   a review seen for the first time. By default the fixtures repeat with fresh uids, as a
//!   ReplicaSet's pods do, and ours answers repeats from the first answer.
//!
//! Targets: ours/baseline requests/s >= 0.9 (HTTP/1.1), p99 < 2 ms at 1,000 requests/s,
//! peak RSS < 30 MiB.

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Set (to `baseline`) when this program is re-executed as the baseline server.
const ROLE_ENV: &str = "PSI_LOAD_ROLE";
const CERT_ENV: &str = "PSI_LOAD_TLS_CERT";
const KEY_ENV: &str = "PSI_LOAD_TLS_KEY";
/// The setup the fixtures are written for.
const SETUP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ibm-cloud-all-icr-io");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures");
const OURS_BIN: &str = env!("CARGO_BIN_EXE_pull-secret-injector");

const TARGET_RATIO: f64 = 0.9;
const TARGET_P99_MS: f64 = 2.0;
const TARGET_RSS_MIB: f64 = 30.0;

fn main() {
    if std::env::var(ROLE_ENV).as_deref() == Ok("baseline") {
        baseline::main();
        return;
    }
    let code = orchestrate();
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------------
// Settings

#[derive(Debug, Clone)]
struct Settings {
    rounds: usize,
    warmup: Duration,
    saturate: Duration,
    h2: Duration,
    rate_phase: Duration,
    rate: f64,
    conns: usize,
    h2_conns: usize,
    only: Option<Kind>,
    strict: bool,
    distinct: bool,
}

fn env_secs(name: &str, default: f64) -> Duration {
    let secs = env_num(name, default);
    Duration::from_secs_f64(secs.max(0.0))
}

fn env_num(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Settings {
        let only = match std::env::var("LOAD_ONLY").as_deref() {
            Err(_) | Ok("") => None,
            Ok("ours") => Some(Kind::Ours),
            Ok("baseline") => Some(Kind::Baseline),
            Ok(other) => panic!("LOAD_ONLY={other:?}: expected ours or baseline"),
        };
        Settings {
            rounds: (env_num("LOAD_ROUNDS", 3.0) as usize).max(1),
            warmup: env_secs("LOAD_WARMUP_SECS", 1.0),
            saturate: env_secs("LOAD_SATURATE_SECS", 5.0),
            h2: env_secs("LOAD_H2_SECS", 3.0),
            rate_phase: env_secs("LOAD_RATE_SECS", 5.0),
            rate: env_num("LOAD_RATE", 1000.0).max(1.0),
            conns: (env_num("LOAD_CONNS", 16.0) as usize).max(1),
            h2_conns: (env_num("LOAD_H2_CONNS", 1.0) as usize).max(1),
            only,
            strict: std::env::var("LOAD_STRICT").as_deref() == Ok("1"),
            distinct: std::env::var("LOAD_DISTINCT").as_deref() == Ok("1"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU pinning

#[derive(Debug, Clone)]
enum Pinning {
    Pinned {
        server: usize,
        generator: Vec<usize>,
    },
    Unpinned(String),
}

impl Pinning {
    fn describe(&self) -> String {
        match self {
            Pinning::Pinned { server, generator } => format!(
                "server pinned to CPU {server} (taskset -c {server}), generator to CPU {} (sched_setaffinity)",
                generator
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Pinning::Unpinned(why) => {
                format!("NOT pinned ({why}): server and generator share CPUs")
            }
        }
    }
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins this thread (so every thread started later: the generator's runtime) to all allowed
/// CPUs but the first, which is left to the server. Must run before any thread is started.
fn pin() -> Pinning {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        return Pinning::Unpinned(format!("{} CPU allowed", cpus.len()));
    }
    let taskset = Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !taskset.is_ok_and(|s| s.success()) {
        return Pinning::Unpinned("taskset not found".to_string());
    }
    let server = cpus[0];
    let generator = cpus[1..].to_vec();
    // SAFETY: as above; the set is built locally and passed by pointer with its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in &generator {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Pinning::Unpinned(format!(
            "sched_setaffinity failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Pinning::Pinned { server, generator }
}

// ---------------------------------------------------------------------------------------------
// /proc readings

/// utime + stime of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')').expect("/proc/PID/stat has a (comm) field") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the man page are utime and stime; `rest` starts at field 3.
    let utime: u64 = fields[11].parse().expect("utime is a number");
    let stime: u64 = fields[12].parse().expect("stime is a number");
    utime + stime
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// VmRSS and VmHWM in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Busy clock ticks of the whole machine (all CPUs), from /proc/stat.
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    let cpu = stat.lines().next().unwrap_or_default();
    // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum()
}

/// CPU seconds used by the server, by this generator, and by everything else on the machine
/// over a stretch of wall time: other work on a shared machine skews both servers' numbers.
struct CpuMeter {
    server_pid: String,
    wall: Instant,
    server: u64,
    generator: u64,
    machine: u64,
}

/// CPU-seconds per wall-second.
#[derive(Debug, Clone, Copy, Default)]
struct CpuUse {
    server: f64,
    generator: f64,
    other: f64,
}

impl CpuMeter {
    fn start(server_pid: u32) -> CpuMeter {
        let server_pid = server_pid.to_string();
        CpuMeter {
            server: cpu_ticks(&server_pid),
            generator: cpu_ticks("self"),
            machine: machine_busy_ticks(),
            wall: Instant::now(),
            server_pid,
        }
    }

    fn stop(&self) -> CpuUse {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let hz = clock_ticks_per_sec();
        let per_sec = |ticks: u64| ticks as f64 / hz / wall;
        let server = per_sec(cpu_ticks(&self.server_pid).saturating_sub(self.server));
        let generator = per_sec(cpu_ticks("self").saturating_sub(self.generator));
        let machine = per_sec(machine_busy_ticks().saturating_sub(self.machine));
        CpuUse {
            server,
            generator,
            other: (machine - server - generator).max(0.0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server processes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Baseline,
    Ours,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Baseline => "baseline",
            Kind::Ours => "ours",
        }
    }
}

/// A running server; stopped (SIGTERM, then SIGKILL) when dropped, also while unwinding.
struct Server {
    kind: Kind,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn spawn(kind: Kind, pinning: &Pinning, certs: &Path, log: PathBuf) -> Server {
        let exe = match kind {
            Kind::Ours => ours_bin(),
            Kind::Baseline => std::env::current_exe().expect("the bench's own path, to re-run it"),
        };
        // LOAD_WRAP runs the server under another program (a profiler) given as a prefix.
        let wrap: Vec<String> = std::env::var("LOAD_WRAP")
            .map(|w| w.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let mut program: Vec<std::ffi::OsString> = wrap.into_iter().map(Into::into).collect();
        program.push(exe.into_os_string());
        if let Pinning::Pinned { server, .. } = pinning {
            program.splice(
                0..0,
                ["taskset".into(), "-c".into(), server.to_string().into()],
            );
        }
        let mut cmd = Command::new(&program[0]);
        cmd.args(&program[1..]);
        match kind {
            Kind::Ours => {
                cmd.arg("serve")
                    .arg("--config")
                    .arg(format!("{SETUP}/config.yaml"))
                    .arg("--cluster")
                    .arg(format!("{SETUP}/cluster"))
                    .arg("--tls-cert")
                    .arg(certs.join("tls.crt"))
                    .arg("--tls-key")
                    .arg(certs.join("tls.key"))
                    .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
                    // The Deployment's log settings: JSON lines, the default filter (info),
                    // one line per admission.
                    .arg(format!("--log-format={}", log_format()))
                    .env_remove("RUST_LOG");
            }
            Kind::Baseline => {
                cmd.env(ROLE_ENV, "baseline")
                    .env(CERT_ENV, certs.join("tls.crt"))
                    .env(KEY_ENV, certs.join("tls.key"));
            }
        }
        let out = File::create(&log).expect("create the server's log file");
        let err = out.try_clone().expect("share the log file with stderr");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // If this bench dies without unwinding (SIGKILL), the kernel stops the server too.
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {} server: {e}", kind.name()));
        let mut server = Server {
            kind,
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            log,
        };
        server.addr = server.wait_listening();
        server
    }

    fn pid(&self) -> u32 {
        // taskset execs the program: the child's pid is the server's.
        self.child.id()
    }

    /// Waits for the "... listening on https://ADDR" line in the log.
    fn wait_listening(&mut self) -> SocketAddr {
        let marker = match self.kind {
            Kind::Ours => "admission listening on https://",
            Kind::Baseline => "baseline listening on https://",
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(at) = text.find(marker) {
                // The address ends where a text line's space or a JSON string's quote does.
                let rest = &text[at + marker.len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
                    .unwrap_or(rest.len());
                let addr = &rest[..end];
                return addr
                    .parse()
                    .unwrap_or_else(|e| panic!("bad listening address {addr:?}: {e}"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the {} server exited ({status}) before listening:\n{text}",
                    self.kind.name()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the {} server did not listen within 15 s:\n{text}",
                    self.kind.name()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill with a pid we started and have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "the {} server ignored SIGTERM for 5 s; killing it",
            self.kind.name()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--log-format` for ours: `json` as the Deployment sets it, or `LOAD_LOG_FORMAT`.
fn log_format() -> String {
    std::env::var("LOAD_LOG_FORMAT").unwrap_or_else(|_| "json".to_string())
}

fn ours_bin() -> PathBuf {
    std::env::var_os("LOAD_OURS_BIN").map_or_else(|| PathBuf::from(OURS_BIN), PathBuf::from)
}

/// Writes ca.crt, tls.crt, tls.key with the crate's own `certs` command.
fn make_certs(dir: &Path) {
    let out = Command::new(OURS_BIN)
        .args(["certs", "--dns", "127.0.0.1", "--dns", "localhost", "--out"])
        .arg(dir)
        .arg("--force")
        .output()
        .expect("run `pull-secret-injector certs`");
    assert!(
        out.status.success(),
        "`pull-secret-injector certs` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Fixture {
    name: String,
    /// Compact JSON, as kube-apiserver sends it.
    template: Vec<u8>,
    /// Where the 36-byte request uid starts in `template`.
    uid_at: usize,
    expect_patch: bool,
}

/// Set from `LOAD_DISTINCT`: every body differs beyond its uid.
static DISTINCT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Fixture {
    fn body(&self, uid: &[u8; 36]) -> Bytes {
        let mut body = self.template.clone();
        body[self.uid_at..self.uid_at + 36].copy_from_slice(uid);
        if DISTINCT.load(std::sync::atomic::Ordering::Relaxed) {
            // A top-level field no server reads, holding the uid again: the body is unique,
            // as if every review differed in a field the decision ignores (managedFields
            // times), so ours can reuse no answer.
            let mut distinct = Vec::with_capacity(body.len() + 64);
            distinct.extend_from_slice(b"{\"x-load-distinct\":\"");
            distinct.extend_from_slice(uid);
            distinct.extend_from_slice(b"\",");
            distinct.extend_from_slice(&body[1..]);
            body = distinct;
        }
        Bytes::from(body)
    }
}

/// Removes whitespace outside strings, keeping the key order (serde_json's Value would sort
/// keys, and kube-apiserver's Go encoder keeps struct order).
fn minify(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !b.is_ascii_whitespace() {
            out.push(b);
            in_string = b == b'"';
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn load_fixtures() -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .unwrap_or_else(|e| panic!("cannot list {FIXTURES}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let fixtures: Vec<Fixture> = paths
        .iter()
        .map(|path| {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("fixture names are UTF-8")
                .to_string();
            let raw = std::fs::read(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let value: serde_json::Value = serde_json::from_slice(&raw)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            let uid = value["request"]["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no request.uid", path.display()));
            assert_eq!(
                uid.len(),
                36,
                "{}: request.uid is not a UUID",
                path.display()
            );
            let template = minify(&raw);
            let needle = format!("\"uid\":\"{uid}\"");
            let at = find(&template, needle.as_bytes())
                .unwrap_or_else(|| panic!("{}: request.uid not found", path.display()));
            assert!(
                find(&template[at + 1..], needle.as_bytes()).is_none(),
                "{}: the request uid appears twice",
                path.display()
            );
            let expect_patch = if name.starts_with("patched-") {
                true
            } else if name.starts_with("unchanged-") {
                false
            } else {
                panic!("{name}: fixture names start with patched- or unchanged-")
            };
            Fixture {
                name,
                template,
                uid_at: at + "\"uid\":\"".len(),
                expect_patch,
            }
        })
        .collect();
    assert!(!fixtures.is_empty(), "no fixtures in {FIXTURES}");
    fixtures
}

/// A fresh uid per request: worker and sequence number in UUID layout.
fn make_uid(worker: usize, seq: u64) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let value: u128 = (0x5eed_u128 << 112) | ((worker as u128) << 64) | seq as u128;
    let mut out = [0u8; 36];
    let mut nibble = 32;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
            continue;
        }
        nibble -= 1;
        *slot = HEX[((value >> (nibble * 4)) & 0xf) as usize];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Client

#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
}

/// One HTTP/1.1 connection (one request at a time), or a handle on an HTTP/2 connection (cloned
/// for each concurrent stream).
enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

fn tls_config(ca: &Path, alpn: &[u8]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read ca.crt") {
        roots
            .add(cert.expect("ca.crt holds PEM certificates"))
            .expect("ca.crt is a usable CA");
    }
    // TLS 1.3 only: both servers offer 1.2 and 1.3; this makes sure both negotiate the same.
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

impl Client {
    async fn connect(&self, h2: bool) -> Conn {
        let tcp = TcpStream::connect(self.addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr));
        tcp.set_nodelay(true).expect("set TCP_NODELAY");
        let config = if h2 { &self.h2 } else { &self.h1 };
        let name = ServerName::from(IpAddr::from(Ipv4Addr::LOCALHOST));
        let tls = TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with {}: {e}", self.addr));
        let (_, session) = tls.get_ref();
        assert_eq!(
            session.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3),
            "TLS 1.3 negotiated"
        );
        let want: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        assert_eq!(session.alpn_protocol(), Some(want), "ALPN negotiated");
        let io = TokioIo::new(tls);
        if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("HTTP/2 handshake");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Conn::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await.expect("HTTP/1.1 handshake");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Conn::H1(sender)
        }
    }
}

/// What one answer said.
enum Answer {
    Ok { patched: bool },
    Bad(String),
}

/// One connection per worker: HTTP/1.1 connections as they are (one worker each), HTTP/2
/// handles cloned so that `workers` streams share the connections.
fn fan_out(conns: Vec<Conn>, workers: usize) -> Vec<Conn> {
    if matches!(conns.first(), Some(Conn::H1(_))) {
        assert_eq!(conns.len(), workers, "one worker per HTTP/1.1 connection");
        return conns;
    }
    (0..workers)
        .map(|w| match &conns[w % conns.len()] {
            Conn::H2(s) => Conn::H2(s.clone()),
            Conn::H1(_) => panic!("HTTP/1.1 and HTTP/2 connections mixed"),
        })
        .collect()
}

impl Conn {
    /// Sends one review as kube-apiserver does and checks the answer.
    async fn review(&mut self, addr: SocketAddr, body: Bytes, uid: &[u8; 36]) -> Answer {
        let builder = Request::post(match self {
            // kube-apiserver appends its timeout to the webhook path.
            Conn::H1(_) => "/mutate?timeout=10s".to_string(),
            Conn::H2(_) => format!("https://{addr}/mutate?timeout=10s"),
        })
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, */*")
        .header(header::USER_AGENT, "kube-apiserver-admission");
        let builder = match self {
            Conn::H1(_) => builder.header(header::HOST, addr.to_string()),
            Conn::H2(_) => builder,
        };
        let request = builder
            .body(Full::new(body))
            .expect("a well-formed request");
        let response = match self {
            Conn::H1(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
            Conn::H2(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return Answer::Bad(format!("request failed: {e}")),
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return Answer::Bad(format!("body failed: {e}")),
        };
        if status != StatusCode::OK {
            return Answer::Bad(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        if find(&body, b"\"allowed\":true").is_none() {
            return Answer::Bad(format!(
                "not allowed: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        if find(&body, uid).is_none() {
            return Answer::Bad("the request's uid is not echoed".to_string());
        }
        Answer::Ok {
            patched: find(&body, b"\"patch\":").is_some(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load phases

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    fn count(&mut self, answer: &Answer) {
        match answer {
            Answer::Ok { .. } => self.ok += 1,
            Answer::Bad(why) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(why.clone());
                }
            }
        }
    }
}

struct Closed {
    tally: Tally,
    rps: f64,
    latency: Histogram<u64>,
    cpu: CpuUse,
}

/// Each worker sends, waits for the answer, sends again, until `duration` is over.
async fn closed_loop(
    conns: Vec<Conn>,
    workers: usize,
    addr: SocketAddr,
    fixtures: &Arc<Vec<Fixture>>,
    duration: Duration,
    server_pid: u32,
) -> (Closed, Vec<Conn>) {
    let meter = CpuMeter::start(server_pid);
    let started = Instant::now();
    let end = started + duration;
    let tasks: Vec<_> = fan_out(conns, workers)
        .into_iter()
        .enumerate()
        .map(|(w, mut conn)| {
            let fixtures = fixtures.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut latency = histogram();
                let mut seq = 0u64;
                while Instant::now() < end {
                    let fixture = &fixtures[(w + seq as usize) % fixtures.len()];
                    let uid = make_uid(w, seq);
                    seq += 1;
                    let sent = Instant::now();
                    let answer = conn.review(addr, fixture.body(&uid), &uid).await;
                    let _ = latency.record(micros(sent.elapsed()));
                    tally.count(&answer);
                }
                (tally, latency, conn)
            })
        })
        .collect();
    let mut tally = Tally::default();
    let mut latency = histogram();
    let mut conns = Vec::with_capacity(workers);
    for t in tasks {
        let (t, h, conn) = t.await.expect("a load worker panicked");
        tally.add(&t);
        latency.add(&h).expect("histograms of the same bounds");
        conns.push(conn);
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = meter.stop();
    let closed = Closed {
        rps: tally.ok as f64 / wall,
        tally,
        latency,
        cpu,
    };
    (closed, conns)
}

struct Open {
    tally: Tally,
    achieved: f64,
    latency: Histogram<u64>,
    send_lag: Histogram<u64>,
    cpu: CpuUse,
}

/// Request `i` (over all connections) is due at `start + i / rate`; connection `w` sends
/// requests w, w + N, w + 2N, ... whatever the answers' pace. When a connection is still busy at
/// a due time, latency counts from the due time, so time spent waiting on a slow server is
/// counted as a kube-apiserver would see it (no coordinated omission).
async fn open_loop(
    conns: Vec<Conn>,
    addr: SocketAddr,
    fixtures: &Arc<Vec<Fixture>>,
    duration: Duration,
    rate: f64,
    server_pid: u32,
) -> Open {
    let meter = CpuMeter::start(server_pid);
    let n = conns.len();
    let start = Instant::now() + Duration::from_millis(5);
    let total = (duration.as_secs_f64() * rate) as u64;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(w, mut conn)| {
            let fixtures = fixtures.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut latency = histogram();
                let mut lag = histogram();
                let mut i = w as u64;
                while i < total {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    // The connection is free before the due time: latency counts from the actual
                    // send, since tokio's timer wakes up to 1 ms late and that slack is the
                    // generator's, not the server's. It is still busy at the due time (the
                    // server is slow): latency counts from the due time, as the request would
                    // have waited that long.
                    let counted_from = if due > Instant::now() {
                        tokio::time::sleep_until(due.into()).await;
                        Instant::now()
                    } else {
                        due
                    };
                    let _ = lag.record(micros(due.elapsed()));
                    let fixture = &fixtures[i as usize % fixtures.len()];
                    let uid = make_uid(w, i);
                    let answer = conn.review(addr, fixture.body(&uid), &uid).await;
                    let _ = latency.record(micros(counted_from.elapsed()));
                    tally.count(&answer);
                    i += n as u64;
                }
                (tally, latency, lag)
            })
        })
        .collect();
    let mut tally = Tally::default();
    let mut latency = histogram();
    let mut send_lag = histogram();
    for t in tasks {
        let (t, h, l) = t.await.expect("a load worker panicked");
        tally.add(&t);
        latency.add(&h).expect("histograms of the same bounds");
        send_lag.add(&l).expect("histograms of the same bounds");
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = meter.stop();
    Open {
        achieved: tally.ok as f64 / wall,
        tally,
        latency,
        send_lag,
        cpu,
    }
}

/// Every fixture once; for ours, each must be patched exactly when its name says so.
async fn check_fixtures(conn: &mut Conn, addr: SocketAddr, fixtures: &[Fixture], kind: Kind) {
    for (i, fixture) in fixtures.iter().enumerate() {
        let uid = make_uid(usize::MAX >> 16, i as u64);
        match conn.review(addr, fixture.body(&uid), &uid).await {
            Answer::Bad(why) => panic!("{}: {}: {why}", kind.name(), fixture.name),
            Answer::Ok { patched } => {
                if kind == Kind::Ours {
                    assert_eq!(
                        patched, fixture.expect_patch,
                        "ours answered {} with patched={patched}; the fixture name says otherwise",
                        fixture.name
                    );
                }
            }
        }
    }
}

struct Round {
    h1: Closed,
    h2: Option<Closed>,
    open: Open,
    rss_idle_kib: u64,
    rss_end_kib: u64,
    hwm_kib: u64,
    log_lines: Option<(u64, u64)>,
}

impl Round {
    fn errors(&self) -> u64 {
        self.h1.tally.errors
            + self.h2.as_ref().map_or(0, |h| h.tally.errors)
            + self.open.tally.errors
    }

    fn first_error(&self) -> Option<&str> {
        [
            Some(&self.h1.tally),
            self.h2.as_ref().map(|h| &h.tally),
            Some(&self.open.tally),
        ]
        .into_iter()
        .flatten()
        .find_map(|t| t.first_error.as_deref())
    }
}

async fn measure(
    server: &Server,
    client: &Client,
    fixtures: &Arc<Vec<Fixture>>,
    s: &Settings,
) -> Round {
    let pid = server.pid();
    let addr = server.addr;
    let (rss_idle_kib, _) = memory_kib(pid);

    let mut h1 = Vec::with_capacity(s.conns);
    for _ in 0..s.conns {
        h1.push(client.connect(false).await);
    }
    check_fixtures(&mut h1[0], addr, fixtures, server.kind).await;
    let h1 = if s.warmup.is_zero() {
        h1
    } else {
        closed_loop(h1, s.conns, addr, fixtures, s.warmup, pid)
            .await
            .1
    };
    let (h1_result, h1) = closed_loop(h1, s.conns, addr, fixtures, s.saturate, pid).await;

    let h2_result = if s.h2.is_zero() {
        None
    } else {
        let mut h2 = Vec::with_capacity(s.h2_conns);
        for _ in 0..s.h2_conns {
            h2.push(client.connect(true).await);
        }
        check_fixtures(&mut h2[0], addr, fixtures, server.kind).await;
        Some(closed_loop(h2, s.conns, addr, fixtures, s.h2, pid).await.0)
    };

    let open = open_loop(h1, addr, fixtures, s.rate_phase, s.rate, pid).await;
    let (rss_end_kib, hwm_kib) = memory_kib(pid);
    let log_lines = (server.kind == Kind::Ours).then(|| {
        let text = std::fs::read_to_string(&server.log).unwrap_or_default();
        let lines = text
            .lines()
            // Both formats: text (`admission uid=`) and JSON (`"message":"admission"`).
            .filter(|l| l.contains(" admission uid=") || l.contains("\"message\":\"admission\""))
            .count() as u64;
        (lines, text.len() as u64)
    });
    Round {
        h1: h1_result,
        h2: h2_result,
        open,
        rss_idle_kib,
        rss_end_kib,
        hwm_kib,
        log_lines,
    }
}

// ---------------------------------------------------------------------------------------------
// Report

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_round(round: usize, kind: Kind, r: &Round) {
    let h2 = r.h2.as_ref().map_or("h2 skipped".to_string(), |h| {
        format!(
            "h2 {:>6.0} rps (CPU srv {:.2} gen {:.2})",
            h.rps, h.cpu.server, h.cpu.generator
        )
    });
    println!(
        "round {round} {:<8} h1 {:>6.0} rps (CPU srv {:.2} gen {:.2} other {:.2}, p50 {:.2} ms) | {h2} | \
         {:.0}/s: p50 {:.3} p99 {:.3} p999 {:.3} ms, send lag p99 {:.3} ms (CPU srv {:.2} gen {:.2} other {:.2}) | \
         RSS idle {:.1} end {:.1} peak {:.1} MiB | errors {}",
        kind.name(),
        r.h1.rps,
        r.h1.cpu.server,
        r.h1.cpu.generator,
        r.h1.cpu.other,
        ms(&r.h1.latency, 0.5),
        r.open.achieved,
        ms(&r.open.latency, 0.5),
        ms(&r.open.latency, 0.99),
        ms(&r.open.latency, 0.999),
        ms(&r.open.send_lag, 0.99),
        r.open.cpu.server,
        r.open.cpu.generator,
        r.open.cpu.other,
        mib(r.rss_idle_kib),
        mib(r.rss_end_kib),
        mib(r.hwm_kib),
        r.errors(),
    );
    if let Some(why) = r.first_error() {
        println!("    first error: {why}");
    }
    if let Some((lines, bytes)) = r.log_lines {
        println!(
            "    ours logged {lines} admission lines, {} bytes per line",
            bytes / lines.max(1)
        );
    }
}

struct Summary {
    rps: f64,
    rps_h2: Option<f64>,
    server_cpu: f64,
    /// Server CPU-µs per answered request in the closed loop: unlike requests/s, barely moved
    /// by other processes sharing the CPU.
    cpu_us_per_request: f64,
    generator_cpu: f64,
    other_cpu: f64,
    latency: Histogram<u64>,
    send_lag: Histogram<u64>,
    hwm_kib: u64,
    errors: u64,
}

/// Requests/s: the best round, since other processes on the machine can only lower it (its CPU
/// figures come from that round). Latency: the round whose open loop had the least CPU used
/// by other processes. Applied alike to both servers.
fn summarise(rounds: &[&Round]) -> Summary {
    let best = rounds
        .iter()
        .max_by(|a, b| a.h1.rps.total_cmp(&b.h1.rps))
        .expect("at least one round");
    let quietest = rounds
        .iter()
        .min_by(|a, b| a.open.cpu.other.total_cmp(&b.open.cpu.other))
        .expect("at least one round");
    Summary {
        rps: best.h1.rps,
        rps_h2: rounds
            .iter()
            .filter_map(|r| r.h2.as_ref().map(|h| h.rps))
            .max_by(f64::total_cmp),
        server_cpu: best.h1.cpu.server,
        cpu_us_per_request: best.h1.cpu.server / best.h1.rps.max(1e-9) * 1e6,
        generator_cpu: best.h1.cpu.generator,
        other_cpu: best.h1.cpu.other,
        latency: quietest.open.latency.clone(),
        send_lag: quietest.open.send_lag.clone(),
        hwm_kib: rounds.iter().map(|r| r.hwm_kib).max().unwrap_or(0),
        errors: rounds.iter().map(|r| r.errors()).sum(),
    }
}

fn print_summary_row(name: &str, s: &Summary) {
    println!(
        "{:<10} {:>9.0} {:>8.2} {:>8.0} {:>8.2} {:>9.2} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.1} {:>7}",
        name,
        s.rps,
        s.server_cpu,
        s.cpu_us_per_request,
        s.generator_cpu,
        s.other_cpu,
        s.rps_h2.map_or("-".to_string(), |r| format!("{r:.0}")),
        ms(&s.latency, 0.5),
        ms(&s.latency, 0.99),
        ms(&s.latency, 0.999),
        ms(&s.send_lag, 0.99),
        mib(s.hwm_kib),
        s.errors,
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn orchestrate() -> i32 {
    let settings = Settings::from_env();
    DISTINCT.store(settings.distinct, std::sync::atomic::Ordering::Relaxed);
    // Before any thread exists, so that the generator's threads inherit it.
    let pinning = pin();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let certs = dir.path().join("certs");
    make_certs(&certs);
    let fixtures = Arc::new(load_fixtures());
    let sizes: Vec<usize> = fixtures.iter().map(|f| f.template.len()).collect();

    let generator_threads = match &pinning {
        Pinning::Pinned { generator, .. } => generator.len(),
        Pinning::Unpinned(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // One generator CPU: a current-thread runtime wastes nothing on work stealing.
    let runtime = if generator_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(generator_threads);
        b
    }
    .enable_all()
    .build()
    .expect("the generator's runtime");

    println!(
        "load: {} fixtures ({}-{} bytes compact, {} patched by ours), setup {SETUP}",
        fixtures.len(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0),
        fixtures.iter().filter(|f| f.expect_patch).count(),
    );
    println!(
        "load: {}",
        if settings.distinct {
            "every body differs beyond its uid (LOAD_DISTINCT=1): ours reads and decides every review"
        } else {
            "fixtures repeat with fresh uids, as a ReplicaSet's pods do: ours reuses its first answer to each"
        }
    );
    println!(
        "load: {} HTTP/1.1 keep-alive connections; HTTP/2: {} streams on {} connection(s); TLS 1.3 (ring); \
         phases: warm-up {:?}, closed loop h1 {:?}, h2 {:?}, open loop {:.0}/s for {:?}; {} round(s) alternating",
        settings.conns,
        settings.conns,
        settings.h2_conns,
        settings.warmup,
        settings.saturate,
        settings.h2,
        settings.rate,
        settings.rate_phase,
        settings.rounds,
    );
    println!(
        "load: {}; generator runtime: {generator_threads} thread(s)",
        pinning.describe()
    );
    println!(
        "load: ours runs `serve` with the Deployment's logging (--log-format={}, info, one line per admission) to a file",
        log_format()
    );
    let _ = std::io::stdout().flush();

    let kinds: Vec<Kind> = match settings.only {
        Some(k) => vec![k],
        None => vec![Kind::Baseline, Kind::Ours],
    };
    let started = Instant::now();
    let mut results: Vec<(Kind, Round)> = Vec::new();
    for round in 1..=settings.rounds {
        for &kind in &kinds {
            let log = dir.path().join(format!("{}-{round}.log", kind.name()));
            let server = Server::spawn(kind, &pinning, &certs, log);
            let client = Client {
                addr: server.addr,
                h1: tls_config(&certs.join("ca.crt"), b"http/1.1"),
                h2: tls_config(&certs.join("ca.crt"), b"h2"),
            };
            let r = runtime.block_on(measure(&server, &client, &fixtures, &settings));
            // Let the connection tasks see their senders dropped and close cleanly.
            runtime.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
            drop(server);
            print_round(round, kind, &r);
            let _ = std::io::stdout().flush();
            results.push((kind, r));
        }
    }

    let of = |k: Kind| -> Vec<&Round> {
        results
            .iter()
            .filter(|(kind, _)| *kind == k)
            .map(|(_, r)| r)
            .collect()
    };
    let baseline = of(Kind::Baseline);
    let ours = of(Kind::Ours);
    println!();
    println!(
        "summary over {} round(s), {:.0} s: rps and CPU = best round; latency = quietest round (least other CPU); RSS = peak (VmHWM) of all",
        settings.rounds,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<10} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "server",
        "h1 rps",
        "srv CPU",
        "µs/req",
        "gen CPU",
        "other CPU",
        "h2 rps",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "lag99 ms",
        "RSS MiB",
        "errors"
    );
    let b = (!baseline.is_empty()).then(|| summarise(&baseline));
    let o = (!ours.is_empty()).then(|| summarise(&ours));
    if let Some(b) = &b {
        print_summary_row("baseline", b);
    }
    if let Some(o) = &o {
        print_summary_row("ours", o);
    }
    println!(
        "(srv/gen/other CPU: CPU-seconds per wall-second during the h1 closed loop, for the server, \
         the generator and the rest of the machine; µs/req: server CPU per request; srv ~1.00 on a pinned server means it was \
         saturated; lag99: how late sends left against \
         the schedule at {:.0}/s, timer slack plus waiting for a busy connection)",
        settings.rate
    );
    for (name, s) in [("baseline", &b), ("ours", &o)] {
        let Some(s) = s else { continue };
        if matches!(pinning, Pinning::Pinned { .. }) && s.server_cpu < 0.9 {
            println!(
                "WARNING: the {name} server used {:.2} CPU at saturation, not ~1: it was not the \
                 bottleneck (generator CPU {:.2}, other processes {:.2}); its rps is a lower bound",
                s.server_cpu, s.generator_cpu, s.other_cpu
            );
        }
        if s.other_cpu > 0.1 {
            println!(
                "WARNING: other processes used {:.2} CPU during the {name} runs: the machine was \
                 not quiet, numbers are noisy",
                s.other_cpu
            );
        }
    }

    let mut pass = true;
    let mut errors = 0;
    if let Some(s) = &b {
        errors += s.errors;
    }
    if let Some(o) = &o {
        errors += o.errors;
        if let Some(b) = &b {
            let ratio = o.rps / b.rps;
            let ok = ratio >= TARGET_RATIO;
            pass &= ok;
            let h2 = match (o.rps_h2, b.rps_h2) {
                (Some(o2), Some(b2)) => format!(" (HTTP/2: {:.2})", o2 / b2),
                _ => String::new(),
            };
            println!(
                "ratio = ours_rps / baseline_rps = {:.0} / {:.0} = {ratio:.2}{h2}   target >= {TARGET_RATIO}: {}",
                o.rps,
                b.rps,
                verdict(ok)
            );
            println!(
                "  (by server CPU per request, which noise moves less: {:.0} / {:.0} µs = {:.2})",
                b.cpu_us_per_request,
                o.cpu_us_per_request,
                b.cpu_us_per_request / o.cpu_us_per_request
            );
        }
        let p99 = ms(&o.latency, 0.99);
        let ok = p99 < TARGET_P99_MS;
        pass &= ok;
        println!(
            "ours p99 at {:.0}/s = {p99:.3} ms   target < {TARGET_P99_MS} ms: {}",
            settings.rate,
            verdict(ok)
        );
        let rss = mib(o.hwm_kib);
        let ok = rss < TARGET_RSS_MIB;
        pass &= ok;
        println!(
            "ours peak RSS = {rss:.1} MiB   target < {TARGET_RSS_MIB} MiB: {}",
            verdict(ok)
        );
    }
    println!(
        "errors: {errors}{}",
        if errors == 0 {
            ""
        } else {
            " (FAIL: every answer must be 200, allowed, same uid)"
        }
    );
    pass &= errors == 0;
    println!("overall: {}", verdict(pass));
    if errors > 0 || (settings.strict && !pass) {
        1
    } else {
        0
    }
}

// ---------------------------------------------------------------------------------------------
// The baseline server

/// A webhook that does only the unavoidable: the same TLS and HTTP stack as ours (rustls with
/// ring, TLS 1.3 and 1.2, ALPN h2 then http/1.1, hyper-util's auto builder with the same
/// settings, axum), one JSON pass over the body that keeps only `request.uid`, and a constant
/// allowed answer.
mod baseline {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use rustls::ServerConfig;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use serde::{Deserialize, Serialize};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    // Unknown fields are skipped as serde::de::IgnoredAny: the whole body is still parsed.
    #[derive(Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Request<'a>,
    }

    #[derive(Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        uid: std::borrow::Cow<'a, str>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer<'a> {
        api_version: &'static str,
        kind: &'static str,
        response: AnswerResponse<'a>,
    }

    #[derive(Serialize)]
    struct AnswerResponse<'a> {
        uid: &'a str,
        allowed: bool,
    }

    async fn mutate(body: Bytes) -> Response {
        let review: Review = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        };
        let answer = Answer {
            api_version: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: AnswerResponse {
                uid: &review.request.uid,
                allowed: true,
            },
        };
        match serde_json::to_vec(&answer) {
            Ok(body) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        }
    }

    fn tls() -> Arc<ServerConfig> {
        let cert = std::env::var(super::CERT_ENV).expect("the baseline's certificate path");
        let key = std::env::var(super::KEY_ENV).expect("the baseline's key path");
        let chain = CertificateDer::pem_file_iter(&cert)
            .expect("read tls.crt")
            .collect::<Result<Vec<_>, _>>()
            .expect("tls.crt holds PEM certificates");
        let key = PrivateKeyDer::from_pem_file(&key).expect("tls.key holds a PEM key");
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .expect("ring supports TLS 1.2 and 1.3")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("tls.crt and tls.key form a pair");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    pub fn main() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("the baseline's runtime");
        runtime.block_on(serve());
    }

    async fn serve() {
        let acceptor = TlsAcceptor::from(tls());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the baseline's port");
        let addr = listener.local_addr().expect("the baseline's address");
        println!("baseline listening on https://{addr}");
        let service = TowerToHyperService::new(Router::new().route("/mutate", post(mutate)));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .expect("SIGINT handler");
        loop {
            let (tcp, _) = tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let service = service.clone();
            // The same connection setup as src/server.rs, by calling it.
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let builder = pull_secret_injector::serve::http::connection_builder(
                    h2,
                    Duration::from_secs(10),
                );
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    }
}
