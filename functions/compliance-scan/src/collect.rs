//! Gathers the facts the policies need, paginated, into the policy crate's normalised resources.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use palisade_policy::{Facts, IngressRule, PublicAccessBlock, Resource, ResourceKind};
use palisade_shared::config::TableName;
use palisade_shared::error::AwsError;

/// Per-resource reads in flight at once (S3's and IAM's have no batch form): the scan's wall time is mostly
/// waiting, and a handful at once stays far below every service's request rate.
const CONCURRENCY: usize = 8;

/// A resource's tags, key to value.
type Tags = BTreeMap<String, String>;

/// SDK clients of the accounts' services.
pub struct Collector {
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// DynamoDB (grants).
    pub db: aws_sdk_dynamodb::Client,
    /// The grants table.
    pub grants: TableName,
}

fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())).unwrap_or_default()
}

impl Collector {
    /// Every resource of `kind`.
    pub async fn collect(&self, kind: ResourceKind) -> Result<Vec<Resource>, AwsError> {
        match kind {
            ResourceKind::S3Bucket => self.buckets().await,
            ResourceKind::Ec2Instance => self.instances().await,
            ResourceKind::IamAccessKey => self.access_keys().await,
            ResourceKind::SecurityGroup => self.security_groups().await,
            ResourceKind::AccessGrant => self.grants().await,
        }
    }

    async fn buckets(&self) -> Result<Vec<Resource>, AwsError> {
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_buckets()
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| AwsError::new("s3:ListBuckets", e))?;
            names.extend(out.buckets().iter().filter_map(|b| b.name().map(str::to_owned)));
            token = out.continuation_token;
            if token.is_none() {
                break;
            }
        }
        // Each bucket takes two calls (its tags a third, if it violates a policy: see `add_tags`); several
        // buckets at once, in their listed order.
        let found: Vec<Result<Option<Resource>, AwsError>> =
            futures::stream::iter(names).map(|name| self.bucket(name)).buffered(CONCURRENCY).collect().await;
        found.into_iter().filter_map(Result::transpose).collect()
    }

    /// One bucket's facts; `None` when it went away meanwhile.
    async fn bucket(&self, name: String) -> Result<Option<Resource>, AwsError> {
        let pab = match self.s3.get_public_access_block().bucket(&name).send().await {
            Ok(o) => o.public_access_block_configuration.map(|c| PublicAccessBlock {
                block_public_acls: c.block_public_acls.unwrap_or(false),
                ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
                block_public_policy: c.block_public_policy.unwrap_or(false),
                restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
            }),
            Err(e) => {
                let e = AwsError::new("s3:GetPublicAccessBlock", e);
                if e.is_code("NoSuchBucket") {
                    return Ok(None);
                }
                if !e.is_code("NoSuchPublicAccessBlockConfiguration") {
                    return Err(e);
                }
                None
            }
        };
        let encryption = match self.s3.get_bucket_encryption().bucket(&name).send().await {
            Ok(o) => o
                .server_side_encryption_configuration
                .and_then(|c| c.rules.into_iter().next())
                .and_then(|r| r.apply_server_side_encryption_by_default)
                .map(|d| d.sse_algorithm.as_str().to_owned()),
            Err(e) => {
                let e = AwsError::new("s3:GetBucketEncryption", e);
                if !e.is_code("ServerSideEncryptionConfigurationNotFoundError") {
                    return Err(e);
                }
                None
            }
        };
        Ok(Some(Resource {
            kind: ResourceKind::S3Bucket,
            arn: format!("arn:aws:s3:::{name}"),
            id: name,
            tags: BTreeMap::new(),
            facts: Facts::Bucket { public_access_block: pab, encryption },
        }))
    }

    async fn instances(&self) -> Result<Vec<Resource>, AwsError> {
        let mut out = Vec::new();
        let mut pages = self.ec2.describe_instances().max_results(1000).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::new("ec2:DescribeInstances", e))?;
            for r in page.reservations() {
                for i in r.instances() {
                    let Some(id) = i.instance_id() else { continue };
                    out.push(Resource {
                        kind: ResourceKind::Ec2Instance,
                        id: id.to_owned(),
                        arn: String::new(),
                        tags: i
                            .tags()
                            .iter()
                            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                            .collect(),
                        facts: Facts::Instance {
                            state: i.state().and_then(|s| s.name()).map_or("unknown", |n| n.as_str()).to_owned(),
                            launched_at: to_chrono(i.launch_time()),
                        },
                    });
                }
            }
        }
        Ok(out)
    }

    async fn access_keys(&self) -> Result<Vec<Resource>, AwsError> {
        let mut users = Vec::new();
        let mut pages = self.iam.list_users().into_paginator().items().send();
        while let Some(user) = pages.next().await {
            users.push(user.map_err(|e| AwsError::new("iam:ListUsers", e))?);
        }
        // Each user takes one call (its tags a second, if a key violates a policy: see `add_tags`); several
        // users at once, in their listed order.
        let found: Vec<Result<Vec<Resource>, AwsError>> =
            futures::stream::iter(users).map(|u| self.user_keys(u)).buffered(CONCURRENCY).collect().await;
        Ok(found.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect())
    }

    /// One user's access keys, without the user's tags (see `add_tags`).
    async fn user_keys(&self, user: aws_sdk_iam::types::User) -> Result<Vec<Resource>, AwsError> {
        let name = user.user_name().to_owned();
        let keys = self
            .iam
            .list_access_keys()
            .user_name(&name)
            .send()
            .await
            .map_err(|e| AwsError::new("iam:ListAccessKeys", e))?;
        let mut out = Vec::new();
        for k in keys.access_key_metadata() {
            let Some(id) = k.access_key_id() else { continue };
            out.push(Resource {
                kind: ResourceKind::IamAccessKey,
                id: id.to_owned(),
                arn: user.arn().to_owned(),
                tags: BTreeMap::new(),
                facts: Facts::AccessKey {
                    user: name.clone(),
                    status: k.status().map_or("Unknown", |s| s.as_str()).to_owned(),
                    created_at: to_chrono(k.create_date()),
                },
            });
        }
        Ok(out)
    }

    async fn security_groups(&self) -> Result<Vec<Resource>, AwsError> {
        let mut out = Vec::new();
        let mut pages = self.ec2.describe_security_groups().max_results(1000).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::new("ec2:DescribeSecurityGroups", e))?;
            for g in page.security_groups() {
                let Some(id) = g.group_id() else { continue };
                let ingress = g
                    .ip_permissions()
                    .iter()
                    .map(|p| IngressRule {
                        protocol: p.ip_protocol().unwrap_or("-1").to_owned(),
                        from_port: p.from_port(),
                        to_port: p.to_port(),
                        ipv4: p.ip_ranges().iter().filter_map(|r| r.cidr_ip().map(str::to_owned)).collect(),
                        ipv6: p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6().map(str::to_owned)).collect(),
                    })
                    .collect();
                out.push(Resource {
                    kind: ResourceKind::SecurityGroup,
                    id: id.to_owned(),
                    arn: String::new(),
                    tags: g.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned()))).collect(),
                    facts: Facts::SecurityGroup { ingress },
                });
            }
        }
        Ok(out)
    }

    /// Reads the tags of the resources marked in `wanted`, where `kind`'s listing leaves them out (buckets, access
    /// keys: a call per bucket or user). Tags only name a violation's owner and match exceptions, and no check of
    /// these kinds reads them, so only violating resources need them: a compliant account costs no tag reads.
    pub async fn add_tags(&self, kind: ResourceKind, found: &mut [Resource], wanted: &[bool]) -> Result<(), AwsError> {
        let owners: Vec<String> = match kind {
            ResourceKind::S3Bucket => found.iter().map(|r| r.id.clone()).collect(),
            ResourceKind::IamAccessKey => found
                .iter()
                .map(|r| match &r.facts {
                    Facts::AccessKey { user, .. } => user.clone(),
                    _ => String::new(),
                })
                .collect(),
            // listed with their tags
            ResourceKind::Ec2Instance | ResourceKind::SecurityGroup | ResourceKind::AccessGrant => return Ok(()),
        };
        let mut names: Vec<&str> =
            owners.iter().zip(wanted).filter(|(n, w)| **w && !n.is_empty()).map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let read: Vec<Result<(&str, Tags), AwsError>> = futures::stream::iter(names)
            .map(|name| async move {
                let tags = match kind {
                    ResourceKind::S3Bucket => self.bucket_tags(name).await?,
                    _ => self.user_tags(name).await?,
                };
                Ok((name, tags))
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let tags: BTreeMap<&str, Tags> = read.into_iter().collect::<Result<_, _>>()?;
        for ((r, owner), w) in found.iter_mut().zip(&owners).zip(wanted) {
            if let (true, Some(t)) = (*w, tags.get(owner.as_str())) {
                r.tags = t.clone();
            }
        }
        Ok(())
    }

    async fn bucket_tags(&self, name: &str) -> Result<Tags, AwsError> {
        match self.s3.get_bucket_tagging().bucket(name).send().await {
            Ok(o) => Ok(o.tag_set.into_iter().map(|t| (t.key, t.value)).collect()),
            Err(e) => {
                let e = AwsError::new("s3:GetBucketTagging", e);
                // gone since it was listed: its violation closes at the next scan
                if e.is_code("NoSuchTagSet") || e.is_code("NoSuchBucket") { Ok(BTreeMap::new()) } else { Err(e) }
            }
        }
    }

    async fn user_tags(&self, name: &str) -> Result<Tags, AwsError> {
        match self.iam.list_user_tags().user_name(name).send().await {
            Ok(o) => Ok(o.tags.into_iter().map(|t| (t.key, t.value)).collect()),
            Err(e) => {
                let e = AwsError::new("iam:ListUserTags", e);
                if e.is_code("NoSuchEntity") { Ok(BTreeMap::new()) } else { Err(e) }
            }
        }
    }

    /// Active grants, through the grants table's `by-status` index.
    async fn grants(&self) -> Result<Vec<Resource>, AwsError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .db
                .query()
                .table_name(self.grants.as_str())
                .index_name("by-status")
                .key_condition_expression("#s = :s")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":s", AttributeValue::S("active".into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| AwsError::new("dynamodb:Query", e))?;
            for item in page.items() {
                let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let Some(expires_at) =
                    DateTime::parse_from_rfc3339(&s("expires_at")).ok().map(|t| t.with_timezone(&Utc))
                else {
                    continue;
                };
                let mut tags = BTreeMap::new();
                if !s("owner").is_empty() {
                    tags.insert("owner".to_owned(), s("owner"));
                }
                out.push(Resource {
                    kind: ResourceKind::AccessGrant,
                    id: s("id"),
                    arn: String::new(),
                    tags,
                    facts: Facts::Grant { principal: s("principal"), role: s("role"), expires_at, revoked: false },
                });
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}
