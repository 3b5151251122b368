//! Which input an incident kept, which dead-letter message is it, and the one event the function is served: all
//! pure, so the choices are tested without AWS.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use palisade_shared::batch::SCHEDULED_PREFIX;
use palisade_shared::ledger::LedgerEntry;
use serde_json::{Value, json};

/// Where an incident's input is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kept {
    /// In a dead-letter queue (its URL).
    Queue(String),
    /// Moved aside to the quarantine prefix of a bucket.
    Quarantine {
        /// The bucket.
        bucket: String,
        /// The quarantine key.
        key: String,
    },
    /// A scheduled invocation: the event was nothing but its time.
    Scheduled(DateTime<Utc>),
}

/// Reads `details.kept_in` of an incident.
pub fn kept(entry: &LedgerEntry) -> Result<Kept, String> {
    let kept_in = entry.details.get("kept_in").and_then(Value::as_str).unwrap_or_default();
    if kept_in.starts_with("https://") || kept_in.starts_with("http://") {
        return Ok(Kept::Queue(kept_in.to_owned()));
    }
    if let Some(rest) = kept_in.strip_prefix("s3://") {
        if let Some((bucket, key)) = rest.split_once('/').filter(|(b, k)| !b.is_empty() && !k.is_empty()) {
            return Ok(Kept::Quarantine { bucket: bucket.to_owned(), key: key.to_owned() });
        }
    }
    if let Some(rest) = kept_in.strip_prefix(SCHEDULED_PREFIX) {
        let time = rest.split_whitespace().next().unwrap_or_default();
        if let Ok(t) = DateTime::parse_from_rfc3339(time) {
            return Ok(Kept::Scheduled(t.with_timezone(&Utc)));
        }
    }
    if kept_in.starts_with("scheduled invocation") {
        // recorded before the event time was: the incident's own time is the closest there is
        return Ok(Kept::Scheduled(entry.at));
    }
    if kept_in.is_empty() {
        return Err(format!("incident {} does not say where its input is kept (no details.kept_in)", entry.id));
    }
    Err(format!("incident {} kept its input in {kept_in:?}, which replay cannot read", entry.id))
}

/// The crate (and binary) name of a function named `<stack>-<crate>`.
pub fn crate_of<'a>(function: &'a str, stack: &str) -> Option<&'a str> {
    function.strip_prefix(stack)?.strip_prefix('-').filter(|c| !c.is_empty())
}

/// A message read from a dead-letter queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Letter {
    /// Its id in the dead-letter queue.
    pub message_id: String,
    /// What deletes it or changes its visibility.
    pub receipt_handle: String,
    /// The body, as the function received it.
    pub body: String,
    /// String message attributes (`palisade-*` from the runner, `RequestID` from Lambda's async DLQ).
    pub attributes: BTreeMap<String, String>,
}

/// What identifies the incident's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The incident's `resource`: the record's source id.
    pub source_id: String,
    /// The incident's error code.
    pub code: String,
}

impl Wanted {
    /// From an incident.
    pub fn of(entry: &LedgerEntry) -> Self {
        let code = entry.details.get("error_code").and_then(Value::as_str).unwrap_or_default().to_owned();
        Self { source_id: entry.resource.clone(), code }
    }

    /// How well `l` matches: `Some(0)` is certain (the source id and the error code), `Some(1)` the same source
    /// with another code (kept again later), `Some(2)` a body that decodes to the source id; `None` another input.
    pub fn rank(&self, l: &Letter) -> Option<u8> {
        let same_code = l.attributes.get("palisade-error-code").is_some_and(|c| *c == self.code);
        if let Some(source) = l.attributes.get("palisade-source-id") {
            // kept by the runner: its attributes say exactly what it is
            return (*source == self.source_id).then_some(if same_code { 0 } else { 1 });
        }
        if let Some(request) = l.attributes.get("RequestID") {
            // Lambda's dead-letter queue for asynchronous (scheduled) invocations
            return (self.source_id.strip_prefix("invocation/") == Some(request.as_str())).then_some(0);
        }
        if l.message_id == self.source_id {
            return Some(0);
        }
        // moved by SQS after its receive limit: the incident names what the body decodes to
        let decoded = palisade_shared::events::identify(&l.body)?;
        (decoded.id == self.source_id).then_some(2)
    }
}

/// Whether the function is served the letter's body as it is (an asynchronous invocation's event) rather than
/// an SQS event around it.
pub fn is_async_event(l: &Letter) -> bool {
    l.attributes.contains_key("RequestID")
}

/// The ARN of the queue at `url` (`https://sqs.<region>.amazonaws.com/<account>/<name>`, or a local endpoint's
/// `http://host:port/<account>/<name>`).
pub fn queue_arn(url: &str, region: &str) -> String {
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let name = parts.next().unwrap_or_default();
    let account = parts.next().unwrap_or("000000000000");
    format!("arn:aws:sqs:{region}:{account}:{name}")
}

/// The SQS event Lambda's poller would deliver for `body` from `queue_arn`: one record, first receive, so the
/// function's own retry logic starts fresh. `palisade-*` attributes are the DLQ's bookkeeping, not the message's.
pub fn sqs_event(message_id: &str, body: &str, attributes: &BTreeMap<String, String>, queue_arn: &str) -> Value {
    let region = queue_arn.split(':').nth(3).unwrap_or_default();
    let now = Utc::now().timestamp_millis().to_string();
    let message_attributes: serde_json::Map<String, Value> = attributes
        .iter()
        .filter(|(k, _)| !k.starts_with("palisade-"))
        .map(|(k, v)| {
            let attr = json!({"stringValue": v, "binaryValue": null, "stringListValues": [], "binaryListValues": [],
                              "dataType": "String"});
            (k.clone(), attr)
        })
        .collect();
    json!({"Records": [{
        "messageId": message_id,
        "receiptHandle": "palisade-replay",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now, "ApproximateFirstReceiveTimestamp": now},
        "messageAttributes": message_attributes,
        "md5OfBody": null,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }]})
}

/// The EventBridge scheduled event for `time`, as the rule would send it.
pub fn scheduled_event(time: DateTime<Utc>, region: &str, account: &str) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region,
        "resources": [],
        "detail": {},
    })
}

/// The account id in a Lambda function ARN (`arn:aws:lambda:<region>:<account>:function:<name>`).
pub fn account_of(function_arn: &str) -> &str {
    function_arn.split(':').nth(4).filter(|a| !a.is_empty()).unwrap_or("000000000000")
}

/// The detected type the ingest step would give `bytes` (extract reads only PDFs, but is served what there is).
pub fn file_type(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"%PDF-") { "pdf" } else { "unknown" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_shared::ledger::RecordType;

    fn incident(resource: &str, details: Value) -> LedgerEntry {
        LedgerEntry {
            id: "incident-1".into(),
            record_type: RecordType::Incident,
            at: "2026-11-23T10:00:00Z".parse().unwrap(),
            tenant: "acme".parse().unwrap(),
            function: "palisade-pipeline-acme-pipeline-deliver".into(),
            action: "incident".into(),
            resource: resource.into(),
            outcome: "open".into(),
            actor: "palisade-pipeline-acme-pipeline-deliver".into(),
            correlation_id: uuid::Uuid::new_v4(),
            details,
        }
    }

    fn letter(id: &str, body: &str, attrs: &[(&str, &str)]) -> Letter {
        Letter {
            message_id: id.into(),
            receipt_handle: format!("rh-{id}"),
            body: body.into(),
            attributes: attrs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn where_the_input_is_kept_is_read_from_the_incident() {
        let q = "http://127.0.0.1:5000/123456789012/palisade-pipeline-acme-pipeline-deliver-dlq";
        assert_eq!(kept(&incident("m", json!({"kept_in": q}))), Ok(Kept::Queue(q.into())));
        assert_eq!(
            kept(&incident("s3://inbox/incoming/a.pdf", json!({"kept_in": "s3://inbox/quarantine/2026-11-23/a.pdf"}))),
            Ok(Kept::Quarantine { bucket: "inbox".into(), key: "quarantine/2026-11-23/a.pdf".into() })
        );
        let sched = json!({"kept_in": "scheduled event at 2026-12-01T06:00:00Z (no input to keep)"});
        assert_eq!(
            kept(&incident("invocation/r", sched)),
            Ok(Kept::Scheduled("2026-12-01T06:00:00Z".parse().unwrap()))
        );
        let old = json!({"kept_in": "scheduled invocation (no input to keep)"});
        assert_eq!(kept(&incident("invocation/r", old)), Ok(Kept::Scheduled("2026-11-23T10:00:00Z".parse().unwrap())));
        assert!(kept(&incident("x", json!({}))).unwrap_err().contains("no details.kept_in"));
        let alarm = json!({"kept_in": "nothing kept by the alarm (messages stay in the function's queue)"});
        assert!(kept(&incident("x", alarm)).unwrap_err().contains("replay cannot read"));
    }

    #[test]
    fn the_crate_is_the_function_name_after_the_stack() {
        assert_eq!(
            crate_of("palisade-pipeline-acme-pipeline-deliver", "palisade-pipeline-acme"),
            Some("pipeline-deliver")
        );
        assert_eq!(crate_of("other-pipeline-deliver", "palisade-pipeline-acme"), None);
        assert_eq!(crate_of("palisade-pipeline-acme", "palisade-pipeline-acme"), None);
    }

    #[test]
    fn the_runner_s_copy_is_found_by_its_source_id_and_code() {
        // GIVEN an incident for source m-9 with code target_refused, and a DLQ holding several messages
        let w = Wanted::of(&incident("m-9", json!({"error_code": "target_refused"})));
        let exact = letter("d1", "{}", &[("palisade-source-id", "m-9"), ("palisade-error-code", "target_refused")]);
        let other_code = letter("d2", "{}", &[("palisade-source-id", "m-9"), ("palisade-error-code", "panic")]);
        let other = letter("m-9", "{}", &[("palisade-source-id", "m-1"), ("palisade-error-code", "target_refused")]);
        // THEN the exact copy ranks first, the same source with another code after it, and another source never
        // (even when the DLQ message id happens to be the source id: the attributes say what it is)
        assert_eq!(w.rank(&exact), Some(0));
        assert_eq!(w.rank(&other_code), Some(1));
        assert_eq!(w.rank(&other), None);
    }

    #[test]
    fn messages_sqs_or_lambda_moved_are_found_by_id_body_or_request() {
        // a message SQS moved after its receive limit: no attributes; its id or its envelope id
        let env = palisade_shared::Envelope::new(
            "acme".parse().unwrap(),
            palisade_shared::messages::QuoteExtracted {
                file_id: "f".into(),
                bucket: "b".into(),
                key: "k".into(),
                layout: "l".into(),
                record_sha256: "s".into(),
            },
        );
        let body = env.to_json().unwrap();
        let by_body = Wanted { source_id: env.id.to_string(), code: "max_receives_exceeded".into() };
        assert_eq!(by_body.rank(&letter("sqs-1", &body, &[])), Some(2));
        let by_id = Wanted { source_id: "sqs-1".into(), code: "max_receives_exceeded".into() };
        assert_eq!(by_id.rank(&letter("sqs-1", "garbage", &[])), Some(0));
        assert_eq!(by_id.rank(&letter("sqs-2", "garbage", &[])), None);
        // Lambda's async DLQ names the request; its body is served as it is
        let by_request = Wanted { source_id: "invocation/req-1".into(), code: "async_retries_exhausted".into() };
        let async_letter = letter("l-1", r#"{"time":"2026-11-23T10:00:00Z"}"#, &[("RequestID", "req-1")]);
        assert_eq!(by_request.rank(&async_letter), Some(0));
        assert!(is_async_event(&async_letter));
        assert!(!is_async_event(&letter("x", "{}", &[])));
    }

    #[test]
    fn the_sqs_event_is_one_first_receive_record_without_the_dlq_s_bookkeeping() {
        let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/palisade-pipeline-acme-pipeline-deliver";
        let arn = queue_arn(url, "eu-west-1");
        assert_eq!(arn, "arn:aws:sqs:eu-west-1:123456789012:palisade-pipeline-acme-pipeline-deliver");
        let attrs: BTreeMap<String, String> =
            [("palisade-error-code", "x"), ("trace", "t-1")].iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let ev = sqs_event("d-1", "{\"a\":1}", &attrs, &arn);
        let r = &ev["Records"][0];
        assert_eq!(ev["Records"].as_array().map(Vec::len), Some(1));
        assert_eq!((r["messageId"].as_str(), r["body"].as_str()), (Some("d-1"), Some("{\"a\":1}")));
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "1");
        assert_eq!((r["eventSourceARN"].as_str(), r["awsRegion"].as_str()), (Some(arn.as_str()), Some("eu-west-1")));
        assert_eq!(r["messageAttributes"]["trace"]["stringValue"], "t-1");
        assert!(r["messageAttributes"].get("palisade-error-code").is_none());
        // and the runner's own event type reads it
        let typed: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(ev).unwrap();
        assert_eq!(typed.records[0].body.as_deref(), Some("{\"a\":1}"));
    }

    #[test]
    fn the_scheduled_event_carries_the_time_the_tick_reads() {
        let t: DateTime<Utc> = "2026-12-01T06:00:00Z".parse().unwrap();
        let ev = scheduled_event(t, "eu-west-1", account_of("arn:aws:lambda:eu-west-1:123456789012:function:f"));
        assert_eq!(palisade_shared::events::Tick::from_event(&ev).time, t);
        assert_eq!(ev["account"], "123456789012");
        assert_eq!(account_of("not-an-arn"), "000000000000");
    }

    #[test]
    fn only_pdf_magic_makes_a_pdf() {
        assert_eq!(file_type(b"%PDF-1.7\n..."), "pdf");
        assert_eq!(file_type(b"PK\x03\x04"), "unknown");
    }
}
