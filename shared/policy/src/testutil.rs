//! Builders shared by the unit tests.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Map;

use crate::duration::Duration;
use crate::model::{Action, ActionKind, Check, Policy, ResourceKind, Settings, Severity};
use crate::resource::{Facts, Resource};

/// An RFC 3339 time.
pub(crate) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The 1-based line of the first line of `src` containing `needle`, so tests say which line they mean.
pub(crate) fn line(src: &str, needle: &str) -> usize {
    src.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or_else(|| panic!("{needle:?} not in source"))
}

/// The 1-based line of the `n`th (0-based) line of `src` containing `needle`.
pub(crate) fn nth_line(src: &str, needle: &str, n: usize) -> usize {
    let mut hits = src.lines().enumerate().filter(|(_, l)| l.contains(needle));
    hits.nth(n).map(|(i, _)| i + 1).unwrap_or_else(|| panic!("{needle:?} not {n} times in source"))
}

/// Settings as the shipped file has them.
pub(crate) fn settings() -> Settings {
    Settings {
        fallback_owner: "security@example.com".into(),
        digest_period: Duration::days(1),
        max_enforcements_per_run: 25,
        max_enforcements_percent: 10,
    }
}

/// A policy with `check` on `kind`, no reminders, no grace.
pub(crate) fn policy(name: &str, kind: ResourceKind, check: Check, action: ActionKind) -> Policy {
    Policy {
        name: name.into(),
        description: "test".into(),
        resource: kind,
        check,
        severity: Severity::High,
        reminders: 0,
        reminder_interval: None,
        grace: Duration::days(0),
        action: Action { kind: action, params: Map::new() },
        approval: false,
        dry_run: false,
    }
}

/// A resource of `kind` with `facts` and `tags`.
pub(crate) fn resource(kind: ResourceKind, id: &str, tags: &[(&str, &str)], facts: Facts) -> Resource {
    Resource {
        kind,
        id: id.into(),
        arn: format!("arn:aws:test:::{id}"),
        tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
        facts,
    }
}
