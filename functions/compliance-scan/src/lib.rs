//! `compliance-scan` (scheduled): evaluates the security team's policies against the account and upserts
//! violations. A violation that no longer holds is closed as resolved. State lives in our table, never in
//! resource tags. The policy files are read from S3 on every run, so changing a policy needs no deployment.

pub mod collect;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use palisade_policy::{Exceptions, PolicySet, Resource, ResourceKind};
use palisade_shared::action::ResourceRef;
use palisade_shared::batch::RunnerConfig;
use palisade_shared::config::{BucketName, ConfigError, Env, TableName, got};
use palisade_shared::envelope::TenantId;
use palisade_shared::error::{AwsError, Class, Classify};
use palisade_shared::violations::{Change, Status, Violation, ViolationStore, text_value, time_value};
use serde_json::json;

/// Start-up configuration shared by the scan and the sweep.
pub struct Config {
    /// The shared runner's settings (incidents, ledger).
    pub runner: RunnerConfig,
    /// `PALISADE_TENANT`: the account scope named on messages.
    pub tenant: TenantId,
    /// `PALISADE_GRANTS_TABLE`.
    pub grants: TableName,
    /// `PALISADE_CONFIG_BUCKET`: holds `policies/policies.yaml` and `policies/exceptions.yaml`.
    pub config_bucket: BucketName,
}

impl Config {
    /// Reads and validates every variable, reporting all problems at once; `extra` reads the caller's own.
    pub fn from_env_with<T>(extra: impl FnOnce(&mut Env) -> T) -> Result<(Self, T), ConfigError> {
        let mut env = Env::from_process();
        let runner = RunnerConfig::read(&mut env);
        let tenant = env.required("PALISADE_TENANT");
        let grants = env.required("PALISADE_GRANTS_TABLE");
        let config_bucket = env.required("PALISADE_CONFIG_BUCKET");
        let more = extra(&mut env);
        env.finish()?;
        Ok((
            Self {
                runner: got(runner, "runner configuration")?,
                tenant: got(tenant, "PALISADE_TENANT")?,
                grants: got(grants, "PALISADE_GRANTS_TABLE")?,
                config_bucket: got(config_bucket, "PALISADE_CONFIG_BUCKET")?,
            },
            more,
        ))
    }
}

/// Where the policy files live in the config bucket.
pub const POLICIES_KEY: &str = "policies/policies.yaml";
/// Where the exceptions file lives in the config bucket.
pub const EXCEPTIONS_KEY: &str = "policies/exceptions.yaml";

/// Why a scan or sweep failed.
#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    /// The policy or exceptions file does not validate; nothing is evaluated.
    #[error("policy files are invalid: {0}")]
    Policy(String),
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Publishing failed.
    #[error(transparent)]
    Publish(#[from] palisade_shared::publish::PublishError),
}

impl Classify for ComplianceError {
    fn class(&self) -> Class {
        match self {
            ComplianceError::Policy(_) => Class::Permanent,
            ComplianceError::Aws(e) => e.class,
            ComplianceError::Publish(e) => e.class(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ComplianceError::Policy(_) => "invalid_policy",
            ComplianceError::Aws(e) => e.code(),
            ComplianceError::Publish(_) => "publish_failed",
        }
    }
}

async fn read_text(s3: &aws_sdk_s3::Client, bucket: &BucketName, key: &str) -> Result<String, ComplianceError> {
    let out =
        s3.get_object().bucket(bucket.as_str()).key(key).send().await.map_err(|e| AwsError::new("s3:GetObject", e))?;
    let bytes = out.body.collect().await.map_err(|e| ComplianceError::Policy(format!("reading {key}: {e}")))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ComplianceError::Policy(format!("{key} is not UTF-8")))
}

/// Loads and validates both files; any problem stops the run with every error listed.
pub async fn load_policies(
    s3: &aws_sdk_s3::Client,
    bucket: &BucketName,
) -> Result<(PolicySet, Exceptions), ComplianceError> {
    let join =
        |errs: Vec<palisade_policy::PolicyError>| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
    let policies = PolicySet::parse(&read_text(s3, bucket, POLICIES_KEY).await?, "policies.yaml")
        .map_err(|e| ComplianceError::Policy(join(e)))?;
    let exceptions = Exceptions::parse(&read_text(s3, bucket, EXCEPTIONS_KEY).await?, "exceptions.yaml", &policies)
        .map_err(|e| ComplianceError::Policy(join(e)))?;
    Ok((policies, exceptions))
}

/// A stored violation as the escalation ladder sees it; the sweep decides with it and the dashboard predicts
/// with it, so both read the same fields.
pub fn ladder_state(v: &Violation) -> palisade_policy::ViolationState {
    palisade_policy::ViolationState {
        first_seen: v.first_seen,
        reminders_sent: v.reminders_sent,
        last_reminder_at: v.last_reminder_at,
        approved_by: v.approved_by.clone(),
    }
}

/// The exception that covers a stored violation at `now`, matched against the scan's snapshot of its resource
/// (tags included, for tag-scoped exceptions).
pub fn exception_for<'a>(
    v: &Violation,
    exceptions: &'a Exceptions,
    now: DateTime<Utc>,
) -> Option<&'a palisade_policy::Exception> {
    let resource = serde_json::from_value::<Resource>(v.snapshot.clone()).ok()?;
    exceptions.exception_for(&v.policy, &resource, now)
}

/// How enforcement addresses a scanned resource.
pub fn resource_ref(r: &Resource) -> ResourceRef {
    let mut attributes = serde_json::Map::new();
    if let palisade_policy::Facts::AccessKey { user, .. } = &r.facts {
        attributes.insert("user".into(), json!(user));
    }
    ResourceRef { kind: r.kind.as_str().to_owned(), id: r.id.clone(), attributes }
}

/// Clients, built once per cold start.
pub struct Deps {
    /// Gathers resources.
    pub collector: collect::Collector,
    /// The violations table.
    pub store: ViolationStore,
    /// S3 client for the policy files.
    pub s3: aws_sdk_s3::Client,
    /// The config bucket.
    pub config_bucket: BucketName,
}

/// What one scan did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ScanReport {
    /// Resources scanned per kind.
    pub scanned: BTreeMap<String, usize>,
    /// Violations found (new and continuing).
    pub violations: usize,
    /// New occurrences.
    pub opened: usize,
    /// Closed because they no longer hold.
    pub resolved: usize,
}

/// The marker item holding the last scan's counts, which the sweep's blast-radius cap reads.
pub const LAST_SCAN: &str = "scan#last";

/// One scan at `now`.
pub async fn scan(deps: &Deps, now: DateTime<Utc>) -> Result<ScanReport, ComplianceError> {
    let (policies, _) = load_policies(&deps.s3, &deps.config_bucket).await?;
    let kinds: Vec<ResourceKind> = {
        let mut seen = Vec::new();
        for p in &policies.policies {
            if !seen.contains(&p.resource) {
                seen.push(p.resource);
            }
        }
        seen
    };
    let mut live: HashMap<String, Violation> = HashMap::new();
    for st in [Status::Open, Status::Enforcing] {
        for v in deps.store.in_state(st).await? {
            live.insert(v.id.clone(), v);
        }
    }
    let mut report = ScanReport::default();
    let mut seen_ids = HashSet::new();
    // Written after collection: new violations 25 per call, updates several at a time.
    let mut opened: Vec<Violation> = Vec::new();
    let mut continuing: Vec<Change> = Vec::new();
    for kind in &kinds {
        let mut resources = deps.collector.collect(*kind).await?;
        report.scanned.insert(kind.as_str().to_owned(), resources.len());
        let violating: Vec<bool> = resources
            .iter()
            .map(|r| policies.for_kind(*kind).any(|p| palisade_policy::evaluate(p, r, now).is_some()))
            .collect();
        deps.collector.add_tags(*kind, &mut resources, &violating).await?;
        for r in &resources {
            for p in policies.for_kind(*kind) {
                let Some(f) = palisade_policy::evaluate(p, r, now) else { continue };
                let id = Violation::key(&p.name, &r.id);
                report.violations += 1;
                seen_ids.insert(id.clone());
                let owner = palisade_policy::owner(r, &policies.settings);
                if live.contains_key(&id) {
                    continuing.push(Change {
                        id,
                        fields: vec![
                            ("last_seen", time_value(&now)),
                            ("summary", text_value(&f.summary)),
                            ("owner", text_value(&owner)),
                        ],
                        expected: None,
                    });
                    continue;
                }
                let v = Violation {
                    id,
                    policy: p.name.clone(),
                    resource: resource_ref(r),
                    snapshot: serde_json::to_value(r).unwrap_or_default(),
                    owner,
                    severity: p.severity.as_str().to_owned(),
                    reason: f.reason.clone(),
                    summary: f.summary.clone(),
                    state: Status::Open,
                    first_seen: now,
                    last_seen: now,
                    reminders_sent: 0,
                    last_reminder_at: None,
                    approved_by: None,
                    ledger_id: None,
                    next_step_at: None,
                    next_step: None,
                };
                tracing::info!(message = "Violation opened.", violation_id = %v.id, policy = %p.name, severity = p.severity.as_str());
                opened.push(v);
            }
        }
    }
    deps.store.put_many(&opened).await?;
    report.opened = opened.len();
    deps.store.set_many(&continuing).await?;
    let scanned_kinds: HashSet<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let closing: Vec<Change> = live
        .iter()
        .filter(|(id, v)| {
            let evaluated = policies.get(&v.policy).is_some() && scanned_kinds.contains(v.resource.kind.as_str());
            evaluated && !seen_ids.contains(*id) && v.state == Status::Open
        })
        .map(|(id, _)| Change {
            id: id.clone(),
            fields: vec![("state", text_value(Status::Resolved.as_str())), ("resolved_at", time_value(&now))],
            expected: Some(Status::Open),
        })
        .collect();
    let refused = deps.store.set_many(&closing).await?;
    for c in closing.iter().filter(|c| !refused.contains(&c.id)) {
        report.resolved += 1;
        tracing::info!(message = "Violation resolved.", violation_id = %c.id);
    }
    deps.store.put_marker(LAST_SCAN, "marker", &json!({"at": now, "scanned": report.scanned})).await?;
    tracing::info!(
        message = "Scan finished.",
        violations = report.violations,
        opened = report.opened,
        resolved = report.resolved
    );
    Ok(report)
}
