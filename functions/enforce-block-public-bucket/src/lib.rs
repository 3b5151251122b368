//! `block-public-bucket`: turns on all four S3 public access block settings; undo restores what was there.

use aws_sdk_s3::types::PublicAccessBlockConfiguration;
use palisade_shared::action::{Action, ActionError, Inspection, ResourceRef};
use palisade_shared::error::AwsError;
use serde::Deserialize;
use serde_json::{Value, json};

/// Parameters of `block-public-bucket` (none yet; unknown keys are refused so typos are caught).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BlockPublicBucketParams {}

/// The action, holding its S3 client.
pub struct BlockPublicBucket {
    s3: aws_sdk_s3::Client,
}

impl BlockPublicBucket {
    /// Builds the client once per cold start.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self { s3: palisade_shared::aws::s3(sdk) }
    }
}

const FLAGS: [&str; 4] = ["block_public_acls", "ignore_public_acls", "block_public_policy", "restrict_public_buckets"];

fn config(flags: &Value) -> PublicAccessBlockConfiguration {
    let f = |k: &str| flags.get(k).and_then(Value::as_bool).unwrap_or(false);
    PublicAccessBlockConfiguration::builder()
        .block_public_acls(f(FLAGS[0]))
        .ignore_public_acls(f(FLAGS[1]))
        .block_public_policy(f(FLAGS[2]))
        .restrict_public_buckets(f(FLAGS[3]))
        .build()
}

impl Action for BlockPublicBucket {
    const NAME: &'static str = "block-public-bucket";
    const PERMISSIONS: &'static [&'static str] = &["s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"];
    type Params = BlockPublicBucketParams;

    async fn inspect(&self, t: &ResourceRef) -> Result<Option<Inspection>, ActionError> {
        let pab = match self.s3.get_public_access_block().bucket(&t.id).send().await {
            Ok(o) => o.public_access_block_configuration,
            Err(e) => {
                let e = AwsError::new("s3:GetPublicAccessBlock", e);
                match e.code.as_str() {
                    "NoSuchPublicAccessBlockConfiguration" => None,
                    "NoSuchBucket" => return Ok(None),
                    _ => return Err(e.into()),
                }
            }
        };
        let flags = pab.map(|c| {
            json!({
                FLAGS[0]: c.block_public_acls.unwrap_or(false),
                FLAGS[1]: c.ignore_public_acls.unwrap_or(false),
                FLAGS[2]: c.block_public_policy.unwrap_or(false),
                FLAGS[3]: c.restrict_public_buckets.unwrap_or(false),
            })
        });
        let blocked = flags.as_ref().is_some_and(|f| FLAGS.iter().all(|k| f[k] == json!(true)));
        Ok(Some(Inspection { violating: !blocked, state: json!({"public_access_block": flags}) }))
    }

    async fn apply(&self, t: &ResourceRef, _: &BlockPublicBucketParams, _: &Inspection) -> Result<Value, ActionError> {
        let all = json!({FLAGS[0]: true, FLAGS[1]: true, FLAGS[2]: true, FLAGS[3]: true});
        self.s3
            .put_public_access_block()
            .bucket(&t.id)
            .public_access_block_configuration(config(&all))
            .send()
            .await
            .map_err(|e| AwsError::new("s3:PutPublicAccessBlock", e))?;
        Ok(json!({"public_access_block": all}))
    }

    async fn undo(&self, t: &ResourceRef, before: &Value) -> Result<Value, ActionError> {
        let flags =
            before.get("public_access_block").ok_or_else(|| ActionError::State("no `public_access_block`".into()))?;
        if flags.is_null() {
            self.s3
                .delete_public_access_block()
                .bucket(&t.id)
                .send()
                .await
                .map_err(|e| AwsError::new("s3:DeletePublicAccessBlock", e))?;
        } else {
            self.s3
                .put_public_access_block()
                .bucket(&t.id)
                .public_access_block_configuration(config(flags))
                .send()
                .await
                .map_err(|e| AwsError::new("s3:PutPublicAccessBlock", e))?;
        }
        Ok(before.clone())
    }
}
