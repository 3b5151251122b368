//! Publishing envelopes to SNS, with routing attributes for subscription filters.

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

use crate::config::TopicArn;
use crate::envelope::{Envelope, Message};
use crate::error::AwsError;

/// Publishes envelopes; built once per cold start.
#[derive(Clone, Debug)]
pub struct Publisher {
    sns: aws_sdk_sns::Client,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The SNS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Could not build the message or its attributes.
    #[error("could not build message: {0}")]
    Build(String),
    /// Some entries of a batch were refused.
    #[error("{failed} of {total} messages were not published")]
    Partial {
        /// How many failed.
        failed: usize,
        /// How many were sent.
        total: usize,
    },
}

impl crate::error::Classify for PublishError {
    fn class(&self) -> crate::error::Class {
        match self {
            PublishError::Aws(e) => e.class,
            PublishError::Build(_) => crate::error::Class::Permanent,
            PublishError::Partial { .. } => crate::error::Class::Transient,
        }
    }
    fn code(&self) -> &'static str {
        "publish_failed"
    }
}

fn attr(data_type: &str, value: &str) -> Result<MessageAttributeValue, PublishError> {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .map_err(|e| PublishError::Build(e.to_string()))
}

fn attributes<M: Message>(
    env: &Envelope<M>,
) -> Result<std::collections::HashMap<String, MessageAttributeValue>, PublishError> {
    Ok([
        ("tenant".to_owned(), attr("String", env.tenant.as_str())?),
        ("kind".to_owned(), attr("String", &env.kind)?),
        ("schema_version".to_owned(), attr("Number", &env.schema_version.to_string())?),
    ]
    .into_iter()
    .collect())
}

impl Publisher {
    /// Wraps an SNS client.
    pub fn new(sns: aws_sdk_sns::Client) -> Self {
        Self { sns }
    }

    /// Publishes one envelope; returns the SNS message id.
    pub async fn publish<M: Message>(&self, topic: &TopicArn, env: &Envelope<M>) -> Result<String, PublishError> {
        self.publish_with_subject(topic, env, None).await
    }

    /// Publishes one envelope with an SNS subject, which email subscriptions use as the mail's subject line;
    /// the subject is cut to what SNS accepts (see [`sns_subject`]).
    pub async fn publish_with_subject<M: Message>(
        &self,
        topic: &TopicArn,
        env: &Envelope<M>,
        subject: Option<&str>,
    ) -> Result<String, PublishError> {
        let body = env.to_json().map_err(|e| PublishError::Build(e.to_string()))?;
        let out = self
            .sns
            .publish()
            .topic_arn(topic.as_str())
            .message(body)
            .set_subject(subject.map(sns_subject).filter(|s| !s.is_empty()))
            .set_message_attributes(Some(attributes(env)?))
            .send()
            .await
            .map_err(|e| AwsError::new("sns:Publish", e))?;
        Ok(out.message_id.unwrap_or_default())
    }

    /// Publishes many envelopes, ten per request (the SNS limit). Returns the positions (in `envs`) of the
    /// messages SNS refused, so the caller can leave exactly those for another attempt.
    pub async fn publish_batch<M: Message>(
        &self,
        topic: &TopicArn,
        envs: &[Envelope<M>],
    ) -> Result<Vec<usize>, PublishError> {
        let mut failed = Vec::new();
        for (c, chunk) in envs.chunks(10).enumerate() {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, env) in chunk.iter().enumerate() {
                let body = env.to_json().map_err(|e| PublishError::Build(e.to_string()))?;
                entries.push(
                    PublishBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message(body)
                        .set_message_attributes(Some(attributes(env)?))
                        .build()
                        .map_err(|e| PublishError::Build(e.to_string()))?,
                );
            }
            let out = self
                .sns
                .publish_batch()
                .topic_arn(topic.as_str())
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| AwsError::new("sns:PublishBatch", e))?;
            for f in out.failed.unwrap_or_default() {
                let i = f.id.strip_prefix('m').and_then(|n| n.parse::<usize>().ok());
                match i {
                    Some(i) if i < chunk.len() => failed.push(c * 10 + i),
                    // An id we did not send: count the whole chunk as not published rather than guess.
                    _ => failed.extend(c * 10..c * 10 + chunk.len()),
                }
            }
        }
        failed.sort_unstable();
        failed.dedup();
        Ok(failed)
    }
}

/// A subject SNS accepts: printable ASCII without line breaks, at most 100 characters (SNS refuses the whole
/// publish otherwise, and an alert must never be lost to its subject line).
pub fn sns_subject(s: &str) -> String {
    let clean: String = s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    let trimmed = clean.trim();
    if trimmed.len() <= 100 { trimmed.to_owned() } else { format!("{}...", &trimmed[..97]) }
}

#[cfg(test)]
mod tests {
    use super::sns_subject;

    #[test]
    fn subjects_are_ascii_single_line_and_short() {
        assert_eq!(sns_subject("  Palisade: ok  "), "Palisade: ok");
        assert_eq!(sns_subject("a\nb été"), "a?b ?t?");
        let long = sns_subject(&"x".repeat(300));
        assert_eq!(long.len(), 100);
        assert!(long.ends_with("..."));
    }
}
