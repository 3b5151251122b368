//! Decoding what Lambda hands us: SQS records carrying SNS notifications (or raw messages), S3 event
//! notifications (directly or through SNS), and EventBridge scheduled events.

use std::borrow::Cow;

use aws_lambda_events::event::s3::S3Event;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::envelope::{Envelope, EnvelopeError, Message, TenantId, safe_json_error};

/// What the batch runner needs to know about a decoded record before running the handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Stable across redeliveries: keys idempotency.
    pub id: String,
    /// Known once decoded; S3 events learn it from the bucket in the handler.
    pub tenant: Option<TenantId>,
    /// The chain this record belongs to.
    pub correlation_id: Uuid,
    /// The message kind, for logs and incidents.
    pub kind: &'static str,
    /// The file the record is about (`s3://bucket/key`), when known; named on its incident.
    pub file: Option<String>,
}

/// A record type the batch runner can decode from an SQS body (after unwrapping SNS).
pub trait Inbound: Sized + Send {
    /// Parses the body; every error is permanent.
    fn decode(body: &str) -> Result<Self, EnvelopeError>;
    /// Identity and routing of the decoded record.
    fn meta(&self) -> Meta;
}

impl<M: Message> Inbound for Envelope<M> {
    fn decode(body: &str) -> Result<Self, EnvelopeError> {
        Envelope::decode(body)
    }
    fn meta(&self) -> Meta {
        Meta {
            id: self.id.to_string(),
            tenant: Some(self.tenant.clone()),
            correlation_id: self.correlation_id,
            kind: M::KIND,
            file: self.payload.file(),
        }
    }
}

#[derive(Deserialize)]
struct SnsNotification {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// The message inside an SQS body: the `Message` of an SNS notification, or the body itself when the
/// subscription uses raw delivery (or the sender was not SNS).
pub fn unwrap_sns(body: &str) -> Result<Cow<'_, str>, EnvelopeError> {
    let trimmed = body.trim_start();
    if !trimmed.starts_with('{') || !trimmed.contains("\"Type\"") {
        return Ok(Cow::Borrowed(body));
    }
    match serde_json::from_str::<SnsNotification>(body) {
        Ok(n) if n.kind == "Notification" => match n.message {
            Some(m) => Ok(Cow::Owned(m)),
            None => Err(EnvelopeError::NotANotification("SNS notification without a Message".into())),
        },
        Ok(n) if n.kind == "SubscriptionConfirmation" || n.kind == "UnsubscribeConfirmation" => {
            Err(EnvelopeError::NotANotification(format!("SNS {} is not a message", n.kind)))
        }
        _ => Ok(Cow::Borrowed(body)),
    }
}

/// One object named by an S3 event notification, with the key URL-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key, decoded (`+` is a space, `%xx` escapes resolved).
    pub key: String,
    /// Size in bytes as S3 reported it.
    pub size: u64,
    /// Version id on versioned buckets.
    pub version_id: Option<String>,
    /// Orders events for the same key.
    pub sequencer: Option<String>,
    /// The event name, e.g. `ObjectCreated:Put`.
    pub event_name: String,
    /// When S3 emitted the event.
    pub event_time: DateTime<Utc>,
}

/// An S3 event notification; S3's `s3:TestEvent` decodes to no objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Notification {
    /// The objects, in event order.
    pub objects: Vec<ObjectRef>,
}

/// Decodes S3 event keys, which S3 form-encodes (`+` for space).
pub fn decode_s3_key(raw: &str) -> Result<String, EnvelopeError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| EnvelopeError::Invalid("S3 object key is not valid UTF-8 after decoding".into()))
}

impl Inbound for S3Notification {
    fn decode(body: &str) -> Result<Self, EnvelopeError> {
        let mut v: serde_json::Value =
            serde_json::from_str(body).map_err(|e| EnvelopeError::NotJson(safe_json_error(&e)))?;
        if v.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
            return Ok(Self { objects: Vec::new() });
        }
        let Some(records) = v.get_mut("Records").and_then(|r| r.as_array_mut()) else {
            return Err(EnvelopeError::Invalid("not an S3 event notification (no `Records`)".into()));
        };
        // Fields we never read but the event type requires; some emitters (and S3-compatible stores) leave them out.
        for r in records.iter_mut().filter_map(|r| r.as_object_mut()) {
            for k in ["userIdentity", "requestParameters", "responseElements"] {
                r.entry(k).or_insert_with(|| serde_json::json!({}));
            }
        }
        let ev: S3Event = serde_json::from_value(v).map_err(|e| EnvelopeError::Invalid(safe_json_error(&e)))?;
        let mut objects = Vec::with_capacity(ev.records.len());
        for r in ev.records {
            let bucket = r.s3.bucket.name.ok_or_else(|| EnvelopeError::Invalid("S3 record without bucket".into()))?;
            let raw_key = r.s3.object.key.ok_or_else(|| EnvelopeError::Invalid("S3 record without key".into()))?;
            objects.push(ObjectRef {
                bucket,
                key: decode_s3_key(&raw_key)?,
                size: r.s3.object.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                version_id: r.s3.object.version_id.filter(|v| !v.is_empty()),
                sequencer: r.s3.object.sequencer,
                event_name: r.event_name.unwrap_or_default(),
                event_time: r.event_time,
            });
        }
        Ok(Self { objects })
    }

    fn meta(&self) -> Meta {
        // Derived from what identifies the upload, so a redelivered event keeps its id and correlation.
        let ident: String = self
            .objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}@{}#{}",
                    o.bucket,
                    o.key,
                    o.version_id.as_deref().unwrap_or(""),
                    o.sequencer.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("|");
        let correlation_id = Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("s3://{ident}").as_bytes());
        let file = self.objects.first().map(|o| format!("s3://{}/{}", o.bucket, o.key));
        Meta { id: correlation_id.to_string(), tenant: None, correlation_id, kind: "s3.object-created", file }
    }
}

/// What can be learnt from a record body whose type is not known in advance, such as one found in a dead-letter
/// queue: an envelope's id, tenant, chain and file, or an S3 event's; `None` when the body is neither (the caller
/// then has only the SQS message id).
pub fn identify(body: &str) -> Option<Meta> {
    use crate::envelope::RawEnvelope;
    use crate::messages::{FileAccepted, QuoteExtracted};
    let body = unwrap_sns(body).ok()?;
    if let Ok(raw) = RawEnvelope::decode(&body) {
        let (kind, file) = match raw.kind.as_str() {
            FileAccepted::KIND => {
                (FileAccepted::KIND, raw.clone().into_typed::<FileAccepted>().ok().and_then(|e| e.payload.file()))
            }
            QuoteExtracted::KIND => {
                (QuoteExtracted::KIND, raw.clone().into_typed::<QuoteExtracted>().ok().and_then(|e| e.payload.file()))
            }
            _ => ("envelope", None),
        };
        return Some(Meta {
            id: raw.id.to_string(),
            tenant: Some(raw.tenant),
            correlation_id: raw.correlation_id,
            kind,
            file,
        });
    }
    S3Notification::decode(&body).ok().filter(|n| !n.objects.is_empty()).map(|n| n.meta())
}

/// A scheduled (EventBridge) invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The scheduled time.
    pub time: DateTime<Utc>,
    /// The rule(s) that fired.
    pub resources: Vec<String>,
    /// Extra input set on the rule's target (e.g. `{"dry_run": true}`); `null` when none.
    pub detail: serde_json::Value,
}

impl Tick {
    /// From an EventBridge event (or a hand-made `{}` when an operator invokes the function directly).
    pub fn from_event(v: &serde_json::Value) -> Self {
        let time = v
            .get("time")
            .and_then(|t| t.as_str())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now);
        let resources = v
            .get("resources")
            .and_then(|r| r.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        Self { time, resources, detail: v.get("detail").cloned().unwrap_or(serde_json::Value::Null) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S3_EVENT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1",
      "eventTime":"2026-11-23T10:00:00.000Z","eventName":"ObjectCreated:Put","userIdentity":{"principalId":"x"},
      "requestParameters":{"sourceIPAddress":"127.0.0.1"},"responseElements":{},
      "s3":{"s3SchemaVersion":"1.0","configurationId":"c","bucket":{"name":"acme-inbox","arn":"arn:aws:s3:::acme-inbox"},
      "object":{"key":"quotes/Q+1%2F%C3%A9t%C3%A9.pdf","size":1234,"eTag":"e","sequencer":"0A"}}}]}"#;

    #[test]
    fn s3_events_without_identity_fields_still_decode() {
        let minimal = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
          "eventTime": "2026-11-23T10:17:49.978Z", "eventName": "ObjectCreated:Put", "s3": {"s3SchemaVersion": "1.0",
          "bucket": {"name": "b", "arn": "arn:aws:s3:::b"}, "object": {"key": "incoming%2Fa+b.pdf", "size": 1}}}]}"#;
        let n = S3Notification::decode(minimal).unwrap();
        assert_eq!(n.objects[0].key, "incoming/a b.pdf");
    }

    #[test]
    fn s3_keys_are_url_decoded() {
        let n = S3Notification::decode(S3_EVENT).unwrap();
        assert_eq!(n.objects.len(), 1);
        assert_eq!(n.objects[0].bucket, "acme-inbox");
        assert_eq!(n.objects[0].key, "quotes/Q 1/été.pdf");
        assert_eq!(n.objects[0].size, 1234);
    }

    #[test]
    fn s3_event_inside_sns_is_unwrapped() {
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": S3_EVENT}).to_string();
        let body = unwrap_sns(&sns).unwrap();
        assert_eq!(S3Notification::decode(&body).unwrap().objects[0].key, "quotes/Q 1/été.pdf");
    }

    #[test]
    fn s3_meta_is_stable_across_redelivery() {
        let a = S3Notification::decode(S3_EVENT).unwrap().meta();
        let b = S3Notification::decode(S3_EVENT).unwrap().meta();
        assert_eq!(a, b);
        assert_eq!(a.tenant, None);
    }

    #[test]
    fn s3_test_event_has_no_objects_and_non_s3_json_is_refused() {
        let t = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-23T10:00:00Z","Bucket":"b"}"#;
        assert!(S3Notification::decode(t).unwrap().objects.is_empty());
        assert!(S3Notification::decode(r#"{"hello":1}"#).is_err());
    }

    #[test]
    fn raw_bodies_pass_through_and_confirmations_are_refused() {
        assert_eq!(unwrap_sns(r#"{"schema_version":1}"#).unwrap(), r#"{"schema_version":1}"#);
        assert_eq!(unwrap_sns("garbage").unwrap(), "garbage");
        let c = r#"{"Type":"SubscriptionConfirmation","Token":"t"}"#;
        assert!(unwrap_sns(c).is_err());
    }

    #[test]
    fn identify_reads_envelopes_and_s3_events_of_any_kind() {
        use crate::envelope::Envelope;
        use crate::messages::FileAccepted;
        let accepted = FileAccepted {
            file_id: "f".into(),
            bucket: "acme-inbox".into(),
            key: "incoming/q.pdf".into(),
            version_id: None,
            sha256: "00".into(),
            size: 1,
            file_type: "pdf".into(),
        };
        let env = Envelope::new("acme".parse().unwrap(), accepted);
        let sns = serde_json::json!({"Type": "Notification", "Message": env.to_json().unwrap()}).to_string();
        let m = identify(&sns).unwrap();
        assert_eq!(m.id, env.id.to_string());
        assert_eq!(m.tenant.as_ref().map(|t| t.as_str()), Some("acme"));
        assert_eq!(m.correlation_id, env.correlation_id);
        assert_eq!(m.file.as_deref(), Some("s3://acme-inbox/incoming/q.pdf"));
        let s3 = identify(S3_EVENT).unwrap();
        assert_eq!(s3.file.as_deref(), Some("s3://acme-inbox/quotes/Q 1/été.pdf"));
        assert!(identify("not json").is_none());
        assert!(identify(r#"{"hello": 1}"#).is_none());
    }

    #[test]
    fn scheduled_event_time_and_detail() {
        let v = serde_json::json!({"detail-type":"Scheduled Event","source":"aws.events","time":"2026-11-23T06:00:00Z",
            "resources":["arn:aws:events:eu-west-1:1:rule/sweep"],"detail":{}});
        let t = Tick::from_event(&v);
        assert_eq!(t.time.to_rfc3339(), "2026-11-23T06:00:00+00:00");
        assert_eq!(t.resources, vec!["arn:aws:events:eu-west-1:1:rule/sweep".to_owned()]);
    }
}
