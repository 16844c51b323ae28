//! Logging setup: `tracing` to standard output, as text or JSON lines, filtered by `RUST_LOG`
//! (default `info`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
    fn new() -> Self {
        let buffer = LineBuffer {
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
        self.shared
            .lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn flush(&self) {
        let _order = self
            .shared
            .write_order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
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

impl Write for EventWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut lines = self.buffer.lines();
            lines.extend_from_slice(bytes);
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
    let buffer = LineBuffer::new();
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
    if let Some((value, reason)) = bad {
        tracing::warn!("RUST_LOG={value:?} is not a valid filter ({reason}); logging at info");
    }
    LogGuard {
        buffer: installed.ok().map(|()| buffer),
    }
}
