use proptest::prelude::*;

use super::*;

/// `apt-get -s -o Debug::NoLocking=1 dist-upgrade` on a Debian 12 machine
/// (2026-12-07), as captured: 128 upgrades, 81 of them from the security
/// suite, some from both.
const BOOKWORM: &str = include_str!("bookworm-dist-upgrade.txt");

fn parse(text: &str) -> Result<Vec<PendingUpdate>, UpdatesError> {
    parse_simulation(text, &UpdateLimits::default())
}

fn one(line: &str) -> PendingUpdate {
    let mut all = parse(line).expect("parses");
    assert_eq!(all.len(), 1, "{line}");
    all.remove(0)
}

#[test]
fn a_real_simulated_upgrade_is_read_whole() {
    let updates = parse(BOOKWORM).expect("parses");
    assert_eq!(updates.len(), 128);
    assert_eq!(updates.iter().filter(|u| u.security).count(), 81);
    assert!(updates.is_sorted());
    let find = |name: &str| updates.iter().find(|u| u.name == name).expect(name).clone();
    assert_eq!(
        find("base-files"),
        PendingUpdate {
            name: "base-files".into(),
            architecture: "amd64".into(),
            current_version: "12.4+deb12u11".into(),
            new_version: "12.4+deb12u15".into(),
            origin: "Debian:12.15/oldstable".into(),
            security: false,
        }
    );
    // In both the point release and the security suite.
    let gcrypt = find("libgcrypt20");
    assert_eq!(
        gcrypt.origin,
        "Debian:12.15/oldstable, Debian-Security:12/oldstable-security"
    );
    assert!(gcrypt.security);
    assert_eq!(gcrypt.current_version, "1.10.1-3");
    // An `all` package, and one with apt's trailing dependency notes.
    let tz = find("tzdata");
    assert_eq!((tz.architecture.as_str(), tz.security), ("all", true));
    let pam = find("libpam-modules-bin");
    assert_eq!(pam.new_version, "1.5.2-6+deb12u3");
    assert!(pam.security);
}

#[test]
fn ubuntu_security_suites_count_and_other_suites_do_not() {
    let u = one(
        "Inst libssl3 [3.0.2-0ubuntu1.15] (3.0.2-0ubuntu1.18 Ubuntu:22.04/jammy-updates, Ubuntu:22.04/jammy-security [amd64])",
    );
    assert!(u.security);
    let u = one(
        "Inst vim [2:8.2.3995-1ubuntu2.15] (2:8.2.3995-1ubuntu2.16 Ubuntu:22.04/jammy-updates [amd64])",
    );
    assert!(!u.security);
    assert_eq!(u.current_version, "2:8.2.3995-1ubuntu2.15");
    // A suite merely mentioning security in its label is not one.
    assert!(!one("Inst a1 [1] (2 Security-Team:1/stable [amd64])").security);
    assert!(!is_security_source("Debian-Security:12"));
    assert!(is_security_source("Local:1/bookworm-security"));
    // A Release file without a Version (apt then prints Label:Archive),
    // as the end-to-end test's repository has.
    let u = one("Inst bulwark-e2e-tiny [1.0] (2.0 Bulwark-Test-Security:bookworm-security [all])");
    assert!(u.security);
    assert!(is_security_source("bookworm-security"));
    assert!(!is_security_source("deb.example.org"));
}

#[test]
fn a_new_package_a_multiarch_name_and_a_source_less_line_are_read() {
    let u = one(
        "Inst linux-image-6.1.0-30-amd64 (6.1.124-1 Debian-Security:12/stable-security [amd64])",
    );
    assert_eq!(u.current_version, "");
    assert!(u.security);
    let u = one("Inst libc6:i386 [2.36-9] (2.36-9+deb12u9 Debian:12.9/stable [i386])");
    assert_eq!(
        (u.name.as_str(), u.architecture.as_str()),
        ("libc6", "i386")
    );
    let u = one("Inst hello [1.0] (2.0 [amd64])");
    assert_eq!((u.origin.as_str(), u.security), ("", false));
}

#[test]
fn other_lines_are_ignored_and_an_empty_upgrade_is_empty() {
    let text = "Reading package lists...\nBuilding dependency tree...\nConf base-files (12.4+deb12u15 Debian:12.15/oldstable [amd64])\nRemv foo [1.0]\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n";
    assert_eq!(parse(text), Ok(Vec::new()));
    assert_eq!(parse(""), Ok(Vec::new()));
}

#[test]
fn a_malformed_inst_line_is_an_error_naming_its_line() {
    for (line, why) in [
        ("Inst foo", "no version after the name"),
        (
            "Inst --force-yes [1] (2 x/y-security [amd64])",
            "not a package name",
        ),
        ("Inst Foo [1] (2 [amd64])", "not a package name"),
        ("Inst foo [1 (2 [amd64])", "unclosed installed version"),
        ("Inst foo [1] 2 [amd64]", "no new version"),
        ("Inst foo [1] (2 [amd64]", "unclosed new version"),
        ("Inst foo [1] (2)", "no architecture"),
        ("Inst foo [1] (2 a/b)", "no architecture"),
        ("Inst foo [x] (2 [amd64])", "bad installed version"),
        ("Inst foo [1] (-o [amd64])", "bad new version"),
        ("Inst foo [1] (2 a/b [AMD64])", "bad architecture"),
        ("Inst foo [1] (2 a\u{1b}[31m/b [amd64])", "bad source"),
    ] {
        assert_eq!(
            parse(&format!("Reading...\n{line}\n")),
            Err(UpdatesError::Line { line: 2, why }),
            "{line}"
        );
    }
}

#[test]
fn limits_are_enforced() {
    let small = UpdateLimits {
        max_output: 100,
        max_updates: 2,
        max_field: 8,
        max_origin: 10,
    };
    assert_eq!(
        parse_simulation(&"x".repeat(101), &small),
        Err(UpdatesError::TooLarge(100))
    );
    let three = "Inst aa [1] (2 [all])\nInst bb [1] (2 [all])\nInst cc [1] (2 [all])\n";
    assert_eq!(
        parse_simulation(three, &small),
        Err(UpdatesError::TooMany(2))
    );
    assert!(parse_simulation("Inst aa [1] (123456789 [all])", &small).is_err());
    assert!(parse_simulation("Inst aa [1] (2 a:1/b-security [all])", &small).is_err());
}

fn update(name: &str, security: bool) -> PendingUpdate {
    PendingUpdate {
        name: name.into(),
        architecture: "amd64".into(),
        current_version: "1.0".into(),
        new_version: "2.0".into(),
        origin: if security { "L:1/x-security" } else { "L:1/x" }.into(),
        security,
    }
}

#[test]
fn an_empty_list_patches_the_security_updates_and_names_patch_what_they_name() {
    let pending = [update("aa", true), update("bb", false), update("cc", true)];
    let (targets, failed) = select_targets(&[], &pending);
    assert_eq!(targets, [update("aa", true), update("cc", true)]);
    assert!(failed.is_empty());
    let (targets, failed) = select_targets(&["bb".into(), "zz".into()], &pending);
    assert_eq!(targets, [update("bb", false)]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].name, "zz");
    // A package the upgrade installs anew is never a target itself.
    let mut kernel = update("linux-image-6.1.0-30-amd64", true);
    kernel.current_version = String::new();
    let (targets, _) = select_targets(&[], &[kernel.clone(), update("aa", true)]);
    assert_eq!(targets, [update("aa", true)]);
    let (targets, failed) = select_targets(&[kernel.name.clone()], &[kernel]);
    assert!(targets.is_empty());
    assert_eq!(failed.len(), 1);
}

#[test]
fn the_report_says_what_was_installed_and_what_is_still_pending() {
    let targets = [update("aa", true), update("bb", true)];
    let report = patch_report(
        &targets,
        Vec::new(),
        &[update("bb", true)],
        "exit code 100",
        true,
    );
    assert_eq!(
        report.installed,
        [PatchedPackage {
            name: "aa".into(),
            old_version: "1.0".into(),
            new_version: "2.0".into()
        }]
    );
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].name, "bb");
    assert!(report.failed[0].reason.contains("exit code 100"));
    assert!(report.reboot_required);
}

#[test]
fn the_install_script_quotes_nothing_it_did_not_check() {
    let script =
        install_script(Some(Path::new("/tmp/apt.conf")), &[update("aa", true)]).expect("script");
    assert!(script.contains("APT_CONFIG='/tmp/apt.conf'"));
    assert!(script.ends_with("--force-confdef -- aa\n"), "{script}");
    assert!(install_script(Some(Path::new("/tmp/it's")), &[]).is_none());
    assert!(install_script(None, &[update("-oAPT::x=1", true)]).is_none());
    assert!(install_script(None, &[update("a b", true)]).is_none());
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9+.-]{1,20}"
}

fn version() -> impl Strategy<Value = String> {
    "([1-9]:)?[0-9][A-Za-z0-9.+~]{0,10}(-[A-Za-z0-9.+~]{1,8})?"
}

proptest! {
    #[test]
    fn any_line_apt_could_write_reads_back(
        name in name(),
        current in proptest::option::of(version()),
        new in version(),
        sources in proptest::collection::vec(("[A-Za-z][A-Za-z -]{0,12}", "[0-9.]{1,5}", "[a-z]{1,8}(-security|-updates)?"), 0..3),
        arch in "[a-z0-9]{1,8}",
        trailer in proptest::option::of("\\[[a-z0-9:. ]{0,20}\\]"),
    ) {
        let origin = sources.iter().map(|(l, v, a)| format!("{l}:{v}/{a}")).collect::<Vec<_>>().join(", ");
        let mut line = format!("Inst {name}");
        if let Some(c) = &current {
            line.push_str(&format!(" [{c}]"));
        }
        if origin.is_empty() {
            line.push_str(&format!(" ({new} [{arch}])"));
        } else {
            line.push_str(&format!(" ({new} {origin} [{arch}])"));
        }
        if let Some(t) = &trailer {
            line.push_str(&format!(" {t}"));
        }
        let u = one(&line);
        prop_assert_eq!(&u.name, &name);
        prop_assert_eq!(&u.current_version, current.as_deref().unwrap_or(""));
        prop_assert_eq!(&u.new_version, &new);
        prop_assert_eq!(&u.architecture, &arch);
        prop_assert_eq!(&u.origin, &origin);
        prop_assert_eq!(u.security, sources.iter().any(|(_, _, a)| a.ends_with("-security")));
    }

    #[test]
    fn any_text_is_read_or_refused_without_panicking(text in ".{0,400}") {
        let limits = UpdateLimits::default();
        if let Ok(updates) = parse_simulation(&text, &limits) {
            for u in updates {
                prop_assert!(bulwark_policy::job::is_package_name(&u.name));
                prop_assert!(!u.new_version.starts_with('-'));
            }
        }
        let prefixed = format!("Inst {text}");
        let _ = parse_simulation(&prefixed, &limits);
    }
}
