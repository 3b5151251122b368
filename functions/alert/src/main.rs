use palisade_shared::alarm::Failure;
use palisade_shared::batch::Runner;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let cfg = alert::Config::from_env()?;
    let sdk = palisade_shared::aws::sdk_config().await;
    let runner = Runner::new(cfg.runner.clone(), &sdk);
    let deps = alert::Deps::new(&cfg, &sdk, runner.incidents());
    runner.run(|f: Failure| alert::handle(&deps, f)).await
}
