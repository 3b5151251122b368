//! Payloads that travel between pipeline steps. They carry pointers (bucket, key, digest), never file contents or
//! extracted values: those stay in the tenant's buckets.

use serde::{Deserialize, Serialize};

use crate::envelope::Message;

/// An upload passed validation (`ingest` → `extract`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAccepted {
    /// Stable id of the upload: the first 32 hex digits of its SHA-256.
    pub file_id: String,
    /// The tenant's inbox bucket.
    pub bucket: String,
    /// The object key, as uploaded.
    pub key: String,
    /// The object version, on versioned buckets; extract reads exactly this version.
    #[serde(default)]
    pub version_id: Option<String>,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Detected type (`pdf`).
    pub file_type: String,
}

impl Message for FileAccepted {
    const KIND: &'static str = "file.accepted";
    fn file(&self) -> Option<String> {
        Some(format!("s3://{}/{}", self.bucket, self.key))
    }
}

/// A quote record was extracted and stored (`extract` → `deliver`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteExtracted {
    /// The upload's id.
    pub file_id: String,
    /// The tenant's processed bucket.
    pub bucket: String,
    /// Where the JSON record is.
    pub key: String,
    /// Which extraction rules matched.
    pub layout: String,
    /// SHA-256 of the record's bytes, so deliver can detect a changed object.
    pub record_sha256: String,
}

impl Message for QuoteExtracted {
    const KIND: &'static str = "quote.extracted";
    fn file(&self) -> Option<String> {
        Some(format!("s3://{}/{}", self.bucket, self.key))
    }
}

/// One owner's reminder digest: every violation of theirs that is due a reminder, in one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderDigest {
    /// Who it is for (an email address); also an SNS attribute so subscriptions can route by owner.
    pub owner: String,
    /// The violations, most severe first.
    pub items: Vec<ReminderItem>,
    /// Which part of this owner's digest this is (1-based): a long list is split so that each message stays well
    /// under SNS's 256 KiB limit.
    #[serde(default = "one")]
    pub part: u32,
    /// How many parts this owner's digest has.
    #[serde(default = "one")]
    pub parts: u32,
}

fn one() -> u32 {
    1
}

/// One line of a digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderItem {
    /// The violation.
    pub violation_id: String,
    /// The policy broken.
    pub policy: String,
    /// Resource kind and id.
    pub resource: String,
    /// Severity.
    pub severity: String,
    /// What is wrong.
    pub summary: String,
    /// Which reminder this is, and of how many before enforcement.
    pub reminder: u32,
    /// Reminders the policy sends.
    pub of: u32,
    /// The action that will follow.
    pub action: String,
}

impl Message for ReminderDigest {
    const KIND: &'static str = "compliance.reminder-digest";
}
