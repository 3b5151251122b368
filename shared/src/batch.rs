//! The batch runner: one SQS batch in, a partial batch response out.
//!
//! Each record is unwrapped (SNS inside SQS), decoded, claimed for idempotency and handed to the function's
//! handler inside its own span, with panics caught per record. Only transient failures are returned as
//! `batchItemFailures`, so SQS retries exactly those (and its redrive policy moves them to the dead-letter queue
//! when retries run out). A permanent failure is never retried blindly: the runner keeps the record in the
//! dead-letter queue, records an incident and announces it on the failures topic (the `alert` function turns it
//! into one notification), and only then counts the record as done; if keeping it fails, the record stays in its
//! queue. Nothing is lost either way.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use tracing::{Instrument, field::Empty};

use crate::coalesce::Crew;
use crate::config::{Env, QueueUrl, TableName, TopicArn};
use crate::error::{Class, Classify};
use crate::events::{Inbound, Tick};
use crate::idempotency::{Claim, DynamoIdempotency, IdempotencyStore};
use crate::incident::{DeadLetter, FailureSink, IncidentReport, Incidents, Rejection};
use crate::ledger::DynamoLedger;
use crate::metrics::{Metrics, Unit};
use crate::publish::Publisher;
use crate::replay::{BatchOutput, ReplayOutput};

/// What every SQS-driven function needs from its environment.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// `AWS_LAMBDA_FUNCTION_NAME`: names the function in idempotency keys, the ledger and incidents.
    pub function: String,
    /// `PALISADE_DLQ_URL`: where rejected records are kept.
    pub dlq: QueueUrl,
    /// `PALISADE_FAILURES_TOPIC_ARN`: where incidents are announced (the stack's failures topic, read by the
    /// `alert` function; for the `alert` function itself, the alerts topic).
    pub failures: TopicArn,
    /// `PALISADE_LEDGER_TABLE`: the action ledger (incidents included).
    pub ledger_table: TableName,
    /// `PALISADE_IDEMPOTENCY_TABLE`.
    pub idempotency_table: TableName,
    /// `PALISADE_BATCH_CONCURRENCY`: records of one batch handled at once (default 4).
    pub concurrency: usize,
    /// `PALISADE_IDEMPOTENCY_TTL_SECS`: how long a completed message is remembered (default one day).
    pub idempotency_ttl: Duration,
    /// `PALISADE_MAX_RECEIVE_COUNT`: the queue's redrive `maxReceiveCount`. On that last attempt a transient
    /// failure is kept and reported like a permanent one, so exhausted retries raise an incident at once instead of
    /// moving silently to the dead-letter queue. 0 (unset) leaves it to the redrive policy alone.
    pub max_receive_count: u32,
    /// `PALISADE_REPLAY` (`1`/`true`): set only by `palisade replay`. A rejected record is reported on the output
    /// instead of being kept in the DLQ with an incident, and a transient failure is reported too, since there is
    /// no retry to wait for (see [`crate::replay`]).
    pub replay: bool,
    /// Who keeps a redelivered record from taking effect twice. Set in code, not by the environment.
    pub dedup: Dedup,
}

/// Who makes handling a record idempotent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dedup {
    /// The runner claims each message id in the idempotency table before the handler runs, and marks it complete
    /// after: two DynamoDB writes per record, for handlers whose effects have no natural key.
    Runner,
    /// The handler's own effects are keyed (the enforcement ledger's ids derive from action, resource and
    /// violation occurrence, written conditionally), so a claim would only repeat that guarantee at two more
    /// writes per record.
    Handler,
}

impl RunnerConfig {
    /// Reads the runner's variables into `env`'s problem list; `None` when any is missing.
    pub fn read(env: &mut Env) -> Option<Self> {
        let function: Option<String> = env.required("AWS_LAMBDA_FUNCTION_NAME");
        let dlq = env.required("PALISADE_DLQ_URL");
        let failures = env.required("PALISADE_FAILURES_TOPIC_ARN");
        let ledger_table = env.required("PALISADE_LEDGER_TABLE");
        let idempotency_table = env.required("PALISADE_IDEMPOTENCY_TABLE");
        let concurrency = env.optional("PALISADE_BATCH_CONCURRENCY", 4usize).clamp(1, 64);
        let idempotency_ttl = env.secs("PALISADE_IDEMPOTENCY_TTL_SECS", Duration::from_secs(86_400));
        let max_receive_count = env.optional("PALISADE_MAX_RECEIVE_COUNT", 0u32);
        let replay = matches!(env.optional(crate::replay::ENV, String::new()).as_str(), "1" | "true");
        Some(Self {
            function: function?,
            dlq: dlq?,
            failures: failures?,
            ledger_table: ledger_table?,
            idempotency_table: idempotency_table?,
            concurrency,
            idempotency_ttl,
            max_receive_count,
            replay,
            dedup: Dedup::Runner,
        })
    }
}

/// How one record ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Handled.
    Done,
    /// Already handled before (duplicate delivery): skipped.
    Duplicate,
    /// Kept aside with an incident (permanent failure).
    Rejected,
    /// Left in the queue for SQS to retry.
    Retry,
}

/// Counts per batch, emitted as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Handled.
    pub done: usize,
    /// Skipped as duplicates.
    pub duplicate: usize,
    /// Kept aside with an incident.
    pub rejected: usize,
    /// Returned for retry.
    pub retried: usize,
}

/// The per-function runner: SDK adapters for idempotency, the ledger and the dead-letter path.
pub struct Runner {
    cfg: RunnerConfig,
    store: DynamoIdempotency,
    sink: DeadLetter<DynamoLedger>,
}

impl Runner {
    /// Builds the adapters once per cold start.
    pub fn new(cfg: RunnerConfig, sdk: &SdkConfig) -> Self {
        let db = aws_sdk_dynamodb::Client::new(sdk);
        let ledger = DynamoLedger::new(db.clone(), cfg.ledger_table.clone());
        let publisher = Publisher::new(aws_sdk_sns::Client::new(sdk));
        let incidents = Incidents::new(cfg.function.clone(), ledger, publisher, cfg.failures.clone());
        let sink = DeadLetter::new(aws_sdk_sqs::Client::new(sdk), cfg.dlq.clone(), incidents);
        let store = DynamoIdempotency::new(db, cfg.idempotency_table.clone());
        if cfg.replay {
            crate::replay::enable();
        }
        Self { cfg, store, sink }
    }

    /// The ledger, for handlers that record their side effects.
    pub fn ledger(&self) -> &DynamoLedger {
        self.sink.incidents().ledger()
    }

    /// The incident raiser, for handlers that quarantine inputs themselves.
    pub fn incidents(&self) -> &Incidents<DynamoLedger> {
        self.sink.incidents()
    }

    /// The configuration the runner was built from.
    pub fn config(&self) -> &RunnerConfig {
        &self.cfg
    }

    /// Serves SQS batches until the runtime stops.
    pub async fn run<I, H, Fut, E>(&self, handler: H) -> Result<(), lambda_runtime::Error>
    where
        I: Inbound,
        H: Fn(I) -> Fut + Clone,
        Fut: Future<Output = Result<(), E>>,
        E: Classify,
    {
        lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| {
            let handler = handler.clone();
            async move {
                let deadline = ev.context.deadline();
                let out = if self.cfg.replay {
                    let sink = crate::replay::ReplaySink;
                    let (response, t) =
                        process_batch(&self.cfg, &self.store, &sink, ev.payload, deadline, &handler).await;
                    let replay = ReplayOutput {
                        reported: crate::replay::take(),
                        done: t.done,
                        duplicate: t.duplicate,
                        rejected: t.rejected,
                        retried: t.retried,
                    };
                    BatchOutput { response, replay: Some(replay) }
                } else {
                    let (response, _) =
                        process_batch(&self.cfg, &self.store, &self.sink, ev.payload, deadline, &handler).await;
                    BatchOutput { response, replay: None }
                };
                crate::telemetry::mark_warm();
                Ok::<_, Infallible>(out)
            }
        }))
        .await
    }

    /// Serves scheduled (EventBridge) or direct invocations. A failure raises an incident at once and is
    /// returned to Lambda as an error whose type is its class, so Lambda's own retries and on-failure
    /// destinations apply.
    pub async fn run_scheduled<H, Fut, E>(&self, handler: H) -> Result<(), lambda_runtime::Error>
    where
        H: Fn(Tick) -> Fut + Clone,
        Fut: Future<Output = Result<serde_json::Value, E>>,
        E: Classify,
    {
        lambda_runtime::run(service_fn(move |ev: LambdaEvent<serde_json::Value>| {
            let handler = handler.clone();
            async move {
                let tick = Tick::from_event(&ev.payload);
                let scheduled_at = tick.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let request_id = ev.context.request_id.clone();
                let result = AssertUnwindSafe(handler(tick)).catch_unwind().await;
                crate::telemetry::mark_warm();
                let (class, code, summary) = match result {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(e)) => (e.class(), e.code(), e.to_string()),
                    Err(p) => (Class::Permanent, "panic", panic_message(&p)),
                };
                let report = IncidentReport {
                    tenant: None,
                    correlation_id: None,
                    source_id: format!("invocation/{request_id}"),
                    file: None,
                    class,
                    code: code.to_owned(),
                    summary: summary.clone(),
                    // The event is nothing but its time: `palisade replay` rebuilds it from this.
                    kept_in: format!("{SCHEDULED_PREFIX}{scheduled_at} (no input to keep)"),
                };
                if let Err(e) = self.sink.incidents().raise(&report).await {
                    tracing::error!(message = "Could not raise incident.", error = %e);
                }
                Err(Diagnostic { error_type: format!("{}.{code}", class.as_str()), error_message: summary })
            }
        }))
        .await
    }
}

/// How a scheduled invocation's incident names what it kept: `scheduled event at <RFC 3339 time> (...)`.
pub const SCHEDULED_PREFIX: &str = "scheduled event at ";

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("handler panicked: {what}")
}

async fn reject<K: FailureSink>(sink: &K, rejection: Rejection<'_>) -> Fate {
    tracing::warn!(message = "Record rejected.", error_class = rejection.class.as_str(), error_code = rejection.code);
    match sink.reject(&rejection).await {
        Ok(_) => Fate::Rejected,
        Err(e) => {
            tracing::error!(message = "Could not keep rejected record; leaving it queued.", error = %e);
            Fate::Retry
        }
    }
}

fn attempt_of(r: &SqsMessage) -> u32 {
    r.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1)
}

/// Handles one batch against the given ports; the core of [`Runner::run`], separate so it can be tested
/// without AWS.
pub async fn process_batch<I, H, Fut, E, S, K>(
    cfg: &RunnerConfig,
    store: &S,
    sink: &K,
    event: SqsEvent,
    deadline: SystemTime,
    handler: &H,
) -> (SqsBatchResponse, Tally)
where
    I: Inbound,
    H: Fn(I) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Classify,
    S: IdempotencyStore,
    K: FailureSink,
{
    let deadline: DateTime<Utc> = deadline.into();
    let started = std::time::Instant::now();
    // The batch's records form a crew, so the groups they write through (`crate::coalesce`) wait for exactly
    // the siblings still on their way.
    let crew = Crew::new();
    let records = futures::stream::iter(event.records.iter())
        .map(|r| {
            let member = crew.join();
            async move {
                let _member = member;
                let id = r.message_id.clone().unwrap_or_default();
                let span = tracing::info_span!(
                    "record",
                    message_id = %id,
                    tenant = Empty,
                    correlation_id = Empty,
                    kind = Empty,
                    attempt = attempt_of(r)
                );
                let fate = process_record(cfg, store, sink, r, &id, deadline, handler).instrument(span).await;
                (id, fate)
            }
        })
        .buffer_unordered(cfg.concurrency)
        .collect::<Vec<(String, Fate)>>();
    let fates = crew.clone().scope(records).await;

    let mut tally = Tally::default();
    let mut resp = SqsBatchResponse::default();
    for (id, fate) in fates {
        match fate {
            Fate::Done => tally.done += 1,
            Fate::Duplicate => tally.duplicate += 1,
            Fate::Rejected => tally.rejected += 1,
            Fate::Retry => {
                tally.retried += 1;
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                resp.batch_item_failures.push(f);
            }
        }
    }
    let mut m = Metrics::for_function(&cfg.function);
    m.put("RecordsReceived", event.records.len() as f64, Unit::Count)
        .put("RecordsSucceeded", tally.done as f64, Unit::Count)
        .put("RecordsDuplicate", tally.duplicate as f64, Unit::Count)
        .put("RecordsRejected", tally.rejected as f64, Unit::Count)
        .put("RecordsRetried", tally.retried as f64, Unit::Count)
        .put("BatchDurationMs", started.elapsed().as_secs_f64() * 1000.0, Unit::Milliseconds);
    m.emit();
    tracing::info!(
        message = "Batch processed.",
        records = event.records.len(),
        done = tally.done,
        duplicate = tally.duplicate,
        rejected = tally.rejected,
        retried = tally.retried
    );
    (resp, tally)
}

async fn process_record<I, H, Fut, E, S, K>(
    cfg: &RunnerConfig,
    store: &S,
    sink: &K,
    r: &SqsMessage,
    id: &str,
    deadline: DateTime<Utc>,
    handler: &H,
) -> Fate
where
    I: Inbound,
    H: Fn(I) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Classify,
    S: IdempotencyStore,
    K: FailureSink,
{
    let raw = r.body.as_deref().unwrap_or("");
    let reject = |meta, class, code, summary| {
        reject(sink, Rejection { raw_body: raw, message_id: id, meta, class, code, summary })
    };

    let decoded = crate::events::unwrap_sns(raw).and_then(|body| I::decode(&body));
    let input = match decoded {
        Ok(i) => i,
        Err(e) => return reject(None, Class::Permanent, e.code(), e.to_string()).await,
    };
    let meta = input.meta();
    let span = tracing::Span::current();
    if let Some(t) = &meta.tenant {
        span.record("tenant", t.as_str());
    }
    span.record("correlation_id", meta.correlation_id.to_string());
    span.record("kind", meta.kind);

    let key = format!("{}#{}", cfg.function, meta.id);
    let now = Utc::now();
    let expires = now + chrono::Duration::from_std(cfg.idempotency_ttl).unwrap_or(chrono::Duration::days(1));
    let claims = cfg.dedup == Dedup::Runner;
    if claims {
        match store.claim(&key, now, deadline.max(now + chrono::Duration::seconds(1)), expires).await {
            Ok(Claim::Acquired) => {}
            Ok(Claim::AlreadyCompleted) => {
                tracing::info!(message = "Duplicate delivery skipped.", idempotency_key = %key);
                return Fate::Duplicate;
            }
            Ok(Claim::InProgress) => {
                tracing::info!(message = "Record in progress elsewhere; retrying later.", idempotency_key = %key);
                return Fate::Retry;
            }
            Err(e) => {
                tracing::warn!(message = "Idempotency store unavailable; retrying later.", error = %e);
                return Fate::Retry;
            }
        }
    }

    let outcome = AssertUnwindSafe(handler(input)).catch_unwind().await;
    match outcome {
        Ok(Ok(())) => {
            if !claims {
                return Fate::Done;
            }
            if let Err(e) = store.complete(&key, expires).await {
                // The effect happened; a lost completion only means a redelivery may be checked again.
                tracing::warn!(message = "Could not mark record complete.", error = %e);
            }
            Fate::Done
        }
        Ok(Err(e)) => {
            if claims {
                if let Err(re) = store.release(&key).await {
                    tracing::warn!(message = "Could not release idempotency key.", error = %re);
                }
            }
            let last_attempt = cfg.max_receive_count > 0 && attempt_of(r) >= cfg.max_receive_count;
            match e.class() {
                // A replay has no retry to wait for: report the failure as it is.
                Class::Transient if cfg.replay => reject(Some(&meta), Class::Transient, e.code(), e.to_string()).await,
                Class::Transient if last_attempt => {
                    let summary = format!("retries exhausted after {} attempts; last error: {e}", attempt_of(r));
                    reject(Some(&meta), Class::Transient, "retries_exhausted", summary).await
                }
                Class::Transient => {
                    tracing::warn!(message = "Transient failure; SQS will retry.", error_class = "transient", error_code = e.code(), error = %e);
                    Fate::Retry
                }
                Class::Permanent => reject(Some(&meta), Class::Permanent, e.code(), e.to_string()).await,
            }
        }
        Err(p) => {
            if claims {
                let _ = store.release(&key).await;
            }
            reject(Some(&meta), Class::Permanent, "panic", panic_message(&p)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Envelope, Message};
    use crate::idempotency::MemoryIdempotency;
    use crate::incident::IncidentError;
    use serde::{Deserialize, Serialize};
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Job {
        mode: String,
    }
    impl Message for Job {
        const KIND: &'static str = "test.job";
    }

    #[derive(Debug, thiserror::Error)]
    #[error("job failed ({0:?})")]
    struct JobError(Class);
    impl Classify for JobError {
        fn class(&self) -> Class {
            self.0
        }
        fn code(&self) -> &'static str {
            "job_failed"
        }
    }

    #[derive(Default)]
    struct Sink {
        kept: Mutex<Vec<(String, &'static str, Option<String>)>>,
        fail: bool,
    }
    impl FailureSink for Sink {
        async fn reject(&self, r: &Rejection<'_>) -> Result<String, IncidentError> {
            if self.fail {
                return Err(IncidentError::Ledger(crate::ledger::LedgerError::Malformed {
                    id: "x".into(),
                    reason: "sink down".into(),
                }));
            }
            self.kept.lock().unwrap().push((
                r.raw_body.to_owned(),
                r.code,
                r.meta.and_then(|m| m.tenant.as_ref().map(|t| t.to_string())),
            ));
            Ok("incident-1".into())
        }
    }

    fn cfg() -> RunnerConfig {
        RunnerConfig {
            function: "f".into(),
            dlq: "http://localhost/1/dlq".parse().unwrap(),
            failures: "arn:aws:sns:eu-west-1:123456789012:failures".parse().unwrap(),
            ledger_table: "ledger".parse().unwrap(),
            idempotency_table: "idem".parse().unwrap(),
            concurrency: 3,
            idempotency_ttl: Duration::from_secs(60),
            dedup: Dedup::Runner,
            max_receive_count: 3,
            replay: false,
        }
    }

    fn record(id: &str, body: String) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body);
        m.attributes = HashMap::from([("ApproximateReceiveCount".to_owned(), "1".to_owned())]);
        m
    }

    fn job(mode: &str) -> Envelope<Job> {
        Envelope::new("acme".parse().unwrap(), Job { mode: mode.into() })
    }

    fn via_sns(e: &Envelope<Job>) -> String {
        serde_json::json!({"Type": "Notification", "Message": e.to_json().unwrap()}).to_string()
    }

    fn batch(records: Vec<SqsMessage>) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = records;
        e
    }

    async fn run(
        store: &MemoryIdempotency,
        sink: &Sink,
        records: Vec<SqsMessage>,
        calls: &AtomicUsize,
    ) -> (SqsBatchResponse, Tally) {
        let handler = |m: Envelope<Job>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            match m.payload.mode.as_str() {
                "ok" => Ok(()),
                "transient" => Err(JobError(Class::Transient)),
                "permanent" => Err(JobError(Class::Permanent)),
                _ => panic!("boom"),
            }
        };
        let deadline = SystemTime::now() + Duration::from_secs(30);
        process_batch(&cfg(), store, sink, batch(records), deadline, &handler).await
    }

    #[tokio::test]
    async fn only_transient_failures_are_returned_for_retry() {
        let (store, sink, calls) = (MemoryIdempotency::default(), Sink::default(), AtomicUsize::new(0));
        let records = vec![
            record("1", via_sns(&job("ok"))),
            record("2", via_sns(&job("transient"))),
            record("3", via_sns(&job("permanent"))),
            record("4", "not json at all".into()),
            record("5", job("ok").to_json().unwrap()), // raw delivery
        ];
        let (resp, tally) = run(&store, &sink, records, &calls).await;
        let failed: Vec<_> = resp.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, vec!["2"]);
        assert_eq!(tally, Tally { done: 2, duplicate: 0, rejected: 2, retried: 1 });
        let kept = sink.kept.lock().unwrap();
        assert!(kept.iter().any(|(b, c, t)| b == "not json at all" && *c == "invalid_json" && t.is_none()));
        assert!(kept.iter().any(|(_, c, t)| *c == "job_failed" && t.as_deref() == Some("acme")));
    }

    #[tokio::test]
    async fn a_panic_in_one_record_loses_no_other_record() {
        let (store, sink, calls) = (MemoryIdempotency::default(), Sink::default(), AtomicUsize::new(0));
        let records = vec![
            record("1", via_sns(&job("ok"))),
            record("2", via_sns(&job("panic"))),
            record("3", via_sns(&job("ok"))),
        ];
        let (resp, tally) = run(&store, &sink, records, &calls).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(tally.done, 2);
        assert_eq!(tally.rejected, 1);
        assert_eq!(sink.kept.lock().unwrap()[0].1, "panic");
    }

    #[tokio::test]
    async fn duplicate_delivery_runs_the_handler_once() {
        let (store, sink, calls) = (MemoryIdempotency::default(), Sink::default(), AtomicUsize::new(0));
        let e = job("ok");
        let (_, t1) = run(&store, &sink, vec![record("a", via_sns(&e)), record("b", via_sns(&e))], &calls).await;
        // The two copies in one batch race: one runs, the other sees it in progress or completed.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(t1.done, 1);
        let (_, t2) = run(&store, &sink, vec![record("c", via_sns(&e))], &calls).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(t2.duplicate, 1);
    }

    #[tokio::test]
    async fn a_handler_that_dedups_itself_gets_every_delivery_and_the_store_is_untouched() {
        let (store, sink, calls) = (MemoryIdempotency::default(), Sink::default(), AtomicUsize::new(0));
        let cfg = RunnerConfig { dedup: Dedup::Handler, ..cfg() };
        let handler = |_: Envelope<Job>| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<(), JobError>(())
        };
        let e = job("ok");
        let deadline = SystemTime::now() + Duration::from_secs(30);
        let records = vec![record("a", via_sns(&e)), record("b", via_sns(&e))];
        let (_, tally) = process_batch(&cfg, &store, &sink, batch(records), deadline, &handler).await;
        // both copies reach the handler, whose own keyed writes decide; the runner wrote no claims
        assert_eq!((calls.load(Ordering::SeqCst), tally.done), (2, 2));
        assert!(store.is_empty(), "the runner claimed a key although the handler dedups");
    }

    #[tokio::test]
    async fn a_transient_failure_releases_the_key_for_the_retry() {
        let (store, sink, calls) = (MemoryIdempotency::default(), Sink::default(), AtomicUsize::new(0));
        let e = job("transient");
        run(&store, &sink, vec![record("a", via_sns(&e))], &calls).await;
        run(&store, &sink, vec![record("a", via_sns(&e))], &calls).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_last_transient_attempt_is_kept_with_an_incident_not_dropped() {
        let (store, sink, calls) = (MemoryIdempotency::default(), Sink::default(), AtomicUsize::new(0));
        let mut r = record("t", via_sns(&job("transient")));
        r.attributes.insert("ApproximateReceiveCount".into(), "3".into());
        let (resp, tally) = run(&store, &sink, vec![r], &calls).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(tally.rejected, 1);
        assert_eq!(sink.kept.lock().unwrap()[0].1, "retries_exhausted");
    }

    #[tokio::test]
    async fn in_replay_mode_a_transient_failure_is_reported_with_its_own_code_not_retried() {
        // GIVEN a replay (first attempt, so not the last) of a record whose handler fails transiently
        let (store, sink) = (MemoryIdempotency::default(), Sink::default());
        let cfg = RunnerConfig { replay: true, ..cfg() };
        let handler = |_: Envelope<Job>| async { Err::<(), _>(JobError(Class::Transient)) };
        let deadline = SystemTime::now() + Duration::from_secs(30);
        // WHEN it runs
        let records = vec![record("r", via_sns(&job("transient")))];
        let (resp, tally) = process_batch(&cfg, &store, &sink, batch(records), deadline, &handler).await;
        // THEN it goes to the sink with the handler's code (the replay sink only reports), and nothing is retried
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(tally.rejected, 1);
        assert_eq!(sink.kept.lock().unwrap()[0].1, "job_failed");
    }

    #[test]
    fn replay_mode_is_read_from_palisade_replay() {
        let vars = |replay: Option<&str>| {
            let mut m: HashMap<String, String> = [
                ("AWS_LAMBDA_FUNCTION_NAME", "f"),
                ("PALISADE_DLQ_URL", "http://localhost/1/dlq"),
                ("PALISADE_FAILURES_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:failures"),
                ("PALISADE_LEDGER_TABLE", "ledger"),
                ("PALISADE_IDEMPOTENCY_TABLE", "idem"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            if let Some(r) = replay {
                m.insert("PALISADE_REPLAY".into(), r.into());
            }
            RunnerConfig::read(&mut Env::from_map(m)).unwrap().replay
        };
        assert!(!vars(None));
        assert!(vars(Some("1")) && vars(Some("true")));
        assert!(!vars(Some("0")));
    }

    #[tokio::test]
    async fn when_the_dead_letter_path_fails_the_record_stays_queued() {
        let (store, calls) = (MemoryIdempotency::default(), AtomicUsize::new(0));
        let sink = Sink { fail: true, ..Sink::default() };
        let (resp, tally) = run(&store, &sink, vec![record("x", "garbage".into())], &calls).await;
        assert_eq!(resp.batch_item_failures.len(), 1);
        assert_eq!(tally.retried, 1);
    }
}
