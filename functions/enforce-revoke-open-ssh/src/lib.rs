//! `revoke-open-ssh`: removes the parts of a security group's ingress rules that open a port (22 by default) to
//! the whole internet; other sources in the same rules stay. Undo authorises exactly what was revoked.

use std::collections::HashMap;

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Ipv6Range};
use palisade_shared::action::{Action, ActionError, Inspection, ResourceRef};
use palisade_shared::coalesce::Coalescer;
use palisade_shared::error::AwsError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Parameters of `revoke-open-ssh`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RevokeOpenSshParams {
    /// The port that must not be open to the world.
    #[serde(default = "ssh")]
    pub port: i32,
}

fn ssh() -> i32 {
    22
}

/// An ingress rule's world-open part, as recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRule {
    /// `tcp`, `udp`, or `-1` for all.
    pub protocol: String,
    /// First port (absent for protocol -1).
    pub from_port: Option<i32>,
    /// Last port.
    pub to_port: Option<i32>,
    /// World-open IPv4 ranges in this rule.
    pub ipv4: Vec<String>,
    /// World-open IPv6 ranges in this rule.
    pub ipv6: Vec<String>,
}

/// The world-open parts of `perms` that reach `port`.
pub fn open_rules(perms: &[IpPermission], port: i32) -> Vec<OpenRule> {
    perms
        .iter()
        .filter(|p| {
            let proto = p.ip_protocol().unwrap_or("");
            proto == "-1"
                || (proto == "tcp" && p.from_port().unwrap_or(0) <= port && port <= p.to_port().unwrap_or(65535))
        })
        .filter_map(|p| {
            let ipv4: Vec<String> = p
                .ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip())
                .filter(|c| *c == "0.0.0.0/0")
                .map(str::to_owned)
                .collect();
            let ipv6: Vec<String> = p
                .ipv6_ranges()
                .iter()
                .filter_map(|r| r.cidr_ipv6())
                .filter(|c| *c == "::/0")
                .map(str::to_owned)
                .collect();
            (!ipv4.is_empty() || !ipv6.is_empty()).then(|| OpenRule {
                protocol: p.ip_protocol().unwrap_or("-1").to_owned(),
                from_port: p.from_port(),
                to_port: p.to_port(),
                ipv4,
                ipv6,
            })
        })
        .collect()
}

fn permission(r: &OpenRule) -> IpPermission {
    IpPermission::builder()
        .ip_protocol(&r.protocol)
        .set_from_port(r.from_port)
        .set_to_port(r.to_port)
        .set_ip_ranges(Some(r.ipv4.iter().map(|c| IpRange::builder().cidr_ip(c).build()).collect()))
        .set_ipv6_ranges(Some(r.ipv6.iter().map(|c| Ipv6Range::builder().cidr_ipv6(c).build()).collect()))
        .build()
}

fn rules_of(state: &Value) -> Result<Vec<OpenRule>, ActionError> {
    serde_json::from_value(state.get("open_rules").cloned().unwrap_or(Value::Null))
        .map_err(|e| ActionError::State(format!("open_rules: {e}")))
}

/// A group's ingress rules, `None` when the group is gone.
type Described = Result<Option<Vec<IpPermission>>, AwsError>;

/// The action, holding its EC2 client.
pub struct RevokeOpenSsh {
    ec2: aws_sdk_ec2::Client,
    /// The records of a batch re-check their groups in one DescribeSecurityGroups call.
    describe: Coalescer<String, Described>,
}

/// Groups re-checked per DescribeSecurityGroups call: a whole SQS batch.
const DESCRIBE_GROUP: usize = 10;

impl RevokeOpenSsh {
    /// Builds the client once per cold start (inside the Tokio runtime: the grouped describe is a task).
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let ec2 = aws_sdk_ec2::Client::new(sdk);
        let client = ec2.clone();
        let describe = Coalescer::spawn(DESCRIBE_GROUP, move |ids: Vec<String>| {
            let ec2 = client.clone();
            async move { describe(&ec2, ids).await }
        });
        Self { ec2, describe }
    }
}

/// The ingress rules of `ids`, in order. By filter rather than by id: an id list fails whole when one group is
/// gone, a filter simply leaves it out.
async fn describe(ec2: &aws_sdk_ec2::Client, ids: Vec<String>) -> Vec<Described> {
    let filter = Filter::builder().name("group-id").set_values(Some(ids.clone())).build();
    let mut rules = HashMap::new();
    let mut pages = ec2.describe_security_groups().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(out) => {
                for g in out.security_groups() {
                    if let Some(id) = g.group_id() {
                        rules.insert(id.to_owned(), g.ip_permissions().to_vec());
                    }
                }
            }
            Err(e) => {
                let e = AwsError::new("ec2:DescribeSecurityGroups", e);
                return ids.iter().map(|_| Err(e.clone())).collect();
            }
        }
    }
    ids.iter().map(|id| Ok(rules.get(id).cloned())).collect()
}

impl Action for RevokeOpenSsh {
    const NAME: &'static str = "revoke-open-ssh";
    const PERMISSIONS: &'static [&'static str] =
        &["ec2:DescribeSecurityGroups", "ec2:RevokeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupIngress"];
    type Params = RevokeOpenSshParams;

    async fn inspect(&self, t: &ResourceRef) -> Result<Option<Inspection>, ActionError> {
        let Some(permissions) = self.describe.call(t.id.clone(), "ec2:DescribeSecurityGroups").await? else {
            return Ok(None);
        };
        let port = t.attributes.get("port").and_then(Value::as_i64).and_then(|p| i32::try_from(p).ok()).unwrap_or(22);
        let open = open_rules(&permissions, port);
        Ok(Some(Inspection { violating: !open.is_empty(), state: json!({"port": port, "open_rules": open}) }))
    }

    async fn apply(&self, t: &ResourceRef, p: &RevokeOpenSshParams, before: &Inspection) -> Result<Value, ActionError> {
        let rules: Vec<OpenRule> = rules_of(&before.state)?;
        if !rules.is_empty() {
            self.ec2
                .revoke_security_group_ingress()
                .group_id(&t.id)
                .set_ip_permissions(Some(rules.iter().map(permission).collect()))
                .send()
                .await
                .map_err(|e| AwsError::new("ec2:RevokeSecurityGroupIngress", e))?;
        }
        Ok(json!({"port": p.port, "open_rules": []}))
    }

    async fn undo(&self, t: &ResourceRef, before: &Value) -> Result<Value, ActionError> {
        let rules = rules_of(before)?;
        if !rules.is_empty() {
            self.ec2
                .authorize_security_group_ingress()
                .group_id(&t.id)
                .set_ip_permissions(Some(rules.iter().map(permission).collect()))
                .send()
                .await
                .map_err(|e| AwsError::new("ec2:AuthorizeSecurityGroupIngress", e))?;
        }
        Ok(before.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(proto: &str, from: Option<i32>, to: Option<i32>, v4: &[&str], v6: &[&str]) -> IpPermission {
        permission(&OpenRule {
            protocol: proto.into(),
            from_port: from,
            to_port: to,
            ipv4: v4.iter().map(|s| s.to_string()).collect(),
            ipv6: v6.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn finds_only_world_open_rules_that_reach_the_port() {
        let perms = vec![
            perm("tcp", Some(22), Some(22), &["0.0.0.0/0", "10.0.0.0/8"], &[]),
            perm("tcp", Some(443), Some(443), &["0.0.0.0/0"], &[]),
            perm("tcp", Some(0), Some(1024), &[], &["::/0"]),
            perm("-1", None, None, &["0.0.0.0/0"], &[]),
            perm("tcp", Some(22), Some(22), &["192.168.0.0/16"], &[]),
        ];
        let open = open_rules(&perms, 22);
        assert_eq!(open.len(), 3);
        assert_eq!(open[0].ipv4, vec!["0.0.0.0/0"], "the private range in the same rule stays");
        assert_eq!(open[1].ipv6, vec!["::/0"]);
        assert_eq!(open[2].protocol, "-1");
    }
}
