//! Scheduled (and after each sweep): rebuilds the dashboard page and data in the private dashboard bucket.
// The run future nests the SDK calls of a whole refresh; its layout needs more than the default query depth.
#![recursion_limit = "256"]

use compliance_dashboard::io::{Deps, Settings, refresh};
use palisade_shared::batch::Runner;
use palisade_shared::config::got;
use palisade_shared::events::Tick;
use palisade_shared::violations::ViolationStore;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    palisade_shared::telemetry::init();
    let (cfg, (violations, bucket, stacks)) = compliance_scan::Config::from_env_with(Settings::read)?;
    let sdk = palisade_shared::aws::sdk_config().await;
    let runner = Runner::new(cfg.runner.clone(), &sdk);
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let deps = Deps {
        s3: palisade_shared::aws::s3(&sdk),
        ledger: runner.ledger().clone(),
        violations: ViolationStore::new(db.clone(), got(violations, "PALISADE_VIOLATIONS_TABLE")?),
        db,
        config_bucket: cfg.config_bucket.clone(),
        settings: Settings { bucket: got(bucket, "PALISADE_DASHBOARD_BUCKET")?, tenant_stacks: stacks.0 },
    };
    let deps = &deps;
    runner
        .run_scheduled(move |tick: Tick| async move {
            refresh(deps, tick.time).await.map(|w| serde_json::to_value(w).unwrap_or_default())
        })
        .await
}
