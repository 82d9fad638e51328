use super::*;
use std::os::unix::fs::symlink;

/// Real unit files of this Debian machine.
const REDIS: &str = include_str!("testdata/redis-server.service");
const GETTY: &str = include_str!("testdata/getty@.service");
const E2SCRUB: &str = include_str!("testdata/e2scrub_reap.service");
const JOURNALD: &str = include_str!("testdata/systemd-journald.service");
const APT_DAILY: &str = include_str!("testdata/apt-daily.service");
const NETWORKD: &str = include_str!("testdata/systemd-networkd.service");

fn check_install(text: &str, enablable: bool, also: bool) {
    assert_eq!(
        install_section(text.as_bytes()),
        Install { enablable, also },
        "{text}"
    );
}

#[test]
fn install_sections_of_real_units() {
    check_install(REDIS, true, false);
    check_install(GETTY, true, false);
    check_install(E2SCRUB, true, false);
    check_install(JOURNALD, false, false);
    check_install(APT_DAILY, false, false);
    check_install(NETWORKD, true, true);
}

#[test]
fn install_sections_follow_systemds_syntax() {
    check_install("[Unit]\nWantedBy=x.target\n", false, false);
    check_install("[Install]\nWantedBy=\n", false, false);
    check_install("[Install]\n# WantedBy=x\n; Alias=y\n", false, false);
    check_install("[install]\nWantedBy=x\n", false, false);
    check_install("[Install]\n  RequiredBy = x.target  \n", true, false);
    check_install("[Install]\nAlso=a.socket\n", false, true);
    // A continued line is one value: its second line is not a key.
    check_install("[Install]\nDescription=a \\\nWantedBy=x\n", false, false);
    check_install(
        "[Service]\nExecStart=/bin/true\n[Install]\r\nAlias=foo.service\r\n",
        true,
        false,
    );
    check_install("\u{0}\u{ff}[Install]\n=\n", false, false);
}

#[test]
fn cgroup_events_say_populated() {
    assert!(populated("populated 1\nfrozen 0\n"));
    assert!(!populated("populated 0\nfrozen 0\n"));
    assert!(!populated(""));
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// `(name, load, active, sub, enabled)` per unit.
fn check(services: &Services, expect: &[(&str, &str, &str, &str, &str)]) {
    let got: Vec<_> = services
        .units
        .iter()
        .map(|u| {
            (
                u.name.as_str(),
                u.load_state.as_str(),
                u.active_state.as_str(),
                u.sub_state.as_str(),
                u.enabled_state.as_str(),
            )
        })
        .collect();
    assert_eq!(got, expect);
}

/// A file system laid out like this Debian machine's, as systemd reads it.
fn debian_like_root(systemd_running: bool) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path();
    let lib = r.join("lib/systemd/system");
    for (name, text) in [
        ("redis-server.service", REDIS),
        ("getty@.service", GETTY),
        ("e2scrub_reap.service", E2SCRUB),
        ("systemd-journald.service", JOURNALD),
        ("apt-daily.service", APT_DAILY),
        ("systemd-networkd.service", NETWORKD),
    ] {
        write(&lib.join(name), text);
    }
    let etc = r.join("etc/systemd/system");
    std::fs::create_dir_all(etc.join("multi-user.target.wants")).expect("mkdir");
    std::fs::create_dir_all(etc.join("getty.target.wants")).expect("mkdir");
    let link = |target: &Path, at: &Path| symlink(target, at).expect("symlink");
    link(
        &lib.join("redis-server.service"),
        &etc.join("redis.service"),
    );
    link(
        &lib.join("redis-server.service"),
        &etc.join("multi-user.target.wants/redis-server.service"),
    );
    link(
        &lib.join("e2scrub_reap.service"),
        &etc.join("multi-user.target.wants/e2scrub_reap.service"),
    );
    link(
        &lib.join("getty@.service"),
        &etc.join("getty.target.wants/getty@tty1.service"),
    );
    // Enabled, then its package removed: the link dangles.
    link(
        &lib.join("gone.service"),
        &etc.join("multi-user.target.wants/gone.service"),
    );
    link(Path::new("/dev/null"), &etc.join("apt-daily.service"));
    // An override in /etc wins over the packaged file.
    write(
        &etc.join("systemd-journald.service"),
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=sysinit.target\n",
    );
    if systemd_running {
        std::fs::create_dir_all(r.join("run/systemd/system")).expect("mkdir");
        let v2 = r.join("sys/fs/cgroup/system.slice");
        write(
            &v2.join("redis-server.service/cgroup.events"),
            "populated 1\nfrozen 0\n",
        );
        write(
            &v2.join("e2scrub_reap.service/cgroup.events"),
            "populated 0\nfrozen 0\n",
        );
        write(
            &v2.join("system-getty.slice/getty@tty1.service/cgroup.events"),
            "populated 1\nfrozen 0\n",
        );
        // A transient unit: running, no file.
        write(&v2.join("run-u7.service/cgroup.events"), "populated 1\n");
    }
    root
}

#[test]
fn units_from_files_without_systemd_running() {
    let root = debian_like_root(false);
    let services = read_services(root.path(), &ServiceLimits::default());
    assert!(!services.systemd_running);
    check(
        &services,
        &[
            (
                "apt-daily.service",
                "masked",
                "unknown",
                "unknown",
                "masked",
            ),
            (
                "e2scrub_reap.service",
                "loaded",
                "unknown",
                "unknown",
                "enabled",
            ),
            (
                "getty@tty1.service",
                "loaded",
                "unknown",
                "unknown",
                "enabled",
            ),
            ("gone.service", "not-found", "unknown", "unknown", "enabled"),
            (
                "redis-server.service",
                "loaded",
                "unknown",
                "unknown",
                "enabled",
            ),
            (
                "systemd-journald.service",
                "loaded",
                "unknown",
                "unknown",
                "disabled",
            ),
            (
                "systemd-networkd.service",
                "loaded",
                "unknown",
                "unknown",
                "disabled",
            ),
        ],
    );
}

#[test]
fn active_state_from_control_groups_with_systemd_running() {
    let root = debian_like_root(true);
    let services = read_services(root.path(), &ServiceLimits::default());
    assert!(services.systemd_running);
    check(
        &services,
        &[
            ("apt-daily.service", "masked", "inactive", "dead", "masked"),
            (
                "e2scrub_reap.service",
                "loaded",
                "inactive",
                "dead",
                "enabled",
            ),
            (
                "getty@tty1.service",
                "loaded",
                "active",
                "running",
                "enabled",
            ),
            ("gone.service", "not-found", "inactive", "dead", "enabled"),
            (
                "redis-server.service",
                "loaded",
                "active",
                "running",
                "enabled",
            ),
            ("run-u7.service", "not-found", "active", "running", "static"),
            (
                "systemd-journald.service",
                "loaded",
                "inactive",
                "dead",
                "disabled",
            ),
            (
                "systemd-networkd.service",
                "loaded",
                "inactive",
                "dead",
                "disabled",
            ),
        ],
    );
}

#[test]
fn limits_are_enforced() {
    let root = debian_like_root(true);
    let few = ServiceLimits {
        max_units: 2,
        ..ServiceLimits::default()
    };
    assert_eq!(read_services(root.path(), &few).units.len(), 2);
    let tiny_files = ServiceLimits {
        max_unit_file_bytes: 10,
        ..ServiceLimits::default()
    };
    let services = read_services(root.path(), &tiny_files);
    // An unread [Install] is static; the links still say enabled.
    let state = |name: &str| {
        services
            .units
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.enabled_state.clone())
    };
    assert_eq!(state("systemd-networkd.service").as_deref(), Some("static"));
    assert_eq!(state("redis-server.service").as_deref(), Some("enabled"));
    // No entries left to look at: nothing, and no panic.
    let none = ServiceLimits {
        max_entries: 0,
        ..ServiceLimits::default()
    };
    assert!(read_services(root.path(), &none).units.is_empty());
}

/// This container has unit files but systemd is not its init.
#[test]
fn this_machine_says_whether_systemd_runs() {
    let services = read_services(Path::new("/"), &ServiceLimits::default());
    assert_eq!(
        services.systemd_running,
        Path::new("/run/systemd/system").is_dir()
    );
    assert!(services.units.windows(2).all(|w| w[0].name < w[1].name));
}

proptest::proptest! {
    #[test]
    fn any_unit_file_parses(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
        let _ = install_section(&bytes);
    }
}
