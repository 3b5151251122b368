//! The one versioned message format Palisade carries on SNS.
//!
//! The envelope keeps the correlation id across every step of a file or a violation, so an operator can follow
//! one upload or one enforcement through all functions. Routing fields (tenant, kind, schema version) are also
//! sent as SNS message attributes so that subscriptions can filter without parsing bodies.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// A message payload type; `KIND` names it on the wire and in SNS filter policies.
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable, dotted name such as `enforce.command`; never changes once shipped.
    const KIND: &'static str;

    /// The file this message is about (`s3://bucket/key`), when it is about one: an incident about the message
    /// names it, so an operator knows which upload failed without reading the message.
    fn file(&self) -> Option<String> {
        None
    }
}

/// A tenant (customer or account scope) id: lowercase letters, digits and dashes, 1 to 40 characters, because it
/// is embedded in bucket names, SNS attributes and ledger keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a tenant id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("tenant id must be 1-40 characters of a-z, 0-9 and '-', not starting with '-'")]
pub struct InvalidTenantId;

impl TenantId {
    /// The tenant named on incidents whose input did not say (e.g. a message that is not JSON).
    pub fn unknown() -> Self {
        Self("unknown".to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenantId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let ok = (1..=40).contains(&s.len())
            && !s.starts_with('-')
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Self(s)) } else { Err(InvalidTenantId) }
    }
}

impl FromStr for TenantId {
    type Err = InvalidTenantId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> Self {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A typed message with its routing and tracing metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<P> {
    /// Version of this envelope layout; readers refuse versions they do not know.
    pub schema_version: u32,
    /// Unique per message; redeliveries of the same message keep it, so it keys idempotency.
    pub id: Uuid,
    /// Shared by every message caused by the same upload or violation.
    pub correlation_id: Uuid,
    /// Whose data or account this message concerns.
    pub tenant: TenantId,
    /// The payload's [`Message::KIND`].
    pub kind: String,
    /// When the first writer created this message.
    pub created_at: DateTime<Utc>,
    /// The typed body.
    pub payload: P,
}

impl<P: Message> Envelope<P> {
    /// A message that starts a new correlation chain.
    pub fn new(tenant: TenantId, payload: P) -> Self {
        Self::with_correlation(tenant, Uuid::new_v4(), payload)
    }

    /// A message that continues an existing chain (e.g. one started by an S3 upload).
    pub fn with_correlation(tenant: TenantId, correlation_id: Uuid, payload: P) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            id: Uuid::new_v4(),
            correlation_id,
            tenant,
            kind: P::KIND.to_owned(),
            created_at: Utc::now(),
            payload,
        }
    }

    /// The next message in the same chain: same tenant and correlation id, new id.
    pub fn follow<Q: Message>(&self, payload: Q) -> Envelope<Q> {
        Envelope::with_correlation(self.tenant.clone(), self.correlation_id, payload)
    }

    /// Serialises the envelope; payload types are plain data, so this cannot fail in practice, but we still
    /// report rather than panic.
    pub fn to_json(&self) -> Result<String, EnvelopeError> {
        serde_json::to_string(self).map_err(|e| EnvelopeError::Encode(e.to_string()))
    }

    /// Decodes and checks version and kind before the payload is typed.
    pub fn decode(body: &str) -> Result<Self, EnvelopeError> {
        let raw = RawEnvelope::decode(body)?;
        raw.into_typed()
    }
}

/// An envelope whose payload is not yet typed: what the runner sees before it knows the payload is valid.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RawEnvelope {
    /// See [`Envelope::schema_version`].
    pub schema_version: u32,
    /// See [`Envelope::id`].
    pub id: Uuid,
    /// See [`Envelope::correlation_id`].
    pub correlation_id: Uuid,
    /// See [`Envelope::tenant`].
    pub tenant: TenantId,
    /// See [`Envelope::kind`].
    pub kind: String,
    /// See [`Envelope::created_at`].
    pub created_at: DateTime<Utc>,
    /// The undecoded payload.
    pub payload: serde_json::Value,
}

impl RawEnvelope {
    /// Parses the outer layout and refuses unknown versions.
    pub fn decode(body: &str) -> Result<Self, EnvelopeError> {
        // Read the version first so that a newer writer's layout change is reported as a version problem,
        // not as a confusing missing-field error.
        #[derive(Deserialize)]
        struct Probe {
            schema_version: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_str(body).map_err(|e| EnvelopeError::NotJson(safe_json_error(&e)))?;
        match probe.schema_version {
            None => return Err(EnvelopeError::Invalid("missing field `schema_version`".into())),
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
            Some(serde_json::Value::Number(n)) => {
                return Err(EnvelopeError::UnsupportedVersion { found: n.to_string(), supported: SCHEMA_VERSION });
            }
            Some(_) => return Err(EnvelopeError::Invalid("`schema_version` must be a number".into())),
        }
        serde_json::from_str(body).map_err(|e| EnvelopeError::Invalid(safe_json_error(&e)))
    }

    /// Types the payload, checking that the kind is the one the reader expects.
    pub fn into_typed<P: Message>(self) -> Result<Envelope<P>, EnvelopeError> {
        if self.kind != P::KIND {
            return Err(EnvelopeError::WrongKind { expected: P::KIND, found: self.kind });
        }
        let payload = serde_json::from_value(self.payload)
            .map_err(|e| EnvelopeError::BadPayload { kind: P::KIND, reason: safe_json_error(&e) })?;
        Ok(Envelope {
            schema_version: self.schema_version,
            id: self.id,
            correlation_id: self.correlation_id,
            tenant: self.tenant,
            kind: self.kind,
            created_at: self.created_at,
            payload,
        })
    }
}

/// Why a message body is not a usable envelope. Every variant is permanent: retrying the same bytes cannot help.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The body is not JSON at all.
    #[error("message body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an envelope.
    #[error("message is not a valid envelope: {0}")]
    Invalid(String),
    /// Written by a newer (or unknown) Palisade.
    #[error("envelope schema version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version found on the wire.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    /// Delivered to a function that does not handle this kind; a subscription filter is wrong.
    #[error("message kind `{found}` delivered to a reader of `{expected}`")]
    WrongKind {
        /// What the reader handles.
        expected: &'static str,
        /// What arrived.
        found: String,
    },
    /// The payload does not match its kind's schema.
    #[error("payload of `{kind}` is invalid: {reason}")]
    BadPayload {
        /// The payload kind.
        kind: &'static str,
        /// A description that names fields but never echoes values.
        reason: String,
    },
    /// The SQS record is not a notification we understand (e.g. an SNS wrapper without a message).
    #[error("record is not a Palisade message: {0}")]
    NotANotification(String),
    /// Serialisation failed.
    #[error("could not encode envelope: {0}")]
    Encode(String),
}

impl EnvelopeError {
    /// A short fixed code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "invalid_json",
            Self::Invalid(_) => "invalid_envelope",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::WrongKind { .. } => "wrong_kind",
            Self::BadPayload { .. } => "invalid_payload",
            Self::NotANotification(_) => "not_a_notification",
            Self::Encode(_) => "encode_failed",
        }
    }
}

/// Describes a serde_json error without echoing input values: serde's own messages quote offending values
/// (`invalid type: string "ACME Ltd"`), which may be customer data and would then reach logs and alerts.
pub fn safe_json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let at = format!("line {} column {}", e.line(), e.column());
    for keep in ["missing field `", "unknown field `", "duplicate field `"] {
        if let Some(start) = msg.find(keep) {
            let rest = &msg[start + keep.len()..];
            if let Some(end) = rest.find('`') {
                return format!("{}{}` at {at}", keep, &rest[..end]);
            }
        }
    }
    match e.classify() {
        serde_json::error::Category::Syntax => format!("syntax error at {at}"),
        serde_json::error::Category::Eof => format!("unexpected end of input at {at}"),
        serde_json::error::Category::Data => format!("a value has the wrong type or is out of range at {at}"),
        serde_json::error::Category::Io => "read error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
        note: String,
    }
    impl Message for Ping {
        const KIND: &'static str = "test.ping";
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Pong {
        n: u32,
    }
    impl Message for Pong {
        const KIND: &'static str = "test.pong";
    }

    fn tenant() -> TenantId {
        "acme".parse().unwrap()
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let e = Envelope::new(tenant(), Ping { n: 7, note: "hi".into() });
        let back: Envelope<Ping> = Envelope::decode(&e.to_json().unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn follow_keeps_correlation_and_tenant_but_not_id() {
        let e = Envelope::new(tenant(), Ping { n: 1, note: String::new() });
        let next = e.follow(Pong { n: 2 });
        assert_eq!(next.correlation_id, e.correlation_id);
        assert_eq!(next.tenant, e.tenant);
        assert_ne!(next.id, e.id);
        assert_eq!(next.kind, "test.pong");
    }

    #[test]
    fn newer_version_is_a_clear_error() {
        let e = Envelope::new(tenant(), Ping { n: 1, note: String::new() });
        let mut v: serde_json::Value = serde_json::from_str(&e.to_json().unwrap()).unwrap();
        v["schema_version"] = 2.into();
        v["payload"] = serde_json::json!({"totally": "different"});
        let err = Envelope::<Ping>::decode(&v.to_string()).unwrap_err();
        assert_eq!(err, EnvelopeError::UnsupportedVersion { found: "2".into(), supported: 1 });
        assert!(err.to_string().contains("version 2 is not supported"));
    }

    #[test]
    fn wrong_kind_is_refused() {
        let e = Envelope::new(tenant(), Pong { n: 1 });
        let err = Envelope::<Ping>::decode(&e.to_json().unwrap()).unwrap_err();
        assert_eq!(err.code(), "wrong_kind");
    }

    #[test]
    fn bad_payload_names_the_field_but_not_the_value() {
        let e = Envelope::new(tenant(), Ping { n: 1, note: String::new() });
        let mut v: serde_json::Value = serde_json::from_str(&e.to_json().unwrap()).unwrap();
        v["payload"] = serde_json::json!({"n": "Secret Customer Ltd", "note": "x"});
        let err = Envelope::<Ping>::decode(&v.to_string()).unwrap_err();
        assert_eq!(err.code(), "invalid_payload");
        assert!(!err.to_string().contains("Secret Customer"), "{err}");
        v["payload"] = serde_json::json!({"note": "x"});
        let err = Envelope::<Ping>::decode(&v.to_string()).unwrap_err();
        assert!(err.to_string().contains("missing field `n`"), "{err}");
    }

    #[test]
    fn garbage_and_missing_version_are_permanent_errors() {
        assert_eq!(Envelope::<Ping>::decode("not json").unwrap_err().code(), "invalid_json");
        assert_eq!(Envelope::<Ping>::decode("{}").unwrap_err().code(), "invalid_envelope");
        assert_eq!(Envelope::<Ping>::decode(r#"{"schema_version":"1"}"#).unwrap_err().code(), "invalid_envelope");
    }

    #[test]
    fn tenant_ids_are_validated() {
        assert!("acme-01".parse::<TenantId>().is_ok());
        for bad in ["", "-acme", "Acme", "a/b", "acme_1", &"a".repeat(41)] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad:?} accepted");
        }
    }
}
