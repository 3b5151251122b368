use palisade_shared::batch::Runner;
use palisade_shared::config::{TableName, TopicArn, got};
use palisade_shared::events::Tick;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let (cfg, (violations, reminders, prefix)) = compliance_scan::Config::from_env_with(|env| {
        let v: Option<TableName> = env.required("PALISADE_VIOLATIONS_TABLE");
        let r: Option<TopicArn> = env.required("PALISADE_REMINDERS_TOPIC_ARN");
        let p: Option<String> = env.required("PALISADE_ACTION_TOPIC_PREFIX");
        (v, r, p)
    })?;
    let sdk = palisade_shared::aws::sdk_config().await;
    let deps = compliance_sweep::Deps {
        store: palisade_shared::violations::ViolationStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            got(violations, "PALISADE_VIOLATIONS_TABLE")?,
        ),
        s3: palisade_shared::aws::s3(&sdk),
        config_bucket: cfg.config_bucket.clone(),
        publisher: palisade_shared::publish::Publisher::new(aws_sdk_sns::Client::new(&sdk)),
        reminders: got(reminders, "PALISADE_REMINDERS_TOPIC_ARN")?,
        action_topic_prefix: got(prefix, "PALISADE_ACTION_TOPIC_PREFIX")?,
        tenant: cfg.tenant.clone(),
    };
    let runner = Runner::new(cfg.runner.clone(), &sdk);
    let deps = &deps;
    runner
        .run_scheduled(move |tick: Tick| async move {
            compliance_sweep::sweep(deps, tick.time).await.map(|r| serde_json::to_value(r).unwrap_or_default())
        })
        .await
}
