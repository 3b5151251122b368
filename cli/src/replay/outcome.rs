//! What one replayed invocation came to, read from what the function answered (or did not).

use std::time::Duration;

use palisade_shared::replay::{OUTPUT_FIELD, ReplayOutput};
use serde::Serialize;
use serde_json::Value;

/// What the local Runtime API saw of the invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// `POST .../response` with this body.
    Response(Vec<u8>),
    /// `POST .../error` with this body (`{"errorType", "errorMessage"}`).
    Error(Vec<u8>),
    /// `POST /runtime/init/error`: the function could not start (configuration, rules).
    InitError(Vec<u8>),
    /// The process ended before answering (exit status, when it had one).
    Exited(Option<i32>),
    /// No answer in time; the process was killed.
    TimedOut(Duration),
}

/// The replay's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The input went through the function.
    Replayed {
        /// Something worth saying about how (e.g. it had been handled before).
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The function failed again.
    Reproduced {
        /// `permanent` or `transient` as the function classified it; `invocation`, `init`, `crash` or `timeout`
        /// when it failed before classifying anything.
        error_class: String,
        /// The fixed code.
        error_code: String,
        /// What went wrong.
        summary: String,
    },
}

impl Outcome {
    fn failed(class: &str, code: &str, summary: impl Into<String>) -> Self {
        Outcome::Reproduced { error_class: class.into(), error_code: code.into(), summary: summary.into() }
    }
}

/// Why a replay cannot be judged at all (a binary without replay mode, a record left for retry).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Undecided(pub String);

/// Reads the function's answer. `sqs` says whether it was served an SQS event (whose response carries the
/// runner's replay report) or a direct one (whose value is the answer).
pub fn judge(sqs: bool, ended: &Ended) -> Result<Outcome, Undecided> {
    match ended {
        Ended::Response(body) if sqs => judge_batch(body),
        Ended::Response(_) => Ok(Outcome::Replayed { note: None }),
        Ended::Error(body) => {
            let (kind, message) = error_body(body);
            // the runner names a classified failure `<class>.<code>`
            match kind.split_once('.') {
                Some((class @ ("permanent" | "transient"), code)) => Ok(Outcome::failed(class, code, message)),
                _ => Ok(Outcome::failed("invocation", &kind, message)),
            }
        }
        Ended::InitError(body) => {
            let (kind, message) = error_body(body);
            Ok(Outcome::failed("init", &kind, format!("the function could not start: {message}")))
        }
        Ended::Exited(status) => {
            let status = status.map_or_else(|| "by a signal".to_owned(), |s| format!("with status {s}"));
            Ok(Outcome::failed("crash", "process_exited", format!("the function exited {status} before answering")))
        }
        Ended::TimedOut(after) => Ok(Outcome::failed(
            "timeout",
            "timed_out",
            format!("no answer after {} s (the function's timeout and a margin)", after.as_secs()),
        )),
    }
}

fn judge_batch(body: &[u8]) -> Result<Outcome, Undecided> {
    let v: Value = serde_json::from_slice(body).map_err(|_| Undecided("the function's answer is not JSON".into()))?;
    let Some(report) = v.get(OUTPUT_FIELD) else {
        return Err(Undecided(
            "the function's answer has no replay report: the binary predates replay mode, so its failure path may \
             have kept a copy and raised an incident; rebuild it"
                .into(),
        ));
    };
    let r: ReplayOutput = serde_json::from_value(report.clone())
        .map_err(|e| Undecided(format!("the function's replay report does not decode: {e}")))?;
    if let Some(first) = r.reported.first() {
        return Ok(Outcome::failed(first.class.as_str(), &first.code, first.summary.clone()));
    }
    if r.retried > 0 {
        return Err(Undecided(
            "the function left the record for a retry without a result (it is in progress elsewhere, or the \
             idempotency table could not be reached); see its log above and try again"
                .into(),
        ));
    }
    if r.done > 0 {
        return Ok(Outcome::Replayed { note: None });
    }
    if r.duplicate > 0 {
        return Ok(Outcome::Replayed {
            note: Some("the function had already handled this input (idempotency record); nothing ran twice".into()),
        });
    }
    Err(Undecided("the function handled no record".into()))
}

fn error_body(body: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(body).into_owned();
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => (
            v.get("errorType").and_then(Value::as_str).unwrap_or("Unknown").to_owned(),
            v.get("errorMessage").and_then(Value::as_str).unwrap_or_default().to_owned(),
        ),
        Err(_) => ("Unknown".to_owned(), text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(v: Value) -> Ended {
        Ended::Response(v.to_string().into_bytes())
    }

    #[test]
    fn a_reported_rejection_is_a_reproduction_with_its_class_code_and_summary() {
        let ended = batch(json!({"batchItemFailures": [], "palisadeReplay": {
            "reported": [
                {"effect": "quarantine", "class": "permanent", "code": "encrypted_pdf", "summary": "would quarantine"},
                {"effect": "dead_letter", "class": "permanent", "code": "aws_rejected", "summary": "stop"}],
            "done": 0, "duplicate": 0, "rejected": 1, "retried": 0}}));
        assert_eq!(
            judge(true, &ended),
            Ok(Outcome::Reproduced {
                error_class: "permanent".into(),
                error_code: "encrypted_pdf".into(),
                summary: "would quarantine".into()
            })
        );
    }

    #[test]
    fn a_handled_record_is_replayed_and_a_duplicate_says_so() {
        let done = batch(json!({"batchItemFailures": [], "palisadeReplay": {"reported": [], "done": 1, "duplicate": 0,
                                "rejected": 0, "retried": 0}}));
        assert_eq!(judge(true, &done), Ok(Outcome::Replayed { note: None }));
        let dup = batch(json!({"batchItemFailures": [], "palisadeReplay": {"reported": [], "done": 0, "duplicate": 1,
                               "rejected": 0, "retried": 0}}));
        assert!(matches!(judge(true, &dup), Ok(Outcome::Replayed { note: Some(n) }) if n.contains("already handled")));
    }

    #[test]
    fn answers_that_decide_nothing_are_said_to_be_so() {
        let retried = batch(json!({"batchItemFailures": [{"itemIdentifier": "m"}], "palisadeReplay": {"reported": [],
                                   "done": 0, "duplicate": 0, "rejected": 0, "retried": 1}}));
        assert!(judge(true, &retried).unwrap_err().0.contains("retry"));
        let old_binary = batch(json!({"batchItemFailures": []}));
        assert!(judge(true, &old_binary).unwrap_err().0.contains("predates replay mode"));
        assert!(judge(true, &Ended::Response(b"nope".to_vec())).is_err());
    }

    #[test]
    fn errors_crashes_and_timeouts_are_reproductions_of_their_own_kind() {
        let scheduled =
            Ended::Error(br#"{"errorType":"permanent.policies_invalid","errorMessage":"bad file"}"#.to_vec());
        assert_eq!(
            judge(false, &scheduled),
            Ok(Outcome::Reproduced {
                error_class: "permanent".into(),
                error_code: "policies_invalid".into(),
                summary: "bad file".into()
            })
        );
        let runtime = Ended::Error(br#"{"errorType":"Runtime.Deserialize","errorMessage":"x"}"#.to_vec());
        assert!(
            matches!(judge(true, &runtime), Ok(Outcome::Reproduced { error_class, .. }) if error_class == "invocation")
        );
        let init = Ended::InitError(br#"{"errorType":"ConfigError","errorMessage":"PALISADE_X is not set"}"#.to_vec());
        assert!(
            matches!(judge(true, &init), Ok(Outcome::Reproduced { summary, .. }) if summary.contains("PALISADE_X"))
        );
        let crashed = judge(true, &Ended::Exited(Some(101)));
        assert!(matches!(crashed, Ok(Outcome::Reproduced { summary, .. }) if summary.contains("101")));
        let slow = judge(true, &Ended::TimedOut(Duration::from_secs(40)));
        assert!(matches!(slow, Ok(Outcome::Reproduced { error_code, .. }) if error_code == "timed_out"));
        assert_eq!(judge(false, &Ended::Response(b"{}".to_vec())), Ok(Outcome::Replayed { note: None }));
    }

    #[test]
    fn the_json_form_is_tagged_by_outcome() {
        let v = serde_json::to_value(Outcome::failed("permanent", "target_refused", "422")).unwrap();
        assert_eq!(
            v,
            json!({"outcome": "reproduced", "error_class": "permanent", "error_code": "target_refused",
                             "summary": "422"})
        );
        assert_eq!(serde_json::to_value(Outcome::Replayed { note: None }).unwrap(), json!({"outcome": "replayed"}));
    }
}
