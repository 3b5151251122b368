//! The normalised resource the scan builds from AWS responses: only the facts the checks read.
//!
//! Keeping AWS types out of this crate lets every check be tested with plain values, and lets the scan change how
//! it gathers a fact without touching the rules.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::ResourceKind;

/// One resource, as the scan saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Its kind; policies of other kinds ignore it.
    pub kind: ResourceKind,
    /// Bucket name, instance id, access key id, group id or grant id; what exceptions name.
    pub id: String,
    /// Its ARN, where it has one (empty otherwise).
    pub arn: String,
    /// Its tags (for access keys, the owning user's), used for owners and tag-matched exceptions.
    pub tags: BTreeMap<String, String>,
    /// What the checks read.
    pub facts: Facts,
}

/// Per-kind facts. A policy whose check expects another variant finds nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Facts {
    /// An S3 bucket.
    Bucket {
        /// The bucket's public access block; `None` when it has none.
        public_access_block: Option<PublicAccessBlock>,
        /// The default encryption algorithm (`AES256`, `aws:kms`); `None` when not configured.
        encryption: Option<String>,
    },
    /// An EC2 instance.
    Instance {
        /// EC2 state name: `pending`, `running`, `stopping`, `stopped`, `shutting-down`, `terminated`.
        state: String,
        /// Launch time.
        launched_at: DateTime<Utc>,
    },
    /// An IAM access key. Never the secret: the scan only ever sees the key id.
    AccessKey {
        /// The IAM user the key belongs to.
        user: String,
        /// `Active` or `Inactive`.
        status: String,
        /// Creation time.
        created_at: DateTime<Utc>,
    },
    /// An EC2 security group.
    SecurityGroup {
        /// Its ingress rules.
        ingress: Vec<IngressRule>,
    },
    /// A Palisade access grant.
    Grant {
        /// Who was granted access.
        principal: String,
        /// The role or permission set granted.
        role: String,
        /// When the grant ends.
        expires_at: DateTime<Utc>,
        /// Already revoked.
        revoked: bool,
    },
}

/// The four flags of an S3 public access block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// `BlockPublicAcls`
    pub block_public_acls: bool,
    /// `IgnorePublicAcls`
    pub ignore_public_acls: bool,
    /// `BlockPublicPolicy`
    pub block_public_policy: bool,
    /// `RestrictPublicBuckets`
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// All four on: anything less still lets some public access through.
    pub fn is_complete(&self) -> bool {
        self.block_public_acls && self.ignore_public_acls && self.block_public_policy && self.restrict_public_buckets
    }
}

/// One ingress permission of a security group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRule {
    /// `tcp`, `udp`, `icmp`, a protocol number, or `-1` for all.
    pub protocol: String,
    /// First port; absent for protocol `-1`.
    pub from_port: Option<i32>,
    /// Last port.
    pub to_port: Option<i32>,
    /// IPv4 sources (CIDR).
    pub ipv4: Vec<String>,
    /// IPv6 sources (CIDR).
    pub ipv6: Vec<String>,
}
