use palisade_shared::batch::Runner;
use palisade_shared::envelope::Envelope;
use palisade_shared::messages::FileAccepted;
use pipeline_extract::handler;

/// Extraction allocates many small, short-lived values (glyphs, words, cells); mimalloc serves them faster than
/// the system allocator (bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With arguments this is the operator's tool (`text FILE`, `quote FILE`, `bench …`); without, the Lambda.
fn main() -> Result<std::process::ExitCode, lambda_runtime::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        return Ok(pipeline_extract::cli::run(&args));
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(lambda())?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn lambda() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let cfg = handler::Config::from_env()?;
    let rules = cfg.rules()?;
    let sdk = palisade_shared::aws::sdk_config().await;
    let runner = Runner::new(cfg.runner.clone(), &sdk);
    let deps = handler::Deps {
        cfg: &cfg,
        s3: palisade_shared::aws::s3(&sdk),
        publisher: palisade_shared::publish::Publisher::new(aws_sdk_sns::Client::new(&sdk)),
        incidents: runner.incidents(),
        rules,
    };
    runner.run(|msg: Envelope<FileAccepted>| handler::handle(&deps, msg)).await
}
