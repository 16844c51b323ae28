//! The alert rules ask about metrics the binary really exports: every metric name an alert or
//! its promtool test uses is in a real `/metrics` scrape of `serve`, with the labels and label
//! values the binary gives it. The rules are one file, carried unchanged by the chart's and the
//! kustomize PrometheusRule, and docs/operations.md explains every alert.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use pull_secret_injector::cluster::api::{ApiAction, WatchKind};
use pull_secret_injector::metrics::{Metrics, RequestLabels};
use pull_secret_injector::policy::plan::CopyState;
use pull_secret_injector::policy::types::WarningReason;
use pull_secret_injector::view::ProbeState;

use crate::invariants::canonical_rules;
use crate::render;

const PREFIX: &str = "pull_secret_injector_";

/// A metric selector found in PromQL or a series notation: name and label matchers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Selector {
    name: String,
    /// label, and the values it matches (a regex `a|b|c` is split into its alternatives).
    labels: Vec<(String, Vec<String>)>,
}

/// Every `pull_secret_injector_*` selector in `text`, with its `{...}` matchers.
fn selectors(text: &str) -> Vec<Selector> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(found) = text[i..].find(PREFIX) {
        let start = i + found;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        i = end;
        if !boundary {
            continue;
        }
        let mut selector = Selector {
            name: text[start..end].to_string(),
            labels: Vec::new(),
        };
        if bytes.get(end) == Some(&b'{') {
            let close = text[end..].find('}').expect("closing brace") + end;
            for matcher in text[end + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
            {
                let op = matcher
                    .find(['=', '!'])
                    .unwrap_or_else(|| panic!("matcher {matcher:?}"));
                let label = matcher[..op].trim().to_string();
                let value = matcher[op..]
                    .trim_start_matches(['=', '!', '~'])
                    .trim()
                    .trim_matches('"');
                let values = value.split('|').map(str::to_string).collect();
                selector.labels.push((label, values));
            }
            i = close;
        }
        out.push(selector);
    }
    out
}

/// Every alert of the rules file: name and expression.
fn alerts() -> Vec<(String, String)> {
    canonical_rules()["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["alert"].as_str().expect("alert").to_string(),
                r["expr"].as_str().expect("expr").to_string(),
            )
        })
        .collect()
}

/// The synthetic series of the promtool tests.
fn test_series() -> Vec<Selector> {
    let path = render::repo().join("tests/monitoring/alerts.test.yaml");
    let text = std::fs::read_to_string(path).expect("alerts.test.yaml");
    let tests = render::parse_stream(&text, "alerts.test.yaml").remove(0);
    tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["input_series"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["series"].as_str().map(str::to_string))
        .flat_map(|s| selectors(&s))
        .collect()
}

/// A `serve` process in file mode; killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary, scrapes `/metrics` once over plain HTTP, and returns the body.
fn scrape_the_binary() -> String {
    let bin = env!("CARGO_BIN_EXE_pull-secret-injector");
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = Command::new(bin)
        .args(["certs", "--dns", "127.0.0.1", "--out"])
        .arg(dir.path())
        .output()
        .expect("certs");
    assert!(certs.status.success(), "{certs:?}");
    let setup = render::repo().join("examples/docker-hub");
    let mut child = Command::new(bin)
        .arg("serve")
        .arg("--config")
        .arg(setup.join("config.yaml"))
        .arg("--cluster")
        .arg(setup.join("cluster"))
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env_remove("LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let _serve = Serve(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a 'metrics listening on' log line within 30 s");
        if let Some(rest) = line.split("metrics listening on http://").nth(1) {
            break rest
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()
                .expect("address")
                .to_string();
        }
    };
    let mut stream = TcpStream::connect(&addr).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The sample names a scrape can hold, from its `# TYPE` lines: a counter `x` is sampled as
/// `x_total`, a histogram as `x_bucket`, `x_sum` and `x_count`, an info as `x_info`.
fn sample_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            "info" => {
                names.insert(format!("{name}_info"));
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// `/metrics` shows a family only once it has a sample, and most of the injector's appear with
/// their first event (a copy, a watch listing, a failure). So the check runs on the exposition
/// `/metrics` serves (`Metrics::render`) with every family given a sample through the public
/// API, after a real scrape of `serve` shows that what the binary serves is that exposition:
/// its names, HELP and TYPE lines are all among it.
#[test]
fn every_metric_an_alert_or_its_test_uses_is_in_the_metrics_output() {
    let full = populated_exposition();
    let names = sample_names(&full);
    let scraped = scrape_the_binary();
    let served = sample_names(&scraped);
    assert!(served.len() >= 5, "{scraped}");
    assert!(
        served.is_subset(&names),
        "{served:?} is not a subset of {names:?}"
    );
    for line in scraped
        .lines()
        .filter(|l| l.starts_with("# HELP") || l.starts_with("# TYPE"))
    {
        assert!(
            full.contains(line),
            "the binary serves {line:?}, which Metrics::render does not"
        );
    }
    assert!(names.iter().all(|n| n.starts_with(PREFIX)), "{names:?}");

    let fed: BTreeSet<String> = test_series().into_iter().map(|s| s.name).collect();
    for (alert, expr) in alerts() {
        let found = selectors(&expr);
        assert!(!found.is_empty(), "{alert} uses no metric of the injector");
        for s in found {
            assert!(
                names.contains(&s.name),
                "{alert} uses {}, which /metrics never serves",
                s.name
            );
            // Each alert's metrics are fed to its promtool test (absent() fires on none).
            assert!(
                fed.contains(&s.name) || alert == "PullSecretInjectorAbsent",
                "no promtool test feeds {}, which {alert} uses",
                s.name
            );
        }
    }
    for name in &fed {
        assert!(
            names.contains(name),
            "the promtool tests feed {name}, which /metrics never serves"
        );
    }
}

/// Each family populated through the public API, with every label value the code can give it,
/// rendered: which labels each sample name carries, and which values.
fn populated_exposition() -> String {
    let m = Metrics::new();
    let copy_states = [
        CopyState::Current,
        CopyState::Stale,
        CopyState::Unwritable,
        CopyState::SourceMissing,
        CopyState::SourceUnusable,
        CopyState::Orphaned,
        CopyState::Unwanted,
    ];
    let reasons = [
        WarningReason::InvalidImage,
        WarningReason::SourceMissing,
        WarningReason::SourceInvalid,
        WarningReason::SourceEmpty,
        WarningReason::TokenExpired,
        WarningReason::NameTaken,
        WarningReason::CopyConflict,
        WarningReason::LocalSecretInvalid,
        WarningReason::NamespaceTerminating,
        WarningReason::CopyDeferred,
        WarningReason::NamespaceUnknown,
        WarningReason::CredentialRejected,
        WarningReason::CredentialWithheld,
    ];
    let actions = [
        ApiAction::CreateCopy,
        ApiAction::UpdateCopy,
        ApiAction::DeleteCopy,
        ApiAction::GetServiceAccount,
        ApiAction::PatchServiceAccount,
        ApiAction::GetSource,
        ApiAction::CreateEvent,
    ];
    let watches = [
        WatchKind::Namespaces,
        WatchKind::Copies,
        WatchKind::ServiceAccounts,
        WatchKind::Config,
        WatchKind::Sources,
        WatchKind::LocalSecrets,
    ];
    m.set_copies(
        &copy_states
            .iter()
            .map(|s| (("icr".to_string(), s.as_str()), 1))
            .collect(),
    );
    m.set_credential_problems(
        &[
            WarningReason::SourceMissing,
            WarningReason::SourceInvalid,
            WarningReason::SourceEmpty,
            WarningReason::TokenExpired,
        ]
        .iter()
        .map(|r| (("icr".to_string(), r.as_str()), 1))
        .collect(),
    );
    for r in reasons {
        m.warning(r.as_str());
    }
    for a in actions {
        m.api_write(a.as_str());
        m.reconcile_error(a.as_str());
    }
    for w in watches {
        m.watch_listed(w.as_str());
        m.watch_error(w.as_str());
    }
    for ok in [true, false] {
        m.config_reload(ok, ok.then_some(1));
        m.certificate_reload(ok);
    }
    m.injection("icr");
    let states: Vec<&'static str> = ProbeState::ALL.iter().map(|s| s.as_str()).collect();
    m.set_verification(
        &[(
            "icr".to_string(),
            "us.icr.io".to_string(),
            ProbeState::Rejected.as_str(),
            Some(1_800_000_000),
        )],
        &states,
    );
    for s in ProbeState::ALL {
        m.probe(s.as_str());
    }
    m.set_oldest_stale_copy(Duration::from_secs(1));
    m.set_token_expiry("ecr", 1_800_000_000);
    for result in [
        "success",
        "config",
        "rejected",
        "unreachable",
        "protocol",
        "write",
    ] {
        m.token_mint("ecr", result);
    }
    m.set_token_minter(true);
    m.admission(
        &RequestLabels {
            kind: "Pod",
            operation: "CREATE",
            outcome: "patched",
        },
        Some(Duration::from_micros(40)),
    );
    m.render()
}

/// Which labels each sample name of `exposition` carries, and their values.
fn label_values(exposition: &str) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let entry = out.entry(line[..name_end].to_string()).or_default();
        if let Some(open) = line.find('{') {
            let close = line.rfind('}').expect("}");
            for pair in line[open + 1..close].split(',') {
                if let Some((k, v)) = pair.split_once('=') {
                    entry
                        .entry(k.to_string())
                        .or_default()
                        .insert(v.trim_matches('"').to_string());
                }
            }
        }
    }
    out
}

#[test]
fn the_labels_and_values_alerts_and_their_tests_match_are_ones_the_binary_gives() {
    let families = label_values(&populated_exposition());
    // Added by the scrape (a ServiceMonitor's target labels), not by the binary.
    let scrape_labels = ["namespace", "pod"];
    // Values named by the config (credentials, and the registries their keys name).
    let free_values = ["credential", "registry", "version", "namespace", "pod"];
    let from_alerts = alerts().into_iter().flat_map(|(_, e)| selectors(&e));
    for s in from_alerts.chain(test_series()) {
        let labels = families
            .get(&s.name)
            .unwrap_or_else(|| panic!("{} has no samples once populated: {families:?}", s.name));
        for (label, values) in &s.labels {
            if scrape_labels.contains(&label.as_str()) {
                continue;
            }
            let known = labels.get(label).unwrap_or_else(|| {
                panic!(
                    "{} has no label {label} (it has {:?})",
                    s.name,
                    labels.keys()
                )
            });
            if free_values.contains(&label.as_str()) {
                continue;
            }
            for v in values {
                assert!(
                    known.contains(v),
                    "{}{{{label}={v:?}}}: the binary gives only {known:?}",
                    s.name
                );
            }
        }
    }
}

/// Each alert is unit-tested: promtool evaluates it both where it must fire and where it must
/// not.
#[test]
fn every_alert_has_a_promtool_test_that_fires_it_and_one_that_does_not() {
    let path = render::repo().join("tests/monitoring/alerts.test.yaml");
    let text = std::fs::read_to_string(path).expect("alerts.test.yaml");
    let tests = render::parse_stream(&text, "alerts.test.yaml").remove(0);
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    for (alert, _) in alerts() {
        let of_it: Vec<&&Value> = cases
            .iter()
            .filter(|c| c["alertname"] == alert.as_str())
            .collect();
        let fires = of_it
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let quiet = of_it
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty));
        assert!(
            fires && quiet,
            "{alert}: fires in a test: {fires}, stays quiet in one: {quiet}"
        );
    }
}

#[test]
fn the_rules_are_the_same_in_the_chart_and_in_manifests_monitoring() {
    let path = render::manifests().join("monitoring/prometheusrule.yaml");
    let text = std::fs::read_to_string(&path).expect("prometheusrule.yaml");
    let rule = render::parse_stream(&text, "prometheusrule.yaml").remove(0);
    assert_eq!(
        rule["spec"],
        canonical_rules(),
        "{} drifted from the chart's rules file",
        path.display()
    );
    let rendered = render::helm_template(
        "pull-secret-injector",
        "pull-secret-injector",
        &["--set", "metrics.prometheusRule.enabled=true"],
    )
    .expect("helm template");
    let chart_rule = rendered
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("the chart's PrometheusRule");
    assert_eq!(chart_rule["spec"], canonical_rules());
}

#[test]
fn every_alert_is_explained_in_docs_operations() {
    let docs = std::fs::read_to_string(render::repo().join("docs/operations.md")).expect("docs");
    for (alert, _) in alerts() {
        assert!(
            docs.contains(&format!("| `{alert}` |")),
            "docs/operations.md does not explain {alert}"
        );
    }
    let severities: BTreeSet<String> = canonical_rules()["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            r["labels"]["severity"]
                .as_str()
                .unwrap_or("none")
                .to_string()
        })
        .collect();
    assert!(
        severities
            .iter()
            .all(|s| ["critical", "warning", "info"].contains(&s.as_str())),
        "{severities:?}"
    );
}

#[test]
fn selectors_are_found_with_their_matchers() {
    let found = selectors(
        r#"max by (credential) (pull_secret_injector_copies{state="unwritable"}) > 0 or x_pull_secret_injector_y"#,
    );
    assert_eq!(
        found,
        [Selector {
            name: "pull_secret_injector_copies".into(),
            labels: vec![("state".into(), vec!["unwritable".into()])],
        }]
    );
    let regex =
        selectors(r#"pull_secret_injector_warnings_total{reason=~"name_taken|copy_conflict"}"#);
    assert_eq!(regex[0].labels[0].1, ["name_taken", "copy_conflict"]);
}
