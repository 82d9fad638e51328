//! The policy's shell-notice setting (RFD 0015, "Notices"): a policy
//! signed before the field existed still verifies to the same bytes, the
//! setting survives signing and verification, a message that could
//! reach a terminal as an escape sequence is refused before anyone signs
//! it, and a policy whose setting a server dropped is a different policy
//! the root never signed.

use bulwark_policy::shell::{MAX_NOTICE_MESSAGE, ShellNotice, is_terminal_control};
use bulwark_policy::{
    ActionClass, Holder, Limits, OperatorKey, Policy, PublicKey, Quorum, Refusal, RootKey, Signed,
    TrustRoot,
};
use ed25519_dalek::SigningKey;

const NOW: u64 = 1_800_000_000;

fn root_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn root() -> TrustRoot {
    TrustRoot {
        tenant: "acme".into(),
        version: 1,
        threshold: 1,
        keys: vec![RootKey {
            key: PublicKey::Ed25519(root_key().verifying_key().to_bytes()),
            holder: Holder::Msp,
            name: "officer".into(),
        }],
    }
}

fn policy(shell_notice: Option<ShellNotice>) -> Policy {
    Policy {
        tenant: "acme".into(),
        version: 2,
        expires_at: NOW + 86_400,
        operators: vec![OperatorKey {
            key: PublicKey::Ed25519([9; 32]),
            name: "alice".into(),
            holder: Holder::Msp,
            classes: vec![ActionClass::OpenShell],
        }],
        quorums: vec![Quorum {
            class: ActionClass::OpenShell,
            signers: 1,
            customer_required: false,
            in_window_only: false,
        }],
        fan_out_limit: 10,
        allowed_scripts: Vec::new(),
        maintenance_windows: Vec::new(),
        tenant_name: Some("Acme".into()),
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice,
    }
}

fn sign(policy: &Policy) -> Signed {
    let mut signed = Signed::new(policy);
    signed.sign(&root_key());
    signed
}

fn verify(signed: &Signed) -> Result<Policy, Refusal> {
    Policy::verify_update(&root(), None, signed, NOW, &Limits::default())
}

fn notice(message: Option<&str>) -> ShellNotice {
    ShellNotice {
        at_start: true,
        at_end: true,
        message: message.map(str::to_owned),
    }
}

/// The payload of `policy(None)`: a map of the 9 fields it sets, the
/// optional ones (keys 9 to 14) absent, as every policy signed before
/// `shell_notice` was encoded.
const PAYLOAD_WITHOUT_NOTICE: &str = "a9006461636d650102021a6b4b23800381a400820081582009090909090909090909090909090909090909090909090909090909090909090165616c69636502000381040481a40004010102f403f4050a06800780086441636d65";

#[test]
fn a_policy_signed_without_the_setting_verifies_as_before() {
    let signed = sign(&policy(None));
    assert_eq!(hex::encode(&signed.payload), PAYLOAD_WITHOUT_NOTICE);
    let verified = verify(&signed).expect("verifies");
    assert_eq!(verified.shell_notice, None);
    // The stored bytes, read back, are the same policy under the same signature.
    let payload = hex::decode(PAYLOAD_WITHOUT_NOTICE).expect("hex");
    let stored = Signed {
        payload,
        ..signed.clone()
    };
    let again = Signed::from_bytes(&stored.to_bytes(), &Limits::default()).expect("reads");
    assert_eq!(verify(&again).expect("verifies"), policy(None));
}

#[test]
fn the_setting_survives_signing_and_verification() {
    let with = policy(Some(notice(Some("Questions? Call 555-0100."))));
    let verified = verify(&sign(&with)).expect("verifies");
    assert_eq!(verified.shell_notice, with.shell_notice);
}

#[test]
fn a_server_that_drops_the_setting_breaks_the_root_signature() {
    let mut signed = sign(&policy(Some(notice(None))));
    signed.payload = Signed::new(&policy(None)).payload;
    assert_eq!(verify(&signed), Err(Refusal::RootThresholdNotMet));
}

#[test]
fn messages_that_could_reach_a_terminal_as_control_are_refused() {
    for bad in [
        "call us\x1b[2J",
        "line\nbreak",
        "bell\x07",
        "c1 \u{9b}31m",
        "\u{202e}reversed",
        "del\x7f",
    ] {
        let refused = verify(&sign(&policy(Some(notice(Some(bad))))));
        assert!(
            matches!(refused, Err(Refusal::Malformed(_))),
            "{bad:?}: {refused:?}"
        );
    }
    let long = "x".repeat(MAX_NOTICE_MESSAGE + 1);
    assert!(matches!(
        verify(&sign(&policy(Some(notice(Some(&long)))))),
        Err(Refusal::TooLarge(_))
    ));
    let longest = "é".repeat(MAX_NOTICE_MESSAGE / 2);
    assert!(verify(&sign(&policy(Some(notice(Some(&longest)))))).is_ok());
    assert!(!is_terminal_control('é') && is_terminal_control('\u{2066}'));
}

#[test]
fn what_people_read_of_the_setting() {
    use bulwark_policy::shell::notice_summary;
    assert_eq!(
        notice_summary(None),
        "none (logged-in users are not told of remote shells)"
    );
    assert_eq!(
        notice_summary(Some(&notice(Some("Call 555-0100")))),
        "logged-in users are told when a remote shell starts and when it ends, with \"Call 555-0100\""
    );
    let end_only = ShellNotice {
        at_start: false,
        ..notice(None)
    };
    assert_eq!(
        notice_summary(Some(&end_only)),
        "logged-in users are told when a remote shell ends"
    );
}
