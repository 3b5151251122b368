//! `alert`: one clear notification per incident on the stack's alerts topic.
//!
//! It reads the stack's failures topic, which carries two things:
//! - the incidents every function records and announces (the runner's rejected records, quarantined files,
//!   failed scheduled runs). Each becomes one notification, however often it is announced or delivered: the
//!   notification is claimed per incident id in the idempotency store before it is published.
//! - CloudWatch's alarm notifications. A dead-letter queue alarm makes it look into that queue, without taking
//!   anything out, for messages nobody reported: those SQS moved there after the function crashed or timed out
//!   (the runner's own copies carry `palisade-*` attributes and already have incidents), and the events Lambda
//!   kept after a scheduled run's retries. Each gets an incident in the ledger, in the name of the function that
//!   failed, and a notification. An errors or throttles alarm is an incident and a notification of its own. A
//!   return to OK needs nobody: the incidents stay open in the ledger until they are dealt with.
//!
//! Notifications carry ids, codes, our own summaries and where the input is kept; never the input itself.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use palisade_shared::alarm::{AlarmNotification, AlarmState, Failure};
use palisade_shared::batch::RunnerConfig;
use palisade_shared::config::{ConfigError, Env, TopicArn, got};
use palisade_shared::envelope::{Envelope, TenantId};
use palisade_shared::error::{AwsError, Class, Classify};
use palisade_shared::events::identify;
use palisade_shared::idempotency::{Claim, DynamoIdempotency, IdempotencyStore, StoreError};
use palisade_shared::incident::{Alert, IncidentError, IncidentReport, Incidents};
use palisade_shared::ledger::DynamoLedger;
use palisade_shared::publish::{PublishError, Publisher};

/// How long a sent notification is remembered by default: as long as a dead-letter queue keeps a message
/// (14 days), so a message that waits there is never announced twice.
pub const DEFAULT_MEMORY: Duration = Duration::from_secs(14 * 24 * 3600);

/// At most this many dead-letter messages are read per alarm, so one alarm stays within the function's timeout.
pub const PEEK_LIMIT: usize = 100;

/// How long a peeked message stays hidden if releasing it fails; it is released at once otherwise.
const PEEK_VISIBILITY_SECS: i32 = 10;

/// How long a claimed notification is held by the invocation sending it (the function's timeout).
const IN_PROGRESS_SECS: i64 = 30;

/// Start-up configuration.
pub struct Config {
    /// The shared runner's settings; its failures topic must be the alerts topic (see [`Config::from_env`]).
    pub runner: RunnerConfig,
    /// `PALISADE_ALERTS_TOPIC_ARN`: where notifications go.
    pub alerts: TopicArn,
    /// `PALISADE_TENANT`: the stack's tenant, named on incidents whose message does not say.
    pub tenant: TenantId,
    /// `PALISADE_ALERT_MEMORY_SECS`: how long a sent notification is remembered (default 14 days).
    pub memory: Duration,
}

impl Config {
    /// Reads and validates every variable, reporting all problems at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(Env::from_process())
    }

    /// From given variables.
    pub fn read(mut env: Env) -> Result<Self, ConfigError> {
        let runner = RunnerConfig::read(&mut env);
        let alerts = env.required("PALISADE_ALERTS_TOPIC_ARN");
        let tenant = env.required("PALISADE_TENANT");
        let memory = env.secs("PALISADE_ALERT_MEMORY_SECS", DEFAULT_MEMORY);
        env.finish()?;
        let cfg = Self {
            runner: got(runner, "runner configuration")?,
            alerts: got(alerts, "PALISADE_ALERTS_TOPIC_ARN")?,
            tenant: got(tenant, "PALISADE_TENANT")?,
            memory,
        };
        // Its own incidents must not go to the topic it reads: a failure to alert would announce itself to
        // itself, fail again, and so on.
        if cfg.runner.failures != cfg.alerts {
            return Err(ConfigError {
                problems: vec![
                    "PALISADE_FAILURES_TOPIC_ARN must be the alerts topic (PALISADE_ALERTS_TOPIC_ARN) for the alert \
                     function, or its own failures would loop back into it"
                        .into(),
                ],
            });
        }
        Ok(cfg)
    }
}

/// Clients and settings, built once per cold start.
pub struct Deps<'a> {
    /// Configuration.
    pub cfg: &'a Config,
    /// Records incidents in the ledger (from the runner).
    pub incidents: &'a Incidents<DynamoLedger>,
    /// Reads dead-letter queues.
    pub sqs: aws_sdk_sqs::Client,
    /// Publishes notifications.
    pub publisher: Publisher,
    /// Remembers which incidents were announced.
    pub store: DynamoIdempotency,
}

impl<'a> Deps<'a> {
    /// Builds the clients.
    pub fn new(cfg: &'a Config, sdk: &SdkConfig, incidents: &'a Incidents<DynamoLedger>) -> Self {
        Self {
            cfg,
            incidents,
            sqs: aws_sdk_sqs::Client::new(sdk),
            publisher: Publisher::new(aws_sdk_sns::Client::new(sdk)),
            store: DynamoIdempotency::new(aws_sdk_dynamodb::Client::new(sdk), cfg.runner.idempotency_table.clone()),
        }
    }
}

/// Why a failure could not be turned into a notification (yet).
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// Reading a dead-letter queue failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Recording an incident failed.
    #[error(transparent)]
    Incident(#[from] IncidentError),
    /// Publishing the notification failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The idempotency store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another invocation is sending this notification right now.
    #[error("the notification for {0} is being sent by another invocation")]
    InProgress(String),
}

impl Classify for AlertError {
    fn class(&self) -> Class {
        match self {
            AlertError::Aws(e) => e.class,
            AlertError::Publish(e) => e.class(),
            AlertError::Incident(_) | AlertError::Store(_) | AlertError::InProgress(_) => Class::Transient,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AlertError::Aws(e) => e.code(),
            AlertError::Incident(_) => "incident_failed",
            AlertError::Publish(_) => "publish_failed",
            AlertError::Store(e) => e.code(),
            AlertError::InProgress(_) => "alert_in_progress",
        }
    }
}

/// Handles one record of the failures topic.
pub async fn handle(deps: &Deps<'_>, msg: Failure) -> Result<(), AlertError> {
    match msg {
        Failure::Incident(env) => notify(deps, &env.tenant, env.payload).await.map(|_| ()),
        Failure::Alarm(alarm) => on_alarm(deps, &alarm).await,
    }
}

/// Whether this call published the notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Published now.
    Now,
    /// Published before: nothing done.
    Before,
}

/// Runs `send` at most once per `key` while the key is remembered (`memory`): claimed first, completed after a
/// successful send, released after a failed one so that the retry sends.
pub async fn once<S, F, Fut>(
    store: &S,
    key: &str,
    now: DateTime<Utc>,
    memory: Duration,
    send: F,
) -> Result<Sent, AlertError>
where
    S: IdempotencyStore,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), AlertError>>,
{
    let expires = now + chrono::Duration::from_std(memory).unwrap_or(chrono::Duration::days(14));
    match store.claim(key, now, now + chrono::Duration::seconds(IN_PROGRESS_SECS), expires).await? {
        Claim::Acquired => {}
        Claim::AlreadyCompleted => return Ok(Sent::Before),
        Claim::InProgress => return Err(AlertError::InProgress(key.to_owned())),
    }
    if let Err(e) = send().await {
        if let Err(re) = store.release(key).await {
            tracing::warn!(message = "Could not release the notification's claim.", error = %re);
        }
        return Err(e);
    }
    if let Err(e) = store.complete(key, expires).await {
        // Sent: failing the record now would only send it again once the claim lapses.
        tracing::warn!(message = "Could not mark the notification sent.", error = %e);
    }
    Ok(Sent::Now)
}

/// Publishes the notification for one incident, unless it was published before.
async fn notify(deps: &Deps<'_>, tenant: &TenantId, mut alert: Alert) -> Result<Sent, AlertError> {
    alert.text = alert.one_line();
    let key = format!("{}#alert#{}", deps.cfg.runner.function, alert.incident_id);
    let subject = alert.subject();
    let env = Envelope::with_correlation(tenant.clone(), alert.correlation_id, alert);
    let sent = once(&deps.store, &key, Utc::now(), deps.cfg.memory, || async {
        deps.publisher.publish_with_subject(&deps.cfg.alerts, &env, Some(&subject)).await?;
        Ok(())
    })
    .await?;
    let a = &env.payload;
    match sent {
        Sent::Now => tracing::info!(
            message = "Alert sent.",
            incident_id = %a.incident_id,
            function = %a.function,
            error_class = a.error_class.as_str(),
            error_code = %a.error_code
        ),
        Sent::Before => tracing::info!(message = "Alert already sent; skipped.", incident_id = %a.incident_id),
    }
    Ok(sent)
}

/// What an alarm's state change calls for.
#[derive(Clone, Debug)]
pub enum Plan<'a> {
    /// Nothing: back to OK, or no data.
    Ignore,
    /// Look into this dead-letter queue for messages without an incident.
    PeekDeadLetters(&'a str),
    /// One incident for the alarm itself, of `function`, with this replay hint.
    Report {
        /// The function the alarm watches (or the alarm's name, for an alarm on something else).
        function: String,
        /// The incident.
        report: IncidentReport,
        /// What to do about it: a function alarm has no input to replay.
        replay: String,
    },
}

/// Decides what an alarm notification calls for; `tenant` is the stack's.
pub fn plan<'a>(alarm: &'a AlarmNotification, tenant: &TenantId) -> Plan<'a> {
    if alarm.new_state_value != AlarmState::Alarm {
        return Plan::Ignore;
    }
    let t = &alarm.trigger;
    let (namespace, metric) = (t.namespace.as_deref().unwrap_or(""), t.metric_name.as_deref().unwrap_or(""));
    if let ("AWS/SQS", "ApproximateNumberOfMessagesVisible", Some(queue)) =
        (namespace, metric, t.dimension("QueueName"))
    {
        return Plan::PeekDeadLetters(queue);
    }
    let function = t.dimension("FunctionName").filter(|_| namespace == "AWS/Lambda");
    let (code, summary) = match (function, metric) {
        (Some(_), "Errors") => (
            "function_errors",
            "the function failed whole invocations (it crashed, timed out or could not start); their messages are \
             retried from its queue and, once retries run out, kept in its dead-letter queue"
                .to_owned(),
        ),
        (Some(_), "Throttles") => (
            "function_throttled",
            "Lambda throttled the function; its messages wait in its queue for longer".to_owned(),
        ),
        _ => (
            "alarm",
            format!(
                "CloudWatch alarm {} is in ALARM{}",
                alarm.alarm_name,
                alarm.alarm_description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            ),
        ),
    };
    let function = function.unwrap_or(&alarm.alarm_name).to_owned();
    Plan::Report {
        report: IncidentReport {
            tenant: Some(tenant.clone()),
            correlation_id: None,
            source_id: format!("alarm/{}/{}", alarm.alarm_name, alarm.state_change_time.as_deref().unwrap_or("")),
            file: None,
            class: Class::Transient,
            code: code.to_owned(),
            summary,
            kept_in: "nothing kept by the alarm (messages stay in the function's queue)".to_owned(),
        },
        replay: format!("nothing to replay; see the log group /aws/lambda/{function}"),
        function,
    }
}

async fn on_alarm(deps: &Deps<'_>, alarm: &AlarmNotification) -> Result<(), AlertError> {
    match plan(alarm, &deps.cfg.tenant) {
        Plan::Ignore => {
            tracing::info!(message = "Alarm state change needs no alert.", alarm = %alarm.alarm_name);
            Ok(())
        }
        Plan::Report { function, report, replay } => {
            let mut alert = deps.incidents.record_for(&function, &report).await?;
            alert.replay = replay;
            notify(deps, &deps.cfg.tenant, alert).await.map(|_| ())
        }
        Plan::PeekDeadLetters(queue) => {
            let (url, letters) = peek(&deps.sqs, queue).await?;
            let mut raised = 0usize;
            for letter in &letters {
                let Some((function, report)) = dead_letter_report(queue, &url, letter, &deps.cfg.tenant) else {
                    continue;
                };
                let tenant = report.tenant.clone().unwrap_or_else(|| deps.cfg.tenant.clone());
                let alert = deps.incidents.record_for(&function, &report).await?;
                notify(deps, &tenant, alert).await?;
                raised += 1;
            }
            tracing::info!(
                message = "Dead-letter queue inspected.",
                queue = %queue,
                messages = letters.len(),
                unreported = raised
            );
            Ok(())
        }
    }
}

/// A message found in a dead-letter queue: what the decision needs, nothing else.
#[derive(Clone, Debug, Default)]
pub struct Letter {
    /// SQS keeps it when it moves a message to the dead-letter queue.
    pub message_id: String,
    /// The body as received.
    pub body: String,
    /// String message attributes.
    pub attributes: HashMap<String, String>,
}

/// Decides whether a dead-letter message still needs an incident, and which: `None` when the runner put it
/// there (it carries `palisade-*` attributes and has its incident already). `queue` is the dead-letter queue's
/// name, `<stack>-<crate>-dlq`, so the function that failed is `<stack>-<crate>`.
pub fn dead_letter_report(
    queue: &str,
    url: &str,
    letter: &Letter,
    tenant: &TenantId,
) -> Option<(String, IncidentReport)> {
    if letter.attributes.contains_key("palisade-error-code") {
        return None;
    }
    let function = queue.strip_suffix("-dlq").unwrap_or(queue).to_owned();
    // Lambda's own dead-letter queue for asynchronous (scheduled) invocations names the request.
    if let Some(request) = letter.attributes.get("RequestID") {
        let report = IncidentReport {
            tenant: Some(tenant.clone()),
            correlation_id: None,
            source_id: format!("invocation/{request}"),
            file: None,
            class: Class::Transient,
            code: "async_retries_exhausted".into(),
            summary: "Lambda gave up on a scheduled invocation after its retries and kept the event in the \
                      dead-letter queue"
                .into(),
            kept_in: url.to_owned(),
        };
        return Some((function, report));
    }
    let meta = identify(&letter.body);
    let report = IncidentReport {
        tenant: meta.as_ref().and_then(|m| m.tenant.clone()).or_else(|| Some(tenant.clone())),
        correlation_id: meta.as_ref().map(|m| m.correlation_id),
        source_id: meta.as_ref().map(|m| m.id.clone()).unwrap_or_else(|| letter.message_id.clone()),
        file: meta.and_then(|m| m.file),
        class: Class::Transient,
        code: "max_receives_exceeded".into(),
        summary: "SQS moved the message to the dead-letter queue after its receive limit, without a result from the \
                  function (it crashed, timed out or failed whole batches)"
            .into(),
        kept_in: url.to_owned(),
    };
    Some((function, report))
}

/// Reads up to [`PEEK_LIMIT`] messages of a dead-letter queue and puts them back at once: they stay there for
/// redrive. Returns the queue's URL and the messages.
async fn peek(sqs: &aws_sdk_sqs::Client, queue: &str) -> Result<(String, Vec<Letter>), AwsError> {
    let url = sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .map_err(|e| AwsError::new("sqs:GetQueueUrl", e))?
        .queue_url
        .unwrap_or_default();
    let mut letters = Vec::new();
    let mut seen = HashSet::new();
    let mut handles = Vec::new();
    let mut failed = None;
    while letters.len() < PEEK_LIMIT {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .visibility_timeout(PEEK_VISIBILITY_SECS)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match got {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                failed = Some(AwsError::new("sqs:ReceiveMessage", e));
                break;
            }
        };
        if messages.is_empty() {
            break;
        }
        for m in messages {
            handles.extend(m.receipt_handle.clone());
            let message_id = m.message_id.clone().unwrap_or_default();
            if !seen.insert(message_id.clone()) {
                continue;
            }
            let attributes = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                .collect();
            letters.push(Letter { message_id, body: m.body.unwrap_or_default(), attributes });
        }
    }
    release(sqs, &url, &handles).await;
    match failed {
        Some(e) => Err(e),
        None => Ok((url, letters)),
    }
}

/// Makes peeked messages visible again at once (a redrive must find them); if this fails they return on their own
/// after [`PEEK_VISIBILITY_SECS`].
async fn release(sqs: &aws_sdk_sqs::Client, url: &str, handles: &[String]) {
    for (n, e) in palisade_shared::aws::release_messages(sqs, url, handles).await {
        tracing::warn!(message = "Could not release peeked dead-letter messages; they return shortly.", count = n, error = %e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_shared::idempotency::MemoryIdempotency;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn tenant() -> TenantId {
        "acme".parse().unwrap()
    }

    fn alarm(state: &str, namespace: &str, metric: &str, dim: (&str, &str)) -> AlarmNotification {
        let body = serde_json::json!({
            "AlarmName": "stack-pipeline-extract-errors",
            "AlarmDescription": "The function failed whole invocations.",
            "AWSAccountId": "123456789012",
            "NewStateValue": state,
            "NewStateReason": "Threshold Crossed: 1 out of the last 1 datapoints [2.0 (23/11/26 10:00:00)] was greater than the threshold (0.0).",
            "StateChangeTime": "2026-11-23T10:00:00.123+0000",
            "Region": "EU (Ireland)",
            "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:stack-pipeline-extract-errors",
            "OldStateValue": "OK",
            "Trigger": {"MetricName": metric, "Namespace": namespace, "StatisticType": "Statistic",
                        "Statistic": "SUM", "Unit": null, "Dimensions": [{"value": dim.1, "name": dim.0}],
                        "Period": 300, "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
                        "Threshold": 0.0, "TreatMissingData": "notBreaching", "EvaluateLowSampleCountPercentile": ""}
        });
        AlarmNotification::decode(&body.to_string()).unwrap()
    }

    #[test]
    fn a_dead_letter_queue_alarm_means_looking_into_that_queue() {
        let a = alarm("ALARM", "AWS/SQS", "ApproximateNumberOfMessagesVisible", ("QueueName", "stack-x-dlq"));
        assert!(matches!(plan(&a, &tenant()), Plan::PeekDeadLetters("stack-x-dlq")));
    }

    #[test]
    fn ok_and_insufficient_data_need_no_alert() {
        for state in ["OK", "INSUFFICIENT_DATA"] {
            let a = alarm(state, "AWS/SQS", "ApproximateNumberOfMessagesVisible", ("QueueName", "stack-x-dlq"));
            assert!(matches!(plan(&a, &tenant()), Plan::Ignore), "{state}");
        }
    }

    #[test]
    fn function_alarms_are_incidents_of_that_function_once_per_state_change() {
        let a = alarm("ALARM", "AWS/Lambda", "Errors", ("FunctionName", "stack-pipeline-extract"));
        let Plan::Report { function, report, replay } = plan(&a, &tenant()) else { panic!("not a report") };
        assert_eq!(function, "stack-pipeline-extract");
        assert_eq!(report.code, "function_errors");
        assert_eq!(report.source_id, "alarm/stack-pipeline-extract-errors/2026-11-23T10:00:00.123+0000");
        assert_eq!(report.tenant, Some(tenant()));
        assert!(replay.contains("/aws/lambda/stack-pipeline-extract"));
        let t = alarm("ALARM", "AWS/Lambda", "Throttles", ("FunctionName", "stack-pipeline-extract"));
        let Plan::Report { report, .. } = plan(&t, &tenant()) else { panic!("not a report") };
        assert_eq!(report.code, "function_throttled");
        let other = alarm("ALARM", "AWS/EC2", "CPUUtilization", ("InstanceId", "i-1"));
        let Plan::Report { function, report, .. } = plan(&other, &tenant()) else { panic!("not a report") };
        assert_eq!((function.as_str(), report.code.as_str()), ("stack-pipeline-extract-errors", "alarm"));
        assert!(report.summary.contains("The function failed whole invocations."));
    }

    fn letter(body: &str, attrs: &[(&str, &str)]) -> Letter {
        Letter {
            message_id: "sqs-message-1".into(),
            body: body.into(),
            attributes: attrs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    const URL: &str = "http://127.0.0.1:5000/123456789012/stack-pipeline-extract-dlq";

    #[test]
    fn what_the_runner_kept_already_has_its_incident() {
        let l = letter("anything", &[("palisade-error-code", "invalid_json"), ("palisade-source-id", "m")]);
        assert!(dead_letter_report("stack-pipeline-extract-dlq", URL, &l, &tenant()).is_none());
    }

    #[test]
    fn a_message_sqs_moved_after_a_crash_is_an_incident_of_its_function_naming_its_file() {
        let env = serde_json::json!({
            "schema_version": 1, "id": "5f0c3c2e-8f7d-4a8e-9a53-0d3f3d0b1a11",
            "correlation_id": "0b9a4f8e-2d4c-4a55-8a0e-6f3a7c1d2e3f", "tenant": "globex", "kind": "file.accepted",
            "created_at": "2026-11-23T10:00:00Z",
            "payload": {"file_id": "f1", "bucket": "stack-inbox", "key": "incoming/q.pdf", "sha256": "00",
                        "size": 10, "file_type": "pdf"}
        });
        let body = serde_json::json!({"Type": "Notification", "Message": env.to_string()}).to_string();
        let (function, r) =
            dead_letter_report("stack-pipeline-extract-dlq", URL, &letter(&body, &[]), &tenant()).unwrap();
        assert_eq!(function, "stack-pipeline-extract");
        assert_eq!(r.code, "max_receives_exceeded");
        assert_eq!(r.source_id, "5f0c3c2e-8f7d-4a8e-9a53-0d3f3d0b1a11");
        assert_eq!(r.tenant.as_ref().map(TenantId::as_str), Some("globex"));
        assert_eq!(r.correlation_id.map(|c| c.to_string()).as_deref(), Some("0b9a4f8e-2d4c-4a55-8a0e-6f3a7c1d2e3f"));
        assert_eq!(r.file.as_deref(), Some("s3://stack-inbox/incoming/q.pdf"));
        assert_eq!(r.kept_in, URL);
        assert!(!r.summary.contains("q.pdf"));
    }

    #[test]
    fn an_unreadable_message_is_named_by_its_sqs_id_and_the_stacks_tenant() {
        let (_, r) = dead_letter_report("stack-pipeline-extract-dlq", URL, &letter("garbage", &[]), &tenant()).unwrap();
        assert_eq!(r.source_id, "sqs-message-1");
        assert_eq!(r.tenant, Some(tenant()));
        assert_eq!(r.correlation_id, None);
    }

    #[test]
    fn a_scheduled_run_lambda_gave_up_on_is_named_by_its_request() {
        let l = letter(r#"{"detail-type":"Scheduled Event"}"#, &[("RequestID", "req-1"), ("ErrorCode", "200")]);
        let (function, r) = dead_letter_report("stack-compliance-scan-dlq", URL, &l, &tenant()).unwrap();
        assert_eq!(function, "stack-compliance-scan");
        assert_eq!((r.source_id.as_str(), r.code.as_str()), ("invocation/req-1", "async_retries_exhausted"));
    }

    #[tokio::test]
    async fn a_notification_is_sent_once_and_a_failed_send_is_retried() {
        let store = MemoryIdempotency::default();
        let sends = AtomicUsize::new(0);
        let now = Utc::now();
        let send = || async {
            sends.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        assert_eq!(once(&store, "k", now, DEFAULT_MEMORY, send).await.unwrap(), Sent::Now);
        assert_eq!(once(&store, "k", now, DEFAULT_MEMORY, send).await.unwrap(), Sent::Before);
        assert_eq!(sends.load(Ordering::SeqCst), 1);

        let fail = || async {
            Err(AlertError::InProgress("down".into())) // any error
        };
        assert!(once(&store, "k2", now, DEFAULT_MEMORY, fail).await.is_err());
        assert_eq!(once(&store, "k2", now, DEFAULT_MEMORY, send).await.unwrap(), Sent::Now);
        assert_eq!(sends.load(Ordering::SeqCst), 2);
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_map(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    const ALERTS: &str = "arn:aws:sns:eu-west-1:123456789012:stack-alerts";
    const FAILURES: &str = "arn:aws:sns:eu-west-1:123456789012:stack-failures";

    fn vars(failures: &str) -> Vec<(&str, &str)> {
        vec![
            ("AWS_LAMBDA_FUNCTION_NAME", "stack-alert"),
            ("PALISADE_DLQ_URL", "http://127.0.0.1:5000/123456789012/stack-alert-dlq"),
            ("PALISADE_FAILURES_TOPIC_ARN", failures),
            ("PALISADE_ALERTS_TOPIC_ARN", ALERTS),
            ("PALISADE_LEDGER_TABLE", "stack-ledger"),
            ("PALISADE_IDEMPOTENCY_TABLE", "stack-idempotency"),
            ("PALISADE_TENANT", "acme"),
        ]
    }

    #[test]
    fn its_own_failures_must_go_to_the_alerts_topic_not_back_into_itself() {
        let cfg = Config::read(env(&vars(ALERTS))).unwrap();
        assert_eq!(cfg.memory, DEFAULT_MEMORY);
        let err = Config::read(env(&vars(FAILURES))).err().unwrap();
        assert!(err.to_string().contains("loop back"), "{err}");
    }

    #[test]
    fn every_missing_variable_is_named() {
        let err = Config::read(env(&[])).err().unwrap().to_string();
        for v in ["PALISADE_ALERTS_TOPIC_ARN", "PALISADE_TENANT", "PALISADE_FAILURES_TOPIC_ARN"] {
            assert!(err.contains(v), "{v} not in {err}");
        }
    }
}
