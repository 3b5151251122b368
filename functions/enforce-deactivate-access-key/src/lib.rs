//! `deactivate-access-key`: makes an old IAM access key inactive (never deletes it); undo reactivates it.

use aws_sdk_iam::types::StatusType;
use palisade_shared::action::{Action, ActionError, Inspection, ResourceRef};
use palisade_shared::error::AwsError;
use serde::Deserialize;
use serde_json::{Value, json};

/// Parameters of `deactivate-access-key` (none: deactivation is reversible, deletion is not, so we never delete).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeactivateAccessKeyParams {}

/// The action, holding its IAM client.
pub struct DeactivateAccessKey {
    iam: aws_sdk_iam::Client,
}

impl DeactivateAccessKey {
    /// Builds the client once per cold start.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self { iam: aws_sdk_iam::Client::new(sdk) }
    }

    async fn set(&self, t: &ResourceRef, status: StatusType) -> Result<(), ActionError> {
        self.iam
            .update_access_key()
            .user_name(user(t)?)
            .access_key_id(&t.id)
            .status(status)
            .send()
            .await
            .map_err(|e| AwsError::new("iam:UpdateAccessKey", e))?;
        Ok(())
    }
}

fn user(t: &ResourceRef) -> Result<&str, ActionError> {
    t.attributes.get("user").and_then(Value::as_str).ok_or_else(|| ActionError::Params {
        action: DeactivateAccessKey::NAME,
        reason: "resource has no `user` attribute".into(),
    })
}

impl Action for DeactivateAccessKey {
    const NAME: &'static str = "deactivate-access-key";
    const PERMISSIONS: &'static [&'static str] = &["iam:ListAccessKeys", "iam:UpdateAccessKey"];
    type Params = DeactivateAccessKeyParams;

    async fn inspect(&self, t: &ResourceRef) -> Result<Option<Inspection>, ActionError> {
        let out = match self.iam.list_access_keys().user_name(user(t)?).send().await {
            Ok(o) => o,
            Err(e) => {
                let e = AwsError::new("iam:ListAccessKeys", e);
                return if e.is_code("NoSuchEntity") { Ok(None) } else { Err(e.into()) };
            }
        };
        let Some(key) = out.access_key_metadata.iter().find(|k| k.access_key_id() == Some(t.id.as_str())) else {
            return Ok(None);
        };
        let status = key.status().map_or("Unknown", |s| s.as_str());
        Ok(Some(Inspection { violating: status == "Active", state: json!({"status": status}) }))
    }

    async fn apply(
        &self,
        t: &ResourceRef,
        _: &DeactivateAccessKeyParams,
        _: &Inspection,
    ) -> Result<Value, ActionError> {
        self.set(t, StatusType::Inactive).await?;
        Ok(json!({"status": "Inactive"}))
    }

    async fn undo(&self, t: &ResourceRef, before: &Value) -> Result<Value, ActionError> {
        if before.get("status").and_then(Value::as_str) == Some("Active") {
            self.set(t, StatusType::Active).await?;
        }
        Ok(before.clone())
    }
}
