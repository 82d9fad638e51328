//! `bulwark up --database-url postgres://…`: the same walking skeleton on
//! PostgreSQL, each test in a fresh schema. PostgreSQL must be running (see
//! TESTING.md); an unreachable server fails the test, it is never skipped.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_e2e::{Api, UpOptions, UpProcess};

const ONLINE_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn up_on_postgres_runs_and_keeps_the_device_over_a_restart() -> Result<()> {
    let (url, schema) = bulwark_store::testing::postgres_test_url()
        .await
        .context("creating a PostgreSQL test schema (is PostgreSQL running on 127.0.0.1:5432?)")?;
    let result = scenario(&url).await;
    schema.drop().await;
    result
}

async fn scenario(url: &str) -> Result<()> {
    let up = UpProcess::start(UpOptions::default().heartbeat_secs(2).database_url(url)).await?;
    ensure!(
        !up.data_dir().join("bulwark.db").exists(),
        "with --database-url the server still created an SQLite database in the data directory"
    );
    let (owner, api) = Api::bootstrap(&up).await?;
    let device = api
        .wait_single_device_online("demo", ONLINE_TIMEOUT)
        .await?;
    let detail = api.device(&device.id).await?;
    ensure!(
        detail.hostname == device.hostname,
        "device detail disagrees with the listing: {detail:?}"
    );

    let up = up.restart().await?;
    let api = up.api();
    let api = api.with_token(&api.login(&owner).await?);
    let again = api
        .wait_single_device_online("demo", ONLINE_TIMEOUT)
        .await?;
    ensure!(
        again.id == device.id,
        "device id changed over a restart: {} → {}",
        device.id,
        again.id
    );
    let tenants = api.tenants().await?;
    let demo = tenants
        .iter()
        .find(|t| t.name == "demo")
        .context("no tenant demo after restart")?;
    ensure!(
        demo.device_count == 1,
        "device count changed over a restart: {demo:?}"
    );
    Ok(())
}
