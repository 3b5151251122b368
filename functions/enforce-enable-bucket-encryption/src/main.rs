#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let sdk = palisade_shared::aws::sdk_config().await;
    palisade_shared::action::run(enforce_enable_bucket_encryption::EnableBucketEncryption::new(&sdk), &sdk).await
}
