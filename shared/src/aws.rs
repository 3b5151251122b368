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
