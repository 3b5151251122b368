use palisade_shared::batch::Runner;
use palisade_shared::envelope::Envelope;
use palisade_shared::messages::QuoteExtracted;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let cfg = pipeline_deliver::Config::from_env()?;
    let sdk = palisade_shared::aws::sdk_config().await;
    let runner = Runner::new(cfg.runner.clone(), &sdk);
    let deps = pipeline_deliver::Deps {
        cfg: &cfg,
        s3: palisade_shared::aws::s3(&sdk),
        http: pipeline_deliver::http_client()?,
        key: pipeline_deliver::signing_key(&sdk, cfg.secret_arn.as_deref()).await?,
        ledger: runner.ledger(),
    };
    runner.run(|msg: Envelope<QuoteExtracted>| pipeline_deliver::handle(&deps, msg)).await
}
