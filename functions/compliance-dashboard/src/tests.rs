use chrono::TimeZone;
use palisade_shared::action::ResourceRef;
use palisade_shared::envelope::TenantId;
use palisade_shared::ledger::RecordType;
use serde_json::json;
use uuid::Uuid;

use super::*;

const POLICIES: &str = include_str!("../../../infra/policies/policies.yaml");

fn t(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).single().unwrap_or_default()
}

fn policies() -> PolicySet {
    PolicySet::parse(POLICIES, "policies.yaml").unwrap_or_else(|e| panic!("shipped policies parse: {e:?}"))
}

fn violation(
    policy: &str,
    id: &str,
    severity: &str,
    owner: &str,
    state: Status,
    first_seen: DateTime<Utc>,
) -> Violation {
    Violation {
        id: Violation::key(policy, id),
        policy: policy.into(),
        resource: ResourceRef { kind: "s3-bucket".into(), id: id.into(), attributes: Default::default() },
        snapshot: json!({"kind": "s3-bucket", "id": id, "arn": "", "tags": {}, "facts": {"type": "bucket", "public_access_block": null, "encryption": null}}),
        owner: owner.into(),
        severity: severity.into(),
        reason: "r".into(),
        summary: "s".into(),
        state,
        first_seen,
        last_seen: first_seen,
        reminders_sent: 0,
        last_reminder_at: None,
        approved_by: None,
        ledger_id: None,
        next_step_at: None,
        next_step: None,
    }
}

fn entry(
    record_type: RecordType,
    id: &str,
    at: DateTime<Utc>,
    outcome: &str,
    details: serde_json::Value,
) -> LedgerEntry {
    LedgerEntry {
        id: id.into(),
        record_type,
        at,
        tenant: "acme".parse().unwrap_or_else(|_| TenantId::unknown()),
        function: "f".into(),
        action: "block-public-bucket".into(),
        resource: "bucket-1".into(),
        outcome: outcome.into(),
        actor: "enforce-block-public-bucket".into(),
        correlation_id: Uuid::nil(),
        details,
    }
}

fn inputs() -> Inputs {
    let now = t(23, 12);
    let mut reminded = violation("s3-default-encryption", "b2", "medium", "bob@example.com", Status::Open, t(22, 0));
    reminded.reminders_sent = 1;
    reminded.last_reminder_at = Some(t(22, 0));
    Inputs {
        policies: Some(policies()),
        exceptions: Exceptions::default(),
        violations: vec![
            violation("s3-public-access-block", "b1", "critical", "alice@example.com", Status::Open, now),
            reminded,
            violation("sg-open-ssh", "sg-1", "critical", "alice@example.com", Status::Enforcing, t(23, 0)),
            violation("s3-public-access-block", "b9", "critical", "carol@example.com", Status::Enforced, t(1, 0)),
        ],
        actions: vec![
            entry(RecordType::Action, "action-1", t(21, 9), "applied", json!({"policy": "s3-public-access-block"})),
            entry(
                RecordType::Action,
                "action-2",
                t(22, 9),
                "applied",
                json!({"policy": "s3-public-access-block", "undone_at": "2026-11-22T10:00:00Z", "undone_by": "ops@x"}),
            ),
            entry(RecordType::Action, "action-3", t(23, 9), "dry-run", json!({"policy": "ec2-owner-tag"})),
        ],
        incidents: vec![
            entry(RecordType::Incident, "incident-1", t(23, 1), "open", json!({})),
            entry(RecordType::Incident, "incident-2", t(23, 1), "replayed", json!({})),
        ],
        tenants: vec![TenantLedger {
            stack: "palisade-pipeline-acme".into(),
            files: ["accepted", "accepted", "extracted", "delivered", "quarantined"]
                .iter()
                .enumerate()
                .map(|(i, o)| entry(RecordType::File, &format!("file-{i}"), t(23, 2), o, json!({})))
                .collect(),
            incidents: vec![entry(RecordType::Incident, "incident-t", t(23, 2), "open", json!({}))],
        }],
        history: vec![HistoryPoint { date: t(22, 0).date_naive(), open: BTreeMap::from([("critical".into(), 1)]) }],
    }
}

#[test]
fn counts_open_violations_by_policy_severity_and_owner() {
    let d = build(&inputs(), t(23, 12));
    assert_eq!(d.summary.open_violations, 3, "enforced ones are not open");
    let by_policy: Vec<_> = d.open_by_policy.iter().map(|c| (c.key.as_str(), c.count)).collect();
    assert_eq!(by_policy, [("s3-default-encryption", 1), ("s3-public-access-block", 1), ("sg-open-ssh", 1)]);
    assert_eq!(d.open_by_severity[0], Count { key: "critical".into(), count: 2 });
    assert_eq!(d.open_by_severity.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), SEVERITIES);
    assert_eq!(d.open_by_owner[0], Count { key: "alice@example.com".into(), count: 2 });
}

#[test]
fn enforcement_counts_applied_undone_and_dry_runs() {
    let d = build(&inputs(), t(23, 12));
    assert_eq!((d.summary.enforced, d.summary.undone, d.summary.dry_runs), (2, 1, 1));
    assert_eq!(d.enforcement[0].ledger_id, "action-3", "newest first");
    assert_eq!(d.enforcement[1].undone_by.as_deref(), Some("ops@x"));
    let last = d.enforced_per_day.last().map(|x| (x.date, x.count));
    assert_eq!(last, Some((t(23, 0).date_naive(), 0)));
    assert_eq!(d.enforced_per_day.iter().map(|x| x.count).sum::<u32>(), 2);
    assert_eq!(d.enforced_per_day.len(), ACTIVITY_DAYS as usize);
}

#[test]
fn next_steps_follow_the_sweeps_ladder() {
    let d = build(&inputs(), t(23, 12));
    let step = |v: &str| d.next_steps.iter().find(|s| s.violation == v).map(|s| (s.step, s.due_at));
    // first seen now, one reminder configured: the reminder is due at once
    assert_eq!(step("s3-public-access-block#b1"), Some((Step::Reminder, None)));
    // one of two reminders sent on the 22nd, 2-day interval: the next on the 24th
    assert_eq!(step("s3-default-encryption#b2"), Some((Step::Reminder, Some(t(24, 0)))));
    assert_eq!(step("sg-open-ssh#sg-1"), Some((Step::Enforcing, None)));
    assert_eq!(d.summary.reminders_pending, 2);
    assert_eq!(d.next_steps[0].violation, "s3-public-access-block#b1", "due now sorts first");
}

#[test]
fn enforcement_due_and_awaiting_approval() {
    let mut i = inputs();
    let mut v = violation("sg-open-ssh", "sg-2", "critical", "a", Status::Open, t(23, 10));
    v.snapshot = json!({});
    i.violations = vec![v];
    let d = build(&i, t(23, 12));
    assert_eq!(d.next_steps[0].step, Step::Enforcement);
    assert_eq!(d.summary.next_enforcement_at, Some(t(23, 14)), "grace 4h after first seen");

    let mut key = violation("iam-access-key-rotation", "AKIA1", "high", "a", Status::Open, t(1, 0));
    key.reminders_sent = 3;
    key.last_reminder_at = Some(t(10, 0));
    i.violations = vec![key];
    let d = build(&i, t(23, 12));
    assert_eq!(d.next_steps[0].step, Step::AwaitingApproval);
    assert_eq!(d.summary.awaiting_approval, 1);
}

#[test]
fn excepted_violations_show_when_the_exception_ends() {
    let mut i = inputs();
    let src = "exceptions:\n  - policy: s3-public-access-block\n    resource: b1\n    reason: website\n    granted-by: a@example.com\n    expires: 2026-12-01\n  - policy: sg-open-ssh\n    resource: sg-9\n    reason: old\n    granted-by: a@example.com\n    expires: 2026-11-01\n";
    i.exceptions = Exceptions::parse(src, "exceptions.yaml", &policies()).unwrap_or_else(|e| panic!("{e:?}"));
    let d = build(&i, t(23, 12));
    let b1 = d.next_steps.iter().find(|s| s.violation == "s3-public-access-block#b1");
    let end = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).single();
    assert_eq!(b1.map(|s| (s.step, s.due_at)), Some((Step::Excepted, end)), "a date covers that whole day");
    assert_eq!((d.summary.exceptions_active, d.summary.exceptions_expired), (1, 1));
    assert!(d.exceptions[0].expired, "soonest expiry first");
    assert_eq!(d.exceptions[1].scope, "resource b1");
}

#[test]
fn tenants_and_incidents() {
    let d = build(&inputs(), t(23, 12));
    let row = &d.tenants[0];
    assert_eq!(row.tenant, "acme");
    assert_eq!((row.accepted, row.extracted, row.delivered, row.quarantined, row.deleted), (2, 1, 1, 1, 0));
    assert_eq!(row.open_incidents, 1);
    assert_eq!(d.summary.open_incidents, 2, "one compliance incident open (one replayed) plus the tenant's");
}

#[test]
fn history_keeps_one_point_per_day_and_a_bounded_length() {
    let d = build(&inputs(), t(23, 12));
    assert_eq!(d.history.len(), 2);
    assert_eq!(d.history[1].open.get("critical"), Some(&2));
    let again = build(&Inputs { history: d.history.clone(), ..inputs() }, t(23, 18));
    assert_eq!(again.history.len(), 2, "the same day is replaced, not added");
    let long: Vec<HistoryPoint> = (0..200)
        .map(|i| HistoryPoint { date: t(1, 0).date_naive() - TimeDelta::days(i), open: BTreeMap::new() })
        .collect();
    let d = build(&Inputs { history: long, ..inputs() }, t(23, 12));
    assert_eq!(d.history.len(), HISTORY_DAYS);
    assert_eq!(d.history.last().map(|p| p.date), Some(t(23, 0).date_naive()));
}

#[test]
fn page_is_self_contained_escaped_and_carries_the_numbers() {
    let mut i = inputs();
    i.violations[0].owner = "<script>alert(1)</script>".into();
    let page = html::render(&build(&i, t(23, 12)));
    assert!(page.contains("Content-Security-Policy"));
    assert!(!page.contains("<script"), "no scripts at all, and owner text escaped");
    assert!(page.contains("&lt;script&gt;"));
    for forbidden in ["http://", "https://", "src=", "@import", "url("] {
        assert!(!page.contains(forbidden), "page must load nothing external: found {forbidden}");
    }
    assert!(page.contains(r#"data-metric="open-violations">3<"#));
    assert!(page.contains(r#"data-metric="tenant:acme:delivered">1<"#));
    assert!(page.contains(r#"data-metric="by-policy:s3-public-access-block">1<"#));
    assert!(page.matches("<svg").count() >= 5, "charts are inline SVG");
}

#[test]
fn an_empty_account_renders() {
    let page = html::render(&build(&Inputs::default(), t(23, 12)));
    assert!(page.contains("No open violations."));
    assert!(page.contains("No tenant pipelines configured"));
    assert!(page.contains(r#"data-metric="open-violations">0<"#));
}

#[test]
fn stack_lists_are_checked() {
    use crate::io::StackList;
    let two = "palisade-pipeline-acme, palisade-pipeline-globex-test ,,".parse::<StackList>();
    assert_eq!(two, Ok(StackList(vec!["palisade-pipeline-acme".into(), "palisade-pipeline-globex-test".into()])));
    assert!("palisade-pipeline-a/b".parse::<StackList>().is_err());
    assert!("other-stack".parse::<StackList>().is_err(), "the role may not read it");
    assert!("palisade-pipeline-".parse::<StackList>().is_err());
    assert_eq!("".parse::<StackList>(), Ok(StackList::default()));
}
