//! `palisade redrive`: a function's dead-letter queue back into its queue, once the cause is fixed.

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use palisade_shared::error::AwsError;

use crate::{CliError, Clients};

const QUEUE: &str = "AWS::SQS::Queue";

/// Moves every message from `<stack>-<function>-dlq` to `<stack>-<function>`: receive, send, then delete only
/// what was sent, so a failure leaves messages in the DLQ, never loses them.
pub async fn redrive(c: &Clients, stack: &str, function: &str) -> Result<(), CliError> {
    let st = c.stack(stack).await?;
    let missing = |name: String| CliError::Input(format!("stack {stack:?} has no queue {stack}-{name}"));
    let dlq = st.named(QUEUE, &format!("{function}-dlq")).ok_or_else(|| missing(format!("{function}-dlq")))?;
    let queue = st.named(QUEUE, function).ok_or_else(|| missing(function.to_owned()))?;
    let mut moved = 0usize;
    loop {
        let got = c
            .sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| AwsError::new("sqs:ReceiveMessage", e))?
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            break;
        }
        let mut entries = Vec::with_capacity(got.len());
        for (i, m) in got.iter().enumerate() {
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(m.body.clone().unwrap_or_default())
                    .set_message_attributes(original_attributes(m.message_attributes.as_ref()))
                    .build()
                    .map_err(|e| CliError::Other(e.to_string()))?,
            );
        }
        let sent = c
            .sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AwsError::new("sqs:SendMessageBatch", e))?;
        let mut deletes = Vec::new();
        for ok in &sent.successful {
            let i: usize = ok.id.trim_start_matches('m').parse().map_err(|_| CliError::Other("bad batch id".into()))?;
            if let Some(handle) = got.get(i).and_then(|m| m.receipt_handle.clone()) {
                deletes.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| CliError::Other(e.to_string()))?,
                );
            }
        }
        if !deletes.is_empty() {
            c.sqs
                .delete_message_batch()
                .queue_url(dlq)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(|e| AwsError::new("sqs:DeleteMessageBatch", e))?;
        }
        moved += sent.successful.len();
        eprintln!("moved {moved} message(s)");
        if !sent.failed.is_empty() {
            return Err(CliError::Other(format!(
                "{} message(s) could not be sent and stay in the DLQ ({moved} moved)",
                sent.failed.len()
            )));
        }
    }
    println!("moved {moved} message(s) from {stack}-{function}-dlq to {stack}-{function}");
    Ok(())
}

/// The message's own attributes, without the `palisade-*` ones the runner added when it gave up on it: a redriven
/// message is a fresh attempt, and if it later fails by crashing, the alert function must see it as one it has
/// no incident for.
fn original_attributes(
    attrs: Option<&std::collections::HashMap<String, aws_sdk_sqs::types::MessageAttributeValue>>,
) -> Option<std::collections::HashMap<String, aws_sdk_sqs::types::MessageAttributeValue>> {
    let kept: std::collections::HashMap<_, _> =
        attrs?.iter().filter(|(k, _)| !k.starts_with("palisade-")).map(|(k, v)| (k.clone(), v.clone())).collect();
    (!kept.is_empty()).then_some(kept)
}
