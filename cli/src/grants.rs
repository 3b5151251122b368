//! Temporary access grants: an inline policy on an IAM user allowing `sts:AssumeRole` on one role, and a row in
//! the stack's grants table that the scan checks and `enforce-revoke-expired-grant` revokes when it expires.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use palisade_shared::error::AwsError;

use crate::{CliError, Clients};

/// The name of the inline policy that carries grant `id` (the same as enforce-revoke-expired-grant's).
pub fn policy_name(grant_id: &str) -> String {
    format!("palisade-grant-{grant_id}")
}

/// The policy document allowing `role` to be assumed.
pub fn policy_document(role: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role}],
    })
    .to_string()
}

/// One grant to make.
#[derive(Debug)]
pub struct GrantRequest {
    /// The IAM user.
    pub principal: String,
    /// The role ARN.
    pub role: String,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
    /// Who grants it.
    pub granted_by: String,
    /// Who is reminded about it.
    pub owner: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `palisade grant`: writes the row first, so that access never exists without a record of when it ends.
pub async fn grant(c: &Clients, stack: &str, req: &GrantRequest) -> Result<(), CliError> {
    let now = Utc::now();
    if req.expires_at <= now {
        return Err(CliError::Input(format!("--until {} is in the past", ts(&req.expires_at))));
    }
    let st = c.stack(stack).await?;
    let table = st.physical("GrantsTable")?;
    if let Err(e) = c.iam.get_user().user_name(&req.principal).send().await {
        let e = AwsError::new("iam:GetUser", e);
        return Err(if e.is_code("NoSuchEntity") {
            CliError::Input(format!("no IAM user {:?}", req.principal))
        } else {
            e.into()
        });
    }
    let id = format!("g-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let item = HashMap::from([
        ("id".to_owned(), s(&id)),
        ("principal".to_owned(), s(&req.principal)),
        ("role".to_owned(), s(&req.role)),
        ("status".to_owned(), s("active")),
        ("expires_at".to_owned(), s(ts(&req.expires_at))),
        ("owner".to_owned(), s(&req.owner)),
        ("granted_by".to_owned(), s(&req.granted_by)),
        ("granted_at".to_owned(), s(ts(&now))),
    ]);
    c.db.put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(id)")
        .send()
        .await
        .map_err(|e| AwsError::new("dynamodb:PutItem", e))?;
    let put = c
        .iam
        .put_user_policy()
        .user_name(&req.principal)
        .policy_name(policy_name(&id))
        .policy_document(policy_document(&req.role))
        .send()
        .await;
    if let Err(e) = put {
        // no access was given, so the row must not claim it was
        let _ = c.db.delete_item().table_name(table).key("id", s(&id)).send().await;
        return Err(AwsError::new("iam:PutUserPolicy", e).into());
    }
    println!("{id}");
    eprintln!("granted {} sts:AssumeRole on {} until {}", req.principal, req.role, ts(&req.expires_at));
    Ok(())
}

/// `palisade revoke`: deletes the grant's policy and marks its row revoked.
pub async fn revoke(c: &Clients, stack: &str, id: &str) -> Result<(), CliError> {
    let st = c.stack(stack).await?;
    let table = st.physical("GrantsTable")?;
    let item =
        c.db.get_item()
            .table_name(table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("dynamodb:GetItem", e))?
            .item
            .ok_or_else(|| CliError::Input(format!("no grant {id:?}")))?;
    let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    if get("status") != "active" {
        return Err(CliError::Input(format!("grant {id:?} is {}, not active", get("status"))));
    }
    let principal = get("principal");
    if let Err(e) = c.iam.delete_user_policy().user_name(&principal).policy_name(policy_name(id)).send().await {
        let e = AwsError::new("iam:DeleteUserPolicy", e);
        if !e.is_code("NoSuchEntity") {
            return Err(e.into());
        }
    }
    c.db.update_item()
        .table_name(table)
        .key("id", s(id))
        .update_expression("SET #s = :s, status_changed_at = :t")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", s("revoked"))
        .expression_attribute_values(":t", s(ts(&Utc::now())))
        .send()
        .await
        .map_err(|e| AwsError::new("dynamodb:UpdateItem", e))?;
    println!("revoked {id} ({principal} on {})", get("role"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_assuming_only_the_role() {
        let doc: serde_json::Value = serde_json::from_str(&policy_document("arn:aws:iam::1:role/r")).unwrap();
        assert_eq!(doc["Statement"][0]["Action"], "sts:AssumeRole");
        assert_eq!(doc["Statement"][0]["Resource"], "arn:aws:iam::1:role/r");
        assert_eq!(policy_name("g-1"), "palisade-grant-g-1");
    }
}
