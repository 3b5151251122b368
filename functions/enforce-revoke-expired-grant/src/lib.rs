//! `revoke-expired-grant`: removes the access a temporary grant gave once it has expired.
//!
//! A grant (made by `palisade grant`) is a row in the grants table plus an inline policy on the principal's IAM
//! user that allows `sts:AssumeRole` on the granted role. Revoking deletes that policy and marks the row revoked;
//! undo puts the recorded policy back.

use aws_sdk_dynamodb::types::AttributeValue;
use palisade_shared::action::{Action, ActionError, Inspection, ResourceRef};
use palisade_shared::config::{Env, TableName};
use palisade_shared::error::AwsError;
use serde::Deserialize;
use serde_json::{Value, json};

/// Parameters of `revoke-expired-grant` (none).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RevokeExpiredGrantParams {}

/// The name of the inline policy that carries grant `id`.
pub fn policy_name(grant_id: &str) -> String {
    format!("palisade-grant-{grant_id}")
}

/// The action, holding its clients and the grants table.
pub struct RevokeExpiredGrant {
    iam: aws_sdk_iam::Client,
    db: aws_sdk_dynamodb::Client,
    grants: TableName,
}

impl RevokeExpiredGrant {
    /// Reads `PALISADE_GRANTS_TABLE` into `env`'s pass (see `action::run_with`) and builds the clients.
    pub fn configure(sdk: &aws_config::SdkConfig, env: &mut Env) -> Option<Self> {
        let grants: Option<TableName> = env.required("PALISADE_GRANTS_TABLE");
        Some(Self { iam: aws_sdk_iam::Client::new(sdk), db: aws_sdk_dynamodb::Client::new(sdk), grants: grants? })
    }

    async fn set_status(&self, id: &str, status: &str) -> Result<(), ActionError> {
        self.db
            .update_item()
            .table_name(self.grants.as_str())
            .key("id", AttributeValue::S(id.into()))
            .update_expression("SET #s = :s, status_changed_at = :t")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":s", AttributeValue::S(status.into()))
            .expression_attribute_values(":t", AttributeValue::S(chrono::Utc::now().to_rfc3339()))
            .send()
            .await
            .map_err(|e| AwsError::new("dynamodb:UpdateItem", e))?;
        Ok(())
    }
}

impl Action for RevokeExpiredGrant {
    const NAME: &'static str = "revoke-expired-grant";
    const PERMISSIONS: &'static [&'static str] =
        &["iam:GetUserPolicy", "iam:DeleteUserPolicy", "iam:PutUserPolicy", "dynamodb:GetItem", "dynamodb:UpdateItem"];
    type Params = RevokeExpiredGrantParams;

    async fn inspect(&self, t: &ResourceRef) -> Result<Option<Inspection>, ActionError> {
        let item = self
            .db
            .get_item()
            .table_name(self.grants.as_str())
            .key("id", AttributeValue::S(t.id.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("dynamodb:GetItem", e))?
            .item;
        let Some(item) = item else { return Ok(None) };
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let (principal, expires_at) = (s("principal"), s("expires_at"));
        let expired =
            chrono::DateTime::parse_from_rfc3339(&expires_at).map(|t| t <= chrono::Utc::now()).unwrap_or(true);
        let document =
            match self.iam.get_user_policy().user_name(&principal).policy_name(policy_name(&t.id)).send().await {
                Ok(o) => Some(percent_decode(&o.policy_document)),
                Err(e) => {
                    let e = AwsError::new("iam:GetUserPolicy", e);
                    if e.is_code("NoSuchEntity") { None } else { return Err(e.into()) }
                }
            };
        let state = json!({
            "principal": principal, "role": s("role"), "expires_at": expires_at, "status": s("status"),
            "policy_document": document,
        });
        Ok(Some(Inspection { violating: expired && document.is_some(), state }))
    }

    async fn apply(
        &self,
        t: &ResourceRef,
        _: &RevokeExpiredGrantParams,
        before: &Inspection,
    ) -> Result<Value, ActionError> {
        let principal = before.state["principal"].as_str().unwrap_or_default();
        match self.iam.delete_user_policy().user_name(principal).policy_name(policy_name(&t.id)).send().await {
            Ok(_) => {}
            Err(e) => {
                let e = AwsError::new("iam:DeleteUserPolicy", e);
                if !e.is_code("NoSuchEntity") {
                    return Err(e.into());
                }
            }
        }
        self.set_status(&t.id, "revoked").await?;
        let mut after = before.state.clone();
        after["status"] = json!("revoked");
        after["policy_document"] = Value::Null;
        Ok(after)
    }

    async fn undo(&self, t: &ResourceRef, before: &Value) -> Result<Value, ActionError> {
        let (Some(principal), Some(doc)) = (before["principal"].as_str(), before["policy_document"].as_str()) else {
            return Err(ActionError::State("no principal or policy document recorded".into()));
        };
        self.iam
            .put_user_policy()
            .user_name(principal)
            .policy_name(policy_name(&t.id))
            .policy_document(doc)
            .send()
            .await
            .map_err(|e| AwsError::new("iam:PutUserPolicy", e))?;
        self.set_status(&t.id, before["status"].as_str().unwrap_or("active")).await?;
        Ok(before.clone())
    }
}

/// IAM returns policy documents URL-encoded.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}
