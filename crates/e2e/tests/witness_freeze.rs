//! The kill switch the server cannot withhold (RFD 0006): a real `bulwark
//! witness` takes a tenant's root-signed freeze on `POST
//! /bulwark/v1/freeze`, refuses forged, foreign and stale ones without a
//! change, and from its grace on cosigns none of the frozen tenant's log
//! (423) while it still cosigns another tenant's; a root-signed unfreeze
//! lifts it, and all of it survives a restart. Then `bulwark tenant freeze`
//! against a real server gives the freeze to the policy's witnesses and
//! says how many hold it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bulwark_api::log::{LogHeadView, LogKeyView};
use bulwark_e2e::{OperatorSetup, WitnessAnswer, WitnessProcess, add_checkpoint, witness_post};
use bulwark_policy::root::root_fingerprint;
use bulwark_policy::{FreezeStatement, Holder, PublicKey, RootKey, Signed, TrustRoot};
use bulwark_protocol::token::fingerprint_text;
use bulwark_translog::Limits;
use bulwark_translog::checkpoint::Checkpoint;
use bulwark_translog::cosignature::cosignature_times;
use bulwark_translog::hash::{Hash, leaf_hash, root_of_leaf_hashes};
use bulwark_translog::note::NoteSigner;
use bulwark_translog::proof::{ProofError, consistency_proof};
use bulwark_witness::freeze::request_body;
use ed25519_dalek::SigningKey;

const KEY_NAME: &str = "bulwark.test";
const TENANT_A: &str = "0f7c2a8e-0000-4000-8000-00000000000a";
const TENANT_B: &str = "0f7c2a8e-0000-4000-8000-00000000000b";
/// The witness's grace: short, so the test waits seconds, not minutes.
const GRACE: u64 = 3;
const PASSPHRASE: &str = "witness freeze test passphrase";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn root(tenant: &str, version: u64, keys: &[&SigningKey], threshold: u32) -> TrustRoot {
    TrustRoot {
        tenant: tenant.to_owned(),
        version,
        threshold,
        keys: keys
            .iter()
            .enumerate()
            .map(|(i, k)| RootKey {
                key: PublicKey::Ed25519(k.verifying_key().to_bytes()),
                holder: if i == 0 {
                    Holder::Customer
                } else {
                    Holder::Msp
                },
                name: format!("root key {i}"),
            })
            .collect(),
    }
}

fn signed<T: bulwark_policy::envelope::Statement>(statement: &T, keys: &[&SigningKey]) -> Signed {
    let mut signed = Signed::new(statement);
    for k in keys {
        signed.sign(k);
    }
    signed
}

fn freeze(tenant: &str, sequence: u64, frozen: bool, keys: &[&SigningKey]) -> Signed {
    signed(
        &FreezeStatement {
            tenant: tenant.to_owned(),
            sequence,
            frozen,
            reason: "e2e".into(),
        },
        keys,
    )
}

/// A tenant's log played by the test, signed by the one log key.
struct Log {
    origin: String,
    leaves: Vec<Hash>,
    /// What the witness holds for it.
    held: usize,
}

impl Log {
    fn new(tenant: &str) -> Self {
        Self {
            origin: format!("{KEY_NAME}/{tenant}"),
            leaves: (0..64)
                .map(|i| leaf_hash(format!("{tenant} entry {i}").as_bytes()))
                .collect(),
            held: 0,
        }
    }

    fn note(&self, size: usize) -> String {
        Checkpoint::new(
            &self.origin,
            size as u64,
            root_of_leaf_hashes(&self.leaves[..size]),
            vec![],
        )
        .expect("checkpoint")
        .sign(&log_key())
    }

    /// The add-checkpoint body from what the witness holds to `size`.
    fn body(&self, size: usize) -> String {
        let proof = if self.held == 0 || self.held == size {
            Vec::new()
        } else {
            consistency_proof::<ProofError>(self.held as u64, size as u64, |node| {
                let first = usize::try_from(node.first_leaf()).expect("small tree");
                Ok(root_of_leaf_hashes(
                    &self.leaves[first..first + (1usize << node.level)],
                ))
            })
            .expect("proof")
        };
        let mut body = format!("old {}\n", self.held);
        for hash in proof {
            body.push_str(&STANDARD.encode(hash.0));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.note(size));
        body
    }
}

fn log_key() -> NoteSigner {
    NoteSigner::new(KEY_NAME, key(99)).expect("log key")
}

/// The witness under test, with what the test asks of it.
struct Witness(WitnessProcess);

impl std::ops::Deref for Witness {
    type Target = WitnessProcess;

    fn deref(&self) -> &WitnessProcess {
        &self.0
    }
}

impl std::ops::DerefMut for Witness {
    fn deref_mut(&mut self) -> &mut WitnessProcess {
        &mut self.0
    }
}

impl Witness {
    fn init(name: &str) -> Result<Self> {
        Ok(Self(WitnessProcess::init(name)?.with_freeze_grace(GRACE)))
    }

    async fn freeze(&self, roots: &[Signed], freeze: &Signed) -> Result<WitnessAnswer> {
        witness_post(
            self.url(),
            "/bulwark/v1/freeze",
            request_body(roots, freeze),
        )
        .await
    }

    /// Asks for a cosignature of `log` at `size`: 200 (checked, and the
    /// witness's held size moves) or the refusal's status.
    async fn cosign(&self, log: &mut Log, size: usize) -> Result<WitnessAnswer> {
        let answer = add_checkpoint(self.url(), log.body(size)).await?;
        if answer.status == 200 {
            let times = cosignature_times(
                &format!("{}{}", log.note(size), answer.text),
                std::slice::from_ref(self.verifier()),
                &Limits::default(),
            )?;
            ensure!(times[0].is_some(), "no valid cosignature: {}", answer.text);
            log.held = size;
        }
        Ok(answer)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn expect(answer: Result<WitnessAnswer>, status: u16, what: &str) -> Result<String> {
    let answer = answer?;
    ensure!(
        answer.status == status,
        "{what}: expected {status}, got {} {:?}",
        answer.status,
        answer.text
    );
    Ok(answer.text)
}

#[tokio::test]
async fn a_frozen_tenant_gets_no_cosignature_after_the_grace() -> Result<()> {
    // Tenant A: a 2-of-3 root (key 1 customer-held), rotated to 2-of-2 (keys 4, 5).
    let (a1, a2, a3, a4, a5) = (key(1), key(2), key(3), key(4), key(5));
    let a_v1 = signed(&root(TENANT_A, 1, &[&a1, &a2, &a3], 2), &[&a1, &a2]);
    let a_v2 = signed(&root(TENANT_A, 2, &[&a4, &a5], 2), &[&a1, &a2, &a4, &a5]);
    // Tenant B: one key. And keys no root lists (the server's, a thief's).
    let b1 = key(11);
    let b_v1 = signed(&root(TENANT_B, 1, &[&b1], 1), &[&b1]);
    let (x1, x2) = (key(21), key(22));

    let mut witness = Witness::init("witness.test/freeze")?;
    let log_vkey = log_key().verifier().to_vkey();
    let mut log_a = Log::new(TENANT_A);
    let mut log_b = Log::new(TENANT_B);
    let added = witness.add_log(
        &log_a.origin,
        &log_vkey,
        Some(&fingerprint_text(&root_fingerprint(&a_v1))),
    )?;
    ensure!(
        added.contains(TENANT_A),
        "add-log names the tenant: {added}"
    );
    witness.add_log(
        &log_b.origin,
        &log_vkey,
        Some(&hex::encode(root_fingerprint(&b_v1))),
    )?;
    // A pinned root needs an origin that names a tenant under the log key.
    ensure!(
        witness
            .add_log(
                "elsewhere.test/acme",
                &log_vkey,
                Some(&hex::encode(root_fingerprint(&b_v1)))
            )
            .is_err(),
        "a pinned root for an origin of another log key"
    );
    witness.start().await?;
    expect(witness.cosign(&mut log_a, 8).await, 200, "A before").await?;
    expect(witness.cosign(&mut log_b, 8).await, 200, "B before").await?;

    // Refused, each without a change.
    let chain_a = [a_v1.clone(), a_v2.clone()];
    for (answer, status, what) in [
        (
            witness_post(witness.url(), "/bulwark/v1/freeze", "hello\n".into()).await,
            400,
            "garbage",
        ),
        (
            witness
                .freeze(&chain_a, &freeze(TENANT_A, 1, true, &[&x1, &x2]))
                .await,
            403,
            "signed by keys no root lists",
        ),
        (
            witness
                .freeze(&chain_a[..1], &freeze(TENANT_A, 1, true, &[&a2]))
                .await,
            403,
            "one MSP root key of a 2-of-3 root",
        ),
        (
            witness
                .freeze(&chain_a, &freeze(TENANT_B, 1, true, &[&a4, &a5]))
                .await,
            403,
            "tenant B's freeze with tenant A's roots and keys",
        ),
        (
            witness
                .freeze(
                    std::slice::from_ref(&b_v1),
                    &freeze(TENANT_A, 1, true, &[&b1]),
                )
                .await,
            403,
            "tenant A's freeze with tenant B's root and key",
        ),
        (
            witness
                .freeze(&[], &freeze("no-such-tenant", 1, true, &[&x1]))
                .await,
            404,
            "a tenant this witness follows no log of",
        ),
        (
            witness
                .freeze(&[], &freeze(TENANT_A, 1, true, &[&a4, &a5]))
                .await,
            403,
            "no roots given to a witness that holds none",
        ),
    ] {
        let text = expect(answer, status, what).await?;
        ensure!(!text.trim().is_empty(), "{what}: an empty refusal");
    }
    // Past the grace, both logs are still cosigned.
    tokio::time::sleep(Duration::from_secs(GRACE + 1)).await;
    expect(witness.cosign(&mut log_a, 8).await, 200, "A after refusals").await?;
    expect(witness.cosign(&mut log_b, 8).await, 200, "B after refusals").await?;

    // A freeze by the rotated root's threshold, with the chain.
    let taken = expect(
        witness
            .freeze(&chain_a, &freeze(TENANT_A, 2, true, &[&a4, &a5]))
            .await,
        200,
        "the freeze",
    )
    .await?;
    // The witness took it by now, by its clock (the same as this one).
    let frozen_by = now();
    ensure!(
        taken.contains(&log_a.origin) && taken.contains("frozen") && taken.contains("from "),
        "the answer says from when: {taken:?}"
    );
    // In the grace it still cosigns (the server is expected to publish it).
    expect(witness.cosign(&mut log_a, 8).await, 200, "A in the grace").await?;
    // The same freeze again does not restart the grace; an older one is stale.
    let again = expect(
        witness
            .freeze(&[], &freeze(TENANT_A, 2, true, &[&a4, &a5]))
            .await,
        200,
        "the freeze again",
    )
    .await?;
    ensure!(again.contains("already held"), "{again:?}");
    expect(
        witness
            .freeze(&[], &freeze(TENANT_A, 1, false, &[&a4, &a5]))
            .await,
        409,
        "an older sequence",
    )
    .await?;

    // From the grace on: nothing for A, B as before.
    let wait = (frozen_by + GRACE + 1).saturating_sub(now());
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let refused = add_checkpoint(witness.url(), log_a.body(8)).await?;
    ensure!(
        refused.status == 423 && refused.text.contains("froze"),
        "A after the grace: {} {:?}",
        refused.status,
        refused.text
    );
    expect(witness.cosign(&mut log_a, 16).await, 423, "A grown").await?;
    expect(witness.cosign(&mut log_b, 16).await, 200, "B grown").await?;

    // Killed and started again: still frozen, from its record.
    witness.restart().await?;
    expect(
        witness.cosign(&mut log_a, 16).await,
        423,
        "A after a restart",
    )
    .await?;
    expect(
        witness.cosign(&mut log_b, 24).await,
        200,
        "B after a restart",
    )
    .await?;

    // Forged unfreezes: keys no root lists, the rotated-away root's keys.
    expect(
        witness
            .freeze(&[], &freeze(TENANT_A, 3, false, &[&x1, &x2]))
            .await,
        403,
        "a forged unfreeze",
    )
    .await?;
    expect(
        witness
            .freeze(&chain_a, &freeze(TENANT_A, 3, false, &[&a1, &a2]))
            .await,
        403,
        "an unfreeze by the old root",
    )
    .await?;
    expect(witness.cosign(&mut log_a, 16).await, 423, "A still frozen").await?;

    // The rotated root's unfreeze, no roots given: the witness kept them.
    let lifted = expect(
        witness
            .freeze(&[], &freeze(TENANT_A, 3, false, &[&a4, &a5]))
            .await,
        200,
        "the unfreeze",
    )
    .await?;
    ensure!(lifted.contains("unfrozen"), "{lifted:?}");
    expect(witness.cosign(&mut log_a, 16).await, 200, "A unfrozen").await?;
    witness.restart().await?;
    expect(
        witness.cosign(&mut log_a, 24).await,
        200,
        "A after a restart",
    )
    .await?;
    expect(witness.cosign(&mut log_b, 32).await, 200, "B at the end").await?;
    witness.stop().await?;
    Ok(())
}

#[tokio::test]
async fn tenant_freeze_gives_the_freeze_to_the_policys_witnesses() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let trust = s.api.trust("demo").await?;
    let fingerprint = trust
        .root_fingerprint
        .context("tenant demo has a trust root")?;
    let log_key: LogKeyView = s.api.get_as("/api/v1/log/key").await?;
    let head: LogHeadView = s.api.get_as("/api/v1/tenants/demo/log").await?;
    let checkpoint = head
        .checkpoint
        .context("demo's log holds entries, so a signed head")?;

    // One witness following demo's log with its pinned root; another the
    // CLI cannot reach.
    let mut witness = Witness::init("witness.test/reachable")?;
    witness.add_log(&head.origin, &log_key.vkey, Some(&fingerprint))?;
    witness.start().await?;
    let away = Witness::init("witness.test/away")?;

    // The policy names both (k = 1 of 2, so 2 must hold a freeze).
    let section = format!(
        "[witnesses]\nrequired = 1\nfreshness_secs = 60\n\n\
         [[witnesses.list]]\nvkey = \"{}\"\nurl = \"{}\"\n\n\
         [[witnesses.list]]\nvkey = \"{}\"\nurl = \"http://127.0.0.1:9\"\n",
        witness.vkey(),
        witness.url(),
        away.vkey(),
    );
    s.sign_policy_sections(&["witnesses"], &section, "policy.toml")
        .await?;

    let out = s
        .cli(
            &["tenant", "freeze", "--tenant", "demo", "--reason", "e2e"],
            None,
        )
        .await?
        .ok()?
        .stdout;
    let frozen_by = now();
    eprintln!("[bulwark tenant freeze]\n{out}");
    ensure!(
        out.contains("witness.test/reachable  accepted:")
            && out.contains("witness.test/away  unreachable:")
            && out.contains("1 of the policy's 2 witnesses hold the freeze; 2 (n - k + 1")
            && out.contains("NOT enough"),
        "the freeze's report: {out}"
    );
    let add = |old: u64| format!("old {old}\n\n{}", checkpoint.note);
    let wait = (frozen_by + GRACE + 1).saturating_sub(now());
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let refused = add_checkpoint(witness.url(), add(0)).await?;
    ensure!(
        refused.status == 423,
        "demo's log after the grace: {} {}",
        refused.status,
        refused.text
    );

    let out = s
        .cli(
            &["tenant", "unfreeze", "--tenant", "demo", "--reason", "ok"],
            None,
        )
        .await?
        .ok()?
        .stdout;
    ensure!(
        out.contains("witness.test/reachable  accepted:")
            && out.contains("1 of the policy's 2 witnesses hold the unfreeze"),
        "the unfreeze's report: {out}"
    );
    // Cosigned again (a 409 would mean the server asked first: not frozen either).
    let answer = add_checkpoint(witness.url(), add(0)).await?;
    ensure!(
        answer.status == 200 || answer.status == 409,
        "demo's log after the unfreeze: {} {}",
        answer.status,
        answer.text
    );
    witness.stop().await?;
    Ok(())
}
