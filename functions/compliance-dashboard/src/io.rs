//! Reading the tables and writing the page: the only part of the dashboard that talks to AWS.

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use compliance_scan::{ComplianceError, load_policies};
use palisade_shared::config::{BucketName, Env, TableName};
use palisade_shared::error::{AwsError, Class, Classify};
use palisade_shared::ledger::{DynamoLedger, LedgerError, RecordType};
use palisade_shared::violations::{Status, ViolationStore};
use serde::Serialize;

use crate::{Dashboard, HistoryPoint, Inputs, TenantLedger, build, html};

/// Where the page, its data and the trend history live in the dashboard bucket.
pub const PAGE_KEY: &str = "dashboard/index.html";
/// The same data as the page, for other tools.
pub const DATA_KEY: &str = "dashboard/data.json";
/// One point per day, read back by the next run for the trend charts.
pub const HISTORY_KEY: &str = "dashboard/history.json";

/// The dashboard function's own settings (besides the compliance stack's common ones).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `PALISADE_DASHBOARD_BUCKET`: private; read through presigned URLs (`palisade dashboard-url`).
    pub bucket: BucketName,
    /// `PALISADE_TENANT_STACKS`: comma-separated pipeline stack names whose ledgers (`<stack>-ledger`) are counted.
    pub tenant_stacks: Vec<String>,
}

/// How tenant pipeline stacks are named; the dashboard's IAM policy grants reading ledgers of this pattern.
pub const TENANT_STACK_PREFIX: &str = "palisade-pipeline-";

/// Stack names separated by commas; blanks ignored, each a valid CloudFormation stack name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackList(pub Vec<String>);

impl std::str::FromStr for StackList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let names: Vec<String> = s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
        for n in &names {
            let ok = n.len() <= 128 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok || !n.starts_with(TENANT_STACK_PREFIX) || n.len() == TENANT_STACK_PREFIX.len() {
                return Err(format!(
                    "{n:?} is not a tenant pipeline stack name ({TENANT_STACK_PREFIX}<tenant>[-<env>]: letters, digits \
                     and hyphens); the dashboard's role may read only ledgers named so"
                ));
            }
        }
        Ok(Self(names))
    }
}

impl Settings {
    /// Reads this function's variables into `env`, which reports every problem together.
    pub fn read(env: &mut Env) -> (Option<TableName>, Option<BucketName>, StackList) {
        (
            env.required("PALISADE_VIOLATIONS_TABLE"),
            env.required("PALISADE_DASHBOARD_BUCKET"),
            env.optional("PALISADE_TENANT_STACKS", StackList::default()),
        )
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// Policies could not be loaded.
    #[error(transparent)]
    Compliance(#[from] ComplianceError),
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A configured tenant stack name does not make a table name.
    #[error("PALISADE_TENANT_STACKS: {0}")]
    TenantStack(String),
    /// Serialising the data failed (not expected: every field is plain data).
    #[error("could not encode the dashboard data")]
    Encode,
}

impl Classify for DashboardError {
    fn class(&self) -> Class {
        match self {
            DashboardError::Compliance(e) => e.class(),
            DashboardError::Aws(e) => e.class,
            DashboardError::Ledger(e) => e.class(),
            DashboardError::TenantStack(_) | DashboardError::Encode => Class::Permanent,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            DashboardError::Compliance(e) => e.code(),
            DashboardError::Aws(e) => e.code(),
            DashboardError::Ledger(e) => e.code(),
            DashboardError::TenantStack(_) => "invalid_config",
            DashboardError::Encode => "encode_failed",
        }
    }
}

/// What a run needs.
pub struct Deps {
    /// Reads the policy files and writes the page.
    pub s3: aws_sdk_s3::Client,
    /// Reads the tenant ledgers.
    pub db: aws_sdk_dynamodb::Client,
    /// The compliance ledger.
    pub ledger: DynamoLedger,
    /// The violations.
    pub violations: ViolationStore,
    /// Holds `policies/`.
    pub config_bucket: BucketName,
    /// This function's settings.
    pub settings: Settings,
}

/// What one run wrote, returned as the invocation's result.
#[derive(Clone, Debug, Serialize)]
pub struct Written {
    /// Bucket and keys.
    pub bucket: String,
    /// The page.
    pub page: &'static str,
    /// The data.
    pub data: &'static str,
    /// Headline numbers, so an operator invoking the function sees them.
    pub summary: crate::Summary,
}

/// Reads everything, builds the dashboard at `now` and writes page, data and history.
pub async fn refresh(deps: &Deps, now: DateTime<Utc>) -> Result<Written, DashboardError> {
    let inputs = collect(deps).await?;
    let dashboard = build(&inputs, now);
    write(deps, &dashboard).await?;
    tracing::info!(
        message = "Dashboard written.",
        open_violations = dashboard.summary.open_violations,
        enforced = dashboard.summary.enforced,
        tenants = dashboard.tenants.len()
    );
    Ok(Written { bucket: deps.settings.bucket.to_string(), page: PAGE_KEY, data: DATA_KEY, summary: dashboard.summary })
}

/// Everything [`build`] needs.
pub async fn collect(deps: &Deps) -> Result<Inputs, DashboardError> {
    let (policies, exceptions) = load_policies(&deps.s3, &deps.config_bucket).await?;
    let mut violations = deps.violations.in_state(Status::Open).await?;
    violations.extend(deps.violations.in_state(Status::Enforcing).await?);
    let actions = deps.ledger.list(RecordType::Action, i32::MAX).await?;
    let incidents = deps.ledger.list(RecordType::Incident, i32::MAX).await?;
    let mut tenants = Vec::new();
    for stack in &deps.settings.tenant_stacks {
        let table: TableName = format!("{stack}-ledger").parse().map_err(DashboardError::TenantStack)?;
        let ledger = DynamoLedger::new(deps.db.clone(), table);
        tenants.push(TenantLedger {
            stack: stack.clone(),
            files: ledger.list(RecordType::File, i32::MAX).await?,
            incidents: ledger.list(RecordType::Incident, i32::MAX).await?,
        });
    }
    Ok(Inputs {
        policies: Some(policies),
        exceptions,
        violations,
        actions,
        incidents,
        tenants,
        history: read_history(deps).await?,
    })
}

/// The trend points of earlier runs; none when the file is missing or unreadable (the trend then restarts,
/// which is better than no dashboard).
async fn read_history(deps: &Deps) -> Result<Vec<HistoryPoint>, DashboardError> {
    let got = deps.s3.get_object().bucket(deps.settings.bucket.as_str()).key(HISTORY_KEY).send().await;
    let out = match got {
        Ok(o) => o,
        Err(e) => {
            let e = AwsError::new("s3:GetObject", e);
            if e.code == "NoSuchKey" {
                return Ok(Vec::new());
            }
            return Err(e.into());
        }
    };
    let Ok(bytes) = out.body.collect().await else { return Ok(Vec::new()) };
    match serde_json::from_slice(&bytes.into_bytes()) {
        Ok(points) => Ok(points),
        Err(_) => {
            tracing::warn!(message = "Dashboard history unreadable; starting a new one.", key = HISTORY_KEY);
            Ok(Vec::new())
        }
    }
}

async fn put(deps: &Deps, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), DashboardError> {
    deps.s3
        .put_object()
        .bucket(deps.settings.bucket.as_str())
        .key(key)
        .body(ByteStream::from(body))
        .content_type(content_type)
        .cache_control("no-store")
        .send()
        .await
        .map_err(|e| AwsError::new("s3:PutObject", e))?;
    Ok(())
}

/// Writes the data first and the page last, so a page never shows numbers its data file lacks.
pub async fn write(deps: &Deps, d: &Dashboard) -> Result<(), DashboardError> {
    let data = serde_json::to_vec_pretty(d).map_err(|_| DashboardError::Encode)?;
    let history = serde_json::to_vec(&d.history).map_err(|_| DashboardError::Encode)?;
    put(deps, HISTORY_KEY, history, "application/json").await?;
    put(deps, DATA_KEY, data, "application/json").await?;
    put(deps, PAGE_KEY, html::render(d).into_bytes(), "text/html; charset=utf-8").await
}
