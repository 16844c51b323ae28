//! Logging setup: `tracing` to standard output, as text or JSON lines, filtered by `RUST_LOG`
//! (default `info`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

pub mod json;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Flushes buffered log lines when dropped (keep it until the process is about to exit).
#[must_use = "dropping the guard flushes and stops buffering"]
#[derive(Debug)]
pub struct LogGuard {
    buffer: Option<LineBuffer>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(buffer) = &self.buffer {
            buffer.shared.stopped.store(true, Ordering::Relaxed);
            buffer.flush();
        }
    }
}

/// Log lines waiting to be written to stdout.
///
/// With one line per admission, a `write(2)` per line (what stdout does) and a thread
/// wake-up per line (what a channel to a writer thread does) were a large share of the cost of
/// serving an admission. Lines are appended to a buffer instead, and written in batches: when it holds
/// `FLUSH_BYTES`, every `FLUSH_EVERY`, at once for warnings and errors, and when the guard is
/// dropped. A crash loses at most the last `FLUSH_EVERY` of info lines.
#[derive(Debug, Clone)]
struct LineBuffer {
    shared: Arc<Shared>,
    escape: Escape,
}

#[derive(Debug)]
struct Shared {
    lines: Mutex<Vec<u8>>,
    // Held while a batch is written, so batches reach stdout in order while `lines` stays
    // free for admissions: a slow stdout (a full pipe, a disk stall) never blocks appending.
    write_order: Mutex<()>,
    stopped: AtomicBool,
}

const FLUSH_BYTES: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(200);

impl LineBuffer {
    fn new(escape: Escape) -> Self {
        let buffer = LineBuffer {
            escape,
            shared: Arc::new(Shared {
                lines: Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
                write_order: Mutex::new(()),
                stopped: AtomicBool::new(false),
            }),
        };
        let flusher = buffer.clone();
        // A plain thread: logs must flow before and after the async runtime exists.
        let spawned = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                while !flusher.shared.stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(FLUSH_EVERY);
                    flusher.flush();
                }
            });
        if spawned.is_err() {
            // Without the thread, write every line at once rather than holding them.
            buffer.shared.stopped.store(true, Ordering::Relaxed);
        }
        buffer
    }

    fn lines(&self) -> MutexGuard<'_, Vec<u8>> {
        crate::lock::lock(&self.shared.lines)
    }

    fn flush(&self) {
        let _order = crate::lock::lock(&self.shared.write_order);
        let batch = {
            let mut lines = self.lines();
            if lines.is_empty() {
                return;
            }
            std::mem::replace(&mut *lines, Vec::with_capacity(FLUSH_BYTES))
        };
        let mut stdout = std::io::stdout().lock();
        // Nowhere to report a failed log write; the batch is dropped rather than kept forever.
        let _ = stdout.write_all(&batch);
        let _ = stdout.flush();
    }
}

/// One event's writer: tracing-subscriber formats an event, then writes it in one call.
struct EventWriter {
    buffer: LineBuffer,
    urgent: bool,
}

/// How a text line's control characters are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// JSON lines: serde_json escapes them already.
    None,
    /// Text lines to a pipe or file: every control character is escaped.
    All,
    /// Text lines to a terminal: all but ESC, which starts the colour sequences.
    AllButEsc,
}

/// Appends one formatted event to `out`, escaping control characters (and Unicode line
/// separators) everywhere but in its final newline. Names, annotations and API messages come
/// from objects a tenant writes: a value holding `\n ERROR ...` must not forge a log line.
fn push_escaped(out: &mut Vec<u8>, line: &[u8], escape: Escape) {
    if escape == Escape::None {
        out.extend_from_slice(line);
        return;
    }
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x1b if escape == Escape::AllButEsc => out.push(b),
            0x00..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            // C1 controls (U+0080..U+009F) and U+2028/U+2029, which some viewers break on.
            0xc2 if body.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) => {
                out.extend_from_slice(format!("\\u{{{:04x}}}", body[i + 1]).as_bytes());
                i += 1;
            }
            0xe2 if body.get(i + 1) == Some(&0x80)
                && body.get(i + 2).is_some_and(|n| *n == 0xa8 || *n == 0xa9) =>
            {
                out.extend_from_slice(format!("\\u{{20{:02x}}}", body[i + 2] - 0x80).as_bytes());
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out.extend_from_slice(end);
}

impl Write for EventWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut lines = self.buffer.lines();
            push_escaped(&mut lines, bytes, self.buffer.escape);
            lines.len() >= FLUSH_BYTES
        };
        if full || self.urgent || self.buffer.shared.stopped.load(Ordering::Relaxed) {
            self.buffer.flush();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineBuffer {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            buffer: self.clone(),
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        EventWriter {
            buffer: self.clone(),
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// Where [`info_json`] writes: the buffer of the JSON subscriber [`init`] installed.
static JSON_LINES: OnceLock<LineBuffer> = OnceLock::new();

/// Writes one `info` line shaped as the installed JSON subscriber writes them, without going
/// through `tracing` (see [`json`]), for lines written per request. Writes nothing and
/// returns false unless [`init`] installed JSON logging: the caller logs through `tracing`
/// then. The caller checks the filter first (`tracing::enabled!`), so `RUST_LOG` still
/// applies.
pub fn info_json(target: &str, message: &str, fields: impl FnOnce(&mut json::Line<'_>)) -> bool {
    let Some(buffer) = JSON_LINES.get() else {
        return false;
    };
    let now = SystemTime::now();
    let full = {
        let mut lines = buffer.lines();
        let mut line = json::Line::start(&mut lines, now, "INFO", message);
        fields(&mut line);
        line.finish(target);
        lines.len() >= FLUSH_BYTES
    };
    if full || buffer.shared.stopped.load(Ordering::Relaxed) {
        buffer.flush();
    }
    true
}

/// Installs the global subscriber. An invalid `RUST_LOG` is reported and `info` used instead,
/// rather than starting a webhook that logs nothing.
pub fn init(format: LogFormat) -> LogGuard {
    let (filter, bad) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, None),
        Err(e) => {
            let bad = std::env::var("RUST_LOG").ok().map(|v| (v, e.to_string()));
            (EnvFilter::new("info"), bad)
        }
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let escape = match (format, ansi) {
        (LogFormat::Json, _) => Escape::None,
        (LogFormat::Text, true) => Escape::AllButEsc,
        (LogFormat::Text, false) => Escape::All,
    };
    let buffer = LineBuffer::new(escape);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(buffer.clone())
        .with_ansi(ansi);
    // A second init (tests starting several servers) keeps the first subscriber.
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if format == LogFormat::Json && installed.is_ok() {
        let _ = JSON_LINES.set(buffer.clone());
    }
    if let Some((value, reason)) = bad {
        tracing::warn!("RUST_LOG={value:?} is not a valid filter ({reason}); logging at info");
    }
    LogGuard {
        buffer: installed.ok().map(|()| buffer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(line: &str, escape: Escape) -> String {
        let mut out = Vec::new();
        push_escaped(&mut out, line.as_bytes(), escape);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_forged_newline_stays_on_its_line() {
        let line = "2026-12-01T00:00:00Z  WARN copy: source default/x\n2026-12-01T00:00:01Z ERROR forged\n";
        let out = escaped(line, Escape::All);
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        assert!(
            out.ends_with("x\\n2026-12-01T00:00:01Z ERROR forged\n"),
            "{out}"
        );
    }

    #[test]
    fn every_control_character_is_escaped_but_colour_on_a_terminal() {
        let line = "a\rb\tc\x1b[31md\x07e\u{85}f\u{2028}g\n";
        assert_eq!(
            escaped(line, Escape::All),
            "a\\rb\\tc\\x1b[31md\\x07e\\u{0085}f\\u{2028}g\n"
        );
        assert_eq!(
            escaped(line, Escape::AllButEsc),
            "a\\rb\\tc\x1b[31md\\x07e\\u{0085}f\\u{2028}g\n"
        );
        assert_eq!(escaped(line, Escape::None), line);
        assert_eq!(escaped("plain é\n", Escape::All), "plain é\n");
    }

    #[test]
    fn a_real_text_subscriber_writes_an_object_value_with_a_newline_as_one_line() {
        use tracing_subscriber::fmt::MakeWriter;
        let buffer = LineBuffer {
            shared: Arc::new(Shared {
                lines: Mutex::new(Vec::new()),
                write_order: Mutex::new(()),
                // Stopped: nothing is flushed to stdout, the test reads the buffer.
                stopped: AtomicBool::new(false),
            }),
            escape: Escape::All,
        };
        struct Keep(LineBuffer);
        impl<'a> MakeWriter<'a> for Keep {
            type Writer = KeepWriter;
            fn make_writer(&'a self) -> KeepWriter {
                KeepWriter(self.0.clone())
            }
        }
        struct KeepWriter(LineBuffer);
        impl Write for KeepWriter {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                push_escaped(&mut self.0.lines(), bytes, self.0.escape);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(Keep(buffer.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let source = "default/x\n2026-12-01T00:00:01Z ERROR pull_secret_injector: forged";
            tracing::warn!(source = %source, "copy kept: source {source} is gone");
        });
        let text = String::from_utf8(buffer.lines().clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            !text
                .lines()
                .any(|l| l.contains(" ERROR ") && !l.contains("WARN")),
            "{text}"
        );
    }

    #[test]
    fn a_direct_json_line_reads_as_the_json_subscriber_writes_it() {
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(move || writer.clone())
            .finish();
        let name = "web-\"7d4b9\"-\n ERROR forged";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(uid = %"u-1", name = %name, injected = %"a,b", warnings = 2u64, reused = true, "admission");
        });
        let theirs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();

        let mut ours = Vec::new();
        let mut line = json::Line::start(&mut ours, SystemTime::now(), "INFO", "admission");
        line.str("uid", "u-1")
            .str("name", name)
            .joined("injected", ["a", "b"])
            .u64("warnings", 2)
            .bool("reused", true);
        line.finish(module_path!());
        let ours = String::from_utf8(ours).unwrap();

        // Field for field and in the same order, but for the time.
        let fields = |text: &str| -> Vec<(String, serde_json::Value)> {
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).unwrap();
            map.into_iter().filter(|(k, _)| k != "timestamp").collect()
        };
        assert_eq!(
            fields(&ours),
            fields(&theirs),
            "ours: {ours}theirs: {theirs}"
        );
        let keys = |text: &str| {
            text.split("\":")
                .filter_map(|part| part.rsplit_once('"').map(|(_, k)| k.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&ours), keys(&theirs));
    }
}
