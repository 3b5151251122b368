//! Applying a policy's check to one resource, and finding who should hear about it.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Check, Policy, ResourceKind, Settings, Severity, is_email};
use crate::resource::{Facts, IngressRule, Resource};

/// A resource that breaks a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The policy broken.
    pub policy: String,
    /// The resource's kind.
    pub kind: ResourceKind,
    /// The resource's id.
    pub resource_id: String,
    /// The policy's severity.
    pub severity: Severity,
    /// Short and stable (`public-access-block-missing`), for metrics, ledgers and de-duplication.
    pub reason: String,
    /// One sentence for the owner's digest. Holds no secrets: access key ids are shortened to their last four
    /// characters, and the facts never include secret material.
    pub summary: String,
}

/// Whether `r` breaks `policy` at `now`; `None` when it complies or the policy does not apply to it (another
/// kind, facts of another kind, or a state the check ignores, such as a stopped instance for `instance-max-age`).
pub fn evaluate(policy: &Policy, r: &Resource, now: DateTime<Utc>) -> Option<Finding> {
    if r.kind != policy.resource {
        return None;
    }
    let id = &r.id;
    let (reason, summary) = match (&policy.check, &r.facts) {
        (Check::PublicAccessBlock {}, Facts::Bucket { public_access_block, .. }) => match public_access_block {
            None => ("public-access-block-missing", format!("Bucket {id} has no public access block.")),
            Some(b) if !b.is_complete() => {
                let off: Vec<&str> = [
                    (b.block_public_acls, "BlockPublicAcls"),
                    (b.ignore_public_acls, "IgnorePublicAcls"),
                    (b.block_public_policy, "BlockPublicPolicy"),
                    (b.restrict_public_buckets, "RestrictPublicBuckets"),
                ]
                .into_iter()
                .filter(|(on, _)| !on)
                .map(|(_, name)| name)
                .collect();
                let off = off.join(", ");
                ("public-access-block-incomplete", format!("Bucket {id}'s public access block leaves {off} off."))
            }
            Some(_) => return None,
        },
        (Check::DefaultEncryption {}, Facts::Bucket { encryption, .. }) => {
            if encryption.as_deref().is_some_and(|e| !e.trim().is_empty()) {
                return None;
            }
            ("default-encryption-missing", format!("Bucket {id} has no default encryption."))
        }
        (Check::InstanceMaxAge { max_age_days }, Facts::Instance { state, launched_at }) => {
            if state != "running" {
                return None;
            }
            let age = now.signed_duration_since(*launched_at);
            if age <= TimeDelta::days(i64::from(*max_age_days)) {
                return None;
            }
            let days = age.num_days();
            ("instance-too-old", format!("Instance {id} has been running for {days} days (limit {max_age_days})."))
        }
        (Check::InstanceOwnerTag { tag }, Facts::Instance { state, .. }) => {
            // Only instances that run (or are starting) need someone to answer for them now. A stopped instance
            // is flagged again when it starts; flagging it while stopped made every scan reopen a violation that
            // its own enforcement (stopping) had just found already satisfied.
            if state != "running" && state != "pending" {
                return None;
            }
            if r.tags.get(tag).is_some_and(|v| !v.trim().is_empty()) {
                return None;
            }
            ("owner-tag-missing", format!("Instance {id} has no {tag:?} tag."))
        }
        (Check::AccessKeyMaxAge { max_age_days }, Facts::AccessKey { user, status, created_at }) => {
            if !status.eq_ignore_ascii_case("active") {
                return None;
            }
            let age = now.signed_duration_since(*created_at);
            if age <= TimeDelta::days(i64::from(*max_age_days)) {
                return None;
            }
            let (key, days) = (last_four(id), age.num_days());
            (
                "access-key-too-old",
                format!("Access key {key} of user {user} is {days} days old (limit {max_age_days})."),
            )
        }
        (Check::OpenIngress { port, cidrs }, Facts::SecurityGroup { ingress }) => {
            let mut open: Vec<&str> = Vec::new();
            for rule in ingress.iter().filter(|rule| reaches(rule, *port)) {
                for source in rule.ipv4.iter().chain(&rule.ipv6).map(|s| s.trim()) {
                    if cidrs.iter().any(|c| c == source) && !open.contains(&source) {
                        open.push(source);
                    }
                }
            }
            if open.is_empty() {
                return None;
            }
            ("ingress-open", format!("Security group {id} opens port {port} to {}.", open.join(", ")))
        }
        (Check::GrantExpired {}, Facts::Grant { principal, role, expires_at, revoked }) => {
            if *revoked || now < *expires_at {
                return None;
            }
            let at = expires_at.to_rfc3339_opts(SecondsFormat::Secs, true);
            ("grant-expired", format!("Grant {id} of {role} to {principal} expired at {at} but is still in force."))
        }
        _ => return None,
    };
    Some(Finding {
        policy: policy.name.clone(),
        kind: r.kind,
        resource_id: r.id.clone(),
        severity: policy.severity,
        reason: reason.to_owned(),
        summary,
    })
}

/// Whether a rule lets TCP traffic reach `port`. Only TCP and all-protocol (`-1`) rules count, matching what
/// `revoke-open-ssh` can remove; a TCP rule without ports covers all of them.
fn reaches(rule: &IngressRule, port: u16) -> bool {
    let port = i32::from(port);
    let protocol = rule.protocol.trim();
    if protocol == "-1" || protocol.eq_ignore_ascii_case("all") {
        return true;
    }
    (protocol.eq_ignore_ascii_case("tcp") || protocol == "6")
        && rule.from_port.unwrap_or(0) <= port
        && port <= rule.to_port.unwrap_or(65535)
}

/// `…WXYZ`: enough for the owner to recognise a key in the console, without spreading whole key ids by email.
fn last_four(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("…{tail}")
}

/// Who hears about `r`: the first of its `owner`, `Owner` and `contact` tags that holds an email address, else the
/// fallback owner. A tag holding something else (a team name) falls back too, so a digest always has an address.
pub fn owner(r: &Resource, settings: &Settings) -> String {
    ["owner", "Owner", "contact"]
        .iter()
        .filter_map(|k| r.tags.get(*k))
        .map(|v| v.trim())
        .find(|v| is_email(v))
        .map_or_else(|| settings.fallback_owner.clone(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActionKind;
    use crate::resource::PublicAccessBlock;
    use crate::testutil::{policy, resource, settings, t};

    const NOW: &str = "2026-06-01T00:00:00Z";

    fn bucket(pab: Option<PublicAccessBlock>, encryption: Option<&str>) -> Resource {
        let facts = Facts::Bucket { public_access_block: pab, encryption: encryption.map(str::to_owned) };
        resource(ResourceKind::S3Bucket, "acme-data", &[], facts)
    }

    fn all_on() -> PublicAccessBlock {
        PublicAccessBlock {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        }
    }

    fn instance(state: &str, launched: &str, tags: &[(&str, &str)]) -> Resource {
        let facts = Facts::Instance { state: state.into(), launched_at: t(launched) };
        resource(ResourceKind::Ec2Instance, "i-0abc", tags, facts)
    }

    fn key(status: &str, created: &str) -> Resource {
        let facts = Facts::AccessKey { user: "deploy".into(), status: status.into(), created_at: t(created) };
        resource(ResourceKind::IamAccessKey, "AKIAEXAMPLEKEYWXYZ", &[], facts)
    }

    fn group(rules: Vec<IngressRule>) -> Resource {
        resource(ResourceKind::SecurityGroup, "sg-0abc", &[], Facts::SecurityGroup { ingress: rules })
    }

    fn rule(protocol: &str, ports: Option<(i32, i32)>, ipv4: &[&str], ipv6: &[&str]) -> IngressRule {
        IngressRule {
            protocol: protocol.into(),
            from_port: ports.map(|p| p.0),
            to_port: ports.map(|p| p.1),
            ipv4: ipv4.iter().map(|s| (*s).to_owned()).collect(),
            ipv6: ipv6.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn grant(expires: &str, revoked: bool) -> Resource {
        let facts = Facts::Grant {
            principal: "carol@example.com".into(),
            role: "ReadOnly".into(),
            expires_at: t(expires),
            revoked,
        };
        resource(ResourceKind::AccessGrant, "g-42", &[], facts)
    }

    fn reason(p: &Policy, r: &Resource) -> Option<String> {
        evaluate(p, r, t(NOW)).map(|f| f.reason)
    }

    #[test]
    fn public_access_block_counts_only_with_all_four_flags() {
        // GIVEN the public-access-block policy
        let p = policy("pab", ResourceKind::S3Bucket, Check::PublicAccessBlock {}, ActionKind::BlockPublicBucket);
        // WHEN buckets have no block, a block with one flag off, and a full block
        let partial = PublicAccessBlock { restrict_public_buckets: false, ..all_on() };
        let missing = evaluate(&p, &bucket(None, None), t(NOW)).unwrap();
        let incomplete = evaluate(&p, &bucket(Some(partial), None), t(NOW)).unwrap();
        // THEN only the full block complies, and the finding says what is off
        assert_eq!(missing.reason, "public-access-block-missing");
        assert_eq!((missing.policy.as_str(), missing.resource_id.as_str()), ("pab", "acme-data"));
        assert_eq!(missing.severity, Severity::High);
        assert_eq!(incomplete.reason, "public-access-block-incomplete");
        assert!(incomplete.summary.contains("RestrictPublicBuckets"), "{}", incomplete.summary);
        assert!(!incomplete.summary.contains("BlockPublicAcls"), "{}", incomplete.summary);
        assert_eq!(reason(&p, &bucket(Some(all_on()), None)), None);
    }

    #[test]
    fn default_encryption_needs_an_algorithm() {
        // GIVEN the default-encryption policy
        let p = policy("enc", ResourceKind::S3Bucket, Check::DefaultEncryption {}, ActionKind::EnableBucketEncryption);
        // WHEN buckets have none, an empty one, and AES256 THEN only AES256 complies
        assert_eq!(reason(&p, &bucket(None, None)).as_deref(), Some("default-encryption-missing"));
        assert_eq!(reason(&p, &bucket(None, Some(" "))).as_deref(), Some("default-encryption-missing"));
        assert_eq!(reason(&p, &bucket(None, Some("AES256"))), None);
    }

    #[test]
    fn instance_max_age_applies_to_running_instances_past_the_limit() {
        // GIVEN a 30-day limit, evaluated on 2026-06-01
        let check = Check::InstanceMaxAge { max_age_days: 30 };
        let p = policy("stale", ResourceKind::Ec2Instance, check, ActionKind::StopInstance);
        // WHEN instances are 31 days old and running, exactly 30 days old, or 31 days old but stopped
        let old = evaluate(&p, &instance("running", "2026-05-01T00:00:00Z", &[]), t(NOW)).unwrap();
        // THEN only the running one past the limit is a finding
        assert_eq!(old.reason, "instance-too-old");
        assert_eq!(old.summary, "Instance i-0abc has been running for 31 days (limit 30).");
        assert_eq!(reason(&p, &instance("running", "2026-05-02T00:00:00Z", &[])), None);
        assert_eq!(reason(&p, &instance("stopped", "2026-05-01T00:00:00Z", &[])), None);
    }

    #[test]
    fn instance_owner_tag_must_be_present_and_non_empty() {
        // GIVEN a policy asking for a "team" tag
        let check = Check::InstanceOwnerTag { tag: "team".into() };
        let p = policy("owner", ResourceKind::Ec2Instance, check, ActionKind::StopInstance);
        let at = "2026-05-31T00:00:00Z";
        // WHEN running or starting instances lack it or have it empty, one has it, and others lack it but are not
        // running
        // THEN only the running and starting ones without it are findings
        assert_eq!(reason(&p, &instance("running", at, &[("owner", "x")])).as_deref(), Some("owner-tag-missing"));
        assert_eq!(reason(&p, &instance("pending", at, &[])).as_deref(), Some("owner-tag-missing"));
        assert_eq!(reason(&p, &instance("running", at, &[("team", " ")])).as_deref(), Some("owner-tag-missing"));
        assert_eq!(reason(&p, &instance("running", at, &[("team", "perf")])), None);
        for state in ["stopped", "stopping", "terminated", "shutting-down"] {
            assert_eq!(reason(&p, &instance(state, at, &[])), None, "{state}");
        }
    }

    #[test]
    fn access_key_max_age_applies_to_active_keys_and_hides_the_key_id() {
        // GIVEN a 90-day limit
        let check = Check::AccessKeyMaxAge { max_age_days: 90 };
        let p = policy("keys", ResourceKind::IamAccessKey, check, ActionKind::DeactivateAccessKey);
        // WHEN keys are 151 days old and active, 151 days old and inactive, or 10 days old
        let old = evaluate(&p, &key("Active", "2026-01-01T00:00:00Z"), t(NOW)).unwrap();
        // THEN only the old active key is a finding, and its summary shows only the last four characters
        assert_eq!(old.reason, "access-key-too-old");
        assert_eq!(old.summary, "Access key …WXYZ of user deploy is 151 days old (limit 90).");
        assert!(!old.summary.contains("AKIA"));
        assert_eq!(reason(&p, &key("Inactive", "2026-01-01T00:00:00Z")), None);
        assert_eq!(reason(&p, &key("Active", "2026-05-22T00:00:00Z")), None);
    }

    #[test]
    fn open_ingress_finds_port_22_open_to_the_world() {
        // GIVEN the default open-ingress check (port 22, the whole internet)
        let check = Check::OpenIngress { port: 22, cidrs: vec!["0.0.0.0/0".into(), "::/0".into()] };
        let p = policy("ssh", ResourceKind::SecurityGroup, check, ActionKind::RevokeOpenSsh);
        // WHEN a rule's range covers 22 from anywhere (IPv4 or IPv6), or all protocols are open
        let range = group(vec![rule("tcp", Some((20, 25)), &["0.0.0.0/0"], &[])]);
        let v6 = group(vec![rule("tcp", Some((22, 22)), &[], &["::/0"])]);
        let all = group(vec![rule("-1", None, &["0.0.0.0/0"], &[])]);
        // THEN each is a finding naming the sources
        let f = evaluate(&p, &range, t(NOW)).unwrap();
        assert_eq!(
            (f.reason.as_str(), f.summary.as_str()),
            ("ingress-open", "Security group sg-0abc opens port 22 to 0.0.0.0/0.")
        );
        assert_eq!(reason(&p, &v6).as_deref(), Some("ingress-open"));
        assert_eq!(reason(&p, &all).as_deref(), Some("ingress-open"));
    }

    #[test]
    fn open_ingress_ignores_other_ports_sources_and_protocols() {
        // GIVEN the default open-ingress check
        let check = Check::OpenIngress { port: 22, cidrs: vec!["0.0.0.0/0".into(), "::/0".into()] };
        let p = policy("ssh", ResourceKind::SecurityGroup, check, ActionKind::RevokeOpenSsh);
        // WHEN 443 is open to the world, 22 only to an office, and ICMP/UDP rules span 22
        let g = group(vec![
            rule("tcp", Some((443, 443)), &["0.0.0.0/0"], &["::/0"]),
            rule("tcp", Some((22, 22)), &["203.0.113.0/24"], &[]),
            rule("icmp", Some((0, 30)), &["0.0.0.0/0"], &[]),
            rule("udp", Some((1, 1000)), &["0.0.0.0/0"], &[]),
        ]);
        // THEN nothing is found
        assert_eq!(reason(&p, &g), None);
        assert_eq!(reason(&p, &group(vec![])), None);
    }

    #[test]
    fn grant_expired_finds_unrevoked_grants_past_expiry() {
        // GIVEN the grant-expired policy
        let p = policy("grants", ResourceKind::AccessGrant, Check::GrantExpired {}, ActionKind::RevokeExpiredGrant);
        // WHEN grants expired and are unrevoked, expired and revoked, or expire later
        // THEN only the first is a finding
        let f = evaluate(&p, &grant("2026-05-31T09:00:00Z", false), t(NOW)).unwrap();
        assert_eq!(f.reason, "grant-expired");
        assert_eq!(
            f.summary,
            "Grant g-42 of ReadOnly to carol@example.com expired at 2026-05-31T09:00:00Z but is still in force."
        );
        assert_eq!(reason(&p, &grant("2026-05-31T09:00:00Z", true)), None);
        assert_eq!(reason(&p, &grant("2026-06-02T00:00:00Z", false)), None);
    }

    #[test]
    fn a_policy_ignores_resources_of_other_kinds() {
        // GIVEN a bucket policy WHEN shown an instance, or a "bucket" with instance facts THEN nothing is found
        let p = policy("enc", ResourceKind::S3Bucket, Check::DefaultEncryption {}, ActionKind::EnableBucketEncryption);
        let mut odd = instance("running", NOW, &[]);
        assert_eq!(reason(&p, &odd), None);
        odd.kind = ResourceKind::S3Bucket;
        assert_eq!(reason(&p, &odd), None);
    }

    #[test]
    fn the_owner_comes_from_tags_in_order_else_the_fallback() {
        // GIVEN settings with a fallback owner
        let s = settings();
        let with = |tags: &[(&str, &str)]| owner(&instance("running", NOW, tags), &s);
        // WHEN resources carry owner, Owner, contact, a non-address, or nothing
        // THEN the first address wins, in that order, and the fallback covers the rest
        assert_eq!(with(&[("contact", "c@x.io"), ("Owner", "b@x.io"), ("owner", "a@x.io")]), "a@x.io");
        assert_eq!(with(&[("contact", "c@x.io"), ("Owner", "b@x.io")]), "b@x.io");
        assert_eq!(with(&[("contact", " c@x.io ")]), "c@x.io");
        assert_eq!(with(&[("owner", "team-perf"), ("contact", "c@x.io")]), "c@x.io");
        assert_eq!(with(&[("owner", "team-perf")]), "security@example.com");
        assert_eq!(with(&[]), "security@example.com");
    }
}
