#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let sdk = palisade_shared::aws::sdk_config().await;
    let action = enforce_revoke_expired_grant::RevokeExpiredGrant::from_env(&sdk)?;
    palisade_shared::action::run(action, &sdk).await
}
