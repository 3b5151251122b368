//! `pipeline-retention` (scheduled): deletes the tenant's objects older than the tenant's policy: uploads in the
//! inbox, the quarantine, and processed records. Every version of an expired object is deleted (not only hidden
//! behind a delete marker), each deletion is recorded in the ledger with its key, age and policy, and the function
//! can only name this tenant's two buckets.

use chrono::{DateTime, Utc};
use palisade_shared::batch::RunnerConfig;
use palisade_shared::config::{BucketName, ConfigError, Env, got};
use palisade_shared::envelope::TenantId;
use palisade_shared::error::{AwsError, Class, Classify};
use palisade_shared::ledger::{DynamoLedger, Ledger, LedgerEntry, LedgerError, RecordType};

/// One area with its own retention.
#[derive(Clone, Debug)]
pub struct Area {
    /// Name used in the ledger (`inbox`, `quarantine`, `processed`).
    pub name: &'static str,
    /// The bucket.
    pub bucket: BucketName,
    /// Key prefix within it.
    pub prefix: &'static str,
    /// Objects older than this many days are deleted.
    pub days: u32,
}

/// Start-up configuration.
pub struct Config {
    /// The shared runner's settings.
    pub runner: RunnerConfig,
    /// `PALISADE_TENANT`.
    pub tenant: TenantId,
    /// From `PALISADE_INBOX_BUCKET`, `PALISADE_PROCESSED_BUCKET` and `PALISADE_RETENTION_{INBOX,QUARANTINE,PROCESSED}_DAYS`.
    pub areas: Vec<Area>,
}

impl Config {
    /// Reads and validates every variable, reporting all problems at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut env = Env::from_process();
        let runner = RunnerConfig::read(&mut env);
        let tenant = env.required("PALISADE_TENANT");
        let inbox: Option<BucketName> = env.required("PALISADE_INBOX_BUCKET");
        let processed: Option<BucketName> = env.required("PALISADE_PROCESSED_BUCKET");
        let inbox_days: Option<u32> = env.required("PALISADE_RETENTION_INBOX_DAYS");
        let quarantine_days: Option<u32> = env.required("PALISADE_RETENTION_QUARANTINE_DAYS");
        let processed_days: Option<u32> = env.required("PALISADE_RETENTION_PROCESSED_DAYS");
        env.finish()?;
        let inbox = got(inbox, "PALISADE_INBOX_BUCKET")?;
        Ok(Self {
            runner: got(runner, "runner configuration")?,
            tenant: got(tenant, "PALISADE_TENANT")?,
            areas: vec![
                Area {
                    name: "inbox",
                    bucket: inbox.clone(),
                    prefix: "incoming/",
                    days: got(inbox_days, "inbox days")?,
                },
                Area {
                    name: "quarantine",
                    bucket: inbox,
                    prefix: "quarantine/",
                    days: got(quarantine_days, "quarantine days")?,
                },
                Area {
                    name: "processed",
                    bucket: got(processed, "PALISADE_PROCESSED_BUCKET")?,
                    prefix: "",
                    days: got(processed_days, "processed days")?,
                },
            ],
        })
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// S3 refused some deletions.
    #[error("{0} objects could not be deleted")]
    Partial(usize),
}

impl Classify for RetentionError {
    fn class(&self) -> Class {
        match self {
            RetentionError::Aws(e) => e.class,
            RetentionError::Ledger(e) => e.class(),
            RetentionError::Partial(_) => Class::Transient,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            RetentionError::Aws(e) => e.code(),
            RetentionError::Ledger(_) => "ledger",
            RetentionError::Partial(_) => "partial_delete",
        }
    }
}

/// Whether an object last modified at `modified` is past `days` at `now`.
pub fn expired(modified: DateTime<Utc>, now: DateTime<Utc>, days: u32) -> bool {
    now - modified > chrono::Duration::days(i64::from(days))
}

/// One run at `now`; returns what it deleted per area.
pub async fn run(
    cfg: &Config,
    s3: &aws_sdk_s3::Client,
    ledger: &DynamoLedger,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, RetentionError> {
    let mut report = serde_json::Map::new();
    let mut failed = 0;
    for area in &cfg.areas {
        let mut deleted = 0usize;
        let mut expired_versions: Vec<(String, Option<String>, DateTime<Utc>)> = Vec::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let page = s3
                .list_object_versions()
                .bucket(area.bucket.as_str())
                .prefix(area.prefix)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker)
                .send()
                .await
                .map_err(|e| AwsError::new("s3:ListObjectVersions", e))?;
            for v in page.versions() {
                let (Some(key), Some(modified)) = (v.key(), v.last_modified()) else { continue };
                let Some(modified) = DateTime::from_timestamp(modified.secs(), 0) else { continue };
                if area.prefix.is_empty() && (key.starts_with("incoming/") || key.starts_with("quarantine/")) {
                    continue;
                }
                if expired(modified, now, area.days) {
                    expired_versions.push((key.to_owned(), v.version_id().map(str::to_owned), modified));
                }
            }
            if page.is_truncated != Some(true) {
                break;
            }
            key_marker = page.next_key_marker;
            version_marker = page.next_version_id_marker;
        }
        for (key, version, modified) in expired_versions {
            let res =
                s3.delete_object().bucket(area.bucket.as_str()).key(&key).set_version_id(version.clone()).send().await;
            if let Err(e) = res {
                tracing::warn!(message = "Could not delete an expired object.", error = %AwsError::new("s3:DeleteObject", e));
                failed += 1;
                continue;
            }
            let age_days = (now - modified).num_days();
            let entry = LedgerEntry {
                id: LedgerEntry::derive_id(
                    RecordType::File,
                    &["retention", area.bucket.as_str(), &key, version.as_deref().unwrap_or("")],
                ),
                record_type: RecordType::File,
                at: now,
                tenant: cfg.tenant.clone(),
                function: cfg.runner.function.clone(),
                action: "retention-delete".into(),
                resource: format!("s3://{}/{key}", area.bucket),
                outcome: "deleted".into(),
                actor: cfg.runner.function.clone(),
                correlation_id: uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_URL,
                    format!("s3://{}/{key}", area.bucket).as_bytes(),
                ),
                details: serde_json::json!({"area": area.name, "age_days": age_days, "policy_days": area.days,
                                            "version_id": version}),
            };
            ledger.record(&entry).await?;
            deleted += 1;
        }
        tracing::info!(message = "Retention applied.", area = area.name, deleted, policy_days = area.days);
        report.insert(area.name.to_owned(), serde_json::json!(deleted));
    }
    if failed > 0 {
        return Err(RetentionError::Partial(failed));
    }
    Ok(serde_json::Value::Object(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_is_compared_strictly() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().with_timezone(&Utc);
        assert!(!expired(now - chrono::Duration::days(30), now, 30));
        assert!(expired(now - chrono::Duration::days(30) - chrono::Duration::seconds(1), now, 30));
        assert!(!expired(now, now, 0));
    }
}
