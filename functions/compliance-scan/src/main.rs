use palisade_shared::batch::Runner;
use palisade_shared::events::Tick;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let (cfg, violations) = compliance_scan::Config::from_env_with(|env| env.required("PALISADE_VIOLATIONS_TABLE"))?;
    let violations = palisade_shared::config::got(violations, "PALISADE_VIOLATIONS_TABLE")?;
    let sdk = palisade_shared::aws::sdk_config().await;
    let deps = compliance_scan::Deps {
        collector: compliance_scan::collect::Collector {
            s3: palisade_shared::aws::s3(&sdk),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            db: aws_sdk_dynamodb::Client::new(&sdk),
            grants: cfg.grants.clone(),
        },
        store: palisade_shared::violations::ViolationStore::new(aws_sdk_dynamodb::Client::new(&sdk), violations),
        s3: palisade_shared::aws::s3(&sdk),
        config_bucket: cfg.config_bucket.clone(),
    };
    let runner = Runner::new(cfg.runner.clone(), &sdk);
    let deps = &deps;
    runner
        .run_scheduled(move |tick: Tick| async move {
            compliance_scan::scan(deps, tick.time).await.map(|r| serde_json::to_value(r).unwrap_or_default())
        })
        .await
}
