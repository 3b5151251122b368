//! Incidents and alerts: every failure that needs a human is recorded in the ledger and announced on the alerts
//! topic at once, with what failed, which tenant, where the input is kept and how to replay it; never with the
//! input itself.

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

/// The alert published for each incident.
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
    /// Where the input is kept (dead-letter queue URL, quarantine key).
    pub kept_in: String,
    /// The command that replays it.
    pub replay: String,
}

impl Message for Alert {
    const KIND: &'static str = "alert.incident";
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

/// Records incidents and publishes alerts.
#[derive(Clone, Debug)]
pub struct Incidents<L> {
    function: String,
    ledger: L,
    publisher: Publisher,
    alerts: TopicArn,
}

impl<L: Ledger> Incidents<L> {
    /// For `function`, writing to `ledger` and alerting on `alerts`.
    pub fn new(function: impl Into<String>, ledger: L, publisher: Publisher, alerts: TopicArn) -> Self {
        Self { function: function.into(), ledger, publisher, alerts }
    }

    /// The ledger this writes to.
    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    /// Records the incident (once per function, source and code) and publishes its alert; returns its id.
    /// A repeated report re-publishes the alert only if the first attempt did not record it.
    pub async fn raise(&self, r: &IncidentReport) -> Result<String, IncidentError> {
        let id = LedgerEntry::derive_id(RecordType::Incident, &[&self.function, &r.source_id, &r.code]);
        let tenant = r.tenant.clone().unwrap_or_else(TenantId::unknown);
        let correlation_id =
            r.correlation_id.unwrap_or_else(|| Uuid::new_v5(&Uuid::NAMESPACE_OID, r.source_id.as_bytes()));
        let entry = LedgerEntry {
            id: id.clone(),
            record_type: RecordType::Incident,
            at: Utc::now(),
            tenant: tenant.clone(),
            function: self.function.clone(),
            action: "incident".into(),
            resource: r.source_id.clone(),
            outcome: "open".into(),
            actor: self.function.clone(),
            correlation_id,
            details: serde_json::json!({
                "error_class": r.class.as_str(),
                "error_code": r.code,
                "summary": r.summary,
                "kept_in": r.kept_in,
            }),
        };
        self.ledger.record(&entry).await?;
        let alert = Alert {
            incident_id: id.clone(),
            function: self.function.clone(),
            tenant: tenant.to_string(),
            error_class: r.class,
            error_code: r.code.clone(),
            summary: r.summary.clone(),
            correlation_id,
            source_id: r.source_id.clone(),
            kept_in: r.kept_in.clone(),
            replay: format!("palisade replay {id}"),
        };
        let env = Envelope::with_correlation(tenant, correlation_id, alert);
        self.publisher.publish(&self.alerts, &env).await?;
        tracing::warn!(
            message = "Incident raised.",
            incident_id = %id,
            error_class = r.class.as_str(),
            error_code = %r.code,
            kept_in = %r.kept_in
        );
        Ok(id)
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
            class: r.class,
            code: r.code.to_owned(),
            summary: r.summary.clone(),
            kept_in: self.dlq.to_string(),
        };
        self.incidents.raise(&report).await
    }
}
