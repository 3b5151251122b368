//! SDK configuration, loaded once per cold start.
//!
//! `aws-config` already honours `AWS_ENDPOINT_URL`, so the local stack (moto) needs no code path of its own; the
//! only difference is path-style S3 addressing, which a custom endpoint needs.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads region, credentials and endpoint from the standard chain.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// An S3 client; path-style under a custom endpoint, where virtual-hosted bucket names do not resolve.
pub fn s3(cfg: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(cfg).force_path_style(cfg.endpoint_url().is_some()).build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Makes received SQS messages visible again at once, ten per call (peeking a dead-letter queue must not hide
/// its messages from a redrive). Returns how many stayed hidden, with the error; those come back on their own
/// when their visibility timeout ends.
pub async fn release_messages(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    handles: &[String],
) -> Vec<(usize, crate::error::AwsError)> {
    use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
    let mut failed = Vec::new();
    for chunk in handles.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        let res = sqs.change_message_visibility_batch().queue_url(queue_url).set_entries(Some(entries)).send().await;
        if let Err(e) = res {
            failed.push((chunk.len(), crate::error::AwsError::new("sqs:ChangeMessageVisibilityBatch", e)));
        }
    }
    failed
}
