//! `pipeline-ingest`: the first step of the file pipeline. Triggered by an upload into the tenant's inbox bucket
//! (S3 event notification through SQS), it validates before anything else reads the file: size, type by magic
//! bytes, the tenant's allowed types, a safe key and a SHA-256 digest; duplicate uploads are recognised. A bad file
//! is moved to the quarantine prefix with its reason, recorded and alerted; a good one is announced on
//! `file-accepted`.

pub mod validate;

use palisade_shared::batch::{Runner, RunnerConfig};
use palisade_shared::config::{BucketName, ConfigError, Env, TopicArn, got};
use palisade_shared::envelope::{Envelope, TenantId};
use palisade_shared::error::{AwsError, Class};
use palisade_shared::events::{ObjectRef, S3Notification};
use palisade_shared::incident::{IncidentReport, Incidents};
use palisade_shared::ledger::{DynamoLedger, Ledger, LedgerEntry, RecordType};
use palisade_shared::messages::FileAccepted;
use palisade_shared::publish::Publisher;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use validate::{FileType, Rejection};

/// Where uploads land; only keys under it are ingested.
pub const UPLOAD_PREFIX: &str = "incoming/";

/// Start-up configuration.
pub struct Config {
    /// The shared runner's settings.
    pub runner: RunnerConfig,
    /// `PALISADE_TENANT`.
    pub tenant: TenantId,
    /// `PALISADE_INBOX_BUCKET`: the only bucket this function reads.
    pub inbox: BucketName,
    /// `PALISADE_FILE_ACCEPTED_TOPIC_ARN`.
    pub accepted_topic: TopicArn,
    /// `PALISADE_ALLOWED_TYPES`: comma-separated (default `pdf`).
    pub allowed: Vec<FileType>,
    /// `PALISADE_MAX_FILE_BYTES` (default 20 MiB).
    pub max_bytes: u64,
}

struct Types(Vec<FileType>);
impl std::str::FromStr for Types {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect::<Result<Vec<_>, _>>().map(Types)
    }
}

impl Config {
    /// Reads and validates every variable, reporting all problems at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut env = Env::from_process();
        let runner = RunnerConfig::read(&mut env);
        let tenant = env.required("PALISADE_TENANT");
        let inbox = env.required("PALISADE_INBOX_BUCKET");
        let accepted_topic = env.required("PALISADE_FILE_ACCEPTED_TOPIC_ARN");
        let allowed = env.optional("PALISADE_ALLOWED_TYPES", Types(vec![FileType::Pdf])).0;
        let max_bytes = env.optional("PALISADE_MAX_FILE_BYTES", 20 * 1024 * 1024u64);
        env.finish()?;
        Ok(Self {
            runner: got(runner, "runner configuration")?,
            tenant: got(tenant, "PALISADE_TENANT")?,
            inbox: got(inbox, "PALISADE_INBOX_BUCKET")?,
            accepted_topic: got(accepted_topic, "PALISADE_FILE_ACCEPTED_TOPIC_ARN")?,
            allowed,
            max_bytes,
        })
    }
}

/// Clients and settings, built once per cold start.
pub struct Deps<'a> {
    /// Configuration.
    pub cfg: &'a Config,
    /// S3 client.
    pub s3: aws_sdk_s3::Client,
    /// SNS publisher.
    pub publisher: Publisher,
    /// Ledger and incidents (from the runner).
    pub incidents: &'a Incidents<DynamoLedger>,
}

impl<'a> Deps<'a> {
    /// From the SDK configuration and the runner.
    pub fn new(cfg: &'a Config, sdk: &aws_config::SdkConfig, runner: &'a Runner) -> Self {
        Self {
            cfg,
            s3: palisade_shared::aws::s3(sdk),
            publisher: Publisher::new(aws_sdk_sns::Client::new(sdk)),
            incidents: runner.incidents(),
        }
    }
}

/// Why ingesting failed (a rejected file is a success: it is quarantined).
pub use palisade_shared::step::StepError as IngestError;

/// Handles one S3 notification (usually one object).
pub async fn handle(deps: &Deps<'_>, n: S3Notification) -> Result<(), IngestError> {
    for o in &n.objects {
        if o.bucket != deps.cfg.inbox.as_str() {
            return Err(IngestError::ForeignBucket(o.bucket.clone()));
        }
        if !o.key.starts_with(UPLOAD_PREFIX) {
            tracing::info!(message = "Not an upload; ignored.", prefix = o.key.split('/').next().unwrap_or(""));
            continue;
        }
        ingest(deps, o).await?;
    }
    Ok(())
}

fn s3_uri(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

async fn ingest(deps: &Deps<'_>, o: &ObjectRef) -> Result<(), IngestError> {
    let cfg = deps.cfg;
    let correlation = Uuid::new_v5(&Uuid::NAMESPACE_URL, s3_uri(&o.bucket, &o.key).as_bytes());
    let head = deps.s3.head_object().bucket(&o.bucket).key(&o.key).set_version_id(o.version_id.clone()).send().await;
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            let e = AwsError::new("s3:HeadObject", e);
            if e.is_code("NotFound") || e.is_code("NoSuchKey") {
                tracing::info!(message = "Object already gone; nothing to ingest.");
                return Ok(());
            }
            return Err(e.into());
        }
    };
    let size = head.content_length.and_then(|l| u64::try_from(l).ok()).unwrap_or(o.size);
    let name = match validate::sanitize_key(&o.key, UPLOAD_PREFIX) {
        Ok(n) => n,
        Err(r) => return quarantine(deps, o, "unnamed", None, correlation, r).await,
    };
    if size == 0 || size > cfg.max_bytes {
        let r = validate::check(size, b"", cfg.max_bytes, &cfg.allowed).err().unwrap_or(Rejection::Empty);
        return quarantine(deps, o, &name, None, correlation, r).await;
    }
    // Read at most the limit (+1 byte to notice an object that grew since the HEAD).
    let body = deps
        .s3
        .get_object()
        .bucket(&o.bucket)
        .key(&o.key)
        .set_version_id(o.version_id.clone())
        .range(format!("bytes=0-{}", cfg.max_bytes))
        .send()
        .await
        .map_err(|e| AwsError::new("s3:GetObject", e))?;
    let bytes = body
        .body
        .collect()
        .await
        .map_err(|e| IngestError::Io(format!("could not read the object body: {e}")))?
        .into_bytes();
    let sha = hex::encode(Sha256::digest(&bytes));
    let file_id = sha[..32].to_owned();
    let file_type = match validate::check(bytes.len() as u64, &bytes, cfg.max_bytes, &cfg.allowed) {
        Ok(t) => t,
        Err(r) => return quarantine(deps, o, &name, Some(&file_id), correlation, r).await,
    };

    let ledger = deps.incidents.ledger();
    let accepted_id = LedgerEntry::derive_id(RecordType::File, &["accepted", cfg.tenant.as_str(), &sha]);
    if let Some(first) = ledger.get(&accepted_id).await? {
        let same_upload = first.details.get("key").and_then(|k| k.as_str()) == Some(o.key.as_str())
            && first.details.get("version_id").and_then(|v| v.as_str()) == o.version_id.as_deref();
        if !same_upload {
            let dup =
                entry(deps, &["duplicate", &o.key, o.version_id.as_deref().unwrap_or("")], o, correlation, "duplicate");
            let mut dup = dup;
            dup.details = serde_json::json!({"file_id": file_id, "sha256": sha, "first_key": first.details.get("key"), "key": o.key});
            ledger.record(&dup).await?;
            tracing::info!(message = "Duplicate upload recognised; not processed again.", file_id = %file_id, first = %first.id);
            return Ok(());
        }
    }
    let msg = FileAccepted {
        file_id: file_id.clone(),
        bucket: o.bucket.clone(),
        key: o.key.clone(),
        version_id: o.version_id.clone(),
        sha256: sha.clone(),
        size: bytes.len() as u64,
        file_type: file_type.as_str().to_owned(),
    };
    let mut env = Envelope::with_correlation(cfg.tenant.clone(), correlation, msg);
    // Deterministic, so a retried ingest produces the same message and downstream idempotency holds.
    env.id = Uuid::new_v5(&correlation, sha.as_bytes());
    deps.publisher.publish(&cfg.accepted_topic, &env).await?;
    let mut e = entry(deps, &["accepted", cfg.tenant.as_str(), &sha], o, correlation, "accepted");
    e.id = accepted_id;
    e.details = serde_json::json!({"file_id": file_id, "sha256": sha, "size": bytes.len(), "key": o.key, "version_id": o.version_id, "file_type": file_type.as_str()});
    ledger.record(&e).await?;
    tracing::info!(message = "File accepted.", file_id = %file_id, bytes = bytes.len(), file_type = file_type.as_str());
    Ok(())
}

fn entry(deps: &Deps<'_>, parts: &[&str], o: &ObjectRef, correlation: Uuid, outcome: &str) -> LedgerEntry {
    LedgerEntry {
        id: LedgerEntry::derive_id(RecordType::File, parts),
        record_type: RecordType::File,
        at: chrono::Utc::now(),
        tenant: deps.cfg.tenant.clone(),
        function: deps.cfg.runner.function.clone(),
        action: "ingest".into(),
        resource: s3_uri(&o.bucket, &o.key),
        outcome: outcome.into(),
        actor: deps.cfg.runner.function.clone(),
        correlation_id: correlation,
        details: serde_json::Value::Null,
    }
}

/// Moves the object under the quarantine prefix, records it and raises the incident.
async fn quarantine(
    deps: &Deps<'_>,
    o: &ObjectRef,
    name: &str,
    file_id: Option<&str>,
    correlation: Uuid,
    why: Rejection,
) -> Result<(), IngestError> {
    let tag = file_id.map(str::to_owned).unwrap_or_else(|| correlation.simple().to_string());
    let day = o.event_time.format("%Y-%m-%d").to_string();
    let kept_in = palisade_shared::quarantine::move_aside(
        &deps.s3,
        &o.bucket,
        &o.key,
        o.version_id.as_deref(),
        &day,
        &format!("{tag}-{name}"),
        why.code(),
    )
    .await?;
    let mut e =
        entry(deps, &["quarantined", &o.key, o.version_id.as_deref().unwrap_or("")], o, correlation, "quarantined");
    e.details =
        serde_json::json!({"reason": why.code(), "summary": why.to_string(), "kept_in": kept_in, "file_id": file_id});
    deps.incidents.ledger().record(&e).await?;
    let report = IncidentReport {
        tenant: Some(deps.cfg.tenant.clone()),
        correlation_id: Some(correlation),
        source_id: s3_uri(&o.bucket, &o.key),
        file: Some(s3_uri(&o.bucket, &o.key)),
        class: Class::Permanent,
        code: why.code().to_owned(),
        summary: format!("upload quarantined: {why}"),
        kept_in,
    };
    deps.incidents.raise(&report).await?;
    tracing::warn!(message = "File quarantined.", reason = why.code());
    Ok(())
}
