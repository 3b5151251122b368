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
use palisade_shared::violations::{Status, Violation, ViolationStore, text_value, time_value};
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

/// One sweep at `now`.
pub async fn sweep(deps: &Deps, now: DateTime<Utc>) -> Result<SweepReport, ComplianceError> {
    let (policies, exceptions) = load_policies(&deps.s3, &deps.config_bucket).await?;
    let open = deps.store.in_state(Status::Open).await?;
    let mut report = SweepReport { open: open.len(), ..Default::default() };
    let mut digests: BTreeMap<String, Vec<(Violation, u32, &Policy)>> = BTreeMap::new();
    let mut due: Vec<(Violation, &Policy, bool)> = Vec::new();

    for v in open {
        let Some(policy) = policies.get(&v.policy) else {
            tracing::warn!(message = "Violation of a policy that no longer exists; left alone.", violation_id = %v.id);
            continue;
        };
        if let Some(ex) = compliance_scan::exception_for(&v, &exceptions, now) {
            report.excepted += 1;
            deps.store
                .set(
                    &v.id,
                    &[("next_step", text_value("excepted")), ("next_step_at", time_value(&ex.expires_at))],
                    None,
                )
                .await?;
            continue;
        }
        match decide(policy, &compliance_scan::ladder_state(&v), now) {
            Decision::Remind { number } => digests.entry(v.owner.clone()).or_default().push((v, number, policy)),
            Decision::Enforce { dry_run } => due.push((v, policy, dry_run)),
            Decision::AwaitApproval => {
                report.awaiting_approval += 1;
                deps.store.set(&v.id, &[("next_step", text_value("await-approval"))], None).await?;
            }
            Decision::Wait { until } => {
                report.waiting += 1;
                deps.store
                    .set(&v.id, &[("next_step", text_value("wait")), ("next_step_at", time_value(&until))], None)
                    .await?;
            }
        }
    }

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
            for (v, n, _) in chunk {
                deps.store
                    .set(
                        &v.id,
                        &[
                            ("reminders_sent", aws_sdk_dynamodb::types::AttributeValue::N(n.to_string())),
                            ("last_reminder_at", time_value(&now)),
                            ("next_step", text_value("remind")),
                        ],
                        Some(Status::Open),
                    )
                    .await?;
            }
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
    let (allowed, deferred) = palisade_policy::cap(due, |(v, _, _)| kind_of(v), &scanned, &policies.settings);
    for (v, _, _) in &deferred {
        deps.store.set(&v.id, &[("next_step", text_value("deferred"))], None).await?;
    }
    report.deferred = deferred.len();
    for (v, policy, dry_run) in allowed {
        let action = policy.action.kind.as_str();
        let topic: TopicArn = format!("{}{action}", deps.action_topic_prefix)
            .parse()
            .map_err(|e: String| ComplianceError::Policy(format!("action topic for {action}: {e}")))?;
        let cmd = ActionCommand::Enforce(EnforceRequest {
            action: action.to_owned(),
            violation_id: v.id.clone(),
            policy: policy.name.clone(),
            resource: v.resource.clone(),
            params: serde_json::Value::Object(policy.action.params.clone()),
            mode: if dry_run { Mode::DryRun } else { Mode::Enforce },
            approved_by: v.approved_by.clone(),
            occurrence: Some(v.occurrence()),
        });
        let env = Envelope::new(deps.tenant.clone(), cmd);
        deps.publisher.publish(&topic, &env).await?;
        if !dry_run {
            deps.store
                .set(
                    &v.id,
                    &[("state", text_value(Status::Enforcing.as_str())), ("next_step", text_value("enforce"))],
                    Some(Status::Open),
                )
                .await?;
        } else {
            deps.store.set(&v.id, &[("next_step", text_value("dry-run"))], None).await?;
            report.dry_runs += 1;
        }
        report.enforced += 1;
        tracing::info!(message = "Enforcement requested.", violation_id = %v.id, action, dry_run, correlation_id = %env.correlation_id);
    }
    tracing::info!(
        message = "Sweep finished.",
        open = report.open,
        digests = report.digests,
        enforced = report.enforced,
        deferred = report.deferred,
        awaiting_approval = report.awaiting_approval
    );
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
