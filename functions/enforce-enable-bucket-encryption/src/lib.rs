//! `enable-bucket-encryption`: sets default encryption on an S3 bucket; undo puts back what was there.

use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use palisade_shared::action::{Action, ActionError, Inspection, ResourceRef};
use palisade_shared::error::AwsError;
use serde::Deserialize;
use serde_json::{Value, json};

/// Parameters of `enable-bucket-encryption`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnableBucketEncryptionParams {
    /// `AES256` (S3-managed keys, the default) or `aws:kms`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// The KMS key for `aws:kms`; the AWS-managed key when absent.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

fn default_algorithm() -> String {
    "AES256".into()
}

/// The action, holding its S3 client.
pub struct EnableBucketEncryption {
    s3: aws_sdk_s3::Client,
}

impl EnableBucketEncryption {
    /// Builds the client once per cold start.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self { s3: palisade_shared::aws::s3(sdk) }
    }

    async fn put(&self, bucket: &str, algorithm: &str, key: Option<&str>) -> Result<(), ActionError> {
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::from(algorithm))
            .set_kms_master_key_id(key.map(str::to_owned))
            .build()
            .map_err(|e| ActionError::State(e.to_string()))?;
        let conf = ServerSideEncryptionConfiguration::builder()
            .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).build())
            .build()
            .map_err(|e| ActionError::State(e.to_string()))?;
        self.s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(conf)
            .send()
            .await
            .map_err(|e| AwsError::new("s3:PutBucketEncryption", e))?;
        Ok(())
    }
}

impl Action for EnableBucketEncryption {
    const NAME: &'static str = "enable-bucket-encryption";
    const PERMISSIONS: &'static [&'static str] = &["s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration"];
    type Params = EnableBucketEncryptionParams;

    async fn inspect(&self, t: &ResourceRef) -> Result<Option<Inspection>, ActionError> {
        let rule = match self.s3.get_bucket_encryption().bucket(&t.id).send().await {
            Ok(o) => o
                .server_side_encryption_configuration
                .and_then(|c| c.rules.into_iter().next())
                .and_then(|r| r.apply_server_side_encryption_by_default),
            Err(e) => {
                let e = AwsError::new("s3:GetBucketEncryption", e);
                match e.code.as_str() {
                    "ServerSideEncryptionConfigurationNotFoundError" => None,
                    "NoSuchBucket" => return Ok(None),
                    _ => return Err(e.into()),
                }
            }
        };
        let state = match &rule {
            Some(r) => json!({"algorithm": r.sse_algorithm.as_str(), "kms_key_id": r.kms_master_key_id}),
            None => json!({"algorithm": null}),
        };
        Ok(Some(Inspection { violating: rule.is_none(), state }))
    }

    async fn apply(
        &self,
        t: &ResourceRef,
        p: &EnableBucketEncryptionParams,
        _: &Inspection,
    ) -> Result<Value, ActionError> {
        if !matches!(p.algorithm.as_str(), "AES256" | "aws:kms") {
            return Err(ActionError::Params {
                action: Self::NAME,
                reason: "algorithm must be AES256 or aws:kms".into(),
            });
        }
        if p.kms_key_id.is_some() && p.algorithm != "aws:kms" {
            return Err(ActionError::Params {
                action: Self::NAME,
                reason: "kms-key-id needs algorithm aws:kms".into(),
            });
        }
        self.put(&t.id, &p.algorithm, p.kms_key_id.as_deref()).await?;
        Ok(json!({"algorithm": p.algorithm, "kms_key_id": p.kms_key_id}))
    }

    async fn undo(&self, t: &ResourceRef, before: &Value) -> Result<Value, ActionError> {
        match before.get("algorithm").and_then(Value::as_str) {
            None => {
                self.s3
                    .delete_bucket_encryption()
                    .bucket(&t.id)
                    .send()
                    .await
                    .map_err(|e| AwsError::new("s3:DeleteBucketEncryption", e))?;
            }
            Some(alg) => self.put(&t.id, alg, before.get("kms_key_id").and_then(Value::as_str)).await?,
        }
        Ok(before.clone())
    }
}
