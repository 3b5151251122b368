//! Replay mode: `palisade replay <incident>` runs a function's own binary on an operator's machine against the
//! input an incident kept, with `PALISADE_REPLAY=1`.
//!
//! Reproducing a failure must not create another one: in replay mode nothing on the failure path has an effect.
//! The runner does not copy a rejected record to the dead-letter queue, [`Incidents::raise`] neither records nor
//! announces, and [`move_aside`] moves no file. Each of them *reports* what it would have done instead, and the
//! runner returns those reports on the invocation's output (field [`OUTPUT_FIELD`]), where the CLI reads them.
//! The success path is untouched, so a replay after a fix sends the input through the pipeline for real.
//!
//! The mode is a process-wide switch, set once by the runner from its configuration, because the failure paths it
//! silences (quarantine, incidents) sit in handlers that a flag passed by hand would have to thread through.
//!
//! [`Incidents::raise`]: crate::incident::Incidents::raise
//! [`move_aside`]: crate::quarantine::move_aside

use std::sync::{Mutex, OnceLock};

use aws_lambda_events::event::sqs::SqsBatchResponse;
use serde::{Deserialize, Serialize};

use crate::error::{AwsError, Class};
use crate::incident::{FailureSink, IncidentError, Rejection};

/// The variable that switches a function into replay mode (`1` or `true`).
pub const ENV: &str = "PALISADE_REPLAY";

/// The field of an SQS function's response that carries what replay mode reported.
pub const OUTPUT_FIELD: &str = "palisadeReplay";

/// The error code of the stop [`move_aside`](crate::quarantine::move_aside) returns in replay mode.
pub const QUARANTINE_STOP: &str = "ReplayQuarantineStop";

/// One failure that replay mode reported instead of acting on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    /// What would have happened: `dead_letter` (kept in the DLQ), `quarantine` (file moved aside) or
    /// `incident` (recorded and announced).
    pub effect: String,
    /// Retry class.
    pub class: Class,
    /// The fixed error code, as the incident would carry it.
    pub code: String,
    /// The summary, as the incident would carry it.
    pub summary: String,
}

/// What an SQS function returns in replay mode beside its batch response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayOutput {
    /// Failures, in the order they happened; the first is the one that decided the record's fate.
    pub reported: Vec<Reported>,
    /// Records handled.
    pub done: usize,
    /// Records skipped as already handled (idempotency).
    pub duplicate: usize,
    /// Records rejected.
    pub rejected: usize,
    /// Records left for retry without a result (in progress elsewhere, idempotency store unavailable).
    pub retried: usize,
}

/// The SQS response: the usual partial batch response, plus [`ReplayOutput`] in replay mode.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BatchOutput {
    /// What Lambda's SQS poller reads.
    #[serde(flatten)]
    pub response: SqsBatchResponse,
    /// Only in replay mode.
    #[serde(rename = "palisadeReplay", skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayOutput>,
}

static LOG: OnceLock<Mutex<Vec<Reported>>> = OnceLock::new();

/// Switches this process into replay mode (idempotent; there is no way back).
pub fn enable() {
    let _ = LOG.get_or_init(|| Mutex::new(Vec::new()));
}

/// Whether this process replays.
pub fn active() -> bool {
    LOG.get().is_some()
}

/// Notes a failure that was not acted on; a no-op outside replay mode.
pub fn report(r: Reported) {
    if let Some(log) = LOG.get() {
        tracing::warn!(
            message = "Replay: failure reported, not acted on.",
            effect = %r.effect,
            error_class = r.class.as_str(),
            error_code = %r.code
        );
        log.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
}

/// Takes every report noted so far (one invocation's worth).
pub fn take() -> Vec<Reported> {
    LOG.get().map(|log| std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()))).unwrap_or_default()
}

/// The error [`move_aside`](crate::quarantine::move_aside) stops a handler with in replay mode, right where it
/// would have moved the file: so the handler records no quarantine entry and raises no incident either.
pub fn quarantine_stop(reason: &str) -> AwsError {
    AwsError {
        op: "s3:CopyObject",
        class: Class::Permanent,
        code: QUARANTINE_STOP.to_owned(),
        detail: format!("replay: the file would be quarantined ({reason}); nothing was moved"),
    }
}

/// The runner's failure sink in replay mode: reports the rejection and keeps nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplaySink;

impl FailureSink for ReplaySink {
    async fn reject(&self, r: &Rejection<'_>) -> Result<String, IncidentError> {
        report(Reported {
            effect: "dead_letter".into(),
            class: r.class,
            code: r.code.to_owned(),
            summary: r.summary.clone(),
        });
        Ok("replay".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::BatchItemFailure;

    #[test]
    fn the_batch_output_is_a_batch_response_with_the_replay_beside_it() {
        // GIVEN a response with one failure, without and with a replay output
        let mut response = SqsBatchResponse::default();
        let mut f = BatchItemFailure::default();
        f.item_identifier = "m-1".into();
        response.batch_item_failures.push(f);
        let plain = BatchOutput { response: response.clone(), replay: None };
        let replay = ReplayOutput {
            reported: vec![Reported {
                effect: "dead_letter".into(),
                class: Class::Permanent,
                code: "target_refused".into(),
                summary: "the target refused the record (HTTP 422)".into(),
            }],
            rejected: 1,
            ..ReplayOutput::default()
        };
        let with = BatchOutput { response, replay: Some(replay.clone()) };
        // WHEN serialised THEN Lambda still finds batchItemFailures, and the replay sits under its own field
        let plain = serde_json::to_value(&plain).unwrap();
        assert_eq!(plain, serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]}));
        let with = serde_json::to_value(&with).unwrap();
        assert_eq!(with["batchItemFailures"][0]["itemIdentifier"], "m-1");
        let back: ReplayOutput = serde_json::from_value(with[OUTPUT_FIELD].clone()).unwrap();
        assert_eq!(back, replay);
    }

    #[test]
    fn the_quarantine_stop_is_permanent_and_names_the_reason() {
        let e = quarantine_stop("encrypted_pdf");
        assert_eq!((e.class, e.code.as_str()), (Class::Permanent, QUARANTINE_STOP));
        assert!(e.to_string().contains("encrypted_pdf"));
    }
}
