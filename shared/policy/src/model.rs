//! The policies file: what it says, and the rules a file must follow before anything acts on it.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use serde_yaml::Value;

use crate::duration::Duration;
use crate::error::PolicyError;
use crate::load::{Loader, Seg, labelled};

/// The kinds of resource Palisade checks. The scan normalises each AWS resource into one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    /// An S3 bucket; id is the bucket name.
    S3Bucket,
    /// An EC2 instance; id is the instance id.
    Ec2Instance,
    /// An IAM user's access key; id is the access key id.
    IamAccessKey,
    /// An EC2 security group; id is the group id.
    SecurityGroup,
    /// A time-limited access grant made through Palisade; id is the grant id.
    AccessGrant,
}

impl ResourceKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ResourceKind; 5] = [
        ResourceKind::S3Bucket,
        ResourceKind::Ec2Instance,
        ResourceKind::IamAccessKey,
        ResourceKind::SecurityGroup,
        ResourceKind::AccessGrant,
    ];

    /// The name policies use (`s3-bucket`), which is also `ResourceRef::kind` in `palisade-shared`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::S3Bucket => "s3-bucket",
            ResourceKind::Ec2Instance => "ec2-instance",
            ResourceKind::IamAccessKey => "iam-access-key",
            ResourceKind::SecurityGroup => "security-group",
            ResourceKind::AccessGrant => "access-grant",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("{s:?} is not a resource kind"))
    }
}

/// How bad a violation is; ordered, so digests can sort by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Hygiene.
    Low,
    /// Should be fixed soon.
    Medium,
    /// Exposes data or access.
    High,
    /// Exposes data or access now, widely.
    Critical,
}

impl Severity {
    /// The name policies use.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

fn default_owner_tag() -> String {
    "owner".to_owned()
}

fn ssh() -> u16 {
    22
}

fn world() -> Vec<String> {
    vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()]
}

/// What a policy checks. Each check reads the facts of one resource kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Check {
    /// The bucket has a public access block with all four flags on (s3-bucket).
    PublicAccessBlock {},
    /// The bucket has a default encryption configuration (s3-bucket).
    DefaultEncryption {},
    /// A running instance is no older than this (ec2-instance).
    #[serde(rename_all = "kebab-case")]
    InstanceMaxAge {
        /// Days since launch that are still fine.
        max_age_days: u32,
    },
    /// The instance carries a non-empty tag naming its owner (ec2-instance).
    InstanceOwnerTag {
        /// The tag key; `owner` unless given.
        #[serde(default = "default_owner_tag")]
        tag: String,
    },
    /// An active access key is no older than this (iam-access-key).
    #[serde(rename_all = "kebab-case")]
    AccessKeyMaxAge {
        /// Days since creation that are still fine.
        max_age_days: u32,
    },
    /// No ingress rule opens this TCP port to these sources (security-group).
    OpenIngress {
        /// The port; 22 (SSH) unless given.
        #[serde(default = "ssh")]
        port: u16,
        /// Sources that count as open, compared as written; the whole internet unless given.
        #[serde(default = "world")]
        cidrs: Vec<String>,
    },
    /// A grant past its expiry is no longer in force (access-grant).
    GrantExpired {},
}

impl Check {
    /// The `type` the file uses.
    pub fn type_name(&self) -> &'static str {
        match self {
            Check::PublicAccessBlock {} => "public-access-block",
            Check::DefaultEncryption {} => "default-encryption",
            Check::InstanceMaxAge { .. } => "instance-max-age",
            Check::InstanceOwnerTag { .. } => "instance-owner-tag",
            Check::AccessKeyMaxAge { .. } => "access-key-max-age",
            Check::OpenIngress { .. } => "open-ingress",
            Check::GrantExpired {} => "grant-expired",
        }
    }

    /// The resource kind whose facts the check reads.
    pub fn applies_to(&self) -> ResourceKind {
        match self {
            Check::PublicAccessBlock {} | Check::DefaultEncryption {} => ResourceKind::S3Bucket,
            Check::InstanceMaxAge { .. } | Check::InstanceOwnerTag { .. } => ResourceKind::Ec2Instance,
            Check::AccessKeyMaxAge { .. } => ResourceKind::IamAccessKey,
            Check::OpenIngress { .. } => ResourceKind::SecurityGroup,
            Check::GrantExpired {} => ResourceKind::AccessGrant,
        }
    }
}

/// The enforcement actions Palisade has; each is one `enforce-<name>` function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Stop an instance (ec2-instance).
    StopInstance,
    /// Turn on the bucket's public access block (s3-bucket).
    BlockPublicBucket,
    /// Turn on default encryption (s3-bucket).
    EnableBucketEncryption,
    /// Deactivate an access key (iam-access-key).
    DeactivateAccessKey,
    /// Remove world-open ingress to a port (security-group).
    RevokeOpenSsh,
    /// Remove the access an expired grant gave (access-grant).
    RevokeExpiredGrant,
}

impl ActionKind {
    /// Every action, in a fixed order.
    pub const ALL: [ActionKind; 6] = [
        ActionKind::StopInstance,
        ActionKind::BlockPublicBucket,
        ActionKind::EnableBucketEncryption,
        ActionKind::DeactivateAccessKey,
        ActionKind::RevokeOpenSsh,
        ActionKind::RevokeExpiredGrant,
    ];

    /// The action's `NAME`: the YAML `type`, and the function `enforce-<name>` that carries it out.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::StopInstance => "stop-instance",
            ActionKind::BlockPublicBucket => "block-public-bucket",
            ActionKind::EnableBucketEncryption => "enable-bucket-encryption",
            ActionKind::DeactivateAccessKey => "deactivate-access-key",
            ActionKind::RevokeOpenSsh => "revoke-open-ssh",
            ActionKind::RevokeExpiredGrant => "revoke-expired-grant",
        }
    }

    /// The resource kind the action changes.
    pub fn applies_to(self) -> ResourceKind {
        match self {
            ActionKind::StopInstance => ResourceKind::Ec2Instance,
            ActionKind::BlockPublicBucket | ActionKind::EnableBucketEncryption => ResourceKind::S3Bucket,
            ActionKind::DeactivateAccessKey => ResourceKind::IamAccessKey,
            ActionKind::RevokeOpenSsh => ResourceKind::SecurityGroup,
            ActionKind::RevokeExpiredGrant => ResourceKind::AccessGrant,
        }
    }

    /// The action called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do once the ladder reaches enforcement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Action {
    /// Which action.
    #[serde(rename = "type")]
    pub kind: ActionKind,
    /// Passed as they are to the action (`EnforceRequest::params`); the action's own `Params` type checks them.
    pub params: Map<String, Json>,
}

/// One rule: a check on one kind of resource, and the escalation from finding to enforcement.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Policy {
    /// Unique, kebab-case; the name ledgers, digests and exceptions use.
    pub name: String,
    /// Why the rule exists, for digests.
    pub description: String,
    /// The kind of resource checked.
    pub resource: ResourceKind,
    /// The check.
    pub check: Check,
    /// How bad a violation is.
    pub severity: Severity,
    /// Reminder digests before enforcement (0: go straight to grace).
    pub reminders: u32,
    /// Time between reminders; always present when `reminders > 0` in a parsed file.
    pub reminder_interval: Option<Duration>,
    /// Time after the last reminder (or after first seen, without reminders) before enforcement.
    pub grace: Duration,
    /// What enforcement does.
    pub action: Action,
    /// Enforcement waits for a named approver.
    pub approval: bool,
    /// Enforcement only records what it would do.
    pub dry_run: bool,
}

/// Limits and defaults that apply to every policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Who hears about resources without an owner tag.
    pub fallback_owner: String,
    /// Least time between two digests to the same owner.
    pub digest_period: Duration,
    /// Most enforcements one run may make, over all kinds.
    pub max_enforcements_per_run: usize,
    /// Most enforcements one run may make on one kind, as a percentage of that kind's scanned resources.
    pub max_enforcements_percent: u32,
}

/// A parsed and validated policies file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicySet {
    /// The `settings:` block.
    pub settings: Settings,
    /// The policies, in file order.
    pub policies: Vec<Policy>,
}

impl PolicySet {
    /// Parses a policies file; `file` names it in errors. Returns every problem found, not just the first.
    pub fn parse(src: &str, file: &str) -> Result<Self, Vec<PolicyError>> {
        let (mut ld, value) = Loader::start::<RawPolicyFile>(src, file)?;
        let Some(top) = ld.read::<TopOfPolicies>(value, &[]) else { return ld.fail() };
        let settings = match top.settings {
            Some(v) => ld.read::<RawSettings>(v, &[key("settings")]).and_then(|raw| raw.validate(&mut ld)),
            None => {
                ld.problem(&[], "settings".into(), "missing: a settings block with fallback-owner is required".into());
                None
            }
        };
        let mut policies = Vec::new();
        let mut first_of: HashMap<String, Vec<Seg>> = HashMap::new();
        for (i, v) in top.policies.into_iter().enumerate() {
            let item = vec![key("policies"), Seg::Index(i)];
            let Some(raw) = ld.read::<RawPolicy>(v, &item) else { continue };
            if let Some(p) = raw.validate(&mut ld, &item, &mut first_of) {
                policies.push(p);
            }
        }
        let Some(settings) = settings else { return ld.fail() };
        ld.finish(PolicySet { settings, policies })
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The policies that check resources of `kind`, in file order.
    pub fn for_kind(&self, kind: ResourceKind) -> impl Iterator<Item = &Policy> {
        self.policies.iter().filter(move |p| p.resource == kind)
    }
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// Lowercase words joined by single hyphens: names end up in topic names, ledger keys and URLs.
pub(crate) fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// Enough to catch a name or a typo where an address belongs; delivery is the mailer's business.
pub(crate) fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// The top level, read first so that each policy can be read (and fail) on its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopOfPolicies {
    #[serde(default)]
    settings: Option<Value>,
    policies: Vec<Value>,
}

/// The whole file's typed form, read once only for serde_yaml's line of the first type error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawPolicyFile {
    #[serde(default)]
    settings: Option<RawSettings>,
    policies: Vec<RawPolicy>,
}

fn one_day() -> Duration {
    Duration::days(1)
}

fn twenty_five() -> usize {
    25
}

fn ten() -> u32 {
    10
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSettings {
    fallback_owner: String,
    #[serde(default = "one_day")]
    digest_period: Duration,
    #[serde(default = "twenty_five")]
    max_enforcements_per_run: usize,
    #[serde(default = "ten")]
    max_enforcements_percent: u32,
}

impl RawSettings {
    fn validate(self, ld: &mut Loader) -> Option<Settings> {
        let mut ok = true;
        if !is_email(&self.fallback_owner) {
            let path = [key("settings"), key("fallback-owner")];
            ld.problem(
                &path,
                "settings.fallback-owner".into(),
                format!("{:?} is not an email address", self.fallback_owner),
            );
            ok = false;
        }
        if self.max_enforcements_percent > 100 {
            let path = [key("settings"), key("max-enforcements-percent")];
            let msg = format!("{} is not a percentage (0 to 100)", self.max_enforcements_percent);
            ld.problem(&path, "settings.max-enforcements-percent".into(), msg);
            ok = false;
        }
        ok.then_some(Settings {
            fallback_owner: self.fallback_owner,
            digest_period: self.digest_period,
            max_enforcements_per_run: self.max_enforcements_per_run,
            max_enforcements_percent: self.max_enforcements_percent,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    /// Kept as text so an unknown action is a problem with a line, not a serde error listing every variant.
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    params: Option<Map<String, Json>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPolicy {
    name: String,
    description: String,
    resource: ResourceKind,
    check: Check,
    severity: Severity,
    #[serde(default)]
    reminders: u32,
    #[serde(default)]
    reminder_interval: Option<Duration>,
    grace: Duration,
    action: RawAction,
    #[serde(default)]
    approval: bool,
    #[serde(default)]
    dry_run: bool,
}

impl RawPolicy {
    fn validate(self, ld: &mut Loader, item: &[Seg], first_of: &mut HashMap<String, Vec<Seg>>) -> Option<Policy> {
        let errors_before = ld.error_count();
        let at = |rest: &[&str]| labelled(item, &self.name, rest);

        if !is_kebab(&self.name) {
            let (path, field) = at(&["name"]);
            ld.problem(&path, field, format!("{:?} is not kebab-case (lowercase words joined by -)", self.name));
        }
        match first_of.get(&self.name) {
            Some(first) => {
                let (path, field) = at(&["name"]);
                let first_at = ld.line_of(first).map(|l| format!(" (first at line {l})")).unwrap_or_default();
                ld.problem(&path, field, format!("duplicate policy name {:?}{first_at}", self.name));
            }
            None => {
                first_of.insert(self.name.clone(), item.to_vec());
            }
        }
        if self.check.applies_to() != self.resource {
            let (path, field) = at(&["check", "type"]);
            let msg = format!(
                "check {:?} applies to {}, not {}",
                self.check.type_name(),
                self.check.applies_to(),
                self.resource
            );
            ld.problem(&path, field, msg);
        }
        match &self.check {
            Check::InstanceMaxAge { max_age_days: 0 } | Check::AccessKeyMaxAge { max_age_days: 0 } => {
                let (path, field) = at(&["check", "max-age-days"]);
                ld.problem(&path, field, "must be at least 1".into());
            }
            Check::InstanceOwnerTag { tag } if tag.trim().is_empty() => {
                let (path, field) = at(&["check", "tag"]);
                ld.problem(&path, field, "must name a tag".into());
            }
            Check::OpenIngress { cidrs, .. } if cidrs.is_empty() => {
                let (path, field) = at(&["check", "cidrs"]);
                ld.problem(&path, field, "must list at least one source".into());
            }
            _ => {}
        }
        let kind = ActionKind::from_name(&self.action.kind);
        match kind {
            None => {
                let (path, field) = at(&["action", "type"]);
                let known: Vec<&str> = ActionKind::ALL.iter().map(|a| a.as_str()).collect();
                let msg = format!("unknown action {:?} (known: {})", self.action.kind, known.join(", "));
                ld.problem(&path, field, msg);
            }
            Some(a) if a.applies_to() != self.resource => {
                let (path, field) = at(&["action", "type"]);
                ld.problem(
                    &path,
                    field,
                    format!("action {:?} applies to {}, not {}", a.as_str(), a.applies_to(), self.resource),
                );
            }
            Some(_) => {}
        }
        if self.reminders > 0 && self.reminder_interval.is_none() {
            let (path, field) = at(&["reminder-interval"]);
            ld.problem(&path, field, format!("required when reminders is {}", self.reminders));
        }
        let kind = kind?;
        (ld.error_count() == errors_before).then(|| Policy {
            name: self.name,
            description: self.description,
            resource: self.resource,
            check: self.check,
            severity: self.severity,
            reminders: self.reminders,
            reminder_interval: self.reminder_interval,
            grace: self.grace,
            action: Action { kind, params: self.action.params.unwrap_or_default() },
            approval: self.approval,
            dry_run: self.dry_run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{line, nth_line};

    const GOOD: &str = "\
settings:
  fallback-owner: security@example.com
policies:
  - name: s3-public-access-block          # unique, kebab-case
    description: Buckets must block public access.
    resource: s3-bucket
    check: { type: public-access-block }
    severity: high
    reminders: 2
    reminder-interval: 1d
    grace: 2d
    action: { type: block-public-bucket, params: {} }
    approval: false
    dry-run: false
  - name: ec2-stale-instance
    description: Old instances are forgotten instances.
    resource: ec2-instance
    check:
      type: instance-max-age
      max-age-days: 30
    severity: medium
    grace: 3d
    action:
      type: stop-instance
      params: { hibernate: true }
    approval: true
    dry-run: true
  - name: sg-open-ssh
    description: No SSH from the internet.
    resource: security-group
    check: { type: open-ingress }
    severity: critical
    grace: 4h
    action: { type: revoke-open-ssh }
";

    fn errors(src: &str) -> Vec<PolicyError> {
        match PolicySet::parse(src, "policies.yaml") {
            Ok(set) => panic!("expected errors, parsed {set:#?}"),
            Err(e) => e,
        }
    }

    /// The one error whose field is `field`.
    fn find<'a>(errs: &'a [PolicyError], field: &str) -> &'a PolicyError {
        errs.iter().find(|e| e.field == field).unwrap_or_else(|| panic!("no error at {field}: {errs:#?}"))
    }

    /// A file with the good settings and one policy built from `body` (the lines after `- name: x`).
    fn one(body: &str) -> String {
        format!("settings:\n  fallback-owner: security@example.com\npolicies:\n  - name: x\n{body}")
    }

    const BODY: &str = "    description: d
    resource: s3-bucket
    check: { type: public-access-block }
    severity: high
    grace: 1d
    action: { type: block-public-bucket }
";

    #[test]
    fn a_good_file_parses_with_defaults_filled_in() {
        // GIVEN a valid file using flow and block style, explicit values and defaults
        // WHEN parsed
        let set = PolicySet::parse(GOOD, "policies.yaml").unwrap();
        // THEN settings take their defaults, and each policy keeps what it says
        assert_eq!(set.settings.fallback_owner, "security@example.com");
        assert_eq!(set.settings.digest_period, Duration::days(1));
        assert_eq!(set.settings.max_enforcements_per_run, 25);
        assert_eq!(set.settings.max_enforcements_percent, 10);
        let [pab, stale, ssh] = &set.policies[..] else { panic!("{:#?}", set.policies) };
        assert_eq!(pab.name, "s3-public-access-block");
        assert_eq!(pab.resource, ResourceKind::S3Bucket);
        assert_eq!(pab.check, Check::PublicAccessBlock {});
        assert_eq!(pab.severity, Severity::High);
        assert_eq!((pab.reminders, pab.reminder_interval, pab.grace), (2, Some(Duration::days(1)), Duration::days(2)));
        assert_eq!(pab.action.kind, ActionKind::BlockPublicBucket);
        assert!(!pab.approval && !pab.dry_run);
        assert_eq!(stale.check, Check::InstanceMaxAge { max_age_days: 30 });
        assert_eq!((stale.reminders, stale.reminder_interval), (0, None));
        assert_eq!(stale.action.params.get("hibernate"), Some(&serde_json::Value::Bool(true)));
        assert!(stale.approval && stale.dry_run);
        assert_eq!(ssh.check, Check::OpenIngress { port: 22, cidrs: vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()] });
        assert_eq!(ssh.grace, Duration::hours(4));
        assert_eq!(set.get("sg-open-ssh"), Some(ssh));
        assert_eq!(set.for_kind(ResourceKind::Ec2Instance).count(), 1);
    }

    #[test]
    fn settings_given_explicitly_are_kept() {
        // GIVEN settings with every key WHEN parsed THEN each value is kept
        let src = "settings:\n  fallback-owner: a@b.co\n  digest-period: 12h\n  max-enforcements-per-run: 3\n  \
                   max-enforcements-percent: 50\npolicies: []\n";
        let s = PolicySet::parse(src, "p.yaml").unwrap().settings;
        assert_eq!(
            (s.digest_period, s.max_enforcements_per_run, s.max_enforcements_percent),
            (Duration::hours(12), 3, 50)
        );
    }

    #[test]
    fn a_yaml_syntax_error_has_its_line() {
        // GIVEN a file whose third line is not valid YAML
        let src = "settings:\n  fallback-owner: a@b.co\npolicies: [\n  - oops\n";
        // WHEN parsed THEN one error says so with serde_yaml's line
        let errs = errors(src);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].message.starts_with("not valid YAML"), "{}", errs[0]);
        assert!(errs[0].line.is_some_and(|l| l >= 3), "{}", errs[0]);
    }

    #[test]
    fn a_bad_duration_names_field_and_line() {
        // GIVEN a policy whose grace is "3x"
        let src = one(&BODY.replace("grace: 1d", "grace: 3x"));
        // WHEN parsed
        let errs = errors(&src);
        // THEN the error points at the grace line and says what to write
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(
            errs[0].to_string(),
            format!(
                "policies.yaml:{}: policies[0].grace: \"3x\" is not a duration (use 30m, 12h, 3d or 2w)",
                line(&src, "grace:")
            )
        );
    }

    #[test]
    fn type_errors_in_every_item_are_all_reported() {
        // GIVEN three policies: a misspelt key, a missing key and an unknown resource kind
        let src = format!(
            "{}  - name: y\n{}  - name: z\n{}",
            one(&BODY.replace("severity: high", "severity: high\n    colour: red")),
            BODY.replace("    severity: high\n", ""),
            BODY.replace("resource: s3-bucket", "resource: s3")
        );
        // WHEN parsed
        let errs = errors(&src);
        // THEN each is reported with its own field and line
        assert_eq!(errs.len(), 3, "{errs:#?}");
        let colour = find(&errs, "policies[0].colour");
        assert_eq!(colour.line, Some(line(&src, "colour:")));
        assert!(colour.message.starts_with("unknown field `colour`"), "{colour}");
        let missing = find(&errs, "policies[1]");
        assert_eq!(missing.line, Some(line(&src, "- name: y")));
        assert_eq!(missing.message, "missing field `severity`");
        let kind = find(&errs, "policies[2].resource");
        assert_eq!(kind.line, Some(kind_line(&src)));
        assert!(kind.message.contains("unknown variant `s3`"), "{kind}");
    }

    fn kind_line(src: &str) -> usize {
        src.lines().position(|l| l.trim() == "resource: s3").map(|i| i + 1).unwrap()
    }

    #[test]
    fn check_fields_are_checked_too() {
        // GIVEN an unknown check type, an extra key on a check without parameters, and a non-number age
        let src = format!(
            "{}  - name: y\n{}  - name: z\n{}",
            one(&BODY.replace("public-access-block", "nope")),
            BODY.replace("{ type: public-access-block }", "{ type: public-access-block, strict: true }"),
            BODY.replace("resource: s3-bucket", "resource: ec2-instance")
                .replace("{ type: public-access-block }", "{ type: instance-max-age, max-age-days: old }")
                .replace("block-public-bucket", "stop-instance")
        );
        // WHEN parsed THEN each is an error at its check
        let errs = errors(&src);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(find(&errs, "policies[0].check.type").message.contains("unknown variant `nope`"));
        assert_eq!(find(&errs, "policies[0].check.type").line, Some(line(&src, "nope")));
        assert!(find(&errs, "policies[1].check.strict").message.contains("unknown field `strict`"));
        assert_eq!(find(&errs, "policies[1].check.strict").line, Some(line(&src, "strict")));
        assert!(find(&errs, "policies[2].check").message.contains("invalid type"), "{errs:#?}");
        assert_eq!(find(&errs, "policies[2].check").line, Some(line(&src, "max-age-days: old")));
    }

    #[test]
    fn the_first_type_error_keeps_serde_yaml_line_even_in_flow_style() {
        // GIVEN a file written as JSON, which the line index cannot see into
        let src = "{\"settings\": {\"fallback-owner\": \"a@b.co\"},\n \"policies\": [{\"name\": \"x\",\n  \
                   \"description\": \"d\", \"resource\": \"s3-bucket\",\n  \"check\": {\"type\": \"public-access-block\"},\n  \
                   \"severity\": \"high\",\n  \"grace\": \"3x\",\n  \"action\": {\"type\": \"block-public-bucket\"}}]}\n";
        // WHEN parsed
        let errs = errors(src);
        // THEN the error still has the line serde_yaml reported
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].field, "policies[0].grace");
        assert_eq!(errs[0].line, Some(line(src, "3x")));
    }

    #[test]
    fn duplicate_names_point_at_the_second_and_mention_the_first() {
        // GIVEN two policies called x
        let src = format!("{}  - name: x\n{BODY}", one(BODY));
        // WHEN parsed
        let errs = errors(&src);
        // THEN the second is reported, naming the line of the first
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let e = find(&errs, "policies[1] (x).name");
        assert_eq!(e.line, Some(nth_line(&src, "- name: x", 1)));
        assert_eq!(e.message, format!("duplicate policy name \"x\" (first at line {})", line(&src, "- name: x")));
    }

    #[test]
    fn names_must_be_kebab_case() {
        // GIVEN a policy named in camel case WHEN parsed THEN its name is refused
        let src = one(BODY).replace("name: x", "name: OpenSsh");
        let errs = errors(&src);
        assert_eq!(find(&errs, "policies[0] (OpenSsh).name").line, Some(line(&src, "OpenSsh")));
    }

    #[test]
    fn a_check_that_does_not_fit_the_resource_kind_is_refused() {
        // GIVEN an instance check on a bucket policy (block style, so the type has its own line)
        let src = one(&BODY.replace("{ type: public-access-block }", "\n      type: instance-owner-tag"));
        // WHEN parsed
        let errs = errors(&src);
        // THEN the error is at the check's type
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let e = find(&errs, "policies[0] (x).check.type");
        assert_eq!(e.line, Some(line(&src, "type: instance-owner-tag")));
        assert_eq!(e.message, "check \"instance-owner-tag\" applies to ec2-instance, not s3-bucket");
    }

    #[test]
    fn an_action_that_does_not_fit_the_resource_kind_is_refused() {
        // GIVEN a bucket policy that would stop an instance
        let src = one(&BODY.replace("block-public-bucket", "stop-instance"));
        // WHEN parsed THEN the error is at the action's type
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let e = find(&errs, "policies[0] (x).action.type");
        assert_eq!(e.line, Some(line(&src, "action:")));
        assert_eq!(e.message, "action \"stop-instance\" applies to ec2-instance, not s3-bucket");
    }

    #[test]
    fn an_unknown_action_is_refused_with_the_known_ones_listed() {
        // GIVEN an action nobody implemented
        let src = one(&BODY.replace("block-public-bucket", "delete-bucket"));
        // WHEN parsed THEN the error names it and lists what exists
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let e = find(&errs, "policies[0] (x).action.type");
        assert_eq!(e.line, Some(line(&src, "delete-bucket")));
        assert!(e.message.starts_with("unknown action \"delete-bucket\" (known: stop-instance, "), "{e}");
    }

    #[test]
    fn reminders_need_an_interval() {
        // GIVEN two reminders and no interval
        let src = one(&BODY.replace("grace: 1d", "grace: 1d\n    reminders: 2"));
        // WHEN parsed THEN the missing field is reported at its policy
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let e = find(&errs, "policies[0] (x).reminder-interval");
        assert_eq!(e.line, Some(line(&src, "- name: x")));
        assert_eq!(e.message, "required when reminders is 2");
    }

    #[test]
    fn check_parameters_are_validated() {
        // GIVEN a zero age limit on an otherwise valid instance policy
        let src = one(&BODY
            .replace("resource: s3-bucket", "resource: ec2-instance")
            .replace("{ type: public-access-block }", "{ type: instance-max-age, max-age-days: 0 }")
            .replace("block-public-bucket", "stop-instance"));
        // WHEN parsed THEN it is refused
        let errs = errors(&src);
        assert_eq!(find(&errs, "policies[0] (x).check.max-age-days").message, "must be at least 1");
    }

    #[test]
    fn settings_problems_are_reported_with_policy_problems() {
        // GIVEN bad settings and a bad policy
        let src = one(&BODY.replace("grace: 1d", "grace: 1y"))
            .replace("security@example.com", "security-team")
            .replace("policies:", "  max-enforcements-percent: 150\npolicies:");
        // WHEN parsed THEN all three are reported
        let errs = errors(&src);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert_eq!(find(&errs, "settings.fallback-owner").line, Some(line(&src, "security-team")));
        assert_eq!(find(&errs, "settings.max-enforcements-percent").line, Some(line(&src, "150")));
        assert_eq!(find(&errs, "policies[0].grace").line, Some(line(&src, "1y")));
    }

    #[test]
    fn missing_settings_are_reported() {
        // GIVEN no settings block, and then a settings block without the fallback owner
        let without = "policies: []\n";
        let empty = "settings:\n  digest-period: 1d\npolicies: []\n";
        // WHEN parsed THEN each says what is missing
        assert_eq!(errors(without)[0].field, "settings");
        let e = &errors(empty)[0];
        // serde_yaml places a missing field where its mapping starts: the first key under settings
        assert_eq!((e.field.as_str(), e.line), ("settings", Some(2)));
        assert_eq!(e.message, "missing field `fallback-owner`");
    }

    #[test]
    fn an_unknown_top_level_key_is_reported() {
        // GIVEN a misspelt top-level key WHEN parsed THEN it is named with its line
        let errs = errors("settings:\n  fallback-owner: a@b.co\npolices: []\n");
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!((errs[0].field.as_str(), errs[0].line), ("polices", Some(3)));
    }
}
