//! Remote shells (RFD 0015): each test plays one attack on the grant, the
//! session-open, the answer or the sealed channel, with the server as the
//! attacker. Fixture: tenant `acme`; alice, alice's second laptop key, bob
//! (MSP) and carol (customer); `open-shell` needs 1 signer, `open-admin-shell`
//! 1 (a careless policy: the agent still asks for two operators).

use bulwark_policy::freeze::FreezeState;
use bulwark_policy::job::{AgentContext, JobTarget, device_key_fingerprint};
use bulwark_policy::policy::{ActionClass, OperatorKey, Policy, Quorum};
use bulwark_policy::root::Holder;
use bulwark_policy::shell::channel::{
    ChannelError, Ephemeral, ShellInput, ShellOutput, Side, establish,
};
use bulwark_policy::shell::{
    MAX_GRANT_SECS, OPEN_SKEW_SECS, RevokedGrants, SeenOpens, SessionAnswer, SessionOpen,
    ShellAccount, ShellGrant, VerifiedGrant, verify_answer, verify_grant, verify_open,
};
use bulwark_policy::{AgentRefusalCode, Limits, PublicKey, Refusal, Signed};
use ed25519_dalek::SigningKey;
use ring::rand::SystemRandom;

const NOW: u64 = 1_800_000_000;
const DEVICE: &str = "6f1c2a3b-0000-4000-8000-000000000001";
const OTHER_DEVICE: &str = "6f1c2a3b-0000-4000-8000-000000000002";
const HOST: &str = "ws-042";
const GRANT_ID: [u8; 16] = [7; 16];
const SESSION: [u8; 16] = [9; 16];

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn public(k: &SigningKey) -> PublicKey {
    PublicKey::Ed25519(k.verifying_key().to_bytes())
}

fn alice() -> SigningKey {
    key(10)
}
fn alice_laptop() -> SigningKey {
    key(13)
}
fn bob() -> SigningKey {
    key(11)
}
fn carol() -> SigningKey {
    key(12)
}
fn mallory() -> SigningKey {
    key(66)
}
fn device_key() -> SigningKey {
    key(42)
}

fn operator(k: &SigningKey, name: &str, holder: Holder) -> OperatorKey {
    OperatorKey {
        key: public(k),
        name: name.into(),
        holder,
        classes: vec![ActionClass::OpenShell, ActionClass::OpenAdminShell],
    }
}

fn quorum(class: ActionClass, signers: u32) -> Quorum {
    Quorum {
        class,
        signers,
        customer_required: false,
        in_window_only: false,
    }
}

fn policy() -> Policy {
    Policy {
        tenant: "acme".into(),
        version: 3,
        expires_at: NOW + 30 * 86_400,
        operators: vec![
            operator(&alice(), "alice", Holder::Msp),
            operator(&alice_laptop(), "alice", Holder::Msp),
            operator(&bob(), "bob", Holder::Msp),
            operator(&carol(), "carol", Holder::Customer),
        ],
        quorums: vec![
            quorum(ActionClass::OpenShell, 1),
            quorum(ActionClass::OpenAdminShell, 1),
        ],
        fan_out_limit: 10,
        allowed_scripts: Vec::new(),
        maintenance_windows: Vec::new(),
        tenant_name: Some("Acme".into()),
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice: None,
    }
}

fn device_fingerprint() -> [u8; 32] {
    device_key_fingerprint(&device_key().verifying_key().to_bytes())
}

fn grant(account: ShellAccount) -> ShellGrant {
    ShellGrant {
        tenant: "acme".into(),
        tenant_name: "Acme".into(),
        grant_id: GRANT_ID,
        device: JobTarget {
            device_id: DEVICE.into(),
            hostname: HOST.into(),
            device_key: Some(device_fingerprint()),
        },
        grantee: public(&alice()).id(),
        account,
        reason: "ticket 4711: printer queue stuck".into(),
        not_before: NOW - 60,
        expires_at: NOW + 1800,
        nonce: [3; 16],
    }
}

fn signed<T: bulwark_policy::envelope::Statement>(statement: &T, by: &[&SigningKey]) -> Signed {
    let mut envelope = Signed::new(statement);
    for k in by {
        envelope.sign(k);
    }
    envelope
}

/// Verifies `grant` signed by `by` on the fixture's device under `policy`.
fn check_with(
    policy: &Policy,
    grant: &ShellGrant,
    by: &[&SigningKey],
    revoked: &RevokedGrants,
    now: u64,
) -> Result<VerifiedGrant, Refusal> {
    let fingerprint = device_fingerprint();
    let agent = AgentContext {
        tenant: "acme",
        device_id: DEVICE,
        hostname: HOST,
        device_key: &fingerprint,
        policy,
        freeze: FreezeState::default(),
    };
    verify_grant(&signed(grant, by), agent, revoked, now, &Limits::default())
}

fn check(grant: &ShellGrant, by: &[&SigningKey]) -> Result<VerifiedGrant, Refusal> {
    check_with(&policy(), grant, by, &RevokedGrants::default(), NOW)
}

#[test]
fn an_unprivileged_grant_signed_by_the_grantee_is_accepted() {
    let verified = check(&grant(ShellAccount::Unprivileged), &[&alice()]).expect("ok");
    assert_eq!(verified.grantee_key, public(&alice()));
    assert_eq!(verified.grant.account.class(), ActionClass::OpenShell);
}

#[test]
fn a_grant_signed_by_a_key_the_policy_does_not_list_is_refused() {
    let refusal = check(&grant(ShellAccount::Unprivileged), &[&mallory()]).expect_err("refused");
    assert_eq!(refusal, Refusal::UnknownKey);
}

#[test]
fn a_grant_for_a_grantee_the_policy_does_not_list_is_refused() {
    let mut g = grant(ShellAccount::Unprivileged);
    g.grantee = public(&mallory()).id();
    assert_eq!(
        check(&g, &[&alice()]).expect_err("refused"),
        Refusal::UnknownKey
    );
}

#[test]
fn a_grant_edited_after_signing_is_refused() {
    // The server turns alice's unprivileged grant into root by editing the payload.
    let mut envelope = signed(&grant(ShellAccount::Unprivileged), &[&alice(), &bob()]);
    let root = signed(&grant(ShellAccount::Root), &[]);
    envelope.payload = root.payload;
    let fingerprint = device_fingerprint();
    let policy = policy();
    let agent = AgentContext {
        tenant: "acme",
        device_id: DEVICE,
        hostname: HOST,
        device_key: &fingerprint,
        policy: &policy,
        freeze: FreezeState::default(),
    };
    let refusal = verify_grant(
        &envelope,
        agent,
        &RevokedGrants::default(),
        NOW,
        &Limits::default(),
    )
    .expect_err("refused");
    assert_eq!(refusal, Refusal::BadSignature);
}

#[test]
fn an_expired_grant_is_refused_on_the_agents_clock() {
    let g = grant(ShellAccount::Unprivileged);
    let refusal = check_with(
        &policy(),
        &g,
        &[&alice()],
        &RevokedGrants::default(),
        g.expires_at,
    )
    .expect_err("refused");
    assert_eq!(refusal, Refusal::Expired);
    let early = check_with(
        &policy(),
        &g,
        &[&alice()],
        &RevokedGrants::default(),
        g.not_before - 1,
    );
    assert_eq!(early.expect_err("refused"), Refusal::NotYetValid);
}

#[test]
fn a_grant_longer_than_eight_hours_is_refused() {
    let mut g = grant(ShellAccount::Unprivileged);
    g.expires_at = g.not_before + MAX_GRANT_SECS + 1;
    assert_eq!(
        check(&g, &[&alice()]).expect_err("refused"),
        Refusal::ValidityTooLong
    );
    g.expires_at = g.not_before;
    assert!(matches!(
        check(&g, &[&alice()]).expect_err("refused"),
        Refusal::Malformed(_)
    ));
}

#[test]
fn a_grant_for_another_device_is_refused() {
    let mut g = grant(ShellAccount::Unprivileged);
    g.device.device_id = OTHER_DEVICE.into();
    assert_eq!(
        check(&g, &[&alice()]).expect_err("refused"),
        Refusal::NotATarget
    );

    // The server swapped hostnames: the id is this device's, the name is not.
    let mut g = grant(ShellAccount::Unprivileged);
    g.device.hostname = "db-01".into();
    assert!(matches!(
        check(&g, &[&alice()]).expect_err("refused"),
        Refusal::TargetMismatch(_)
    ));

    let mut g = grant(ShellAccount::Unprivileged);
    g.device.device_key = Some([0xee; 32]);
    assert!(matches!(
        check(&g, &[&alice()]).expect_err("refused"),
        Refusal::TargetMismatch(_)
    ));
}

#[test]
fn a_grant_for_another_tenant_is_refused() {
    let mut g = grant(ShellAccount::Unprivileged);
    g.tenant = "globex".into();
    assert_eq!(
        check(&g, &[&alice()]).expect_err("refused"),
        Refusal::WrongTenant
    );
    let mut g = grant(ShellAccount::Unprivileged);
    g.tenant_name = "Globex".into();
    assert_eq!(
        check(&g, &[&alice()]).expect_err("refused"),
        Refusal::WrongTenant
    );
}

#[test]
fn a_root_grant_needs_two_operators_whatever_the_policy_says() {
    let g = grant(ShellAccount::Root);
    // The grantee alone: the policy's quorum of one is not enough.
    assert_eq!(
        check(&g, &[&alice()]).expect_err("refused"),
        Refusal::TooFewSigners { have: 1, need: 2 }
    );
    // The grantee with their own second key: two keys, one person.
    assert_eq!(
        check(&g, &[&alice(), &alice_laptop()]).expect_err("refused"),
        Refusal::TooFewSigners { have: 1, need: 2 }
    );
    // The same key twice counts once.
    assert_eq!(
        check(&g, &[&alice(), &alice()]).expect_err("refused"),
        Refusal::TooFewSigners { have: 1, need: 2 }
    );
    // Another operator approves: accepted.
    let verified = check(&g, &[&alice(), &bob()]).expect("ok");
    assert_eq!(verified.grant.account, ShellAccount::Root);
}

#[test]
fn a_plain_grant_does_not_open_a_root_shell() {
    // Signatures for an unprivileged grant do not verify over a root one,
    // and a policy that permits no admin shells refuses every root grant.
    let mut p = policy();
    p.quorums.retain(|q| q.class != ActionClass::OpenAdminShell);
    let refusal = check_with(
        &p,
        &grant(ShellAccount::Root),
        &[&alice(), &bob()],
        &RevokedGrants::default(),
        NOW,
    )
    .expect_err("refused");
    assert_eq!(refusal, Refusal::ClassNotPermitted);
}

#[test]
fn an_operator_listed_only_for_plain_shells_gets_no_root_grant() {
    let mut p = policy();
    p.operators[0].classes = vec![ActionClass::OpenShell];
    let refusal = check_with(
        &p,
        &grant(ShellAccount::Root),
        &[&alice(), &bob()],
        &RevokedGrants::default(),
        NOW,
    )
    .expect_err("refused");
    assert_eq!(refusal, Refusal::UnknownKey);
}

#[test]
fn a_customer_cosigner_is_required_where_the_policy_says() {
    let mut p = policy();
    p.quorums[1].customer_required = true;
    p.quorums[1].signers = 2;
    let g = grant(ShellAccount::Root);
    let refusal = check_with(&p, &g, &[&alice(), &bob()], &RevokedGrants::default(), NOW);
    assert_eq!(
        refusal.expect_err("refused"),
        Refusal::MissingCustomerCosigner
    );
    check_with(
        &p,
        &g,
        &[&alice(), &carol()],
        &RevokedGrants::default(),
        NOW,
    )
    .expect("ok");
}

#[test]
fn a_frozen_tenant_opens_no_shell() {
    let fingerprint = device_fingerprint();
    let policy = policy();
    let agent = AgentContext {
        tenant: "acme",
        device_id: DEVICE,
        hostname: HOST,
        device_key: &fingerprint,
        policy: &policy,
        freeze: FreezeState {
            sequence: 1,
            frozen: true,
        },
    };
    let refusal = verify_grant(
        &signed(&grant(ShellAccount::Unprivileged), &[&alice()]),
        agent,
        &RevokedGrants::default(),
        NOW,
        &Limits::default(),
    );
    assert_eq!(refusal.expect_err("refused"), Refusal::Frozen);
}

#[test]
fn a_revoked_grant_is_refused_until_it_expires() {
    let g = grant(ShellAccount::Unprivileged);
    let mut revoked = RevokedGrants::default();
    revoked.revoke(GRANT_ID, g.expires_at, NOW);
    let refusal = check_with(&policy(), &g, &[&alice()], &revoked, NOW + 10).expect_err("refused");
    assert_eq!(refusal, Refusal::GrantRevoked);
    assert_eq!(refusal.code(), AgentRefusalCode::GrantRevoked);
    // After its expiry the revocation is forgotten, and the grant refused as expired.
    let later = check_with(&policy(), &g, &[&alice()], &revoked, g.expires_at);
    assert_eq!(later.expect_err("refused"), Refusal::Expired);
    // A server that says a shorter expiry only shortens its own revocation.
    let mut short = RevokedGrants::default();
    short.revoke(GRANT_ID, NOW + 5, NOW);
    short.revoke(GRANT_ID, NOW + 1, NOW);
    assert!(short.is_revoked(&GRANT_ID, NOW + 4));
}

#[test]
fn a_full_revocation_set_fails_closed() {
    let mut revoked = RevokedGrants::default();
    for i in 0..bulwark_policy::shell::MAX_REVOKED as u32 {
        let mut id = [0; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        id[15] = 1;
        revoked.revoke(id, NOW + 100, NOW);
    }
    revoked.revoke(GRANT_ID, NOW + 50, NOW);
    // The dropped revocation is honoured: every grant counts as revoked until it would expire.
    assert!(revoked.is_revoked(&GRANT_ID, NOW + 10));
    assert!(revoked.is_revoked(&[0xab; 16], NOW + 10));
    assert!(!revoked.is_revoked(&[0xab; 16], NOW + 60));
}

// ---- session-open and answer ----

fn open(ephemeral: [u8; 32]) -> SessionOpen {
    SessionOpen {
        grant_id: GRANT_ID,
        device_id: DEVICE.into(),
        session_id: SESSION,
        client_ephemeral: ephemeral,
        nonce: [5; 16],
        time: NOW,
        cols: 80,
        rows: 24,
    }
}

fn verified() -> VerifiedGrant {
    check(&grant(ShellAccount::Unprivileged), &[&alice()]).expect("ok")
}

fn check_open(
    open: &SessionOpen,
    by: &SigningKey,
    seen: &mut SeenOpens,
) -> Result<SessionOpen, Refusal> {
    verify_open(
        &signed(open, &[by]),
        &verified(),
        &SESSION,
        seen,
        NOW,
        &Limits::default(),
    )
}

#[test]
fn a_session_open_by_the_grantee_is_accepted_once() {
    let mut seen = SeenOpens::default();
    check_open(&open([1; 32]), &alice(), &mut seen).expect("ok");
    // The server replays it (to open a second session it can watch): refused.
    assert_eq!(
        check_open(&open([1; 32]), &alice(), &mut seen).expect_err("refused"),
        Refusal::Replayed
    );
}

#[test]
fn a_session_open_by_anyone_but_the_grantee_is_refused() {
    let mut seen = SeenOpens::default();
    // Another policy operator (who could approve the grant) cannot use it.
    assert_eq!(
        check_open(&open([1; 32]), &bob(), &mut seen).expect_err("refused"),
        Refusal::UnknownKey
    );
    // The server's own key.
    assert_eq!(
        check_open(&open([1; 32]), &mallory(), &mut seen).expect_err("refused"),
        Refusal::UnknownKey
    );
    // A forged open carries no nonce into the set: the real one still works.
    check_open(&open([1; 32]), &alice(), &mut seen).expect("ok");
}

#[test]
fn a_session_open_with_a_swapped_ephemeral_key_is_refused() {
    // The server replaces the client's ephemeral key with its own, keeping
    // the grantee's signature: the signature no longer verifies.
    let mut envelope = signed(&open([1; 32]), &[&alice()]);
    envelope.payload = signed(&open([0x66; 32]), &[]).payload;
    let refusal = verify_open(
        &envelope,
        &verified(),
        &SESSION,
        &mut SeenOpens::default(),
        NOW,
        &Limits::default(),
    );
    assert_eq!(refusal.expect_err("refused"), Refusal::BadSignature);
}

#[test]
fn a_session_open_for_another_device_grant_or_session_is_refused() {
    let mut seen = SeenOpens::default();
    let mut o = open([1; 32]);
    o.device_id = OTHER_DEVICE.into();
    assert_eq!(
        check_open(&o, &alice(), &mut seen).expect_err("refused"),
        Refusal::NotATarget
    );
    let mut o = open([1; 32]);
    o.grant_id = [8; 16];
    assert!(matches!(
        check_open(&o, &alice(), &mut seen).expect_err("refused"),
        Refusal::Malformed(_)
    ));
    let o = open([1; 32]);
    let refusal = verify_open(
        &signed(&o, &[&alice()]),
        &verified(),
        &[0xee; 16],
        &mut seen,
        NOW,
        &Limits::default(),
    );
    assert!(matches!(
        refusal.expect_err("refused"),
        Refusal::Malformed(_)
    ));
}

#[test]
fn a_stale_or_future_session_open_is_refused() {
    let mut seen = SeenOpens::default();
    let mut o = open([1; 32]);
    o.time = NOW - OPEN_SKEW_SECS - 1;
    assert_eq!(
        check_open(&o, &alice(), &mut seen).expect_err("refused"),
        Refusal::Expired
    );
    o.time = NOW + OPEN_SKEW_SECS + 1;
    assert_eq!(
        check_open(&o, &alice(), &mut seen).expect_err("refused"),
        Refusal::NotYetValid
    );
    o.time = NOW;
    o.cols = 0;
    assert!(matches!(
        check_open(&o, &alice(), &mut seen).expect_err("refused"),
        Refusal::Malformed(_)
    ));
}

#[test]
fn an_answer_by_another_key_or_for_another_open_is_refused() {
    let open_envelope = signed(&open([1; 32]), &[&alice()]);
    let answer = SessionAnswer {
        open_digest: open_envelope.digest(),
        agent_ephemeral: [2; 32],
    };
    let device_public = device_key().verifying_key().to_bytes();
    let limits = Limits::default();
    verify_answer(
        &signed(&answer, &[&device_key()]),
        &open_envelope,
        &device_public,
        &limits,
    )
    .expect("ok");
    // The server answers with a key of its own in the device's place.
    assert_eq!(
        verify_answer(
            &signed(&answer, &[&mallory()]),
            &open_envelope,
            &device_public,
            &limits
        )
        .expect_err("refused"),
        Refusal::UnknownKey
    );
    // A real answer to another open (replayed from an earlier session).
    let other_open = signed(&open([4; 32]), &[&alice()]);
    assert!(matches!(
        verify_answer(
            &signed(&answer, &[&device_key()]),
            &other_open,
            &device_public,
            &limits
        )
        .expect_err("refused"),
        Refusal::Malformed(_)
    ));
}

// ---- the sealed channel ----

struct Pair {
    client: bulwark_policy::shell::channel::Channel,
    agent: bulwark_policy::shell::channel::Channel,
}

fn pair() -> Pair {
    let rng = SystemRandom::new();
    let client_eph = Ephemeral::generate(&rng).expect("ok");
    let agent_eph = Ephemeral::generate(&rng).expect("ok");
    let open_envelope = signed(&open(client_eph.public()), &[&alice()]);
    let answer = signed(
        &SessionAnswer {
            open_digest: open_envelope.digest(),
            agent_ephemeral: agent_eph.public(),
        },
        &[&device_key()],
    );
    let agent_public = agent_eph.public();
    let client_public = client_eph.public();
    Pair {
        client: establish(
            Side::Client,
            client_eph,
            &agent_public,
            &open_envelope,
            &answer,
        )
        .expect("ok"),
        agent: establish(
            Side::Agent,
            agent_eph,
            &client_public,
            &open_envelope,
            &answer,
        )
        .expect("ok"),
    }
}

#[test]
fn frames_go_both_ways_in_order() {
    let mut p = pair();
    for text in [&b"uname -a\r"[..], b"", b"exit\r"] {
        let sealed = p.client.seal(&ShellInput::Data(text.to_vec())).expect("ok");
        assert!(!sealed.windows(text.len().max(1)).any(|w| w == text) || text.is_empty());
        assert_eq!(
            p.agent.open::<ShellInput>(&sealed).expect("ok"),
            ShellInput::Data(text.to_vec())
        );
    }
    let sealed = p
        .agent
        .seal(&ShellOutput::Ended {
            exit_code: Some(0),
            reason: "exit".into(),
        })
        .expect("ok");
    assert!(matches!(
        p.client.open::<ShellOutput>(&sealed).expect("ok"),
        ShellOutput::Ended {
            exit_code: Some(0),
            ..
        }
    ));
}

#[test]
fn a_replayed_frame_ends_the_channel() {
    let mut p = pair();
    let first = p
        .client
        .seal(&ShellInput::Data(b"ls\r".to_vec()))
        .expect("ok");
    p.agent.open::<ShellInput>(&first).expect("ok");
    assert_eq!(
        p.agent.open::<ShellInput>(&first).expect_err("refused"),
        ChannelError::OutOfOrder {
            expected: 1,
            got: 0
        }
    );
    let next = p
        .client
        .seal(&ShellInput::Data(b"id\r".to_vec()))
        .expect("ok");
    assert_eq!(
        p.agent.open::<ShellInput>(&next).expect_err("refused"),
        ChannelError::Ended
    );
}

#[test]
fn a_reordered_or_dropped_frame_ends_the_channel() {
    let mut p = pair();
    let first = p
        .client
        .seal(&ShellInput::Data(b"rm -i x\r".to_vec()))
        .expect("ok");
    let second = p
        .client
        .seal(&ShellInput::Data(b"y\r".to_vec()))
        .expect("ok");
    assert_eq!(
        p.agent.open::<ShellInput>(&second).expect_err("refused"),
        ChannelError::OutOfOrder {
            expected: 0,
            got: 1
        }
    );
    assert_eq!(
        p.agent.open::<ShellInput>(&first).expect_err("refused"),
        ChannelError::Ended
    );
}

#[test]
fn an_injected_or_altered_frame_ends_the_channel() {
    let mut p = pair();
    // The server makes up a frame with the right counter.
    let mut forged = 0u64.to_be_bytes().to_vec();
    forged.extend_from_slice(&[0x41; 40]);
    assert_eq!(
        p.agent.open::<ShellInput>(&forged).expect_err("refused"),
        ChannelError::Forged
    );

    // A bit flipped in a real frame.
    let mut p = pair();
    let mut sealed = p
        .client
        .seal(&ShellInput::Data(b"ls\r".to_vec()))
        .expect("ok");
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    assert_eq!(
        p.agent.open::<ShellInput>(&sealed).expect_err("refused"),
        ChannelError::Forged
    );

    // A counter rewritten so a frame passes as another.
    let mut p = pair();
    p.client.seal(&ShellInput::Close).expect("ok");
    let mut second = p.client.seal(&ShellInput::Data(b"x".to_vec())).expect("ok");
    second[..8].copy_from_slice(&0u64.to_be_bytes());
    assert_eq!(
        p.agent.open::<ShellInput>(&second).expect_err("refused"),
        ChannelError::Forged
    );
}

#[test]
fn a_frame_reflected_back_to_its_sender_is_refused() {
    // The server bounces the client's own frame back as agent output.
    let mut p = pair();
    let sealed = p.client.seal(&ShellInput::Data(b"x".to_vec())).expect("ok");
    assert_eq!(
        p.client.open::<ShellOutput>(&sealed).expect_err("refused"),
        ChannelError::Forged
    );
}

#[test]
fn a_channel_with_a_swapped_ephemeral_key_shares_no_keys() {
    // The server answers the client with its own ephemeral key (and cannot
    // sign it as the device): even a client that skipped the answer check
    // would not share keys with the agent.
    let rng = SystemRandom::new();
    let client_eph = Ephemeral::generate(&rng).expect("ok");
    let agent_eph = Ephemeral::generate(&rng).expect("ok");
    let server_eph = Ephemeral::generate(&rng).expect("ok");
    let open_envelope = signed(&open(client_eph.public()), &[&alice()]);
    let answer = signed(
        &SessionAnswer {
            open_digest: open_envelope.digest(),
            agent_ephemeral: agent_eph.public(),
        },
        &[&device_key()],
    );
    let client_public = client_eph.public();
    let mut client = establish(
        Side::Client,
        client_eph,
        &server_eph.public(),
        &open_envelope,
        &answer,
    )
    .expect("ok");
    let mut agent = establish(
        Side::Agent,
        agent_eph,
        &client_public,
        &open_envelope,
        &answer,
    )
    .expect("ok");
    let sealed = client
        .seal(&ShellInput::Data(b"id\r".to_vec()))
        .expect("ok");
    assert_eq!(
        agent.open::<ShellInput>(&sealed).expect_err("refused"),
        ChannelError::Forged
    );
}

#[test]
fn oversized_and_truncated_frames_are_refused() {
    let mut p = pair();
    assert_eq!(
        p.client
            .seal_bytes(&vec![
                0;
                bulwark_policy::shell::channel::MAX_SHELL_FRAME + 1
            ])
            .expect_err("refused"),
        ChannelError::TooLarge
    );
    assert!(matches!(
        p.agent.open_bytes(&[0; 10]).expect_err("refused"),
        ChannelError::Malformed(_)
    ));
    let mut p = pair();
    let big = vec![0; bulwark_policy::shell::channel::MAX_SHELL_FRAME + 25];
    assert_eq!(
        p.agent.open_bytes(&big).expect_err("refused"),
        ChannelError::TooLarge
    );
}

#[test]
fn a_low_order_ephemeral_key_is_refused() {
    // The all-zero point would give every session the same "shared" secret.
    let rng = SystemRandom::new();
    let eph = Ephemeral::generate(&rng).expect("ok");
    let open_envelope = signed(&open([0; 32]), &[&alice()]);
    let answer = signed(
        &SessionAnswer {
            open_digest: open_envelope.digest(),
            agent_ephemeral: eph.public(),
        },
        &[&device_key()],
    );
    let refusal = establish(Side::Agent, eph, &[0; 32], &open_envelope, &answer);
    assert_eq!(refusal.expect_err("refused"), ChannelError::KeyExchange);
}
