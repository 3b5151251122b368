//! Palisade's policy-as-code engine.
//!
//! The security team writes what must hold (`policies.yaml`) and the agreed departures from it
//! (`exceptions.yaml`); the scan and sweep functions gather facts from AWS and ask this crate what to do. Keeping
//! every decision here, as pure functions of plain values and an injected clock, means the whole compliance
//! behaviour (which resource breaks which rule, who is told when, when a change is made, how many at once) is tested
//! without AWS and cannot differ between the functions that use it.
//!
//! - [`PolicySet::parse`] and [`Exceptions::parse`] read the two files and report every problem at once, each with
//!   its file, line and field.
//! - [`evaluate`] applies one policy's check to one normalised [`Resource`]; [`owner`] says who hears about it.
//! - [`Exceptions::exception_for`] says whether a finding is excused.
//! - [`decide`] walks a violation up the escalation ladder; [`digest_due`] paces reminder digests.
//! - [`cap`] limits how many enforcements one run may make.
#![deny(missing_docs)]

mod blast;
mod duration;
mod error;
mod evaluate;
mod exceptions;
mod ladder;
mod load;
mod model;
mod resource;

pub use blast::cap;
pub use duration::{Duration, Unit};
pub use error::PolicyError;
pub use evaluate::{Finding, evaluate, owner};
pub use exceptions::{Exception, Exceptions, Scope};
pub use ladder::{Decision, ViolationState, decide, digest_due};
pub use model::{Action, ActionKind, Check, Policy, PolicySet, ResourceKind, Settings, Severity};
pub use resource::{Facts, IngressRule, PublicAccessBlock, Resource};

#[cfg(test)]
mod testutil;

#[cfg(test)]
mod shipped {
    use chrono::{DateTime, Utc};

    use super::*;

    const POLICIES: &str = include_str!("../../../infra/policies/policies.yaml");
    const EXCEPTIONS: &str = include_str!("../../../infra/policies/exceptions.yaml");

    #[test]
    fn the_shipped_files_parse_and_cover_every_check() {
        // GIVEN the security team's default files as shipped in infra/policies
        // WHEN they are parsed
        let set = PolicySet::parse(POLICIES, "policies.yaml").unwrap_or_else(|e| panic!("{e:#?}"));
        let exceptions = Exceptions::parse(EXCEPTIONS, "exceptions.yaml", &set).unwrap_or_else(|e| panic!("{e:#?}"));
        // THEN there is one policy per check, the access-key one is approval-gated, and the example exception
        // is in force in 2026 but has expired by 2028
        let mut checks: Vec<&str> = set.policies.iter().map(|p| p.check.type_name()).collect();
        checks.sort_unstable();
        assert_eq!(
            checks,
            [
                "access-key-max-age",
                "default-encryption",
                "grant-expired",
                "instance-max-age",
                "instance-owner-tag",
                "open-ingress",
                "public-access-block"
            ]
        );
        let key_policy = set.policies.iter().find(|p| p.resource == ResourceKind::IamAccessKey).unwrap();
        assert!(key_policy.approval);
        let e = exceptions.iter().next().unwrap();
        assert!(set.get(&e.policy).is_some());
        let in_2026: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        let in_2028: DateTime<Utc> = "2028-01-01T00:00:00Z".parse().unwrap();
        assert!(exceptions.expired(in_2026).is_empty());
        assert_eq!(exceptions.expired(in_2028).len(), 1);
    }

    #[test]
    fn truncated_or_mangled_files_give_errors_not_panics() {
        // GIVEN prefixes of the shipped files (every third length, to keep the test quick), and the same with each ": " turned into ":"
        let set = PolicySet::parse(POLICIES, "policies.yaml").unwrap();
        for src in [POLICIES, EXCEPTIONS] {
            let mangled = src.replace(": ", ":");
            for text in [src, mangled.as_str()] {
                for end in (0..=text.len()).step_by(3).filter(|&i| text.is_char_boundary(i)) {
                    // WHEN each is parsed THEN it returns, whatever it returns
                    let _ = PolicySet::parse(&text[..end], "policies.yaml");
                    let _ = Exceptions::parse(&text[..end], "exceptions.yaml", &set);
                }
            }
        }
    }
}
