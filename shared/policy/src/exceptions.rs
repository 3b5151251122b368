//! The exceptions file: agreed, time-limited departures from a policy.
//!
//! Every exception names who granted it, why, and when it ends, because an exception without an end becomes the
//! policy. An expired exception is not an error in the file (it was valid when written, and the file must keep
//! loading); it simply stops applying, and [`Exceptions::expired`] lists it so that someone tidies the file.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_yaml::Value;

use crate::error::PolicyError;
use crate::load::{Loader, Seg, labelled};
use crate::model::{PolicySet, is_email};
use crate::resource::Resource;

/// Which resources an exception covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The one resource with this id.
    Resource(String),
    /// Every resource carrying all of these tags with exactly these values.
    Tags(BTreeMap<String, String>),
}

/// One exception.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Exception {
    /// The policy it excuses.
    pub policy: String,
    /// What it covers.
    pub scope: Scope,
    /// Why, for the audit trail and digests.
    pub reason: String,
    /// Who agreed to it.
    pub granted_by: String,
    /// The first instant it no longer applies: the day after a date given as `2027-01-31` (so the whole of that
    /// day UTC is covered), or the time itself when given in RFC 3339.
    pub expires_at: DateTime<Utc>,
    /// The line of the exception in its file, for reports about it.
    pub line: Option<usize>,
}

impl Exception {
    /// Whether it has ended at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// Whether it covers `r` (ignoring expiry).
    pub fn covers(&self, r: &Resource) -> bool {
        match &self.scope {
            Scope::Resource(id) => *id == r.id,
            Scope::Tags(tags) => tags.iter().all(|(k, v)| r.tags.get(k) == Some(v)),
        }
    }
}

/// A parsed and validated exceptions file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Exceptions {
    items: Vec<Exception>,
}

impl Exceptions {
    /// Parses an exceptions file against the policies it refers to; `file` names it in errors. A file holding
    /// nothing (only comments) means no exceptions.
    pub fn parse(src: &str, file: &str, policies: &PolicySet) -> Result<Self, Vec<PolicyError>> {
        let (mut ld, value) = Loader::start::<RawExceptionsFile>(src, file)?;
        if value.is_null() {
            return Ok(Self::default());
        }
        let Some(top) = ld.read::<TopOfExceptions>(value, &[]) else { return ld.fail() };
        let mut items = Vec::new();
        for (i, v) in top.exceptions.into_iter().enumerate() {
            let item = vec![Seg::Key("exceptions".to_owned()), Seg::Index(i)];
            let Some(raw) = ld.read::<RawException>(v, &item) else { continue };
            if let Some(e) = raw.validate(&mut ld, &item, policies) {
                items.push(e);
            }
        }
        ld.finish(Self { items })
    }

    /// From already validated exceptions (tests, tools).
    pub fn new(items: Vec<Exception>) -> Self {
        Self { items }
    }

    /// Every exception, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Exception> {
        self.items.iter()
    }

    /// The first exception (in file order) that excuses `r` from `policy_name` at `now`; one past its expiry no
    /// longer does.
    pub fn exception_for(&self, policy_name: &str, r: &Resource, now: DateTime<Utc>) -> Option<&Exception> {
        self.items.iter().find(|e| e.policy == policy_name && !e.is_expired(now) && e.covers(r))
    }

    /// The exceptions that have ended at `now`, to be removed from the file.
    pub fn expired(&self, now: DateTime<Utc>) -> Vec<&Exception> {
        self.items.iter().filter(|e| e.is_expired(now)).collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopOfExceptions {
    exceptions: Vec<Value>,
}

/// The whole file's typed form, read once only for serde_yaml's line of the first type error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawExceptionsFile {
    exceptions: Vec<RawException>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawException {
    policy: String,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    reason: String,
    granted_by: String,
    expires: Expiry,
}

impl RawException {
    fn validate(self, ld: &mut Loader, item: &[Seg], policies: &PolicySet) -> Option<Exception> {
        let before = ld.error_count();
        let at = |rest: &[&str]| labelled(item, &self.policy, rest);
        if policies.get(&self.policy).is_none() {
            let (path, field) = at(&["policy"]);
            ld.problem(&path, field, format!("unknown policy {:?}", self.policy));
        }
        let scope = match (self.resource, self.tags) {
            (Some(_), Some(_)) => {
                let (path, field) = at(&[]);
                ld.problem(&path, field, "give either resource or tags, not both".into());
                None
            }
            (None, None) => {
                let (path, field) = at(&[]);
                ld.problem(&path, field, "give resource (an id) or tags (all must match)".into());
                None
            }
            (Some(id), None) if id.trim().is_empty() => {
                let (path, field) = at(&["resource"]);
                ld.problem(&path, field, "must not be empty".into());
                None
            }
            (None, Some(tags)) if tags.is_empty() => {
                // An empty tag match would cover every resource: never what anyone means.
                let (path, field) = at(&["tags"]);
                ld.problem(&path, field, "must list at least one tag".into());
                None
            }
            (Some(id), None) => Some(Scope::Resource(id.trim().to_owned())),
            (None, Some(tags)) => Some(Scope::Tags(tags)),
        };
        if self.reason.trim().is_empty() {
            let (path, field) = at(&["reason"]);
            ld.problem(&path, field, "must say why".into());
        }
        if !is_email(&self.granted_by) {
            let (path, field) = at(&["granted-by"]);
            ld.problem(&path, field, format!("{:?} is not an email address", self.granted_by));
        }
        let scope = scope?;
        (ld.error_count() == before).then(|| Exception {
            policy: self.policy,
            scope,
            reason: self.reason,
            granted_by: self.granted_by,
            expires_at: self.expires.0,
            line: ld.line_of(item),
        })
    }
}

/// `2027-01-31` (to the end of that day UTC) or an RFC 3339 time.
struct Expiry(DateTime<Utc>);

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Expiry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date (2027-01-31) or an RFC 3339 time (2027-01-31T18:00:00Z)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expiry, E> {
                let v = v.trim();
                if let Ok(day) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
                    let next = day.and_hms_opt(0, 0, 0).and_then(|t| t.checked_add_signed(TimeDelta::days(1)));
                    return next.map(|t| Expiry(t.and_utc())).ok_or_else(|| E::custom(format!("{v:?} is too late")));
                }
                DateTime::parse_from_rfc3339(v).map(|t| Expiry(t.with_timezone(&Utc))).map_err(|_| {
                    E::custom(format!("{v:?} is not a date (2027-01-31) or RFC 3339 time (2027-01-31T18:00:00Z)"))
                })
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionKind, Check, ResourceKind};
    use crate::resource::Facts;
    use crate::testutil::{line, nth_line, policy, resource, settings, t};

    fn policies() -> PolicySet {
        let p = policy(
            "ec2-stale-instance",
            ResourceKind::Ec2Instance,
            Check::InstanceMaxAge { max_age_days: 30 },
            ActionKind::StopInstance,
        );
        PolicySet { settings: settings(), policies: vec![p] }
    }

    const GOOD: &str = "\
exceptions:
  - policy: ec2-stale-instance
    resource: i-0123456789abcdef0
    reason: Load test until January.
    granted-by: alice@example.com
    expires: 2027-01-31
  - policy: ec2-stale-instance
    tags: { env: sandbox, team: perf }
    reason: Sandboxes are rebuilt weekly anyway.
    granted-by: bob@example.com
    expires: 2026-03-01T12:00:00+01:00
";

    fn instance(id: &str, tags: &[(&str, &str)]) -> Resource {
        let facts = Facts::Instance { state: "running".into(), launched_at: t("2025-01-01T00:00:00Z") };
        resource(ResourceKind::Ec2Instance, id, tags, facts)
    }

    fn errors(src: &str) -> Vec<PolicyError> {
        match Exceptions::parse(src, "exceptions.yaml", &policies()) {
            Ok(x) => panic!("expected errors, parsed {x:#?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_good_file_parses_with_end_of_day_and_exact_expiries() {
        // GIVEN one exception by id expiring on a date and one by tags expiring at a time with an offset
        // WHEN parsed
        let x = Exceptions::parse(GOOD, "exceptions.yaml", &policies()).unwrap();
        // THEN the date covers that whole UTC day and the time is converted to UTC
        let [by_id, by_tags] = &x.iter().collect::<Vec<_>>()[..] else { panic!() };
        assert_eq!(by_id.scope, Scope::Resource("i-0123456789abcdef0".into()));
        assert_eq!(by_id.expires_at, t("2027-02-01T00:00:00Z"));
        assert_eq!(by_id.line, Some(2));
        assert_eq!(by_id.granted_by, "alice@example.com");
        assert_eq!(by_tags.expires_at, t("2026-03-01T11:00:00Z"));
        assert!(matches!(&by_tags.scope, Scope::Tags(tags) if tags.len() == 2));
    }

    #[test]
    fn an_empty_file_means_no_exceptions() {
        // GIVEN a file of comments only WHEN parsed THEN there are no exceptions
        let x = Exceptions::parse("# none yet\n", "exceptions.yaml", &policies()).unwrap();
        assert_eq!(x.iter().count(), 0);
    }

    #[test]
    fn an_exception_matches_by_id_until_it_expires() {
        // GIVEN the good file
        let x = Exceptions::parse(GOOD, "exceptions.yaml", &policies()).unwrap();
        let listed = instance("i-0123456789abcdef0", &[]);
        let other = instance("i-0fffffffffffffff0", &[]);
        // WHEN asked on the last second of the expiry day, and at midnight after it
        // THEN the listed instance is excused only before midnight, and only for its policy
        let last_second = t("2027-01-31T23:59:59Z");
        assert!(x.exception_for("ec2-stale-instance", &listed, last_second).is_some());
        assert!(x.exception_for("ec2-stale-instance", &other, last_second).is_none());
        assert!(x.exception_for("ec2-owner-tag", &listed, last_second).is_none());
        assert!(x.exception_for("ec2-stale-instance", &listed, t("2027-02-01T00:00:00Z")).is_none());
    }

    #[test]
    fn an_exception_matches_by_tags_only_when_all_are_equal() {
        // GIVEN the good file, before the tag exception expires
        let x = Exceptions::parse(GOOD, "exceptions.yaml", &policies()).unwrap();
        let now = t("2026-02-01T00:00:00Z");
        // WHEN instances carry all, some, or differently valued tags
        let all = instance("i-1", &[("env", "sandbox"), ("team", "perf"), ("extra", "x")]);
        let some = instance("i-2", &[("env", "sandbox")]);
        let wrong = instance("i-3", &[("env", "Sandbox"), ("team", "perf")]);
        // THEN only the one with all listed tags equal is excused, and it stops being at the expiry time
        assert_eq!(
            x.exception_for("ec2-stale-instance", &all, now).map(|e| e.granted_by.as_str()),
            Some("bob@example.com")
        );
        assert!(x.exception_for("ec2-stale-instance", &some, now).is_none());
        assert!(x.exception_for("ec2-stale-instance", &wrong, now).is_none());
        assert!(x.exception_for("ec2-stale-instance", &all, t("2026-03-01T11:00:00Z")).is_none());
    }

    #[test]
    fn expired_exceptions_load_and_are_listed() {
        // GIVEN the good file, read after the tag exception ended
        let x = Exceptions::parse(GOOD, "exceptions.yaml", &policies()).unwrap();
        // WHEN asked which have expired
        // THEN exactly the tag exception is listed, and neither before its end
        let expired = x.expired(t("2026-06-01T00:00:00Z"));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].granted_by, "bob@example.com");
        assert!(x.expired(t("2026-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn an_unknown_policy_is_refused_at_its_line() {
        // GIVEN an exception to a policy that does not exist
        let src = GOOD.replacen("policy: ec2-stale-instance", "policy: ec2-old", 1);
        // WHEN parsed THEN the error names the policy field, labelled by the policy name
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].field, "exceptions[0] (ec2-old).policy");
        assert_eq!(errs[0].line, Some(line(&src, "ec2-old")));
        assert_eq!(errs[0].message, "unknown policy \"ec2-old\"");
    }

    #[test]
    fn exactly_one_of_resource_and_tags_is_required() {
        // GIVEN one exception with both and one with neither
        let src = GOOD
            .replacen("    reason: Load", "    tags: { env: x }\n    reason: Load", 1)
            .replace("    tags: { env: sandbox, team: perf }\n", "");
        // WHEN parsed THEN each is reported at its item's line
        let errs = errors(&src);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert_eq!(errs[0].field, "exceptions[0] (ec2-stale-instance)");
        assert_eq!(errs[0].line, Some(2));
        assert_eq!(errs[0].message, "give either resource or tags, not both");
        assert_eq!(errs[1].field, "exceptions[1] (ec2-stale-instance)");
        assert_eq!(errs[1].line, Some(nth_line(&src, "- policy:", 1)));
        assert_eq!(errs[1].message, "give resource (an id) or tags (all must match)");
    }

    #[test]
    fn empty_tags_and_bad_fields_are_refused() {
        // GIVEN empty tags, an unreadable expiry, a name where an address belongs and no reason
        let src = GOOD
            .replace("{ env: sandbox, team: perf }", "{}")
            .replace("expires: 2027-01-31", "expires: next year")
            .replace("granted-by: bob@example.com", "granted-by: bob")
            .replace("reason: Sandboxes are rebuilt weekly anyway.", "reason: ''");
        // WHEN parsed
        let errs = errors(&src);
        // THEN each is reported at its own field and line
        assert_eq!(errs.len(), 4, "{errs:#?}");
        let at = |f: &str| errs.iter().find(|e| e.field == f).unwrap_or_else(|| panic!("{f}: {errs:#?}"));
        assert_eq!(at("exceptions[0].expires").line, Some(line(&src, "next year")));
        assert!(at("exceptions[0].expires").message.contains("is not a date"));
        assert_eq!(at("exceptions[1] (ec2-stale-instance).tags").line, Some(line(&src, "tags: {}")));
        assert_eq!(at("exceptions[1] (ec2-stale-instance).granted-by").line, Some(line(&src, "granted-by: bob")));
        assert_eq!(at("exceptions[1] (ec2-stale-instance).reason").line, Some(line(&src, "reason: ''")));
    }
}
