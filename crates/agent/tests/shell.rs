//! Remote shells on the agent (RFD 0015), with the test playing both the
//! operator's CLI (grant, session-open, channel) and a lying server: a
//! real PTY answers through the sealed channel and the recording's hash
//! matches its bytes; forged opens, expired and revoked grants, a root
//! grant without a second operator, and a frame injected by the relay are
//! refused.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark_agent::shell::testing::WatchedTerminal;
use bulwark_agent::shell::wall::NoticeTerminals;
use bulwark_agent::shell::{ShellConfig, Shells};
use bulwark_policy::job::{JobTarget, device_key_fingerprint};
use bulwark_policy::policy::{ActionClass, Quorum};
use bulwark_policy::shell::channel::{
    Channel, Ephemeral, ShellInput, ShellOutput, Side, establish,
};
use bulwark_policy::shell::{SessionOpen, ShellAccount, ShellGrant, ShellNotice, verify_answer};
use bulwark_policy::{Limits, Signed, TrustKind};
use bulwark_protocol::message::{
    AgentMessage, ShellClose, ShellClosed, ShellData, ShellOpen, ShellRevoke,
};
use common::*;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

const SESSION: [u8; 16] = [0x5e; 16];

fn device_key() -> SigningKey {
    key(42)
}

struct Agent {
    shells: Shells,
    trust: Arc<Mutex<bulwark_agent::trust::TrustState>>,
    out: mpsc::Receiver<AgentMessage>,
    _dir: tempfile::TempDir,
}

/// An agent holding a policy where alice and bob may open shells (one
/// signer for a plain shell, two for root), with its own user as the
/// unprivileged account.
fn agent(k: &Keys) -> Agent {
    agent_telling(k, None, None)
}

/// [`agent`] under a policy with this shell-notice setting, its notices
/// going to `terminal` alone (a utmp of its own lists only that one).
fn agent_telling(
    k: &Keys,
    notice: Option<ShellNotice>,
    terminal: Option<&WatchedTerminal>,
) -> Agent {
    let mut state = fresh(k);
    let mut policy = policy(k, 1);
    policy.shell_notice = notice;
    for operator in &mut policy.operators {
        operator
            .classes
            .extend([ActionClass::OpenShell, ActionClass::OpenAdminShell]);
    }
    for (class, signers) in [
        (ActionClass::OpenShell, 1),
        (ActionClass::OpenAdminShell, 2),
    ] {
        policy.quorums.push(Quorum {
            class,
            signers,
            customer_required: false,
            in_window_only: false,
        });
    }
    let outcomes = state.apply(
        &trust(
            &[&signed_v1(k)],
            Some(&signed(&policy, &[&k.root_a, &k.customer])),
            None,
        ),
        now(),
        &Limits::default(),
    );
    assert_eq!(
        outcomes,
        vec![accepted(TrustKind::Root, 1), accepted(TrustKind::Policy, 1)]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    std::fs::write(
        &passwd,
        format!(
            "tester:x:{}:{}::{}:/bin/sh\n",
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
            dir.path().display()
        ),
    )
    .expect("passwd");
    let utmp = dir.path().join("utmp");
    if let Some(terminal) = terminal {
        std::fs::write(&utmp, terminal.utmp("someone")).expect("utmp");
    }
    let (tx, out) = mpsc::channel(64);
    let trust = Arc::new(Mutex::new(state));
    let config = ShellConfig {
        trust: trust.clone(),
        device_id: DEVICE.into(),
        device_key: device_key(),
        unprivileged_account: "tester".into(),
        passwd,
        notice_terminals: NoticeTerminals {
            utmp: vec![utmp],
            dev_root: "/dev".into(),
        },
    };
    Agent {
        shells: Shells::new(config, tx),
        trust,
        out,
        _dir: dir,
    }
}

fn grant(k: &Keys, account: ShellAccount, expires_in: u64) -> ShellGrant {
    ShellGrant {
        tenant: TENANT.into(),
        tenant_name: TENANT_NAME.into(),
        grant_id: [0x6a; 16],
        device: JobTarget {
            device_id: DEVICE.into(),
            hostname: bulwark_agent::jobs::current_hostname(),
            device_key: Some(device_key_fingerprint(
                &device_key().verifying_key().to_bytes(),
            )),
        },
        grantee: public(&k.alice).id(),
        account,
        reason: "ticket 4711".into(),
        not_before: now() - 60,
        expires_at: now() + expires_in,
        nonce: [1; 16],
    }
}

/// What the operator's CLI does: an ephemeral key and a signed open.
fn open(by: &SigningKey, nonce: u8) -> (Ephemeral, Signed) {
    let ephemeral = Ephemeral::generate(&ring::rand::SystemRandom::new()).expect("key");
    let open = signed(
        &SessionOpen {
            grant_id: [0x6a; 16],
            device_id: DEVICE.into(),
            session_id: SESSION,
            client_ephemeral: ephemeral.public(),
            nonce: [nonce; 16],
            time: now(),
            cols: 80,
            rows: 24,
        },
        &[by],
    );
    (ephemeral, open)
}

fn request(grant: &Signed, open: &Signed) -> ShellOpen {
    ShellOpen {
        session_id: SESSION,
        grant: grant.to_bytes(),
        open: open.to_bytes(),
    }
}

fn refusal(message: AgentMessage) -> String {
    match message {
        AgentMessage::ShellClosed(ShellClosed {
            refusal: Some(code),
            recording: None,
            ..
        }) => code.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Opens a session as the CLI would and returns its end of the channel.
fn connect(agent: &mut Agent, k: &Keys) -> Channel {
    connect_under(agent, k, grant(k, ShellAccount::Unprivileged, 600))
}

/// [`connect`] under `grant`, signed by alice.
fn connect_under(agent: &mut Agent, k: &Keys, grant: ShellGrant) -> Channel {
    let grant = signed(&grant, &[&k.alice]);
    let (ephemeral, open) = open(&k.alice, 1);
    let answer = match agent.shells.open(request(&grant, &open)) {
        AgentMessage::ShellOpened(opened) => {
            assert_eq!(opened.session_id, SESSION);
            Signed::from_bytes(&opened.answer, &Limits::default()).expect("answer")
        }
        other => panic!("not opened: {other:?}"),
    };
    let answered = verify_answer(
        &answer,
        &open,
        &device_key().verifying_key().to_bytes(),
        &Limits::default(),
    )
    .expect("signed by the device");
    establish(
        Side::Client,
        ephemeral,
        &answered.agent_ephemeral,
        &open,
        &answer,
    )
    .expect("channel")
}

async fn next(agent: &mut Agent) -> AgentMessage {
    tokio::time::timeout(Duration::from_secs(10), agent.out.recv())
        .await
        .expect("the agent says something")
        .expect("open")
}

/// Output until `needle` shows, as the CLI would read it.
async fn read_until(agent: &mut Agent, channel: &mut Channel, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        match next(agent).await {
            AgentMessage::ShellData(data) => match channel.open::<ShellOutput>(&data.sealed) {
                Ok(ShellOutput::Data(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                other => panic!("{other:?} before {needle:?}; seen {seen:?}"),
            },
            other => panic!("{other:?} before {needle:?}; seen {seen:?}"),
        }
    }
    seen
}

/// After the session ended: its sealed reason, the digest, the recording.
async fn ending(agent: &mut Agent, channel: &mut Channel) -> (ShellOutput, ShellClosed, Vec<u8>) {
    let ended = loop {
        match next(agent).await {
            AgentMessage::ShellData(data) => match channel.open::<ShellOutput>(&data.sealed) {
                Ok(ShellOutput::Data(_)) => continue,
                Ok(ended) => break ended,
                Err(e) => panic!("{e}"),
            },
            other => panic!("{other:?}"),
        }
    };
    let closed = match next(agent).await {
        AgentMessage::ShellClosed(c) => c,
        other => panic!("{other:?}"),
    };
    let len = closed.recording.as_ref().expect("a recording").len;
    let mut recording = Vec::new();
    while (recording.len() as u64) < len {
        match next(agent).await {
            AgentMessage::ShellRecording(piece) => {
                assert_eq!(piece.offset, recording.len() as u64);
                recording.extend_from_slice(&piece.data);
            }
            other => panic!("{other:?}"),
        }
    }
    (ended, closed, recording)
}

#[tokio::test]
async fn a_granted_session_runs_a_command_and_is_recorded() {
    let k = keys();
    let mut agent = agent(&k);
    let mut channel = connect(&mut agent, &k);
    let sealed = channel
        .seal(&ShellInput::Data(b"echo $((6*7))-answer\n".to_vec()))
        .expect("seal");
    agent.shells.data(ShellData {
        session_id: SESSION,
        sealed,
    });
    read_until(&mut agent, &mut channel, "42-answer").await;
    let sealed = channel
        .seal(&ShellInput::Data(b"exit 0\n".to_vec()))
        .expect("seal");
    agent.shells.data(ShellData {
        session_id: SESSION,
        sealed,
    });
    let (ended, closed, recording) = ending(&mut agent, &mut channel).await;
    assert!(
        matches!(
            ended,
            ShellOutput::Ended {
                exit_code: Some(0),
                ..
            }
        ),
        "{ended:?}"
    );
    assert_eq!(closed.refusal, None);
    let digest = closed.recording.expect("digest");
    assert_eq!(digest.sha256, <[u8; 32]>::from(Sha256::digest(&recording)));
    let text = String::from_utf8(recording).expect("asciicast is text");
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().expect("ok")).expect("ok");
    assert_eq!(
        (header["version"].as_u64(), header["width"].as_u64()),
        (Some(2), Some(80))
    );
    let events: Vec<serde_json::Value> = lines
        .map(|l| serde_json::from_str(l).expect("ok"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e[1] == "i" && e[2] == "echo $((6*7))-answer\n")
    );
    assert!(
        events
            .iter()
            .any(|e| e[1] == "o" && e[2].as_str().expect("ok").contains("42-answer"))
    );
}

#[tokio::test]
async fn a_frame_injected_by_the_relay_ends_the_session() {
    let k = keys();
    let mut agent = agent(&k);
    let mut channel = connect(&mut agent, &k);
    // The server types "rm -rf /" with the right counter but no key.
    let mut forged = 0u64.to_be_bytes().to_vec();
    forged.extend_from_slice(b"rm -rf / --no-preserve-root\n0123456789abcdef");
    agent.shells.data(ShellData {
        session_id: SESSION,
        sealed: forged,
    });
    let (ended, closed, _) = ending(&mut agent, &mut channel).await;
    assert!(matches!(
        ended,
        ShellOutput::Ended {
            exit_code: None,
            ..
        }
    ));
    assert_eq!(
        closed.refusal.map(|c| c.to_string()).as_deref(),
        Some("bad_signature")
    );
    // A real frame after that reaches no shell.
    let late = channel
        .seal(&ShellInput::Data(b"id\n".to_vec()))
        .expect("seal");
    agent.shells.data(ShellData {
        session_id: SESSION,
        sealed: late,
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), agent.out.recv())
            .await
            .is_err(),
        "the ended session answered"
    );
}

#[tokio::test]
async fn opens_the_grant_does_not_cover_are_refused() {
    let k = keys();
    let mut agent = agent(&k);
    let plain = signed(&grant(&k, ShellAccount::Unprivileged, 600), &[&k.alice]);

    // Signed by another operator than the grantee (or by the server).
    for by in [&k.bob, &k.mallory] {
        let (_, open) = open(by, 2);
        assert_eq!(
            refusal(agent.shells.open(request(&plain, &open))),
            "unknown_key"
        );
    }
    // An expired grant.
    let mut old = grant(&k, ShellAccount::Unprivileged, 600);
    old.not_before = now() - 7200;
    old.expires_at = now() - 10;
    let (_, open_3) = open(&k.alice, 3);
    assert_eq!(
        refusal(
            agent
                .shells
                .open(request(&signed(&old, &[&k.alice]), &open_3))
        ),
        "expired"
    );
    // A root grant with the grantee's signature only.
    let root = signed(&grant(&k, ShellAccount::Root, 600), &[&k.alice]);
    let (_, open_4) = open(&k.alice, 4);
    assert_eq!(
        refusal(agent.shells.open(request(&root, &open_4))),
        "too_few_signers"
    );
    // A grant the server edited (root for a plain grant's signatures).
    let mut edited = plain.clone();
    edited.payload = Signed::new(&grant(&k, ShellAccount::Root, 600)).payload;
    let (_, open_5) = open(&k.alice, 5);
    assert_eq!(
        refusal(agent.shells.open(request(&edited, &open_5))),
        "bad_signature"
    );

    // A good open, then its replay by the server.
    let (_, good) = open(&k.alice, 6);
    assert!(matches!(
        agent.shells.open(request(&plain, &good)),
        AgentMessage::ShellOpened(_)
    ));
    agent.shells.close(ShellClose {
        session_id: SESSION,
        reason: "done".into(),
    });
    let _ = next(&mut agent).await; // the sealed end
    let _ = next(&mut agent).await; // the digest
    assert_eq!(
        refusal(agent.shells.open(request(&plain, &good))),
        "replayed"
    );
}

#[tokio::test]
async fn a_revoked_grant_ends_its_session_and_opens_no_more() {
    let k = keys();
    let mut agent = agent(&k);
    let mut channel = connect(&mut agent, &k);
    agent.shells.revoke(ShellRevoke {
        grant_id: [0x6a; 16],
        expires_at: now() + 600,
    });
    let (ended, closed, _) = ending(&mut agent, &mut channel).await;
    assert!(matches!(ended, ShellOutput::Ended { ref reason, .. } if reason.contains("revoked")));
    assert_eq!(
        closed.refusal.map(|c| c.to_string()).as_deref(),
        Some("grant_revoked")
    );
    let grant = signed(&grant(&k, ShellAccount::Unprivileged, 600), &[&k.alice]);
    let (_, open) = open(&k.alice, 9);
    assert_eq!(
        refusal(agent.shells.open(request(&grant, &open))),
        "grant_revoked"
    );
}

#[tokio::test]
async fn a_freeze_ends_live_sessions() {
    let k = keys();
    let mut agent = agent(&k);
    let mut channel = connect(&mut agent, &k);
    // The customer freezes the tenant while the shell is open.
    {
        let freeze = signed(&freeze(1, true), &[&k.customer]);
        let mut trust = agent.trust.lock().expect("trust");
        trust.apply(
            &common::trust(&[&signed_v1(&k)], None, Some(&freeze)),
            now(),
            &Limits::default(),
        );
        assert!(trust.history.freeze().frozen);
    }
    agent.shells.recheck();
    let (ended, closed, _) = ending(&mut agent, &mut channel).await;
    assert!(matches!(
        ended,
        ShellOutput::Ended {
            exit_code: None,
            ..
        }
    ));
    assert_eq!(
        closed.refusal.map(|c| c.to_string()).as_deref(),
        Some("frozen")
    );
}

// ---- Notices to the device's logged-in users (RFD 0015, "Notices") ----

const NOTICE_WAIT: Duration = Duration::from_secs(10);
// These tests read the terminal with blocking reads: the agent's session
// runs on the runtime's other worker.

fn notices(message: Option<&str>) -> Option<ShellNotice> {
    Some(ShellNotice {
        at_start: true,
        at_end: true,
        message: message.map(str::to_owned),
    })
}

fn close(agent: &mut Agent, channel: &mut Channel) {
    let sealed = channel.seal(&ShellInput::Close).expect("seal");
    agent.shells.data(ShellData {
        session_id: SESSION,
        sealed,
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_in_users_are_told_when_a_shell_opens_and_when_it_closes() {
    let k = keys();
    let terminal = WatchedTerminal::open().expect("a terminal");
    let mut agent = agent_telling(
        &k,
        notices(Some("Questions? Call 555-0100.")),
        Some(&terminal),
    );
    let mut channel = connect(&mut agent, &k);
    let opened = terminal.read_until("555-0100.", NOTICE_WAIT);
    assert!(
        opened.contains("Bulwark: remote shell opened by alice for Acme (as tester, until ")
            && opened.contains("): ticket 4711")
            && opened.contains("Bulwark: Questions? Call 555-0100."),
        "{opened:?}"
    );
    close(&mut agent, &mut channel);
    ending(&mut agent, &mut channel).await;
    let closed = terminal.read_until("555-0100.", NOTICE_WAIT);
    assert!(
        closed.contains("Bulwark: remote shell by alice for Acme (as tester) closed after "),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_the_setting_tells_nobody() {
    let k = keys();
    let terminal = WatchedTerminal::open().expect("a terminal");
    let mut agent = agent_telling(&k, None, Some(&terminal));
    let mut channel = connect(&mut agent, &k);
    close(&mut agent, &mut channel);
    ending(&mut agent, &mut channel).await;
    let seen = terminal.read_for(Duration::from_secs(1));
    assert_eq!(seen, "", "a terminal was written to");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_with_escape_sequences_reaches_the_terminal_as_text_and_a_revoke_is_told() {
    let k = keys();
    let terminal = WatchedTerminal::open().expect("a terminal");
    let mut agent = agent_telling(&k, notices(None), Some(&terminal));
    let mut grant = grant(&k, ShellAccount::Unprivileged, 600);
    grant.reason = "fix\x1b[2J\x1b]0;owned\x07\r\nroot# \u{9b}1m\u{202e}".into();
    let mut channel = connect_under(&mut agent, &k, grant);
    let opened = terminal.read_until("root#", NOTICE_WAIT);
    assert!(
        opened.contains(": fix?[2J?]0;owned?  root# ?1m?"),
        "{opened:?}"
    );
    assert!(
        !opened.contains(['\x1b', '\x07', '\u{9b}', '\u{202e}']),
        "{opened:?}"
    );
    agent.shells.revoke(ShellRevoke {
        grant_id: [0x6a; 16],
        expires_at: now() + 600,
    });
    ending(&mut agent, &mut channel).await;
    let closed = terminal.read_until("closed after", NOTICE_WAIT);
    assert!(closed.contains("closed after"), "{closed:?}");
}
