//! `pipeline-deliver`: pushes each extracted quote record to the tenant's target system, exactly once.
//!
//! HTTPS targets get the record as JSON with an `Idempotency-Key` header (the file id, so the receiver can drop
//! repeats) and an HMAC-SHA256 signature over the body. 5xx answers, timeouts and connection failures are retried
//! with backoff within the invocation and then by SQS; a 4xx is permanent (the runner keeps the message and raises
//! an incident). S3 targets get the record as an object. The ledger entry is keyed by the file, so a redelivered
//! message never records (or sends) a second delivery.

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use palisade_shared::batch::RunnerConfig;
use palisade_shared::config::{BucketName, ConfigError, Env, got};
use palisade_shared::envelope::{Envelope, TenantId};
use palisade_shared::error::{AwsError, Class, Classify};
use palisade_shared::ledger::{DynamoLedger, Ledger, LedgerEntry, LedgerError, RecordType};
use palisade_shared::messages::QuoteExtracted;
use sha2::{Digest, Sha256};

/// Where records go.
#[derive(Clone, Debug)]
pub enum Target {
    /// POST to this URL.
    Https {
        /// `https://…` (or `http://` for a loopback test receiver).
        url: hyper::Uri,
    },
    /// Put into this bucket under `prefix`.
    S3 {
        /// The tenant's delivery bucket.
        bucket: BucketName,
        /// Key prefix.
        prefix: String,
    },
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok(Target::S3 { bucket: bucket.parse()?, prefix: prefix.to_owned() });
        }
        let url: hyper::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        let host = url.host().unwrap_or("");
        match url.scheme_str() {
            Some("https") => Ok(Target::Https { url }),
            Some("http") if host == "127.0.0.1" || host == "localhost" => Ok(Target::Https { url }),
            _ => {
                Err("the target must be https:// (http:// only for a loopback test receiver) or s3://bucket/prefix"
                    .into())
            }
        }
    }
}

/// Start-up configuration.
pub struct Config {
    /// The shared runner's settings.
    pub runner: RunnerConfig,
    /// `PALISADE_TENANT`.
    pub tenant: TenantId,
    /// `PALISADE_PROCESSED_BUCKET`: the only bucket records are read from.
    pub processed: BucketName,
    /// `PALISADE_TARGET`: `https://…` or `s3://bucket/prefix`.
    pub target: Target,
    /// `PALISADE_TARGET_SECRET_ARN`: the Secrets Manager secret holding the HMAC key (HTTPS targets).
    pub secret_arn: Option<String>,
    /// `PALISADE_DELIVERY_ATTEMPTS` within one invocation (default 3).
    pub attempts: u32,
    /// `PALISADE_DELIVERY_TIMEOUT_SECS` per attempt (default 10).
    pub timeout: Duration,
}

impl Config {
    /// Reads and validates every variable, reporting all problems at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut env = Env::from_process();
        let runner = RunnerConfig::read(&mut env);
        let tenant = env.required("PALISADE_TENANT");
        let processed = env.required("PALISADE_PROCESSED_BUCKET");
        let target: Option<Target> = env.required("PALISADE_TARGET");
        let secret_arn: Option<String> = env.optional("PALISADE_TARGET_SECRET_ARN", String::new()).into();
        let attempts = env.optional("PALISADE_DELIVERY_ATTEMPTS", 3u32).clamp(1, 10);
        let timeout = env.secs("PALISADE_DELIVERY_TIMEOUT_SECS", Duration::from_secs(10));
        let secret_arn = secret_arn.filter(|s| !s.is_empty());
        if matches!(target, Some(Target::Https { .. })) && secret_arn.is_none() {
            let _: Option<String> = env.required("PALISADE_TARGET_SECRET_ARN");
        }
        env.finish()?;
        Ok(Self {
            runner: got(runner, "runner configuration")?,
            tenant: got(tenant, "PALISADE_TENANT")?,
            processed: got(processed, "PALISADE_PROCESSED_BUCKET")?,
            target: got(target, "PALISADE_TARGET")?,
            secret_arn,
            attempts,
            timeout,
        })
    }
}

type HttpClient = hyper_util::client::legacy::Client<palisade_shared::https::Connector, Full<Bytes>>;

/// Clients and the signing key, built once per cold start.
pub struct Deps<'a> {
    /// Configuration.
    pub cfg: &'a Config,
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// HTTPS client.
    pub http: HttpClient,
    /// HMAC key, from Secrets Manager.
    pub key: Vec<u8>,
    /// The ledger.
    pub ledger: &'a DynamoLedger,
}

/// Builds the HTTPS client (system roots; HTTP allowed only because the target was checked to be loopback).
pub fn http_client() -> Result<HttpClient, String> {
    let https = palisade_shared::https::connector(None).map_err(|e| format!("no TLS roots: {e}"))?;
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https))
}

/// Reads the HMAC key from Secrets Manager.
pub async fn signing_key(sdk: &aws_config::SdkConfig, arn: Option<&str>) -> Result<Vec<u8>, DeliverError> {
    let Some(arn) = arn else { return Ok(Vec::new()) };
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| AwsError::new("secretsmanager:GetSecretValue", e))?;
    out.secret_string.map(String::into_bytes).ok_or(DeliverError::NoKey)
}

/// The signature header value: `sha256=<hex HMAC-SHA256 of the body>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(), // HMAC accepts keys of any length; this arm is never taken
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The message names another tenant's bucket.
    #[error("record is in bucket {0}, which does not belong to this tenant")]
    ForeignBucket(String),
    /// The record's bytes are not the ones extract announced.
    #[error("record {0} changed since it was extracted")]
    RecordChanged(String),
    /// The target refused the record (4xx): retrying the same bytes will not help.
    #[error("target refused the record with HTTP {0}")]
    Refused(u16),
    /// The target failed (5xx, timeout, connection) on every attempt.
    #[error("target unavailable after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The secret has no string value.
    #[error("the target secret has no string value")]
    NoKey,
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl Classify for DeliverError {
    fn class(&self) -> Class {
        match self {
            DeliverError::Unavailable { .. } => Class::Transient,
            DeliverError::Aws(e) => e.class,
            DeliverError::Ledger(e) => e.class(),
            _ => Class::Permanent,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            DeliverError::ForeignBucket(_) => "foreign_bucket",
            DeliverError::RecordChanged(_) => "record_changed",
            DeliverError::Refused(_) => "target_refused",
            DeliverError::Unavailable { .. } => "target_unavailable",
            DeliverError::NoKey => "no_signing_key",
            DeliverError::Aws(e) => e.code(),
            DeliverError::Ledger(_) => "ledger",
        }
    }
}

/// Delivers one record.
pub async fn handle(deps: &Deps<'_>, msg: Envelope<QuoteExtracted>) -> Result<(), DeliverError> {
    let cfg = deps.cfg;
    let q = &msg.payload;
    if q.bucket != cfg.processed.as_str() {
        return Err(DeliverError::ForeignBucket(q.bucket.clone()));
    }
    let id = LedgerEntry::derive_id(RecordType::File, &["delivered", cfg.tenant.as_str(), &q.file_id]);
    if deps.ledger.get(&id).await?.is_some() {
        tracing::info!(message = "Already delivered; nothing to do.", file_id = %q.file_id);
        return Ok(());
    }
    let obj = deps
        .s3
        .get_object()
        .bucket(&q.bucket)
        .key(&q.key)
        .send()
        .await
        .map_err(|e| AwsError::new("s3:GetObject", e))?;
    let body = obj
        .body
        .collect()
        .await
        .map_err(|e| DeliverError::Unavailable { attempts: 0, last: format!("reading the record: {e}") })?
        .into_bytes();
    if hex::encode(Sha256::digest(&body)) != q.record_sha256 {
        return Err(DeliverError::RecordChanged(q.key.clone()));
    }
    let (target, detail) = match &cfg.target {
        Target::Https { url } => {
            let (status, attempts) = post(deps, url, &q.file_id, body.clone()).await?;
            (url.host().unwrap_or("").to_owned(), serde_json::json!({"status": status, "attempts": attempts}))
        }
        Target::S3 { bucket, prefix } => {
            let key = format!("{prefix}{}.json", q.file_id);
            deps.s3
                .put_object()
                .bucket(bucket.as_str())
                .key(&key)
                .content_type("application/json")
                .body(body.clone().into())
                .send()
                .await
                .map_err(|e| AwsError::new("s3:PutObject", e))?;
            (format!("s3://{bucket}/{key}"), serde_json::json!({"bytes": body.len()}))
        }
    };
    let entry = LedgerEntry {
        id,
        record_type: RecordType::File,
        at: chrono::Utc::now(),
        tenant: cfg.tenant.clone(),
        function: cfg.runner.function.clone(),
        action: "deliver".into(),
        resource: format!("s3://{}/{}", q.bucket, q.key),
        outcome: "delivered".into(),
        actor: cfg.runner.function.clone(),
        correlation_id: msg.correlation_id,
        details: serde_json::json!({"file_id": q.file_id, "layout": q.layout, "target": target, "result": detail}),
    };
    deps.ledger.record(&entry).await?;
    tracing::info!(message = "Record delivered.", file_id = %q.file_id, target = %target);
    Ok(())
}

async fn post(deps: &Deps<'_>, url: &hyper::Uri, file_id: &str, body: Bytes) -> Result<(u16, u32), DeliverError> {
    let sig = signature(&deps.key, &body);
    let mut last = String::new();
    for attempt in 1..=deps.cfg.attempts {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 2))).await;
        }
        let req = hyper::Request::post(url.clone())
            .header("content-type", "application/json")
            .header("idempotency-key", file_id)
            .header("x-palisade-signature", &sig)
            .body(Full::new(body.clone()))
            .map_err(|e| DeliverError::Unavailable { attempts: attempt, last: e.to_string() })?;
        match tokio::time::timeout(deps.cfg.timeout, deps.http.request(req)).await {
            Err(_) => last = format!("timed out after {:?}", deps.cfg.timeout),
            Ok(Err(e)) => last = format!("connection failed: {e}"),
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                // drain the body so the connection can be reused; its content is not ours to log
                let _ = resp.into_body().collect().await;
                match status {
                    200..=299 => return Ok((status, attempt)),
                    408 | 429 | 500..=599 => last = format!("HTTP {status}"),
                    _ => return Err(DeliverError::Refused(status)),
                }
            }
        }
        tracing::warn!(message = "Delivery attempt failed.", attempt, error = %last);
    }
    Err(DeliverError::Unavailable { attempts: deps.cfg.attempts, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn targets_are_validated() {
        assert!(matches!("https://uw.example.com/quotes".parse::<Target>(), Ok(Target::Https { .. })));
        assert!(matches!("http://127.0.0.1:8080/q".parse::<Target>(), Ok(Target::Https { .. })));
        assert!("http://uw.example.com/q".parse::<Target>().is_err(), "plain HTTP leaves the machine");
        match "s3://acme-delivery/quotes/".parse::<Target>() {
            Ok(Target::S3 { bucket, prefix }) => {
                assert_eq!((bucket.as_str(), prefix.as_str()), ("acme-delivery", "quotes/"))
            }
            other => panic!("{other:?}"),
        }
        assert!("ftp://x".parse::<Target>().is_err());
    }
}
