//! The Lambda step: an accepted upload in, a stored and announced quote record out; a file that cannot be read
//! is quarantined with a precise reason and an incident, never half-delivered.

use palisade_shared::batch::RunnerConfig;
use palisade_shared::config::{BucketName, ConfigError, Env, TopicArn, got};
use palisade_shared::envelope::{Envelope, TenantId};
use palisade_shared::error::{AwsError, Class, Classify};
use palisade_shared::incident::{IncidentReport, Incidents};
use palisade_shared::ledger::{DynamoLedger, Ledger, LedgerEntry, RecordType};
use palisade_shared::messages::{FileAccepted, QuoteExtracted};
use palisade_shared::publish::Publisher;
pub use palisade_shared::step::StepError;
use sha2::{Digest, Sha256};

use crate::{ExtractError, Limits, RuleSet};

/// Start-up configuration.
pub struct Config {
    /// The shared runner's settings.
    pub runner: RunnerConfig,
    /// `PALISADE_TENANT`.
    pub tenant: TenantId,
    /// `PALISADE_INBOX_BUCKET`: the only bucket uploads are read from.
    pub inbox: BucketName,
    /// `PALISADE_PROCESSED_BUCKET`: where records are written.
    pub processed: BucketName,
    /// `PALISADE_QUOTE_EXTRACTED_TOPIC_ARN`.
    pub extracted_topic: TopicArn,
    /// `PALISADE_RULES_DIR`: extraction rules from a folder instead of the compiled-in ones.
    pub rules_dir: Option<String>,
}

impl Config {
    /// Reads and validates every variable, reporting all problems at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut env = Env::from_process();
        let runner = RunnerConfig::read(&mut env);
        let tenant = env.required("PALISADE_TENANT");
        let inbox = env.required("PALISADE_INBOX_BUCKET");
        let processed = env.required("PALISADE_PROCESSED_BUCKET");
        let extracted_topic = env.required("PALISADE_QUOTE_EXTRACTED_TOPIC_ARN");
        let rules_dir = env.optional("PALISADE_RULES_DIR", String::new());
        env.finish()?;
        Ok(Self {
            runner: got(runner, "runner configuration")?,
            tenant: got(tenant, "PALISADE_TENANT")?,
            inbox: got(inbox, "PALISADE_INBOX_BUCKET")?,
            processed: got(processed, "PALISADE_PROCESSED_BUCKET")?,
            extracted_topic: got(extracted_topic, "PALISADE_QUOTE_EXTRACTED_TOPIC_ARN")?,
            rules_dir: Some(rules_dir).filter(|d| !d.is_empty()),
        })
    }

    /// The rules this function extracts with; a bad rules file fails the cold start with every problem listed.
    pub fn rules(&self) -> Result<RuleSet, crate::RulesError> {
        match &self.rules_dir {
            Some(dir) => RuleSet::load_dir(dir),
            None => RuleSet::embedded(),
        }
    }
}

/// Clients and rules, built once per cold start.
pub struct Deps<'a> {
    /// Configuration.
    pub cfg: &'a Config,
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// SNS.
    pub publisher: Publisher,
    /// Ledger and incidents.
    pub incidents: &'a Incidents<DynamoLedger>,
    /// Extraction rules.
    pub rules: RuleSet,
}

fn entry(
    deps: &Deps<'_>,
    msg: &Envelope<FileAccepted>,
    parts: &[&str],
    outcome: &str,
    details: serde_json::Value,
) -> LedgerEntry {
    let f = &msg.payload;
    LedgerEntry {
        id: LedgerEntry::derive_id(RecordType::File, parts),
        record_type: RecordType::File,
        at: chrono::Utc::now(),
        tenant: deps.cfg.tenant.clone(),
        function: deps.cfg.runner.function.clone(),
        action: "extract".into(),
        resource: format!("s3://{}/{}", f.bucket, f.key),
        outcome: outcome.into(),
        actor: deps.cfg.runner.function.clone(),
        correlation_id: msg.correlation_id,
        details,
    }
}

/// Extracts one accepted upload.
pub async fn handle(deps: &Deps<'_>, msg: Envelope<FileAccepted>) -> Result<(), StepError> {
    let cfg = deps.cfg;
    let f = &msg.payload;
    if f.bucket != cfg.inbox.as_str() {
        return Err(StepError::ForeignBucket(f.bucket.clone()));
    }
    let ledger = deps.incidents.ledger();
    let done_id = LedgerEntry::derive_id(RecordType::File, &["extracted", cfg.tenant.as_str(), &f.file_id]);
    if ledger.get(&done_id).await?.is_some() {
        tracing::info!(message = "Already extracted; nothing to do.", file_id = %f.file_id);
        return Ok(());
    }
    let limits = Limits::quote();
    let obj = match deps.s3.get_object().bucket(&f.bucket).key(&f.key).set_version_id(f.version_id.clone()).send().await
    {
        Ok(o) => o,
        Err(e) => {
            let e = AwsError::new("s3:GetObject", e);
            if e.is_code("NoSuchKey") || e.is_code("NoSuchVersion") {
                // Already quarantined or deleted by retention: nothing left to extract.
                tracing::warn!(message = "Accepted file is gone; nothing to extract.", file_id = %f.file_id);
                return Ok(());
            }
            return Err(e.into());
        }
    };
    let bytes = obj.body.collect().await.map_err(|e| StepError::Io(format!("reading the upload: {e}")))?.to_vec();
    let sha = hex::encode(Sha256::digest(&bytes));
    let rules = deps.rules.clone();
    let result = if sha != f.sha256 {
        Err(None)
    } else {
        tokio::task::spawn_blocking(move || crate::extract_quote(&bytes, &rules, &limits))
            .await
            .map_err(|e| StepError::Io(format!("extraction task failed: {e}")))?
            .map_err(Some)
    };
    let extracted = match result {
        Ok(x) => x,
        Err(why) => return quarantine(deps, &msg, why.as_ref()).await,
    };
    let record = serde_json::json!({
        "file_id": f.file_id,
        "tenant": cfg.tenant,
        "layout": extracted.layout,
        "source_sha256": f.sha256,
        "quote": extracted.quote,
    });
    let body = serde_json::to_vec(&record).map_err(|e| StepError::Io(e.to_string()))?;
    let record_sha = hex::encode(Sha256::digest(&body));
    let key = format!("quotes/{}.json", f.file_id);
    deps.s3
        .put_object()
        .bucket(cfg.processed.as_str())
        .key(&key)
        .content_type("application/json")
        .body(body.into())
        .send()
        .await
        .map_err(|e| AwsError::new("s3:PutObject", e))?;
    let out = QuoteExtracted {
        file_id: f.file_id.clone(),
        bucket: cfg.processed.to_string(),
        key: key.clone(),
        layout: extracted.layout.clone(),
        record_sha256: record_sha,
    };
    let mut env = msg.follow(out);
    env.id = uuid_from(&done_id);
    deps.publisher.publish(&cfg.extracted_topic, &env).await?;
    let e = entry(
        deps,
        &msg,
        &["extracted", cfg.tenant.as_str(), &f.file_id],
        "extracted",
        serde_json::json!({"file_id": f.file_id, "layout": extracted.layout, "record": key,
                           "coverages": extracted.quote.coverages.len()}),
    );
    ledger.record(&e).await?;
    tracing::info!(message = "Quote extracted.", file_id = %f.file_id, layout = %extracted.layout);
    Ok(())
}

/// A message id derived from the ledger id, so a retried extraction announces the same message.
fn uuid_from(id: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, id.as_bytes())
}

async fn quarantine(
    deps: &Deps<'_>,
    msg: &Envelope<FileAccepted>,
    why: Option<&ExtractError>,
) -> Result<(), StepError> {
    let f = &msg.payload;
    let (code, summary) = match why {
        Some(e) => (e.code(), e.to_string()),
        None => ("file_changed", "the file changed after it was accepted".to_owned()),
    };
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let kept_in = palisade_shared::quarantine::move_aside(
        &deps.s3,
        &f.bucket,
        &f.key,
        f.version_id.as_deref(),
        &day,
        &format!("{}.pdf", f.file_id),
        code,
    )
    .await?;
    let e = entry(
        deps,
        msg,
        &["quarantined", &f.key, f.version_id.as_deref().unwrap_or("")],
        "quarantined",
        serde_json::json!({"reason": code, "summary": summary, "kept_in": kept_in, "file_id": f.file_id}),
    );
    deps.incidents.ledger().record(&e).await?;
    deps.incidents
        .raise(&IncidentReport {
            tenant: Some(deps.cfg.tenant.clone()),
            correlation_id: Some(msg.correlation_id),
            source_id: format!("s3://{}/{}", f.bucket, f.key),
            file: Some(format!("s3://{}/{}", f.bucket, f.key)),
            class: Class::Permanent,
            code: code.to_owned(),
            summary: format!("quote not extracted: {summary}"),
            kept_in,
        })
        .await?;
    tracing::warn!(message = "File quarantined.", reason = code, file_id = %f.file_id);
    Ok(())
}
