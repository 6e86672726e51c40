//! Structured logs and metrics. Logs: `RUST_LOG` filters (default `DEFAULT_LOG_FILTER`),
//! `FLEETLEDGER_LOG_FORMAT=json` switches to JSON lines; they go to stderr so stdout stays
//! for command output. Metrics: every series the service exports is declared once, in
//! [`SERIES`], and exists from start.

use std::io::IsTerminal;

use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// What is logged unless `RUST_LOG` says otherwise: the service's own events at `info`;
/// no line per request (`access=info` adds that access log, `api::front::ACCESS_LOG`; a
/// request that fails on the server is logged either way), since writing one per request
/// costs more than serving a cached read.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,access=warn";

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let json = std::env::var("FLEETLEDGER_LOG_FORMAT").as_deref() == Ok("json");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .event_format(LogLine { json })
        .try_init();
}

/// One log line: time, level, the request being answered (if any), target and fields; as
/// text (`2026-12-02T10:00:00.000000Z  WARN request{request_id=…}: target: message k=v`)
/// or as a JSON object (`{"timestamp", "level", "request_id", "fields", "target"}`).
struct LogLine {
    json: bool,
}

impl<S, N> FormatEvent<S, N> for LogLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &tracing::Event<'_>) -> std::fmt::Result {
        let meta = event.metadata();
        let request_id = crate::answering::request_id();
        let request_id = request_id.as_ref().map(|id| id.as_str());
        if self.json {
            let mut fields = JsonFieldsOf(serde_json::Map::new());
            event.record(&mut fields);
            let mut line = serde_json::Map::new();
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            line.insert("timestamp".into(), now.into());
            line.insert("level".into(), meta.level().as_str().into());
            if let Some(id) = request_id {
                line.insert("request_id".into(), id.into());
            }
            line.insert("fields".into(), fields.0.into());
            line.insert("target".into(), meta.target().into());
            return writeln!(w, "{}", serde_json::Value::Object(line));
        }
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut w)?;
        write!(w, " {:>5} ", meta.level().as_str())?;
        if let Some(id) = request_id {
            write!(w, "request{{request_id={id}}}: ")?;
        }
        write!(w, "{}: ", meta.target())?;
        // Fields can carry what a stranger wrote (a gateway's error message, say): their
        // line breaks and other control characters are escaped, so that nothing logged can
        // pass for a line of its own.
        let mut fields = String::new();
        ctx.field_format().format_fields(Writer::new(&mut fields), event)?;
        writeln!(w, "{}", OneLine(&fields))
    }
}

/// Text with every control character and Unicode line or paragraph separator escaped
/// (`\n`, `\r`, `\t`, else `\u{…}`).
struct OneLine<'a>(&'a str);

impl std::fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(|c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().expect("found at a char boundary");
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                _ => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// An event's fields as JSON values: numbers and booleans as such, everything else as text.
struct JsonFieldsOf(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFieldsOf {
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (several apps in one test process).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Folds the histogram samples recorded since the last upkeep (or scrape) into their
/// buckets. The recorder keeps every sample until then, so without this a busy server
/// that nobody scrapes would hold one sample per request forever.
pub async fn upkeep(every: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => prometheus().run_upkeep(),
            _ = stop.changed() => return,
        }
    }
}

/// What kind of series a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Which label sets a series starts with, so that a rate or an alert on a label value that
/// has not happened yet compares against 0 instead of finding nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// No labels.
    None,
    /// `surface` × the statuses in [`HTTP_STATUSES`].
    SurfaceStatus,
    /// `surface`.
    Surface,
    /// `worker` × `outcome` ([`WORKER_OUTCOMES`]), for the workers this process runs.
    WorkerOutcome,
    /// `stream_type`, for the stream types whose events workers park.
    StreamType,
}

/// One exported series: its name, kind, the label sets it starts with and its `# HELP`.
#[derive(Clone, Copy, Debug)]
pub struct Series {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: Labels,
    pub help: &'static str,
}

const fn series(name: &'static str, kind: Kind, labels: Labels, help: &'static str) -> Series {
    Series { name, kind, labels, help }
}

/// Every series the service exports. Adding one is one line here (the README's metrics
/// table lists them too, and a test checks both against a fresh server's `/metrics`).
pub const SERIES: &[Series] = &[
    series(
        "fleetledger_appends_total",
        Kind::Counter,
        Labels::None,
        "Events committed to the log by this process.",
    ),
    series(
        "fleetledger_relay_lag_events",
        Kind::Gauge,
        Labels::None,
        "Events in the log the relay has not yet published to JetStream (0 without NATS: no relay).",
    ),
    series(
        "fleetledger_relay_lag_seconds",
        Kind::Gauge,
        Labels::None,
        "Age of the oldest event the relay has not yet published to JetStream, from its commit time (0 without NATS: no relay).",
    ),
    series(
        "fleetledger_publish_seconds",
        Kind::Histogram,
        Labels::None,
        "Time to publish one event to JetStream and have it acknowledged (per event of a batch).",
    ),
    series(
        "fleetledger_worker_events_total",
        Kind::Counter,
        Labels::WorkerOutcome,
        "Events a worker took: handled, skipped (its outcome was already recorded) or failed (after retries).",
    ),
    series(
        "fleetledger_dlq_events",
        Kind::Gauge,
        Labels::StreamType,
        "Events parked in the dead-letter table after their side effect failed every retry, by stream type (fleetledger dlq list).",
    ),
    series(
        "fleetledger_sse_clients",
        Kind::Gauge,
        Labels::None,
        "Server-Sent Events connections open now.",
    ),
    series(
        "fleetledger_http_requests_total",
        Kind::Counter,
        Labels::SurfaceStatus,
        "HTTP requests answered, by surface and status.",
    ),
    series(
        "fleetledger_http_request_duration_seconds",
        Kind::Histogram,
        Labels::Surface,
        "Time to answer an HTTP request (until the headers), by surface.",
    ),
];

/// Counts an answered HTTP request and records how long it took. The handles are made once
/// per surface and status, not per request: building label sets and looking them up in
/// the registry on every request showed in profiles of the read path.
pub fn http_answered(surface: &'static str, status: u16, seconds: f64) {
    /// A handle pair per surface and status this thread has answered with: a few, so a
    /// scan beats hashing, and no lock is shared between threads.
    type Handles = Vec<(&'static str, u16, metrics::Counter, metrics::Histogram)>;
    thread_local! {
        static HANDLES: std::cell::RefCell<Handles> = const { std::cell::RefCell::new(Vec::new()) };
    }
    HANDLES.with_borrow_mut(|handles| {
        let index = match handles.iter().position(|(s, code, _, _)| *code == status && *s == surface) {
            Some(index) => index,
            None => {
                handles.push((
                    surface,
                    status,
                    metrics::counter!("fleetledger_http_requests_total", "surface" => surface, "status" => status.to_string()),
                    metrics::histogram!("fleetledger_http_request_duration_seconds", "surface" => surface),
                ));
                handles.len() - 1
            }
        };
        let (_, _, counter, histogram) = &handles[index];
        counter.increment(1);
        histogram.record(seconds);
    });
}

/// The statuses each surface's request counter starts with: success, and the ones alerts
/// watch for (refused keys, throttling, server-side failures and timeouts). Other statuses
/// appear when they first happen.
pub const HTTP_STATUSES: &[&str] = &["200", "401", "429", "500", "502", "503", "504"];

/// Every outcome a worker records in `fleetledger_worker_events_total`.
pub const WORKER_OUTCOMES: &[&str] = &["handled", "skipped", "failed"];

/// Describes every series and gives it its starting value (counters 0, gauges 0, histograms
/// empty), for the workers named and the stream types whose events workers park. Values
/// already there are left as they are, so a second application in one process (tests)
/// changes nothing.
pub fn register(workers: &[&str], stream_types: &[String]) {
    prometheus();
    for s in SERIES {
        match s.kind {
            Kind::Counter => metrics::describe_counter!(s.name, s.help),
            Kind::Gauge => metrics::describe_gauge!(s.name, s.help),
            Kind::Histogram => metrics::describe_histogram!(s.name, s.help),
        }
        for labels in label_sets(s.labels, workers, stream_types) {
            match s.kind {
                Kind::Counter => metrics::counter!(s.name, labels.clone()).increment(0),
                Kind::Gauge => metrics::gauge!(s.name, labels.clone()).increment(0.0),
                // Registering is enough: the exporter renders a histogram with no samples.
                Kind::Histogram => drop(metrics::histogram!(s.name, labels.clone())),
            }
        }
    }
}

fn label_sets(labels: Labels, workers: &[&str], stream_types: &[String]) -> Vec<Vec<metrics::Label>> {
    let surfaces = || crate::api::SURFACES.iter().map(|(surface, _)| surface.name());
    match labels {
        Labels::None => vec![vec![]],
        Labels::Surface => surfaces().map(|s| vec![metrics::Label::new("surface", s)]).collect(),
        Labels::SurfaceStatus => surfaces()
            .flat_map(|s| {
                HTTP_STATUSES
                    .iter()
                    .map(move |status| vec![metrics::Label::new("surface", s), metrics::Label::new("status", *status)])
            })
            .collect(),
        Labels::StreamType => stream_types
            .iter()
            .map(|t| vec![metrics::Label::new("stream_type", t.clone())])
            .collect(),
        Labels::WorkerOutcome => workers
            .iter()
            .flat_map(|w| {
                WORKER_OUTCOMES.iter().map(move |outcome| {
                    vec![
                        metrics::Label::new("worker", w.to_string()),
                        metrics::Label::new("outcome", *outcome),
                    ]
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log sink the test can read back.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines logged inside and then outside the answer to request `req-1`.
    fn logged(json: bool) -> Vec<String> {
        let sink = Captured::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(LogLine { json })
            .finish();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async {
                crate::answering::scope(crate::answering::RequestId::sent(b"req-1").expect("a usable id"), None, async {
                    tokio::task::yield_now().await;
                    tracing::warn!(attempts = 3, "inside");
                })
                .await;
                tracing::info!("outside");
            })
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_text_line_stays_one_line_whatever_its_fields_say() {
        let sink = Captured::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(LogLine { json: false })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let said = "boom\n2026-12-02T13:50:00Z ERROR forged\r\u{2028}x\u{85}\ty";
            tracing::warn!(error = %said, "a delivery failed");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.ends_with("a delivery failed error=boom\\n2026-12-02T13:50:00Z ERROR forged\\r\\u{2028}x\\u{85}\\ty\n"),
            "{text}"
        );
    }

    #[test]
    fn a_line_logged_while_answering_a_request_carries_its_id() {
        let lines = logged(false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].ends_with(" WARN request{request_id=req-1}: fleetledger::telemetry::tests: inside attempts=3"),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with(" INFO fleetledger::telemetry::tests: outside"), "{}", lines[1]);

        let lines: Vec<serde_json::Value> = logged(true).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            (&lines[0]["level"], &lines[0]["request_id"], &lines[0]["fields"]),
            (
                &"WARN".into(),
                &"req-1".into(),
                &serde_json::json!({"message": "inside", "attempts": 3})
            )
        );
        assert_eq!(lines[0]["target"], "fleetledger::telemetry::tests");
        assert!(lines[1].get("request_id").is_none(), "{}", lines[1]);
        assert_eq!(lines[1]["fields"]["message"], "outside");
    }

    /// Every `fleetledger_…` name the code emits is declared in `SERIES`: a series missing
    /// there would appear only after first use, and without `# HELP`.
    #[test]
    fn every_emitted_series_is_declared() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![root];
        let mut emitted = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(macro_name) {
                    let rest = text[at + macro_name.len()..].trim_start();
                    // (This test's own list of macro names is not an emitting site.)
                    if let Some(name) = rest
                        .strip_prefix('"')
                        .and_then(|r| r.split('"').next())
                        .filter(|n| n.starts_with("fleetledger"))
                    {
                        emitted.push((name.to_string(), path.display().to_string()));
                    }
                }
            }
        }
        assert!(emitted.len() >= SERIES.len(), "the scan finds the emitting sites: {emitted:?}");
        for (name, file) in emitted {
            assert!(
                SERIES.iter().any(|s| s.name == name),
                "{file} emits {name}, which telemetry::SERIES does not declare"
            );
        }
    }
}
