//! Structured JSON logs that cannot leak sensitive values.
//!
//! Every line carries the function name, the cold-start flag and the fields of every open span (the runtime's
//! `requestId`, the runner's `message_id`, `tenant`, `correlation_id`, `attempt`). Redaction happens in the
//! formatter, so a careless `info!(insured_name = %q.insured_name)` still prints `[redacted]`: fields whose names
//! are on the sensitive list, and any value wrapped in [`Redacted`], never reach the output.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// What a redacted value prints as.
pub const REDACTED: &str = "[redacted]";

/// Field names whose values are customer data or secrets: names, addresses, amounts, file contents, secrets.
const SENSITIVE_FIELDS: &[&str] = &[
    "name",
    "insured_name",
    "address",
    "email",
    "phone",
    "amount",
    "premium",
    "total_premium",
    "limit",
    "deductible",
    "coverages",
    "content",
    "contents",
    "body",
    "text",
    "payload",
    "file_name",
    "secret",
    "password",
    "token",
    "signature",
    "authorization",
    "credentials",
];

/// Suffixes that mark a field sensitive whatever comes before them.
const SENSITIVE_SUFFIXES: &[&str] = &["_secret", "_password", "_token", "_name_raw", "_text", "_content", "_body"];

/// Whether a field with this name is redacted.
pub fn is_sensitive(field: &str) -> bool {
    SENSITIVE_FIELDS.contains(&field) || SENSITIVE_SUFFIXES.iter().any(|s| field.ends_with(s))
}

/// Wraps a value that must never be printed; `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(pub T);

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

static COLD: AtomicBool = AtomicBool::new(true);

/// Called by the runner once the first invocation is done: later lines say `cold_start: false`.
pub fn mark_warm() {
    COLD.store(false, Ordering::Relaxed);
}

/// Installs the JSON subscriber on stdout; reads the log level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_default();
    let filter =
        EnvFilter::try_new(if level.is_empty() { "info" } else { &level }).unwrap_or_else(|_| EnvFilter::new("info"));
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned());
    // A second init (tests) keeps the first subscriber; that is not an error worth failing on.
    let _ = tracing_subscriber::registry().with(filter).with(JsonLayer::new(function, std::io::stdout)).try_init();
}

/// Formats events as one JSON object per line, redacting sensitive fields.
pub struct JsonLayer<W> {
    function: String,
    writer: W,
}

impl<W> JsonLayer<W> {
    /// A layer that tags lines with `function` and writes to `writer`.
    pub fn new(function: impl Into<String>, writer: W) -> Self {
        Self { function: function.into(), writer }
    }
}

/// Span fields, kept in the span's extensions.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let value = if is_sensitive(name) { Value::String(REDACTED.to_owned()) } else { value };
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(chrono::Utc::now().to_rfc3339()));
        line.insert("level".into(), Value::String(event.metadata().level().to_string()));
        line.insert("target".into(), Value::String(event.metadata().target().to_owned()));
        line.insert("function".into(), Value::String(self.function.clone()));
        line.insert("cold_start".into(), Value::Bool(COLD.load(Ordering::Relaxed)));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in fields {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let mut out = serde_json::to_vec(&line).unwrap_or_default();
        out.push(b'\n');
        // One write per line keeps lines whole when several tasks log at once.
        let _ = self.writer.make_writer().write_all(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn capture(f: impl FnOnce()) -> Vec<Value> {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry().with(JsonLayer::new("fn-under-test", buf.clone()));
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn sensitive_fields_and_redacted_values_never_reach_the_log() {
        let secrets =
            ["Łódź Textil S.A.", "27721.20", "12 Harbour Road", "%PDF-1.7 quote body", "hunter2", "s3cr3t-token"];
        let lines = capture(|| {
            let span =
                tracing::info_span!("record", message_id = "m-1", correlation_id = "c-9", name = "Łódź Textil S.A.");
            let _g = span.enter();
            tracing::info!(
                insured_name = "Łódź Textil S.A.",
                total_premium = "27721.20",
                address = %"12 Harbour Road",
                content = ?"%PDF-1.7 quote body",
                db_password = "hunter2",
                reference = %Redacted("s3cr3t-token"),
                bytes = 1234u64,
                "quote extracted"
            );
        });
        let raw = serde_json::to_string(&lines).unwrap();
        for s in secrets {
            assert!(!raw.contains(s), "{s:?} leaked into {raw}");
        }
        let l = &lines[0];
        assert_eq!(l["insured_name"], REDACTED);
        assert_eq!(l["reference"], REDACTED);
        assert_eq!(l["name"], REDACTED, "span fields are redacted too");
        assert_eq!(l["bytes"], 1234);
        assert_eq!(l["message_id"], "m-1");
        assert_eq!(l["correlation_id"], "c-9");
        assert_eq!(l["message"], "quote extracted");
        assert_eq!(l["function"], "fn-under-test");
        assert!(l["cold_start"].is_boolean());
        assert_eq!(l["level"], "INFO");
    }

    #[test]
    fn recorded_later_span_fields_are_redacted_too() {
        let lines = capture(|| {
            let span = tracing::info_span!("record", tenant = tracing::field::Empty, body = tracing::field::Empty);
            span.record("tenant", "acme");
            span.record("body", "raw file bytes");
            let _g = span.enter();
            tracing::warn!("done");
        });
        assert_eq!(lines[0]["tenant"], "acme");
        assert_eq!(lines[0]["body"], REDACTED);
    }

    #[test]
    fn sensitivity_rules() {
        for s in ["insured_name", "api_token", "client_secret", "page_text", "premium"] {
            assert!(is_sensitive(s), "{s}");
        }
        for s in ["message_id", "tenant", "bytes", "function_name_len", "error_code"] {
            assert!(!is_sensitive(s), "{s}");
        }
    }
}
