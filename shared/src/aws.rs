//! SDK configuration, built once per cold start.
//!
//! A function takes region, credentials and endpoint from its environment, which the Lambda service sets; the local
//! stack (moto, through `AWS_ENDPOINT_URL`) and `palisade replay` set the same variables, so neither needs a code path
//! of its own. The only difference is path-style S3 addressing, which a custom endpoint needs.

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::SharedTimeSource;

/// What `aws-config`'s defaults give an SDK client for connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The SDK configuration of a function, from the environment only (see [`from_env`]).
pub async fn sdk_config() -> SdkConfig {
    from_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Region (`AWS_REGION`, else `AWS_DEFAULT_REGION`), credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, read when a request is signed) and endpoint (`AWS_ENDPOINT_URL`), with the SDK's standard
/// retries and connect timeout and Palisade's HTTP client.
///
/// Not `aws-config`'s default chain: a function never reads profile files, SSO caches, a credential process or the
/// instance metadata service. Leaving those providers out spares each cold start their probing and each function
/// about 0.3 MB of zip (the 5 MB target). The operator CLI, which runs on people's machines, loads the full chain.
pub fn from_env(var: impl Fn(&str) -> Option<String>) -> SdkConfig {
    let mut b = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()))
        .http_client(crate::https::sdk_http_client())
        .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
        .time_source(SharedTimeSource::default())
        .retry_config(RetryConfig::standard())
        .timeout_config(TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).build());
    if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
        b = b.region(Region::new(region));
    }
    if let Some(url) = var("AWS_ENDPOINT_URL") {
        b = b.endpoint_url(url);
    }
    b.build()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn region_and_endpoint_come_from_the_environment() {
        let cfg = from_env(env(&[("AWS_REGION", "eu-west-1"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]));
        assert_eq!(cfg.region().map(ToString::to_string).as_deref(), Some("eu-west-1"));
        assert_eq!(cfg.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert!(cfg.credentials_provider().is_some());
        assert!(cfg.http_client().is_some());
        assert_eq!(cfg.timeout_config().and_then(|t| t.connect_timeout()), Some(CONNECT_TIMEOUT));
        assert_eq!(cfg.retry_config().map(|r| r.max_attempts()), Some(3));
    }

    #[test]
    fn aws_default_region_is_the_fallback_and_no_endpoint_means_aws() {
        let cfg = from_env(env(&[("AWS_DEFAULT_REGION", "us-east-2")]));
        assert_eq!(cfg.region().map(ToString::to_string).as_deref(), Some("us-east-2"));
        assert_eq!(cfg.endpoint_url(), None);
        let cfg = from_env(env(&[("AWS_REGION", "eu-central-1"), ("AWS_DEFAULT_REGION", "us-east-2")]));
        assert_eq!(cfg.region().map(ToString::to_string).as_deref(), Some("eu-central-1"));
    }
}
