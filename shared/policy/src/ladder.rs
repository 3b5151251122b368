//! The escalation ladder: from first seen, through reminders and grace, to enforcement.
//!
//! Owners are told before anything changes, and given time to fix or ask for an exception; the ladder is a pure
//! function of the policy, what has happened so far and the time, so the sweep can run it as often as it likes
//! and tests can walk it over simulated days.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::model::Policy;

/// What has happened to one violation so far; the sweep stores it between runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationState {
    /// When the scan first found it.
    pub first_seen: DateTime<Utc>,
    /// Reminders sent so far.
    pub reminders_sent: u32,
    /// When the latest reminder was sent.
    pub last_reminder_at: Option<DateTime<Utc>>,
    /// Who approved enforcement, for approval-gated policies.
    pub approved_by: Option<String>,
}

impl ViolationState {
    /// A violation just found.
    pub fn new(first_seen: DateTime<Utc>) -> Self {
        Self { first_seen, reminders_sent: 0, last_reminder_at: None, approved_by: None }
    }
}

/// What the sweep should do about a violation now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Nothing yet; the next step is due at `until`.
    Wait {
        /// When to look again.
        until: DateTime<Utc>,
    },
    /// Send reminder `number` (1-based), then record it in the state.
    Remind {
        /// Which reminder.
        number: u32,
    },
    /// Enforce now; `dry_run` records what would change without changing it.
    Enforce {
        /// From the policy.
        dry_run: bool,
    },
    /// Grace is over, but the policy needs a named approver first.
    AwaitApproval,
}

/// The next step for a violation of `policy` at `now`.
///
/// Reminder `k` is due at `first_seen + (k - 1) * reminder-interval`, so the first goes out at once. Once all
/// reminders are sent, enforcement is due `grace` after the last one (after `first_seen` when there are none).
/// An approval-gated policy then waits for `approved_by`; this holds for dry-run policies too, so a trial run
/// shows the same flow as the real one. A dry-run policy enforces with `dry_run: true`.
pub fn decide(policy: &Policy, state: &ViolationState, now: DateTime<Utc>) -> Decision {
    if state.reminders_sent < policy.reminders {
        let number = state.reminders_sent + 1;
        let interval = policy.reminder_interval.map_or_else(TimeDelta::zero, |d| d.as_delta());
        let offset = i32::try_from(number - 1).ok().and_then(|n| interval.checked_mul(n));
        let due = offset.map_or(DateTime::<Utc>::MAX_UTC, |o| later(state.first_seen, o));
        return if now >= due { Decision::Remind { number } } else { Decision::Wait { until: due } };
    }
    let base =
        if policy.reminders == 0 { state.first_seen } else { state.last_reminder_at.unwrap_or(state.first_seen) };
    let due = later(base, policy.grace.as_delta());
    if now < due {
        return Decision::Wait { until: due };
    }
    if policy.approval && state.approved_by.as_deref().is_none_or(|a| a.trim().is_empty()) {
        return Decision::AwaitApproval;
    }
    Decision::Enforce { dry_run: policy.dry_run }
}

/// Whether an owner's digest is due: never sent, or sent at least `period` ago.
pub fn digest_due(last_digest_at: Option<DateTime<Utc>>, now: DateTime<Utc>, period: Duration) -> bool {
    last_digest_at.is_none_or(|last| now >= later(last, period.as_delta()))
}

/// `t + d`, or the end of time: a policy may write durations longer than the calendar holds, and that must mean
/// "never", not a panic.
fn later(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionKind, Check, ResourceKind};
    use crate::testutil::{policy, t};

    fn ladder(reminders: u32, interval: Option<Duration>, grace: Duration) -> Policy {
        let check = Check::InstanceMaxAge { max_age_days: 30 };
        let mut p = policy("stale", ResourceKind::Ec2Instance, check, ActionKind::StopInstance);
        p.reminders = reminders;
        p.reminder_interval = interval;
        p.grace = grace;
        p
    }

    /// Runs the sweep every `step` from `start` for `steps` runs, doing what each decision says (recording
    /// reminders, approving when `approve_at` has come), and returns each run's time and decision.
    fn simulate(
        p: &Policy,
        start: DateTime<Utc>,
        step: TimeDelta,
        steps: usize,
        approve_at: Option<DateTime<Utc>>,
    ) -> Vec<(DateTime<Utc>, Decision)> {
        let mut state = ViolationState::new(start);
        let mut log = Vec::new();
        for i in 0..steps {
            let now = start + step * i as i32;
            if approve_at.is_some_and(|a| now >= a) {
                state.approved_by = Some("dana@example.com".into());
            }
            let d = decide(p, &state, now);
            if let Decision::Remind { number } = d {
                assert_eq!(number, state.reminders_sent + 1);
                state.reminders_sent = number;
                state.last_reminder_at = Some(now);
            }
            log.push((now, d));
        }
        log
    }

    fn when(log: &[(DateTime<Utc>, Decision)], pick: impl Fn(&Decision) -> bool) -> Vec<DateTime<Utc>> {
        log.iter().filter(|(_, d)| pick(d)).map(|(at, _)| *at).collect()
    }

    #[test]
    fn reminders_go_out_on_schedule_and_enforcement_waits_for_grace() {
        // GIVEN two reminders a day apart and two days' grace, first seen on 1 March at 09:00
        let p = ladder(2, Some(Duration::days(1)), Duration::days(2));
        let start = t("2026-03-01T09:00:00Z");
        // WHEN the sweep runs hourly for six days
        let log = simulate(&p, start, TimeDelta::hours(1), 24 * 6, None);
        // THEN reminder 1 goes at once, reminder 2 a day later, and enforcement every run from two days after it
        assert_eq!(when(&log, |d| *d == Decision::Remind { number: 1 }), [start]);
        assert_eq!(when(&log, |d| *d == Decision::Remind { number: 2 }), [t("2026-03-02T09:00:00Z")]);
        let enforced = when(&log, |d| matches!(d, Decision::Enforce { dry_run: false }));
        assert_eq!(enforced.first(), Some(&t("2026-03-04T09:00:00Z")));
        assert_eq!(enforced.len(), 24 * 6 - 72);
        // and in between the sweep is told when to look again
        let between = log.iter().find(|(at, _)| *at == t("2026-03-03T00:00:00Z")).map(|(_, d)| d.clone());
        assert_eq!(between, Some(Decision::Wait { until: t("2026-03-04T09:00:00Z") }));
        let before_second = log.iter().find(|(at, _)| *at == t("2026-03-01T15:00:00Z")).map(|(_, d)| d.clone());
        assert_eq!(before_second, Some(Decision::Wait { until: t("2026-03-02T09:00:00Z") }));
    }

    #[test]
    fn without_reminders_grace_runs_from_first_seen() {
        // GIVEN no reminders and 4h grace
        let p = ladder(0, None, Duration::hours(4));
        let start = t("2026-03-01T00:00:00Z");
        // WHEN the sweep runs every 30 minutes for a day
        let log = simulate(&p, start, TimeDelta::minutes(30), 48, None);
        // THEN nothing is sent, and enforcement starts exactly four hours after first seen
        assert!(when(&log, |d| matches!(d, Decision::Remind { .. })).is_empty());
        assert_eq!(log[0].1, Decision::Wait { until: t("2026-03-01T04:00:00Z") });
        assert_eq!(when(&log, |d| matches!(d, Decision::Enforce { .. })).first(), Some(&t("2026-03-01T04:00:00Z")));
    }

    #[test]
    fn approval_gated_policies_wait_for_an_approver() {
        // GIVEN an approval-gated policy with one reminder and a day's grace
        let mut p = ladder(1, Some(Duration::days(1)), Duration::days(1));
        p.approval = true;
        let start = t("2026-03-01T00:00:00Z");
        // WHEN the sweep runs daily, and someone approves on day 4
        let log = simulate(&p, start, TimeDelta::days(1), 6, Some(t("2026-03-04T00:00:00Z")));
        // THEN after grace it awaits approval until approved, and only then enforces
        let decisions: Vec<Decision> = log.into_iter().map(|(_, d)| d).collect();
        assert_eq!(
            decisions,
            [
                Decision::Remind { number: 1 },
                Decision::AwaitApproval,
                Decision::AwaitApproval,
                Decision::Enforce { dry_run: false },
                Decision::Enforce { dry_run: false },
                Decision::Enforce { dry_run: false },
            ]
        );
    }

    #[test]
    fn a_blank_approver_is_no_approval() {
        // GIVEN an approval-gated policy past grace, with an empty approver recorded
        let mut p = ladder(0, None, Duration::hours(1));
        p.approval = true;
        let mut state = ViolationState::new(t("2026-03-01T00:00:00Z"));
        state.approved_by = Some("  ".into());
        // WHEN decided THEN it still awaits approval
        assert_eq!(decide(&p, &state, t("2026-03-02T00:00:00Z")), Decision::AwaitApproval);
    }

    #[test]
    fn dry_run_policies_enforce_as_dry_run() {
        // GIVEN a dry-run policy without reminders
        let mut p = ladder(0, None, Duration::days(1));
        p.dry_run = true;
        let state = ViolationState::new(t("2026-03-01T00:00:00Z"));
        // WHEN decided before and after grace THEN it waits, then enforces as a dry run
        assert!(matches!(decide(&p, &state, t("2026-03-01T23:59:59Z")), Decision::Wait { .. }));
        assert_eq!(decide(&p, &state, t("2026-03-02T00:00:00Z")), Decision::Enforce { dry_run: true });
    }

    #[test]
    fn grace_counts_from_when_the_last_reminder_was_actually_sent() {
        // GIVEN one reminder, sent late (the sweep was down), and a day's grace
        let p = ladder(1, Some(Duration::days(1)), Duration::days(1));
        let mut state = ViolationState::new(t("2026-03-01T00:00:00Z"));
        state.reminders_sent = 1;
        state.last_reminder_at = Some(t("2026-03-05T00:00:00Z"));
        // WHEN decided THEN enforcement waits for a full day after that reminder
        assert_eq!(decide(&p, &state, t("2026-03-05T12:00:00Z")), Decision::Wait { until: t("2026-03-06T00:00:00Z") });
    }

    #[test]
    fn absurd_durations_mean_never_rather_than_a_panic() {
        // GIVEN a grace longer than the calendar and a huge reminder count
        let p = ladder(0, None, Duration::weeks(u32::MAX));
        let q = ladder(u32::MAX, Some(Duration::weeks(u32::MAX)), Duration::days(1));
        let mut state = ViolationState::new(t("2026-03-01T00:00:00Z"));
        // WHEN decided THEN they wait until the end of time
        assert_eq!(decide(&p, &state, t("2026-03-02T00:00:00Z")), Decision::Wait { until: DateTime::<Utc>::MAX_UTC });
        state.reminders_sent = 5;
        assert_eq!(decide(&q, &state, t("2026-03-02T00:00:00Z")), Decision::Wait { until: DateTime::<Utc>::MAX_UTC });
    }

    #[test]
    fn digests_are_paced_by_the_period() {
        // GIVEN a daily digest period
        let period = Duration::days(1);
        let last = t("2026-03-01T08:00:00Z");
        // WHEN asked with no digest yet, just before a day has passed, and exactly a day later
        // THEN only the first and last are due
        assert!(digest_due(None, last, period));
        assert!(!digest_due(Some(last), t("2026-03-02T07:59:59Z"), period));
        assert!(digest_due(Some(last), t("2026-03-02T08:00:00Z"), period));
    }
}
