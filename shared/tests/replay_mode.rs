//! Replay mode is process-wide, so it is tested in its own test binary (its own process): nothing on the failure
//! path may reach AWS, and everything it would have done comes back as a report.

use palisade_shared::error::Class;
use palisade_shared::incident::{FailureSink, IncidentReport, Incidents, Rejection};
use palisade_shared::ledger::MemoryLedger;
use palisade_shared::publish::Publisher;
use palisade_shared::replay::{self, ReplaySink};

/// Clients pointed at a closed port: any call would fail, so a passing test proves no call was made.
fn unreachable_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build()
}

#[tokio::test]
async fn in_replay_mode_failures_are_reported_and_nothing_is_kept_moved_or_raised() {
    // GIVEN a process in replay mode
    assert!(!replay::active());
    replay::enable();
    assert!(replay::active());
    let sdk = unreachable_config();

    // WHEN the runner rejects a record
    let sink = ReplaySink;
    let r = Rejection {
        raw_body: "{}",
        message_id: "m-1",
        meta: None,
        class: Class::Permanent,
        code: "target_refused",
        summary: "the target refused the record (HTTP 422)".into(),
    };
    assert_eq!(sink.reject(&r).await.unwrap(), "replay");

    // AND a handler quarantines a file
    let s3 = palisade_shared::aws::s3(&sdk);
    let stop = palisade_shared::quarantine::move_aside(
        &s3,
        "inbox",
        "incoming/a.pdf",
        None,
        "2026-11-23",
        "a.pdf",
        "encrypted_pdf",
    )
    .await
    .unwrap_err();
    assert_eq!(stop.code, replay::QUARANTINE_STOP);

    // AND raises an incident
    let ledger = MemoryLedger::default();
    let topic = "arn:aws:sns:eu-west-1:123456789012:failures".parse().unwrap();
    let incidents =
        Incidents::new("stack-pipeline-extract", ledger, Publisher::new(aws_sdk_sns::Client::new(&sdk)), topic);
    let report = IncidentReport {
        tenant: None,
        correlation_id: None,
        source_id: "s3://inbox/incoming/a.pdf".into(),
        file: None,
        class: Class::Permanent,
        code: "encrypted_pdf".into(),
        summary: "quote not extracted: the PDF is encrypted".into(),
        kept_in: "s3://inbox/quarantine/2026-11-23/a.pdf".into(),
    };
    let id = incidents.raise(&report).await.unwrap();

    // THEN nothing was written, and the three reports come back in order, once
    assert!(id.starts_with("incident-"));
    assert!(incidents.ledger().entries.lock().unwrap().is_empty());
    let got = replay::take();
    let effects: Vec<(&str, &str)> = got.iter().map(|r| (r.effect.as_str(), r.code.as_str())).collect();
    assert_eq!(
        effects,
        [("dead_letter", "target_refused"), ("quarantine", "encrypted_pdf"), ("incident", "encrypted_pdf")]
    );
    assert_eq!(got[2].summary, "quote not extracted: the PDF is encrypted");
    assert!(replay::take().is_empty());
}
