#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let sdk = palisade_shared::aws::sdk_config().await;
    let configure =
        |env: &mut palisade_shared::config::Env| enforce_revoke_expired_grant::RevokeExpiredGrant::configure(&sdk, env);
    palisade_shared::action::run_with(configure, &sdk).await
}
