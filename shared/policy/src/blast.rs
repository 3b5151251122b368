//! Blast-radius caps: how many enforcements one run may make.
//!
//! A wrong policy or a bad scan can make everything look non-compliant at once; the caps make sure such a mistake
//! changes a few resources, not the whole account. What is over the cap is deferred, not dropped: the next run
//! picks it up.

use std::collections::{HashMap, HashSet};

use crate::model::{ResourceKind, Settings};

/// Splits `due` enforcements into those allowed this run and those deferred, in input order.
///
/// At most `max-enforcements-per-run` in all, and for each kind at most `max-enforcements-percent` of the
/// resources of that kind scanned, rounded down but at least 1 when any were scanned and the percentage is
/// above 0. A kind with no scanned count gets none: without it the percentage cannot be honoured.
///
/// The percentage counts resources, not enforcements (`identify` gives each item's kind and resource id): two
/// policies on one instance (too old, and no owner tag) touch one instance, so at 100 % every violating
/// resource can be enforced in one run.
pub fn cap<T>(
    due: Vec<T>,
    identify: impl Fn(&T) -> (ResourceKind, String),
    scanned_per_kind: &HashMap<ResourceKind, usize>,
    settings: &Settings,
) -> (Vec<T>, Vec<T>) {
    let percent = settings.max_enforcements_percent.min(100) as usize;
    let limit_for = |kind: ResourceKind| {
        let scanned = scanned_per_kind.get(&kind).copied().unwrap_or(0);
        if scanned == 0 || percent == 0 { 0 } else { (scanned.saturating_mul(percent) / 100).max(1) }
    };
    let mut touched: HashMap<ResourceKind, HashSet<String>> = HashMap::new();
    let (mut allowed, mut deferred) = (Vec::new(), Vec::new());
    for item in due {
        let (kind, resource) = identify(&item);
        let set = touched.entry(kind).or_default();
        let fits = set.contains(&resource) || set.len() < limit_for(kind);
        if allowed.len() < settings.max_enforcements_per_run && fits {
            set.insert(resource);
            allowed.push(item);
        } else {
            deferred.push(item);
        }
    }
    (allowed, deferred)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::settings;

    use ResourceKind::{Ec2Instance as Ec2, S3Bucket as S3, SecurityGroup as Sg};

    fn run(
        due: &[(ResourceKind, u32)],
        scanned: &[(ResourceKind, usize)],
        per_run: usize,
        percent: u32,
    ) -> (Vec<u32>, Vec<u32>) {
        let mut s = settings();
        s.max_enforcements_per_run = per_run;
        s.max_enforcements_percent = percent;
        let scanned: HashMap<ResourceKind, usize> = scanned.iter().copied().collect();
        let (allowed, deferred) = cap(due.to_vec(), |d| (d.0, d.1.to_string()), &scanned, &s);
        (allowed.into_iter().map(|d| d.1).collect(), deferred.into_iter().map(|d| d.1).collect())
    }

    #[test]
    fn the_count_cap_keeps_the_first_in_input_order() {
        // GIVEN five due enforcements over two kinds with plenty scanned, and at most three per run
        let due = [(Ec2, 1), (S3, 2), (Ec2, 3), (S3, 4), (Ec2, 5)];
        // WHEN capped
        let (allowed, deferred) = run(&due, &[(Ec2, 1000), (S3, 1000)], 3, 10);
        // THEN the first three go now and the rest wait, in input order
        assert_eq!((allowed, deferred), (vec![1, 2, 3], vec![4, 5]));
    }

    #[test]
    fn the_percent_cap_applies_per_kind_and_rounds_down() {
        // GIVEN 10% of 25 instances (2.5, so 2) and of 40 buckets (4)
        let due = [(Ec2, 1), (Ec2, 2), (Ec2, 3), (S3, 4), (S3, 5), (S3, 6), (S3, 7), (S3, 8), (Ec2, 9)];
        // WHEN capped with a generous count cap
        let (allowed, deferred) = run(&due, &[(Ec2, 25), (S3, 40)], 100, 10);
        // THEN two instances and four buckets go now
        assert_eq!((allowed, deferred), (vec![1, 2, 4, 5, 6, 7], vec![3, 8, 9]));
    }

    #[test]
    fn the_percent_cap_counts_resources_not_enforcements() {
        // GIVEN two policies on each of 10 instances (20 enforcements), 10 instances scanned, 100 %
        let due: Vec<(ResourceKind, String)> = (0..20).map(|i| (Ec2, format!("i-{}", i % 10))).collect();
        let mut s = settings();
        s.max_enforcements_per_run = 100;
        s.max_enforcements_percent = 100;
        let scanned = HashMap::from([(Ec2, 10)]);
        // WHEN capped
        let (allowed, deferred) = cap(due.clone(), |d| d.clone(), &scanned, &s);
        // THEN every enforcement goes now: they touch 10 of 10 instances
        assert_eq!((allowed.len(), deferred.len()), (20, 0));
        // and at 50 %, both enforcements of 5 instances go, the other 5 instances wait
        s.max_enforcements_percent = 50;
        let (allowed, deferred) = cap(due, |d| d.clone(), &scanned, &s);
        assert_eq!((allowed.len(), deferred.len()), (10, 10));
        let ids: HashSet<&str> = allowed.iter().map(|d| d.1.as_str()).collect();
        assert_eq!(ids.len(), 5);
    }

    #[test]
    fn a_small_fleet_still_allows_one() {
        // GIVEN 10% of 3 security groups (0.3) WHEN capped THEN one goes now
        let (allowed, deferred) = run(&[(Sg, 1), (Sg, 2)], &[(Sg, 3)], 25, 10);
        assert_eq!((allowed, deferred), (vec![1], vec![2]));
    }

    #[test]
    fn nothing_goes_without_a_scanned_count_or_with_zero_caps() {
        // GIVEN due enforcements of a kind that was not scanned, a zero percent, and a zero count
        // WHEN capped THEN all are deferred
        assert_eq!(run(&[(S3, 1)], &[(Ec2, 100)], 25, 10), (vec![], vec![1]));
        assert_eq!(run(&[(S3, 1)], &[(S3, 0)], 25, 10), (vec![], vec![1]));
        assert_eq!(run(&[(S3, 1)], &[(S3, 100)], 25, 0), (vec![], vec![1]));
        assert_eq!(run(&[(S3, 1)], &[(S3, 100)], 0, 10), (vec![], vec![1]));
    }

    #[test]
    fn both_caps_apply_together() {
        // GIVEN 50% of 10 instances (5) and of 10 buckets (5), but at most 6 per run
        let due: Vec<(ResourceKind, u32)> = (1..=8).map(|i| (if i % 2 == 0 { S3 } else { Ec2 }, i)).collect();
        let due = [due.clone(), (9..=12).map(|i| (Ec2, i)).collect()].concat();
        // WHEN capped
        let (allowed, deferred) = run(&due, &[(Ec2, 10), (S3, 10)], 6, 50);
        // THEN the count cap stops at six even though each kind had room
        assert_eq!(allowed, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(deferred, vec![7, 8, 9, 10, 11, 12]);
    }
}
