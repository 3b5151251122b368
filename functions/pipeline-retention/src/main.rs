use palisade_shared::batch::Runner;
use palisade_shared::events::Tick;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let cfg = pipeline_retention::Config::from_env()?;
    let sdk = palisade_shared::aws::sdk_config().await;
    let s3 = palisade_shared::aws::s3(&sdk);
    let runner = Runner::new(cfg.runner.clone(), &sdk);
    let (cfg, s3, ledger) = (&cfg, &s3, runner.ledger());
    runner
        .run_scheduled(move |tick: Tick| async move { pipeline_retention::run(cfg, s3, ledger, tick.time).await })
        .await
}
