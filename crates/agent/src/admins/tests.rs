use super::*;
use proptest::prelude::*;

/// This Debian machine's `/etc/passwd` and `/etc/group`, Debian's default
/// `/etc/sudoers` and cloud-init's sudoers file for the `ubuntu` user.
const PASSWD: &str = include_str!("testdata/passwd");
const GROUP: &str = include_str!("testdata/group");
const SUDOERS: &str = include_str!("testdata/sudoers");
const CLOUD_INIT: &str = include_str!("testdata/90-cloud-init-users");

/// `name: [kind via, ...]` per administrator.
fn check(passwd: &str, group: &str, sudoers: &[(&str, &str)], expect: &[(&str, &[&str])]) {
    let files: Vec<SudoersFile<'_>> = sudoers
        .iter()
        .map(|(name, text)| SudoersFile {
            name,
            text: text.as_bytes(),
        })
        .collect();
    let got = local_admins(
        passwd.as_bytes(),
        group.as_bytes(),
        &files,
        &AdminLimits::default(),
    )
    .expect("parses");
    let got: Vec<(String, Vec<String>)> = got
        .into_iter()
        .map(|a| {
            let grants = a
                .grants
                .iter()
                .map(|g| format!("{} {}", g.kind, g.via).trim().to_owned())
                .collect();
            (a.name, grants)
        })
        .collect();
    let expect: Vec<(String, Vec<String>)> = expect
        .iter()
        .map(|(n, g)| (n.to_string(), g.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn this_machine_has_root_only() {
    check(PASSWD, GROUP, &[], &[("root", &["gid0", "uid0"])]);
}

#[test]
fn debian_defaults_and_cloud_init_name_every_way() {
    let group = GROUP
        .replace("sudo:x:27:", "sudo:x:27:cloudsdk,alice")
        .replace("users:x:100:", "users:x:100:bob");
    check(
        PASSWD,
        &group,
        &[
            ("/etc/sudoers", SUDOERS),
            ("/etc/sudoers.d/90-cloud-init-users", CLOUD_INIT),
        ],
        &[
            // Listed in group sudo, though no such account exists here.
            ("alice", &["group sudo", "sudoers /etc/sudoers:31"]),
            ("cloudsdk", &["group sudo", "sudoers /etc/sudoers:31"]),
            ("root", &["gid0", "sudoers /etc/sudoers:28", "uid0"]),
            ("ubuntu", &["sudoers /etc/sudoers.d/90-cloud-init-users:4"]),
        ],
    );
}

#[test]
fn wheel_admin_and_primary_groups_count() {
    check(
        "root:x:0:0::/root:/bin/sh\nops:x:1001:10::/home/ops:/bin/sh\ntoor:x:0:1002::/:/bin/sh\nsvc:x:1003:0::/:/bin/false\n",
        "root:x:0:\nwheel:x:10:carol\nadmin:x:115:dave,\nsudo:x:27:\n",
        &[],
        &[
            ("carol", &["group wheel"]),
            ("dave", &["group admin"]),
            ("ops", &["group wheel"]),
            ("root", &["gid0", "uid0"]),
            ("svc", &["gid0"]),
            ("toor", &["uid0"]),
        ],
    );
}

/// `(line, principals)` of each rule granting ALL as root.
fn rules(text: &str) -> Vec<(usize, Vec<String>)> {
    sudoers_all_rules(text.as_bytes())
}

#[test]
fn sudoers_rules_granting_all_as_root() {
    let text = "\
alice ALL=(ALL:ALL) ALL
bob ALL = (root) NOPASSWD: SETENV: ALL
%admins ALL=ALL
#1001 ALL=(ALL) ALL
carol, dave  host1 = (ALL) ALL # trailing comment
erin ALL=(ALL) \\
    ALL
ALL ALL=(ALL) NOPASSWD: ALL
";
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rules(text),
        [
            (1, s(&["alice"])),
            (2, s(&["bob"])),
            (3, s(&["%admins"])),
            (4, s(&["#1001"])),
            (5, s(&["carol", "dave"])),
            (6, s(&["erin"])),
            (8, s(&["ALL"])),
        ]
    );
}

#[test]
fn sudoers_rules_not_understood_grant_nothing() {
    let text = "\
Defaults env_reset
Defaults:alice !requiretty
User_Alias ADMINS = alice, bob
Cmnd_Alias ALLCMDS = ALL
ADMINS ALL=(ALL) ALL
web ALL=(www-data) ALL
backup ALL=(root) /usr/bin/rsync
!mallory ALL=(ALL) ALL
# alice ALL=(ALL) ALL
#includedir /etc/sudoers.d
@includedir /etc/sudoers.d
frank ALL=(ALL) ALLX
";
    assert_eq!(rules(text), Vec::<(usize, Vec<String>)>::new());
}

#[test]
fn a_uid_rule_names_its_account() {
    check(
        "root:x:0:0::/root:/bin/sh\nops:x:1001:1001::/home/ops:/bin/sh\n",
        "ops:x:1001:\nadmins:x:2000:ops\n",
        &[(
            "/etc/sudoers.d/ops",
            "#1001 ALL=(ALL) ALL\n%admins ALL=(ALL:ALL) ALL\n#9999 ALL=(ALL) ALL\n",
        )],
        &[
            (
                "ops",
                &[
                    "sudoers /etc/sudoers.d/ops:1",
                    "sudoers /etc/sudoers.d/ops:2",
                ],
            ),
            ("root", &["gid0", "uid0"]),
        ],
    );
}

#[test]
fn limits_are_enforced() {
    let small = AdminLimits {
        max_input_bytes: 10,
        ..AdminLimits::default()
    };
    assert!(matches!(
        local_admins(PASSWD.as_bytes(), b"", &[], &small),
        Err(AdminsError::TooLarge { .. })
    ));
    let few = AdminLimits {
        max_admins: 1,
        ..AdminLimits::default()
    };
    assert_eq!(
        local_admins(b"a:x:0:0::/:/\nb:x:0:0::/:/\n", b"", &[], &few),
        Err(AdminsError::TooManyAdmins { max: 1 })
    );
}

/// The agent's reader on this machine agrees with `/etc/group` and
/// `/etc/passwd` as `getent` sees them.
#[test]
fn this_machine_read_from_disk() {
    let admins = read_local_admins(Path::new("/"), &AdminLimits::default()).expect("reads");
    assert!(
        admins
            .iter()
            .any(|a| a.name == "root" && a.grants.iter().any(|g| g.kind == "uid0"))
    );
}

proptest! {
    #[test]
    fn any_bytes_give_admins_or_an_error(
        passwd in proptest::collection::vec(any::<u8>(), 0..512),
        group in proptest::collection::vec(any::<u8>(), 0..512),
        sudoers in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let files = [SudoersFile { name: "/etc/sudoers", text: &sudoers }];
        if let Ok(admins) = local_admins(&passwd, &group, &files, &AdminLimits::default()) {
            prop_assert!(admins.windows(2).all(|w| w[0].name < w[1].name));
            prop_assert!(admins.iter().all(|a| !a.grants.is_empty()));
        }
    }

    /// Members written into group sudo come back as administrators.
    #[test]
    fn group_members_read_back(members in proptest::collection::btree_set("[a-z_][a-z0-9_-]{0,15}", 0..10)) {
        let list: Vec<&str> = members.iter().map(String::as_str).collect();
        let group = format!("sudo:x:27:{}\n", list.join(","));
        let admins = local_admins(b"", group.as_bytes(), &[], &AdminLimits::default()).expect("parses");
        let names: Vec<&str> = admins.iter().map(|a| a.name.as_str()).collect();
        prop_assert_eq!(names, list);
    }
}
