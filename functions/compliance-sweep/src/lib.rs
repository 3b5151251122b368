//! `compliance-sweep` (scheduled): reads open violations through the `by-state` index, skips excepted ones,
//! sends each owner at most one reminder digest per period, and publishes one enforcement message per violation
//! whose reminders and grace are used up, to that action's own SNS topic, within the blast-radius caps. Approval-
//! gated policies wait for an approver; dry-run policies send dry-run commands.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use compliance_scan::{ComplianceError, LAST_SCAN, load_policies};
use palisade_policy::{Decision, Policy, ResourceKind, decide, digest_due};
use palisade_shared::action::{ActionCommand, EnforceRequest, Mode};
use palisade_shared::config::{BucketName, TopicArn};
use palisade_shared::envelope::{Envelope, TenantId};
use palisade_shared::messages::{ReminderDigest, ReminderItem};
use palisade_shared::publish::Publisher;
use palisade_shared::violations::{Status, Violation, ViolationStore};
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
    /// Enforcing for longer than [`REPUBLISH_AFTER`]: published again.
    pub republished: usize,
}

/// Most violations in one digest message. An item is a few hundred bytes (its summary is one sentence), so a
/// part stays far below SNS's 256 KiB message limit; a long list (e.g. every untagged resource falls to the
/// fallback owner) goes out as several parts instead of failing the whole sweep.
pub const DIGEST_MAX_ITEMS: usize = 100;

/// A violation due for enforcement, its policy, and whether only as a dry run.
type Due<'a> = (Violation, &'a Policy, bool);

/// Commands per SNS PublishBatch call (SNS's limit).
const PUBLISH_BATCH: usize = 10;

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

/// The violation with a new `next_step` (and its time), only when that differs from what the item already says:
/// a daily sweep over violations that are simply waiting then writes nothing for them.
fn next_step(v: &Violation, step: &str, at: Option<DateTime<Utc>>) -> Option<Violation> {
    let same_time = |t: &DateTime<Utc>| v.next_step_at.is_some_and(|x| x.timestamp_millis() == t.timestamp_millis());
    if v.next_step.as_deref() == Some(step) && at.as_ref().is_none_or(same_time) {
        return None;
    }
    let mut changed = v.clone();
    changed.next_step = Some(step.to_owned());
    if at.is_some() {
        changed.next_step_at = at;
    }
    Some(changed)
}

/// How long a violation may stay `enforcing` before the sweep publishes its command again. The sweep marks a
/// violation before publishing, so a sweep that died in between, or a command lost on the way, would leave it
/// there for good; publishing again is safe because enforcement is idempotent per occurrence (its ledger
/// claim), and a command that keeps failing raises an incident each time instead of being forgotten.
pub const REPUBLISH_AFTER: chrono::Duration = chrono::Duration::hours(6);

/// One sweep at `now`.
pub async fn sweep(deps: &Deps, now: DateTime<Utc>) -> Result<SweepReport, ComplianceError> {
    let (policies, exceptions) = load_policies(&deps.s3, &deps.config_bucket).await?;
    let open = deps.store.in_state(Status::Open).await?;
    let mut report = SweepReport { open: open.len(), ..Default::default() };
    let mut digests: BTreeMap<String, Vec<(Violation, u32, &Policy)>> = BTreeMap::new();
    let mut due: Vec<(Violation, &Policy, bool)> = Vec::new();
    let mut steps: Vec<Violation> = Vec::new();
    for v in deps.store.in_state(Status::Enforcing).await? {
        let stale = v.next_step_at.is_none_or(|t| now - t >= REPUBLISH_AFTER);
        match policies.get(&v.policy) {
            Some(policy) if stale => {
                tracing::warn!(message = "Still enforcing; publishing the command again.", violation_id = %v.id);
                report.republished += 1;
                due.push((v, policy, false));
            }
            _ => {}
        }
    }

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
    // Whole items, 25 per call. Only the sweep writes these fields, and it changes an `open` item's state only
    // before publishing its command, so no enforcement can have marked it meanwhile. A scan that runs at the same
    // moment may see its `last_seen` put back until its next run; see `ViolationStore::put_many`.
    deps.store.put_many(&steps).await?;

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
            let reminded: Vec<Violation> = chunk
                .iter()
                .map(|(v, n, _)| Violation {
                    reminders_sent: *n,
                    last_reminder_at: Some(now),
                    next_step: Some("remind".into()),
                    ..v.clone()
                })
                .collect();
            deps.store.put_many(&reminded).await?;
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
    let deferred_steps: Vec<Violation> =
        deferred.iter().filter_map(|(v, _, _)| next_step(v, "deferred", None)).collect();
    deps.store.put_many(&deferred_steps).await?;
    report.deferred = deferred.len();

    // Each topic's commands in order of severity, the topics in turn, one SNS batch (10) from each per round:
    // every enforcement function starts at once and no action waits behind another's backlog, and no queue
    // holds more than its share. A round's violations are marked `enforcing` first (25 per call), then
    // published. Marking first means the enforcement, which may finish within milliseconds of the publish,
    // always finds the violation `enforcing` and its `enforced` is never overwritten. A command SNS refuses is
    // put back to `open` for the next sweep; one lost after a crash is published again after
    // [`REPUBLISH_AFTER`]. The calls are made one after another on purpose: publishing faster than the
    // enforcement functions drain their queues only deepens the queues (measured: a round's batches published at
    // once took the benchmark from 78 s to 121 s, its enforcement finishing 42 s after the sweep instead of 6 s).
    let mut by_topic: BTreeMap<String, VecDeque<Due>> = BTreeMap::new();
    for item in allowed {
        by_topic.entry(item.1.action.kind.as_str().to_owned()).or_default().push_back(item);
    }
    let mut topics = Vec::with_capacity(by_topic.len());
    for (action, items) in by_topic {
        let topic: TopicArn = format!("{}{action}", deps.action_topic_prefix)
            .parse()
            .map_err(|e: String| ComplianceError::Policy(format!("action topic for {action}: {e}")))?;
        topics.push((action, topic, items));
    }
    let mut unpublished = 0;
    loop {
        let round: Vec<(&str, &TopicArn, Vec<Due>)> = topics
            .iter_mut()
            .filter(|(_, _, items)| !items.is_empty())
            .map(|(action, topic, items)| {
                let n = items.len().min(PUBLISH_BATCH);
                (action.as_str(), &*topic, items.drain(..n).collect())
            })
            .collect();
        if round.is_empty() {
            break;
        }
        let marks: Vec<Violation> = round
            .iter()
            .flat_map(|(_, _, chunk)| chunk)
            .filter_map(|(v, _, dry_run)| {
                if *dry_run {
                    next_step(v, "dry-run", None)
                } else {
                    Some(Violation {
                        state: Status::Enforcing,
                        next_step: Some("enforce".into()),
                        next_step_at: Some(now),
                        ..v.clone()
                    })
                }
            })
            .collect();
        deps.store.put_many(&marks).await?;
        let mut back = Vec::new();
        for (n, (action, topic, chunk)) in round.iter().enumerate() {
            let envs: Vec<Envelope<ActionCommand>> = chunk
                .iter()
                .map(|(v, policy, dry_run)| {
                    Envelope::new(
                        deps.tenant.clone(),
                        ActionCommand::Enforce(EnforceRequest {
                            action: (*action).to_owned(),
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
            let failed = match deps.publisher.publish_batch(topic, &envs).await {
                Ok(failed) => failed,
                Err(e) => {
                    // Nothing of this chunk or the rest of the round went out: back to `open` before failing.
                    let rest = round[n..].iter().flat_map(|(_, _, c)| c).filter(|(_, _, dry)| !*dry);
                    back.extend(rest.map(|(v, _, _)| v.clone()));
                    deps.store.put_many(&back).await?;
                    return Err(e.into());
                }
            };
            for (i, ((v, _, dry_run), env)) in chunk.iter().zip(&envs).enumerate() {
                if failed.contains(&i) {
                    unpublished += 1;
                    if !*dry_run {
                        back.push(v.clone());
                    }
                    continue;
                }
                if *dry_run {
                    report.dry_runs += 1;
                }
                report.enforced += 1;
                tracing::info!(message = "Enforcement requested.", violation_id = %v.id, action = %action, dry_run = *dry_run, correlation_id = %env.correlation_id);
            }
        }
        deps.store.put_many(&back).await?;
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
