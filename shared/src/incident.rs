//! Incidents and alerts: every failure that needs a human is recorded in the ledger and announced at once, with
//! what failed, which tenant, which file, where the input is kept and how to replay it; never with the input itself.
//!
//! Functions announce incidents on their stack's failures topic. The `alert` function reads that topic (and the
//! stack's CloudWatch alarms, which also notify it) and publishes one notification per incident on the alerts
//! topic, so a failure reported twice, or redelivered, still reaches a human once. The `alert` function announces
//! its own incidents on the alerts topic directly, so a failing alert function cannot feed itself.

use std::future::Future;

use aws_sdk_sqs::types::MessageAttributeValue;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{QueueUrl, TopicArn};
use crate::envelope::{Envelope, Message, TenantId};
use crate::error::{AwsError, Class};
use crate::ledger::{Ledger, LedgerEntry, LedgerError, RecordType};
use crate::publish::{PublishError, Publisher};

/// An incident as announced: on the failures topic by the function that failed, and then once on the alerts topic
/// by the `alert` function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Ledger id of the incident; `palisade replay <incident_id>` reproduces it.
    pub incident_id: String,
    /// The function that failed.
    pub function: String,
    /// Whose data.
    pub tenant: String,
    /// `transient` (retries exhausted) or `permanent`.
    pub error_class: Class,
    /// Fixed error code.
    pub error_code: String,
    /// What went wrong, in words that never quote the input.
    pub summary: String,
    /// The chain the failed input belongs to.
    pub correlation_id: Uuid,
    /// The message id or object that failed.
    pub source_id: String,
    /// The file concerned (`s3://bucket/key`), when the failed input names one.
    #[serde(default)]
    pub file: Option<String>,
    /// Where the input is kept (dead-letter queue URL, quarantine key).
    pub kept_in: String,
    /// The command that replays it.
    pub replay: String,
    /// All of the above in one line for people (chat, mail); built only from the fields above.
    #[serde(default)]
    pub text: String,
}

impl Message for Alert {
    const KIND: &'static str = "alert.incident";
}

impl Alert {
    /// The one-line notification: what failed, for whom, which file, the chain, where the input is and how to
    /// replay it.
    pub fn one_line(&self) -> String {
        let file = self.file.as_deref().map(|f| format!(" File: {f}.")).unwrap_or_default();
        format!(
            "{} failed for tenant {} ({} {}): {}.{file} Kept in: {}. Correlation id: {}. Replay: {}. Incident: {}.",
            self.function,
            self.tenant,
            self.error_class.as_str(),
            self.error_code,
            self.summary.trim_end_matches('.'),
            self.kept_in,
            self.correlation_id,
            self.replay,
            self.incident_id,
        )
    }

    /// The SNS subject (the mail subject of email subscriptions).
    pub fn subject(&self) -> String {
        crate::publish::sns_subject(&format!(
            "Palisade incident: {} {} ({}) for {}",
            self.function,
            self.error_code,
            self.error_class.as_str(),
            self.tenant
        ))
    }
}

/// What a caller knows about a failure.
#[derive(Clone, Debug)]
pub struct IncidentReport {
    /// Whose data, when known.
    pub tenant: Option<TenantId>,
    /// The chain, when known.
    pub correlation_id: Option<Uuid>,
    /// The message id or object key that failed; with `code` it identifies the incident.
    pub source_id: String,
    /// The file concerned (`s3://bucket/key`), when known.
    pub file: Option<String>,
    /// Retry class of the failure.
    pub class: Class,
    /// Fixed error code.
    pub code: String,
    /// Human summary (built by us, never from input values).
    pub summary: String,
    /// Where the input is kept.
    pub kept_in: String,
}

/// Why an incident could not be raised; the caller must then keep the input by failing the record.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// Recording failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Alerting failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Keeping the message failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Records incidents and announces them.
#[derive(Clone, Debug)]
pub struct Incidents<L> {
    function: String,
    ledger: L,
    publisher: Publisher,
    topic: TopicArn,
}

impl<L: Ledger> Incidents<L> {
    /// For `function`, writing to `ledger` and announcing on `topic` (the stack's failures topic; the alerts topic
    /// for the `alert` function itself).
    pub fn new(function: impl Into<String>, ledger: L, publisher: Publisher, topic: TopicArn) -> Self {
        Self { function: function.into(), ledger, publisher, topic }
    }

    /// The ledger this writes to.
    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    /// Records the incident (once per function, source and code) and announces it; returns its id. A repeated
    /// report announces it again (the first announcement may have failed after the record was written); the
    /// `alert` function turns repeats into one notification.
    pub async fn raise(&self, r: &IncidentReport) -> Result<String, IncidentError> {
        if crate::replay::active() {
            // `palisade replay`: report what would be raised; the original incident is already on record.
            crate::replay::report(crate::replay::Reported {
                effect: "incident".into(),
                class: r.class,
                code: r.code.clone(),
                summary: r.summary.clone(),
            });
            return Ok(LedgerEntry::derive_id(RecordType::Incident, &[&self.function, &r.source_id, &r.code]));
        }
        let alert = self.record_for(&self.function, r).await?;
        let env = Envelope::with_correlation(
            r.tenant.clone().unwrap_or_else(TenantId::unknown),
            alert.correlation_id,
            alert.clone(),
        );
        self.publisher.publish_with_subject(&self.topic, &env, Some(&alert.subject())).await?;
        tracing::warn!(
            message = "Incident raised.",
            incident_id = %alert.incident_id,
            error_class = r.class.as_str(),
            error_code = %r.code,
            kept_in = %r.kept_in
        );
        Ok(alert.incident_id)
    }

    /// Records an incident of `function` without announcing it, and returns what to announce. The `alert`
    /// function uses it for failures no function could report itself (a message SQS moved to a dead-letter queue
    /// after a crash or a timeout), naming the function that failed rather than itself.
    pub async fn record_for(&self, function: &str, r: &IncidentReport) -> Result<Alert, IncidentError> {
        let id = LedgerEntry::derive_id(RecordType::Incident, &[function, &r.source_id, &r.code]);
        let tenant = r.tenant.clone().unwrap_or_else(TenantId::unknown);
        let correlation_id =
            r.correlation_id.unwrap_or_else(|| Uuid::new_v5(&Uuid::NAMESPACE_OID, r.source_id.as_bytes()));
        let mut details = serde_json::json!({
            "error_class": r.class.as_str(),
            "error_code": r.code,
            "summary": r.summary,
            "kept_in": r.kept_in,
        });
        if let (Some(map), Some(file)) = (details.as_object_mut(), &r.file) {
            map.insert("file".into(), file.clone().into());
        }
        let entry = LedgerEntry {
            id: id.clone(),
            record_type: RecordType::Incident,
            at: Utc::now(),
            tenant: tenant.clone(),
            function: function.to_owned(),
            action: "incident".into(),
            resource: r.source_id.clone(),
            outcome: "open".into(),
            actor: self.function.clone(),
            correlation_id,
            details,
        };
        self.ledger.record(&entry).await?;
        let mut alert = Alert {
            incident_id: id.clone(),
            function: function.to_owned(),
            tenant: tenant.to_string(),
            error_class: r.class,
            error_code: r.code.clone(),
            summary: r.summary.clone(),
            correlation_id,
            source_id: r.source_id.clone(),
            file: r.file.clone(),
            kept_in: r.kept_in.clone(),
            replay: format!("palisade replay {id}"),
            text: String::new(),
        };
        alert.text = alert.one_line();
        Ok(alert)
    }
}

/// A record the runner gives up on.
#[derive(Clone, Debug)]
pub struct Rejection<'a> {
    /// The SQS body exactly as received, so a redrive replays the same bytes.
    pub raw_body: &'a str,
    /// The SQS message id.
    pub message_id: &'a str,
    /// Decoded identity, when decoding got that far.
    pub meta: Option<&'a crate::events::Meta>,
    /// Failure class.
    pub class: Class,
    /// Fixed code.
    pub code: &'static str,
    /// Safe description.
    pub summary: String,
}

/// Where the runner sends records it gives up on.
pub trait FailureSink: Send + Sync {
    /// Keeps the record and raises an incident; an error means the record must stay in its queue.
    fn reject(&self, r: &Rejection<'_>) -> impl Future<Output = Result<String, IncidentError>> + Send;
}

/// Sends rejected records to the function's dead-letter queue, then raises the incident.
#[derive(Clone, Debug)]
pub struct DeadLetter<L> {
    sqs: aws_sdk_sqs::Client,
    dlq: QueueUrl,
    incidents: Incidents<L>,
}

impl<L: Ledger> DeadLetter<L> {
    /// Keeps rejected records in `dlq`.
    pub fn new(sqs: aws_sdk_sqs::Client, dlq: QueueUrl, incidents: Incidents<L>) -> Self {
        Self { sqs, dlq, incidents }
    }

    /// The incident raiser, for handlers that quarantine inputs themselves.
    pub fn incidents(&self) -> &Incidents<L> {
        &self.incidents
    }
}

fn sqs_attr(v: &str) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder().data_type("String").string_value(v).build().ok()
}

impl<L: Ledger> FailureSink for DeadLetter<L> {
    async fn reject(&self, r: &Rejection<'_>) -> Result<String, IncidentError> {
        let source_id = r.meta.map(|m| m.id.clone()).unwrap_or_else(|| r.message_id.to_owned());
        let mut send = self.sqs.send_message().queue_url(self.dlq.as_str()).message_body(if r.raw_body.is_empty() {
            "(empty body)"
        } else {
            r.raw_body
        });
        for (k, v) in [
            ("palisade-error-class", r.class.as_str()),
            ("palisade-error-code", r.code),
            ("palisade-source-id", source_id.as_str()),
            ("palisade-function", self.incidents.function.as_str()),
        ] {
            if let Some(a) = sqs_attr(v) {
                send = send.message_attributes(k, a);
            }
        }
        send.send().await.map_err(|e| AwsError::new("sqs:SendMessage", e))?;
        let report = IncidentReport {
            tenant: r.meta.and_then(|m| m.tenant.clone()),
            correlation_id: r.meta.map(|m| m.correlation_id),
            source_id,
            file: r.meta.and_then(|m| m.file.clone()),
            class: r.class,
            code: r.code.to_owned(),
            summary: r.summary.clone(),
            kept_in: self.dlq.to_string(),
        };
        self.incidents.raise(&report).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::MemoryLedger;

    fn incidents() -> Incidents<MemoryLedger> {
        // Never called in these tests: record_for only writes the ledger.
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::Config::builder()
                .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
                .region(aws_sdk_sns::config::Region::new("eu-west-1"))
                .build(),
        );
        let topic = "arn:aws:sns:eu-west-1:123456789012:alerts".parse().unwrap();
        Incidents::new("stack-alert", MemoryLedger::default(), Publisher::new(sns), topic)
    }

    fn report() -> IncidentReport {
        IncidentReport {
            tenant: Some("acme".parse().unwrap()),
            correlation_id: None,
            source_id: "m-1".into(),
            file: Some("s3://acme-inbox/incoming/q.pdf".into()),
            class: Class::Transient,
            code: "max_receives_exceeded".into(),
            summary: "the function crashed".into(),
            kept_in: "https://sqs/123/stack-pipeline-extract-dlq".into(),
        }
    }

    #[tokio::test]
    async fn an_incident_recorded_for_another_function_names_that_function_once() {
        let i = incidents();
        let a = i.record_for("stack-pipeline-extract", &report()).await.unwrap();
        let again = i.record_for("stack-pipeline-extract", &report()).await.unwrap();
        assert_eq!(a.incident_id, again.incident_id);
        assert_eq!(i.ledger().entries.lock().unwrap().len(), 1);
        let e = i.ledger().get(&a.incident_id).await.unwrap().unwrap();
        assert_eq!(e.function, "stack-pipeline-extract");
        assert_eq!(e.actor, "stack-alert");
        assert_eq!(e.details["file"], "s3://acme-inbox/incoming/q.pdf");
        assert_eq!(a.function, "stack-pipeline-extract");
        assert_eq!(a.replay, format!("palisade replay {}", a.incident_id));
        // the same source and code in another function is another incident
        assert_ne!(i.record_for("stack-pipeline-deliver", &report()).await.unwrap().incident_id, a.incident_id);
    }

    #[tokio::test]
    async fn the_one_line_text_says_what_whom_which_file_where_and_how_to_replay() {
        let a = incidents().record_for("stack-pipeline-extract", &report()).await.unwrap();
        let t = &a.text;
        for part in [
            "stack-pipeline-extract failed for tenant acme",
            "transient max_receives_exceeded",
            "File: s3://acme-inbox/incoming/q.pdf",
            "Kept in: https://sqs/123/stack-pipeline-extract-dlq",
            &format!("Correlation id: {}", a.correlation_id),
            &format!("Replay: palisade replay {}", a.incident_id),
        ] {
            assert!(t.contains(part), "{part:?} not in {t:?}");
        }
        assert!(!t.contains('\n'));
        assert!(a.subject().starts_with("Palisade incident: stack-pipeline-extract max_receives_exceeded"));
        assert!(a.subject().len() <= 100);
    }
}
