#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let sdk = palisade_shared::aws::sdk_config().await;
    palisade_shared::action::run(enforce_revoke_open_ssh::RevokeOpenSsh::new(&sdk), &sdk).await
}
