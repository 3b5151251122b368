use palisade_shared::batch::Runner;
use palisade_shared::events::S3Notification;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let cfg = pipeline_ingest::Config::from_env()?;
    let sdk = palisade_shared::aws::sdk_config().await;
    let runner = Runner::new(cfg.runner.clone(), &sdk);
    let deps = pipeline_ingest::Deps::new(&cfg, &sdk, &runner);
    runner.run(|n: S3Notification| pipeline_ingest::handle(&deps, n)).await
}
