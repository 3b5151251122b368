//! The compliance dashboard: what is open, what was enforced (and undone), what happens next, which exceptions
//! run out when, and how each tenant's files fared.
//!
//! [`build`] turns what the tables hold into a [`Dashboard`] without I/O, so every number on the page is
//! unit-tested; [`html::render`] draws it as one self-contained page; [`io`] reads the tables and writes the
//! page and its JSON into the private dashboard bucket. Only identifiers, counts and times are shown: no file
//! contents, no quote fields, no tags beyond the owner.

pub mod html;
pub mod io;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use palisade_policy::{Decision, Exceptions, PolicySet, Scope, decide};
use palisade_shared::ledger::LedgerEntry;
use palisade_shared::violations::{Status, Violation};
use serde::{Deserialize, Serialize};

/// Days of history the trend charts keep.
pub const HISTORY_DAYS: usize = 90;
/// Days of enforcement activity charted.
pub const ACTIVITY_DAYS: i64 = 30;
/// Most enforcement rows listed (newest first); the counts cover them all.
pub const MAX_ENFORCEMENT_ROWS: usize = 200;

/// Everything the dashboard is built from, as read from the stack's tables and files.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// The policies in force (for the ladder: reminders and grace).
    pub policies: Option<PolicySet>,
    /// The exceptions file.
    pub exceptions: Exceptions,
    /// Every violation not resolved.
    pub violations: Vec<Violation>,
    /// The compliance ledger's action entries.
    pub actions: Vec<LedgerEntry>,
    /// The compliance ledger's incidents.
    pub incidents: Vec<LedgerEntry>,
    /// Each tenant pipeline stack's ledger.
    pub tenants: Vec<TenantLedger>,
    /// The trend points of earlier runs.
    pub history: Vec<HistoryPoint>,
}

/// One tenant stack's file and incident entries.
#[derive(Clone, Debug, Default)]
pub struct TenantLedger {
    /// The pipeline stack.
    pub stack: String,
    /// Its `file` entries.
    pub files: Vec<LedgerEntry>,
    /// Its incidents.
    pub incidents: Vec<LedgerEntry>,
}

/// The dashboard's data; the page shows exactly this, and `data.json` is this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    /// When it was built.
    pub generated_at: DateTime<Utc>,
    /// The headline numbers.
    pub summary: Summary,
    /// Open violations per policy, most first.
    pub open_by_policy: Vec<Count>,
    /// Open violations per severity, most severe first.
    pub open_by_severity: Vec<Count>,
    /// Open violations per owner, most first.
    pub open_by_owner: Vec<Count>,
    /// Enforcement actions, newest first.
    pub enforcement: Vec<EnforcementRow>,
    /// Applied enforcement actions per day, the last [`ACTIVITY_DAYS`] days.
    pub enforced_per_day: Vec<DayCount>,
    /// What happens next to each open violation, soonest first.
    pub next_steps: Vec<NextStep>,
    /// Exceptions, soonest expiry first.
    pub exceptions: Vec<ExceptionRow>,
    /// Per tenant: files and incidents.
    pub tenants: Vec<TenantRow>,
    /// Open violations by severity over time, one point per day.
    pub history: Vec<HistoryPoint>,
}

/// Headline numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Violations open or being enforced.
    pub open_violations: u32,
    /// Enforcement actions applied (not dry runs), including undone ones.
    pub enforced: u32,
    /// Applied actions later undone.
    pub undone: u32,
    /// Dry runs recorded.
    pub dry_runs: u32,
    /// Open violations whose next step is a reminder.
    pub reminders_pending: u32,
    /// Open violations waiting for an approver.
    pub awaiting_approval: u32,
    /// When the next enforcement is due, if any is scheduled.
    pub next_enforcement_at: Option<DateTime<Utc>>,
    /// Exceptions still in force.
    pub exceptions_active: u32,
    /// Exceptions past their expiry date (to remove from the file).
    pub exceptions_expired: u32,
    /// Open incidents, compliance and tenants together.
    pub open_incidents: u32,
}

/// A label and how many.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Policy, severity or owner.
    pub key: String,
    /// How many.
    pub count: u32,
}

/// A day and how many.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    /// The day (UTC).
    pub date: NaiveDate,
    /// How many.
    pub count: u32,
}

/// One enforcement action from the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcementRow {
    /// When.
    pub at: DateTime<Utc>,
    /// The policy that called for it.
    pub policy: String,
    /// The action.
    pub action: String,
    /// The resource id.
    pub resource: String,
    /// `applied`, `dry-run`, `already-compliant`, `gone`, ...
    pub outcome: String,
    /// The approver, or the function.
    pub actor: String,
    /// When it was undone, if it was.
    pub undone_at: Option<String>,
    /// Who undid it.
    pub undone_by: Option<String>,
    /// The ledger id (for `palisade undo`).
    pub ledger_id: String,
}

/// The next step of one open violation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextStep {
    /// The violation id.
    pub violation: String,
    /// Its policy.
    pub policy: String,
    /// Its severity.
    pub severity: String,
    /// Who is reminded.
    pub owner: String,
    /// What comes next.
    pub step: Step,
    /// When it is due (`None`: now, or not scheduled).
    pub due_at: Option<DateTime<Utc>>,
    /// Reminders sent so far.
    pub reminders_sent: u32,
    /// Reminders the policy sends before enforcement.
    pub reminders_total: u32,
}

/// What comes next for a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// A reminder digest.
    Reminder,
    /// Enforcement, once grace is over.
    Enforcement,
    /// Grace is over; an approver must agree.
    AwaitingApproval,
    /// An enforcement message is out; the action's function is applying it.
    Enforcing,
    /// An exception covers it until `due_at`.
    Excepted,
    /// Its policy is no longer in the policies file; the next scan closes it.
    PolicyRemoved,
}

impl Step {
    /// Words for the page.
    pub fn label(self) -> &'static str {
        match self {
            Step::Reminder => "reminder",
            Step::Enforcement => "enforcement",
            Step::AwaitingApproval => "awaiting approval",
            Step::Enforcing => "enforcing",
            Step::Excepted => "excepted",
            Step::PolicyRemoved => "policy removed",
        }
    }
}

/// One exception.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionRow {
    /// The policy it excuses.
    pub policy: String,
    /// `resource <id>` or `tags k=v, ...`.
    pub scope: String,
    /// Why.
    pub reason: String,
    /// Who agreed.
    pub granted_by: String,
    /// The first instant it no longer applies.
    pub expires_at: DateTime<Utc>,
    /// Whether that instant has passed.
    pub expired: bool,
}

/// One tenant's pipeline, in counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRow {
    /// The tenant.
    pub tenant: String,
    /// Its pipeline stack.
    pub stack: String,
    /// Files accepted by ingest.
    pub accepted: u32,
    /// Files extracted into quote records.
    pub extracted: u32,
    /// Records delivered to the target.
    pub delivered: u32,
    /// Files quarantined (ingest or extract).
    pub quarantined: u32,
    /// Objects deleted by retention.
    pub deleted: u32,
    /// Incidents still open.
    pub open_incidents: u32,
}

/// Open violations per severity on one day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// The day (UTC).
    pub date: NaiveDate,
    /// Severity name to open violations.
    pub open: BTreeMap<String, u32>,
}

/// Severities, most severe first (the order of the page's legends and stacks).
pub const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];

/// Builds the dashboard at `now`.
pub fn build(inputs: &Inputs, now: DateTime<Utc>) -> Dashboard {
    let open: Vec<&Violation> =
        inputs.violations.iter().filter(|v| matches!(v.state, Status::Open | Status::Enforcing)).collect();

    let open_by_severity = {
        let mut m: BTreeMap<&str, u32> = SEVERITIES.iter().map(|s| (*s, 0)).collect();
        for v in &open {
            *m.entry(v.severity.as_str()).or_default() += 1;
        }
        let mut out: Vec<Count> = m.into_iter().map(|(k, count)| Count { key: k.to_owned(), count }).collect();
        out.sort_by_key(|c| (severity_rank(&c.key), c.key.clone()));
        out
    };

    let enforcement = enforcement_rows(&inputs.actions);
    let next_steps = next_steps(&open, inputs, now);
    let exceptions = exception_rows(&inputs.exceptions, now);
    let tenants: Vec<TenantRow> = inputs.tenants.iter().map(tenant_row).collect();

    let applied = |r: &&EnforcementRow| r.outcome == "applied";
    let summary = Summary {
        open_violations: len(open.len()),
        enforced: len(enforcement.iter().filter(applied).count()),
        undone: len(enforcement.iter().filter(applied).filter(|r| r.undone_at.is_some()).count()),
        dry_runs: len(enforcement.iter().filter(|r| r.outcome == "dry-run").count()),
        reminders_pending: len(next_steps.iter().filter(|s| s.step == Step::Reminder).count()),
        awaiting_approval: len(next_steps.iter().filter(|s| s.step == Step::AwaitingApproval).count()),
        next_enforcement_at: next_steps
            .iter()
            .filter(|s| s.step == Step::Enforcement)
            .map(|s| s.due_at.unwrap_or(now))
            .min(),
        exceptions_active: len(exceptions.iter().filter(|e| !e.expired).count()),
        exceptions_expired: len(exceptions.iter().filter(|e| e.expired).count()),
        open_incidents: len(inputs.incidents.iter().filter(|i| i.outcome == "open").count())
            + tenants.iter().map(|t| t.open_incidents).sum::<u32>(),
    };

    let today = HistoryPoint {
        date: now.date_naive(),
        open: open_by_severity.iter().map(|c| (c.key.clone(), c.count)).collect(),
    };
    Dashboard {
        generated_at: now,
        summary,
        open_by_policy: counts(open.iter().map(|v| v.policy.as_str())),
        open_by_severity,
        open_by_owner: counts(open.iter().map(|v| v.owner.as_str())),
        enforced_per_day: enforced_per_day(&enforcement, now),
        enforcement: enforcement.into_iter().take(MAX_ENFORCEMENT_ROWS).collect(),
        next_steps,
        exceptions,
        tenants,
        history: with_point(&inputs.history, today),
    }
}

fn len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn severity_rank(s: &str) -> usize {
    SEVERITIES.iter().position(|x| *x == s).unwrap_or(SEVERITIES.len())
}

/// Counts per key, most first, then by key.
fn counts<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<Count> {
    let mut m: BTreeMap<&str, u32> = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_default() += 1;
    }
    let mut out: Vec<Count> = m.into_iter().map(|(k, count)| Count { key: k.to_owned(), count }).collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    out
}

fn text(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_owned)
}

fn enforcement_rows(actions: &[LedgerEntry]) -> Vec<EnforcementRow> {
    let mut rows: Vec<EnforcementRow> = actions
        .iter()
        .map(|e| EnforcementRow {
            at: e.at,
            policy: text(&e.details, "policy").unwrap_or_default(),
            action: e.action.clone(),
            resource: e.resource.clone(),
            outcome: e.outcome.clone(),
            actor: e.actor.clone(),
            undone_at: text(&e.details, "undone_at"),
            undone_by: text(&e.details, "undone_by"),
            ledger_id: e.id.clone(),
        })
        .collect();
    rows.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.ledger_id.cmp(&b.ledger_id)));
    rows
}

fn enforced_per_day(rows: &[EnforcementRow], now: DateTime<Utc>) -> Vec<DayCount> {
    let today = now.date_naive();
    (0..ACTIVITY_DAYS)
        .rev()
        .filter_map(|back| today.checked_sub_signed(TimeDelta::days(back)))
        .map(|date| DayCount {
            date,
            count: len(rows.iter().filter(|r| r.outcome == "applied" && r.at.date_naive() == date).count()),
        })
        .collect()
}

fn next_steps(open: &[&Violation], inputs: &Inputs, now: DateTime<Utc>) -> Vec<NextStep> {
    let mut out: Vec<NextStep> = open
        .iter()
        .map(|v| {
            let policy = inputs.policies.as_ref().and_then(|p| p.get(&v.policy));
            let reminders_total = policy.map_or(0, |p| p.reminders);
            let (step, due_at) = step_of(v, policy, &inputs.exceptions, now);
            NextStep {
                violation: v.id.clone(),
                policy: v.policy.clone(),
                severity: v.severity.clone(),
                owner: v.owner.clone(),
                step,
                due_at,
                reminders_sent: v.reminders_sent,
                reminders_total,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (a.due_at.is_some(), a.due_at, severity_rank(&a.severity), &a.violation).cmp(&(
            b.due_at.is_some(),
            b.due_at,
            severity_rank(&b.severity),
            &b.violation,
        ))
    });
    out
}

/// The same ladder the sweep climbs, so the page says what the next sweep will do.
fn step_of(
    v: &Violation,
    policy: Option<&palisade_policy::Policy>,
    exceptions: &Exceptions,
    now: DateTime<Utc>,
) -> (Step, Option<DateTime<Utc>>) {
    if v.state == Status::Enforcing {
        return (Step::Enforcing, None);
    }
    let Some(policy) = policy else { return (Step::PolicyRemoved, None) };
    if let Some(ex) = compliance_scan::exception_for(v, exceptions, now) {
        return (Step::Excepted, Some(ex.expires_at));
    }
    match decide(policy, &compliance_scan::ladder_state(v), now) {
        Decision::Remind { .. } => (Step::Reminder, None),
        Decision::Wait { until } if v.reminders_sent < policy.reminders => (Step::Reminder, Some(until)),
        Decision::Wait { until } => (Step::Enforcement, Some(until)),
        Decision::Enforce { .. } => (Step::Enforcement, None),
        Decision::AwaitApproval => (Step::AwaitingApproval, None),
    }
}

fn exception_rows(exceptions: &Exceptions, now: DateTime<Utc>) -> Vec<ExceptionRow> {
    let mut rows: Vec<ExceptionRow> = exceptions
        .iter()
        .map(|e| ExceptionRow {
            policy: e.policy.clone(),
            scope: match &e.scope {
                Scope::Resource(id) => format!("resource {id}"),
                Scope::Tags(tags) => {
                    format!("tags {}", tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "))
                }
            },
            reason: e.reason.clone(),
            granted_by: e.granted_by.clone(),
            expires_at: e.expires_at,
            expired: e.is_expired(now),
        })
        .collect();
    rows.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then_with(|| a.policy.cmp(&b.policy)));
    rows
}

fn tenant_row(t: &TenantLedger) -> TenantRow {
    let n = |outcome: &str| len(t.files.iter().filter(|e| e.outcome == outcome).count());
    let tenant = t
        .files
        .iter()
        .chain(&t.incidents)
        .map(|e| e.tenant.to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| t.stack.clone());
    TenantRow {
        tenant,
        stack: t.stack.clone(),
        accepted: n("accepted"),
        extracted: n("extracted"),
        delivered: n("delivered"),
        quarantined: n("quarantined"),
        deleted: n("deleted"),
        open_incidents: len(t.incidents.iter().filter(|i| i.outcome == "open").count()),
    }
}

/// `history` with `point` replacing any point of the same day, oldest first, at most [`HISTORY_DAYS`].
fn with_point(history: &[HistoryPoint], point: HistoryPoint) -> Vec<HistoryPoint> {
    let mut out: Vec<HistoryPoint> = history.iter().filter(|p| p.date != point.date).cloned().collect();
    out.push(point);
    out.sort_by_key(|p| p.date);
    let skip = out.len().saturating_sub(HISTORY_DAYS);
    out.split_off(skip)
}

#[cfg(test)]
mod tests;
