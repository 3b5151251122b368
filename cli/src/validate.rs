//! `palisade validate policies`: the same parser the scan and sweep use, run on local files before upload.

use chrono::{DateTime, Utc};
use palisade_policy::{Exceptions, PolicyError, PolicySet};

use crate::table::Table;

/// What a validation found: the text for stdout, every problem (for stderr), and whether it passed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The summary, when the files are valid.
    pub summary: String,
    /// Every problem, one `file:line: field: message` per entry.
    pub errors: Vec<String>,
}

impl Report {
    /// The process exit code: 0 when valid, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.errors.is_empty())
    }
}

/// Validates a policies file and, when given, an exceptions file against it. `name`s are how files are named
/// in messages (the paths as the user typed them).
pub fn validate(policies: (&str, &str), exceptions: Option<(&str, &str)>, now: DateTime<Utc>) -> Report {
    let (src, name) = policies;
    let set = match PolicySet::parse(src, name) {
        Ok(set) => set,
        Err(errors) => {
            let mut errors = lines(errors);
            if let Some((_, ex_name)) = exceptions {
                errors.push(format!("{ex_name}: not checked, because its policies file has errors"));
            }
            return Report { summary: String::new(), errors };
        }
    };
    let exceptions = match exceptions {
        Some((ex_src, ex_name)) => match Exceptions::parse(ex_src, ex_name, &set) {
            Ok(e) => Some((ex_name, e)),
            Err(errors) => return Report { summary: String::new(), errors: lines(errors) },
        },
        None => None,
    };
    let mut t = Table::new(["POLICY", "RESOURCE", "CHECK", "SEVERITY", "GRACE", "ACTION", "APPROVAL", "DRY-RUN"]);
    for p in &set.policies {
        t.row([
            p.name.clone(),
            p.resource.as_str().to_owned(),
            p.check.type_name().to_owned(),
            p.severity.as_str().to_owned(),
            p.grace.to_string(),
            p.action.kind.as_str().to_owned(),
            yes(p.approval),
            yes(p.dry_run),
        ]);
    }
    let mut summary = format!("{name}: {} policies, valid\n{}", set.policies.len(), t.render());
    if let Some((ex_name, e)) = exceptions {
        let total = e.iter().count();
        let expired = e.expired(now);
        summary.push_str(&format!("{ex_name}: {total} exceptions, valid ({} expired)\n", expired.len()));
        for x in expired {
            let line = x.line.map(|l| format!(":{l}")).unwrap_or_default();
            summary.push_str(&format!("  {ex_name}{line}: expired {} ({}); remove it\n", x.expires_at, x.policy));
        }
    }
    Report { summary, errors: Vec::new() }
}

fn lines(errors: Vec<PolicyError>) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICIES: &str = include_str!("../../infra/policies/policies.yaml");
    const EXCEPTIONS: &str = include_str!("../../infra/policies/exceptions.yaml");

    fn now() -> DateTime<Utc> {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_shipped_files_pass_with_a_summary() {
        // GIVEN the shipped files WHEN validated THEN exit 0 and every policy is listed
        let r = validate((POLICIES, "policies.yaml"), Some((EXCEPTIONS, "exceptions.yaml")), now());
        assert_eq!(r.exit_code(), 0, "{:?}", r.errors);
        assert!(r.summary.contains("policies.yaml: 7 policies, valid"), "{}", r.summary);
        assert!(r.summary.contains("ec2-stale-instance"));
        assert!(r.summary.contains("exceptions.yaml: 1 exceptions, valid (0 expired)"), "{}", r.summary);
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_the_run_fails() {
        // GIVEN the shipped policies with a bad grace (line of `grace: 1d` in the first policy) and a bad severity
        let grace_line = POLICIES.lines().position(|l| l.trim() == "grace: 1d").unwrap() + 1;
        let bad = POLICIES.replacen("grace: 1d", "grace: 3x", 1).replacen("severity: medium", "severity: dire", 1);
        // WHEN validated
        let r = validate((&bad, "bad.yaml"), Some((EXCEPTIONS, "exceptions.yaml")), now());
        // THEN exit 1, both problems are listed, one at the grace line, and the exceptions were not checked
        assert_eq!(r.exit_code(), 1);
        assert!(r.errors.len() >= 3, "{:?}", r.errors);
        let grace = r.errors.iter().find(|e| e.contains("grace")).unwrap();
        assert!(grace.starts_with(&format!("bad.yaml:{grace_line}: ")), "{grace}");
        assert!(r.errors.iter().any(|e| e.contains("dire")), "{:?}", r.errors);
        assert!(r.errors.last().unwrap().contains("exceptions.yaml: not checked"));
        assert!(r.summary.is_empty());
    }

    #[test]
    fn an_exception_for_an_unknown_policy_fails() {
        // GIVEN an exception naming a policy that does not exist
        let bad = EXCEPTIONS.replace("policy: ec2-stale-instance", "policy: no-such-policy");
        // WHEN validated THEN exit 1 with the exceptions file's line
        let r = validate((POLICIES, "policies.yaml"), Some((&bad, "exceptions.yaml")), now());
        assert_eq!(r.exit_code(), 1);
        assert!(
            r.errors.iter().any(|e| e.starts_with("exceptions.yaml:") && e.contains("no-such-policy")),
            "{:?}",
            r.errors
        );
    }

    #[test]
    fn expired_exceptions_pass_but_are_listed() {
        let later = "2028-01-01T00:00:00Z".parse().unwrap();
        let r = validate((POLICIES, "policies.yaml"), Some((EXCEPTIONS, "exceptions.yaml")), later);
        assert_eq!(r.exit_code(), 0);
        assert!(r.summary.contains("(1 expired)"), "{}", r.summary);
    }
}
