//! `compliance-sweep` (scheduled): reads open violations through the `by-state` index, skips excepted ones,
//! sends each owner at most one reminder digest per period, and publishes one enforcement message per violation
//! whose reminders and grace are used up, to that action's own SNS topic, within the blast-radius caps. Approval-
//! gated policies wait for an approver; dry-run policies send dry-run commands.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use compliance_scan::{ComplianceError, LAST_SCAN, load_policies};
use palisade_policy::{Decision, Policy, ResourceKind, decide, digest_due};
use palisade_shared::action::{ActionCommand, EnforceRequest, Mode};
use palisade_shared::config::{BucketName, TopicArn};
use palisade_shared::envelope::{Envelope, TenantId};
use palisade_shared::messages::{ReminderDigest, ReminderItem};
use palisade_shared::publish::Publisher;
use palisade_shared::violations::{Change, Status, Violation, ViolationStore, text_value, time_value};
use serde_json::json;

/// Clients and settings, built once per cold start.
pub struct Deps {
    /// The violations table.
    pub store: ViolationStore,
    /// For the policy files.
    pub s3: aws_sdk_s3::Client,
    /// The config bucket.
    pub config_bucket: BucketName,
    /// Publishes digests and enforcement commands.
    pub publisher: Publisher,
    /// `PALISADE_REMINDERS_TOPIC_ARN`.
    pub reminders: TopicArn,
    /// `PALISADE_ACTION_TOPIC_PREFIX`: an action's topic is this prefix followed by the action's name.
    pub action_topic_prefix: String,
    /// Named on messages.
    pub tenant: TenantId,
}

/// What one sweep did.
#[derive(Debug, Default, serde::Serialize)]
pub struct SweepReport {
    /// Open violations read.
    pub open: usize,
    /// Skipped because an unexpired exception covers them.
    pub excepted: usize,
    /// Digests sent (one per owner).
    pub digests: usize,
    /// Violations reminded in those digests.
    pub reminded: usize,
    /// Enforcement commands published.
    pub enforced: usize,
    /// Of those, dry runs.
    pub dry_runs: usize,
    /// Due, but over the blast-radius cap: left for the next run.
    pub deferred: usize,
    /// Due, waiting for an approver.
    pub awaiting_approval: usize,
    /// Not yet due.
    pub waiting: usize,
}

/// Most violations in one digest message. An item is a few hundred bytes (its summary is one sentence), so a
/// part stays far below SNS's 256 KiB message limit; a long list (e.g. every untagged resource falls to the
/// fallback owner) goes out as several parts instead of failing the whole sweep.
pub const DIGEST_MAX_ITEMS: usize = 100;

/// Part `part` of `parts` of `owner`'s digest.
pub fn digest_part(owner: &str, items: &[(Violation, u32, &Policy)], part: usize, parts: usize) -> ReminderDigest {
    ReminderDigest {
        owner: owner.to_owned(),
        items: items
            .iter()
            .map(|(v, n, p)| ReminderItem {
                violation_id: v.id.clone(),
                policy: v.policy.clone(),
                resource: format!("{} {}", v.resource.kind, v.resource.id),
                severity: v.severity.clone(),
                summary: v.summary.clone(),
                reminder: *n,
                of: p.reminders,
                action: p.action.kind.as_str().to_owned(),
            })
            .collect(),
        part: u32::try_from(part).unwrap_or(u32::MAX),
        parts: u32::try_from(parts).unwrap_or(u32::MAX),
    }
}

fn kind_of(v: &Violation) -> ResourceKind {
    v.snapshot
        .get("kind")
        .cloned()
        .and_then(|k| serde_json::from_value(k).ok())
        .or_else(|| serde_json::from_value(json!(v.resource.kind)).ok())
        .unwrap_or(ResourceKind::S3Bucket)
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        _ => 3,
    }
}

/// A change to `next_step` (and its time), written only when it differs from what the item already says: a
/// daily sweep over violations that are simply waiting then writes nothing for them.
fn next_step(v: &Violation, step: &str, at: Option<DateTime<Utc>>) -> Option<Change> {
    let same_time = |t: &DateTime<Utc>| v.next_step_at.is_some_and(|x| x.timestamp_millis() == t.timestamp_millis());
    if v.next_step.as_deref() == Some(step) && at.as_ref().is_none_or(same_time) {
        return None;
    }
    let mut fields = vec![("next_step", text_value(step))];
    if let Some(t) = at {
        fields.push(("next_step_at", time_value(&t)));
    }
    Some(Change { id: v.id.clone(), fields, expected: None })
}

/// One sweep at `now`.
pub async fn sweep(deps: &Deps, now: DateTime<Utc>) -> Result<SweepReport, ComplianceError> {
    let (policies, exceptions) = load_policies(&deps.s3, &deps.config_bucket).await?;
    let open = deps.store.in_state(Status::Open).await?;
    let mut report = SweepReport { open: open.len(), ..Default::default() };
    let mut digests: BTreeMap<String, Vec<(Violation, u32, &Policy)>> = BTreeMap::new();
    let mut due: Vec<(Violation, &Policy, bool)> = Vec::new();
    let mut steps: Vec<Change> = Vec::new();

    for v in open {
        let Some(policy) = policies.get(&v.policy) else {
            tracing::warn!(message = "Violation of a policy that no longer exists; left alone.", violation_id = %v.id);
            continue;
        };
        if let Some(ex) = compliance_scan::exception_for(&v, &exceptions, now) {
            report.excepted += 1;
            steps.extend(next_step(&v, "excepted", Some(ex.expires_at)));
            continue;
        }
        match decide(policy, &compliance_scan::ladder_state(&v), now) {
            Decision::Remind { number } => digests.entry(v.owner.clone()).or_default().push((v, number, policy)),
            Decision::Enforce { dry_run } => due.push((v, policy, dry_run)),
            Decision::AwaitApproval => {
                report.awaiting_approval += 1;
                steps.extend(next_step(&v, "await-approval", None));
            }
            Decision::Wait { until } => {
                report.waiting += 1;
                steps.extend(next_step(&v, "wait", Some(until)));
            }
        }
    }
    deps.store.set_many(&steps).await?;

    for (owner, mut items) in digests {
        let marker = format!("digest#{owner}");
        let last = deps
            .store
            .marker(&marker)
            .await?
            .and_then(|b| b.get("at").cloned())
            .and_then(|t| serde_json::from_value::<DateTime<Utc>>(t).ok());
        if !digest_due(last, now, policies.settings.digest_period) {
            continue;
        }
        items.sort_by_key(|(v, _, _)| (severity_rank(&v.severity), v.first_seen));
        let parts = items.len().div_ceil(DIGEST_MAX_ITEMS);
        for (i, chunk) in items.chunks(DIGEST_MAX_ITEMS).enumerate() {
            let digest = digest_part(&owner, chunk, i + 1, parts);
            deps.publisher.publish(&deps.reminders, &Envelope::new(deps.tenant.clone(), digest)).await?;
            let reminded: Vec<Change> = chunk
                .iter()
                .map(|(v, n, _)| Change {
                    id: v.id.clone(),
                    fields: vec![
                        ("reminders_sent", aws_sdk_dynamodb::types::AttributeValue::N(n.to_string())),
                        ("last_reminder_at", time_value(&now)),
                        ("next_step", text_value("remind")),
                    ],
                    expected: Some(Status::Open),
                })
                .collect();
            deps.store.set_many(&reminded).await?;
        }
        deps.store.put_marker(&marker, "marker", &json!({"at": now, "items": items.len()})).await?;
        report.digests += 1;
        report.reminded += items.len();
    }

    let scanned: HashMap<ResourceKind, usize> = deps
        .store
        .marker(LAST_SCAN)
        .await?
        .and_then(|b| b.get("scanned").cloned())
        .and_then(|s| serde_json::from_value::<BTreeMap<String, usize>>(s).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, n)| serde_json::from_value::<ResourceKind>(json!(k)).ok().map(|k| (k, n)))
        .collect();
    due.sort_by_key(|(v, _, _)| (severity_rank(&v.severity), v.first_seen));
    let (allowed, deferred) =
        palisade_policy::cap(due, |(v, _, _)| (kind_of(v), v.resource.id.clone()), &scanned, &policies.settings);
    let deferred_steps: Vec<Change> = deferred.iter().filter_map(|(v, _, _)| next_step(v, "deferred", None)).collect();
    deps.store.set_many(&deferred_steps).await?;
    report.deferred = deferred.len();

    // One SNS batch (10 messages) per call, and the marks written 8 at a time, each topic's
    // commands in order of severity. A violation is marked `enforcing` only after its message is out, so a
    // failed publish leaves it open for the next sweep; the mark is conditional on `open`, so an enforcement
    // that finished first is never set back.
    let mut by_topic: BTreeMap<String, Vec<(Violation, &Policy, bool)>> = BTreeMap::new();
    for item in allowed {
        by_topic.entry(item.1.action.kind.as_str().to_owned()).or_default().push(item);
    }
    let mut unpublished = 0;
    for (action, items) in by_topic {
        let topic: TopicArn = format!("{}{action}", deps.action_topic_prefix)
            .parse()
            .map_err(|e: String| ComplianceError::Policy(format!("action topic for {action}: {e}")))?;
        for chunk in items.chunks(100) {
            let envs: Vec<Envelope<ActionCommand>> = chunk
                .iter()
                .map(|(v, policy, dry_run)| {
                    Envelope::new(
                        deps.tenant.clone(),
                        ActionCommand::Enforce(EnforceRequest {
                            action: action.clone(),
                            violation_id: v.id.clone(),
                            policy: policy.name.clone(),
                            resource: v.resource.clone(),
                            params: serde_json::Value::Object(policy.action.params.clone()),
                            mode: if *dry_run { Mode::DryRun } else { Mode::Enforce },
                            approved_by: v.approved_by.clone(),
                            occurrence: Some(v.occurrence()),
                        }),
                    )
                })
                .collect();
            let failed = deps.publisher.publish_batch(&topic, &envs).await?;
            let mut marks = Vec::with_capacity(chunk.len());
            for (i, ((v, _, dry_run), env)) in chunk.iter().zip(&envs).enumerate() {
                if failed.contains(&i) {
                    unpublished += 1;
                    continue;
                }
                if *dry_run {
                    marks.extend(next_step(v, "dry-run", None));
                    report.dry_runs += 1;
                } else {
                    marks.push(Change {
                        id: v.id.clone(),
                        fields: vec![
                            ("state", text_value(Status::Enforcing.as_str())),
                            ("next_step", text_value("enforce")),
                        ],
                        expected: Some(Status::Open),
                    });
                }
                report.enforced += 1;
                tracing::info!(message = "Enforcement requested.", violation_id = %v.id, action = %action, dry_run = *dry_run, correlation_id = %env.correlation_id);
            }
            deps.store.set_many(&marks).await?;
        }
    }
    tracing::info!(
        message = "Sweep finished.",
        open = report.open,
        digests = report.digests,
        enforced = report.enforced,
        deferred = report.deferred,
        awaiting_approval = report.awaiting_approval
    );
    if unpublished > 0 {
        // Those violations stay open and go out with the next sweep; failing makes the gap an incident now.
        return Err(palisade_shared::publish::PublishError::Partial {
            failed: unpublished,
            total: report.enforced + unpublished,
        }
        .into());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::PolicySet;
    use palisade_shared::action::ResourceRef;

    #[test]
    fn a_long_digest_goes_out_in_parts_each_far_below_the_sns_limit() {
        let set = PolicySet::parse(include_str!("../../../infra/policies/policies.yaml"), "policies.yaml")
            .unwrap_or_else(|e| panic!("{e:?}"));
        let policy = set.get("ec2-owner-tag").unwrap_or_else(|| panic!("shipped policy"));
        let t = Utc::now();
        // GIVEN 1,000 violations for one owner, each with a long summary
        let items: Vec<(Violation, u32, &Policy)> = (0..1000)
            .map(|i| {
                let v = Violation {
                    id: format!("ec2-owner-tag#i-{i:017}"),
                    policy: policy.name.clone(),
                    resource: ResourceRef {
                        kind: "ec2-instance".into(),
                        id: format!("i-{i:017}"),
                        attributes: Default::default(),
                    },
                    snapshot: serde_json::Value::Null,
                    owner: "security@example.com".into(),
                    severity: "low".into(),
                    reason: "r".into(),
                    summary: "x".repeat(400),
                    state: Status::Open,
                    first_seen: t,
                    last_seen: t,
                    reminders_sent: 0,
                    last_reminder_at: None,
                    approved_by: None,
                    ledger_id: None,
                    next_step_at: None,
                    next_step: None,
                };
                (v, 1, policy)
            })
            .collect();
        // WHEN it is split as the sweep splits it
        let parts = items.len().div_ceil(DIGEST_MAX_ITEMS);
        let digests: Vec<ReminderDigest> = items
            .chunks(DIGEST_MAX_ITEMS)
            .enumerate()
            .map(|(i, c)| digest_part("security@example.com", c, i + 1, parts))
            .collect();
        // THEN every violation is in exactly one part, parts are numbered, and each message is far below 256 KiB
        assert_eq!(digests.len(), 10);
        assert_eq!(digests.iter().map(|d| d.items.len()).sum::<usize>(), 1000);
        assert_eq!((digests[9].part, digests[9].parts), (10, 10));
        for d in &digests {
            let bytes = serde_json::to_vec(&Envelope::new(TenantId::unknown(), d.clone())).unwrap_or_default().len();
            assert!(bytes > 1000 && bytes < 128 * 1024, "{bytes} bytes");
        }
    }
}
