//! A device's open vulnerabilities and a tenant's ranking: the devices'
//! packages joined with the current vulnerability database in SQL, dpkg's
//! ordering in Rust; on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

use bulwark_protocol::inventory::{InstalledPackage, Inventory, SystemInfo};
use bulwark_store::{
    AuditAction, Device, NewAuditEvent, NewOperator, NewVulnAdvisory, NewVulnAffected, Store,
    TenantScope, VulnSeverity,
};

#[macro_use]
mod support;

both_backends! {
    open_vulnerabilities_follow_dpkg_order_release_and_scope,
}

const T0: i64 = 1_700_000_000_000;

fn advisory(id: &str, ecosystem: &str, package: &str, fixed: &str, score: i64) -> NewVulnAdvisory {
    NewVulnAdvisory {
        id: id.to_owned(),
        modified: "2024-09-04T05:12:25Z".to_owned(),
        published: None,
        aliases: vec![format!("CVE-2024-{score}")],
        summary: format!("{package} - security update"),
        affected: vec![NewVulnAffected {
            ecosystem: ecosystem.to_owned(),
            package: package.to_owned(),
            ranges: format!(r#"{{"r":[[["i","0"],["f","{fixed}"]]]}}"#),
            severity: Some(VulnSeverity {
                kind: "CVSS_V3".to_owned(),
                vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N".to_owned(),
                score_tenths: Some(score),
                rating: Some(if score >= 70 { "high" } else { "medium" }.to_owned()),
            }),
        }],
    }
}

fn package(name: &str, version: &str, source: &str, source_version: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.to_owned(),
        version: version.to_owned(),
        architecture: "amd64".to_owned(),
        source: source.to_owned(),
        source_version: source_version.to_owned(),
    }
}

async fn device(
    store: &Store,
    tenant_id: &str,
    key: u8,
    hostname: &str,
    os: (&str, &str),
    packages: Vec<InstalledPackage>,
) -> Device {
    let device = support::enrolled_device(store, tenant_id, key, hostname, T0).await;
    let inventory = Inventory {
        system: Some(SystemInfo {
            hostname: hostname.to_owned(),
            os_name: os.0.to_owned(),
            os_version: os.1.to_owned(),
            ..SystemInfo::default()
        }),
        packages: Some(packages),
        ..Inventory::default()
    };
    store
        .update_inventory(&device.id, true, inventory, T0)
        .await
        .unwrap();
    device
}

const DEBIAN_12: (&str, &str) = ("Debian GNU/Linux", "12");

async fn open_vulnerabilities_follow_dpkg_order_release_and_scope(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let globex = store
        .create_tenant("globex", T0, |_| Vec::new())
        .await
        .unwrap();
    let openssl = |v: &str| {
        vec![
            package("libssl3", v, "openssl", v),
            package("openssl", v, "openssl", v),
        ]
    };
    let old = device(&store, &acme.id, 1, "web-1", DEBIAN_12, {
        let mut p = openssl("3.0.11-1~deb12u2");
        // No source version recorded: the binary's, without `+b1`.
        p.push(package("zlib1g", "1:1.2.13.dfsg-1+b1", "zlib", ""));
        p
    })
    .await;
    let fixed = device(
        &store,
        &acme.id,
        2,
        "web-2",
        DEBIAN_12,
        openssl("3.0.15-1~deb12u1"),
    )
    .await;
    let older = device(&store, &acme.id, 3, "web-3", DEBIAN_12, openssl("3.0.9-1")).await;
    let unknown = device(
        &store,
        &acme.id,
        4,
        "mac-1",
        ("Darwin", "14.1"),
        openssl("3.0.9-1"),
    )
    .await;
    let foreign = device(&store, &globex.id, 5, "gx-1", DEBIAN_12, openssl("3.0.9-1")).await;

    let generation = store.vulndb_begin_import(T0, "owner").await.unwrap();
    store
        .vulndb_add_records(
            generation,
            &[
                advisory("DSA-5764-1", "Debian:12", "openssl", "3.0.15-1~deb12u1", 75),
                advisory("DSA-OLD", "Debian:12", "openssl", "3.0.10-1", 98),
                advisory("DSA-11", "Debian:11", "openssl", "9.9-1", 99),
                advisory("DSA-ZLIB", "Debian:12", "zlib", "1:1.2.13.dfsg-2", 53),
                advisory("DSA-ZLIB-DONE", "Debian:12", "zlib", "1:1.2.13.dfsg-1", 99),
            ],
        )
        .await
        .unwrap();
    store
        .vulndb_commit_import(generation, T0, |_| {
            vec![NewAuditEvent::new(
                T0,
                "owner",
                AuditAction::VulnDbImported,
                "vulndb",
            )]
        })
        .await
        .unwrap();

    let ids = |store: Store, device: String| async move {
        let found = store
            .device_vulnerabilities(&TenantScope::All, &device, 100)
            .await
            .unwrap()
            .unwrap();
        found
            .vulnerabilities
            .iter()
            .map(|v| v.advisory_id.clone())
            .collect::<Vec<_>>()
    };
    // `~deb12u2` of 3.0.11 is below the fix; another release's advisory
    // (Debian:11) is not matched; a fix below the installed one is not open.
    let found = store
        .device_vulnerabilities(&TenantScope::All, &old.id, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.ecosystem.as_deref(), Some("Debian:12"));
    let listed: Vec<&str> = found
        .vulnerabilities
        .iter()
        .map(|v| v.advisory_id.as_str())
        .collect();
    assert_eq!(listed, ["DSA-5764-1", "DSA-ZLIB"], "ranked by score");
    let first = &found.vulnerabilities[0];
    assert_eq!(first.aliases, ["CVE-2024-75"]);
    assert_eq!(first.score_tenths, Some(75));
    assert_eq!(first.packages.len(), 1, "two binaries of one source: once");
    assert_eq!(first.packages[0].installed, "3.0.11-1~deb12u2");
    assert_eq!(first.packages[0].fixed.as_deref(), Some("3.0.15-1~deb12u1"));
    assert_eq!(
        found.vulnerabilities[1].packages[0].installed,
        "1:1.2.13.dfsg-1"
    );
    // Installed = fixed: not open.
    assert!(ids(store.clone(), fixed.id.clone()).await.is_empty());
    assert_eq!(
        ids(store.clone(), older.id.clone()).await,
        ["DSA-OLD", "DSA-5764-1"]
    );
    // An unknown release is not matched, and says so.
    let mac = store
        .device_vulnerabilities(&TenantScope::All, &unknown.id, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((mac.ecosystem, mac.total), (None, 0));
    // The limit keeps the highest.
    let one = store
        .device_vulnerabilities(&TenantScope::All, &older.id, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((one.vulnerabilities.len(), one.total), (1, 2));

    // Outside the caller's scope: no answer, like the device itself.
    let stranger = store
        .create_operator(
            &NewOperator {
                username: "mallory".to_owned(),
                password_hash: "$argon2id$x".to_owned(),
                totp_secret: "SECRET".to_owned(),
            },
            "technician",
            "test",
            T0,
        )
        .await
        .unwrap();
    let strangers = TenantScope::Operator(stranger.id.clone());
    assert_eq!(
        store
            .device_vulnerabilities(&strangers, &old.id, 100)
            .await
            .unwrap(),
        None
    );
    let none = store
        .tenant_vulnerabilities(&strangers, &acme.id, 100)
        .await
        .unwrap();
    assert_eq!((none.devices, none.total), (0, 0));
    // Granted acme only: acme's device answers, globex's does not.
    store
        .grant_tenant(&stranger.id, &acme.id, "technician")
        .await
        .unwrap();
    assert!(
        store
            .device_vulnerabilities(&strangers, &old.id, 100)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .device_vulnerabilities(&strangers, &foreign.id, 100)
            .await
            .unwrap(),
        None
    );
    let none = store
        .tenant_vulnerabilities(&strangers, &globex.id, 100)
        .await
        .unwrap();
    assert_eq!((none.devices, none.total), (0, 0));

    // The tenant's ranking: score, then devices; globex's device not counted.
    let ranked = store
        .tenant_vulnerabilities(&TenantScope::All, &acme.id, 100)
        .await
        .unwrap();
    assert_eq!(ranked.devices, 4);
    assert_eq!(ranked.unmatched_devices, ["mac-1"]);
    let rows: Vec<(&str, u64, Option<i64>)> = ranked
        .vulnerabilities
        .iter()
        .map(|v| (v.advisory_id.as_str(), v.devices, v.score_tenths))
        .collect();
    assert_eq!(
        rows,
        [
            ("DSA-OLD", 1, Some(98)),
            ("DSA-5764-1", 2, Some(75)),
            ("DSA-ZLIB", 1, Some(53)),
        ]
    );
    assert_eq!(ranked.vulnerabilities[1].packages, ["openssl"]);
    let globex_ranked = store
        .tenant_vulnerabilities(&TenantScope::All, &globex.id, 100)
        .await
        .unwrap();
    assert_eq!(globex_ranked.vulnerabilities[1].devices, 1);
}
