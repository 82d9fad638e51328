//! The CLI finds its way as a technician would: `bulwark tenant create`
//! (the command the console's empty tenants page names), then `tenant
//! init` on it (the README's order), and `bulwark device show` by host
//! name as well as by id, against a real `bulwark up` and its agent.

use anyhow::{Result, ensure};
use bulwark_api::tenants::TenantView;
use bulwark_e2e::{OperatorSetup, decode_json};

const PASSPHRASE: &str = "e2e tenants: a passphrase nobody guesses";

#[tokio::test]
async fn tenants_are_created_and_devices_found_by_host_name() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;

    let created = s
        .cli(&["tenant", "create", "acme", "--json"], None)
        .await?
        .ok()?;
    let tenant: TenantView = decode_json(&created.stdout)?;
    ensure!(
        tenant.name == "acme" && tenant.device_count == 0,
        "{tenant:?}"
    );
    let again = s.cli(&["tenant", "create", "acme"], None).await?;
    ensure!(
        !again.success(),
        "a second tenant of one name: {}",
        again.all_output()
    );
    let bad = s.cli(&["tenant", "create", "Not A Name"], None).await?;
    ensure!(
        !bad.success() && bad.all_output().contains("lower-case"),
        "{}",
        bad.all_output()
    );
    let listed = s.cli(&["tenant", "list"], None).await?.ok()?;
    ensure!(listed.stdout.contains("acme"), "{}", listed.stdout);
    // The README's next step works on the tenant just made.
    s.cli(&["tenant", "init", "--tenant", "acme"], None)
        .await?
        .ok()?;

    // The demo agent, by its host name (any case) and by its id.
    let device = s
        .api
        .wait_single_device_online("demo", std::time::Duration::from_secs(60))
        .await?;
    let by_name = s
        .cli(&["device", "show", &device.hostname.to_uppercase()], None)
        .await?
        .ok()?;
    ensure!(
        by_name.stdout.contains(&device.id) || by_name.stdout.contains(&device.hostname),
        "{}",
        by_name.stdout
    );
    let by_id = s
        .cli(&["device", "show", &device.id, "--json"], None)
        .await?
        .ok()?;
    let shown: bulwark_api::devices::DeviceView = decode_json(&by_id.stdout)?;
    ensure!(
        shown.id == device.id && shown.inventory.is_some(),
        "{shown:?}"
    );
    let nobody = s.cli(&["device", "show", "no-such-host"], None).await?;
    ensure!(
        !nobody.success() && nobody.all_output().contains("no device is named"),
        "{}",
        nobody.all_output()
    );
    // Scoped to a tenant that does not hold it.
    let elsewhere = s
        .cli(
            &["device", "show", &device.hostname, "--tenant", "acme"],
            None,
        )
        .await?;
    ensure!(!elsewhere.success(), "{}", elsewhere.all_output());
    Ok(())
}
