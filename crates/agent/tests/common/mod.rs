//! The fixture shared by the agent's tests: tenant id `tenant-acme`, root
//! 2-of-3 (two MSP officers, one customer key; version 2 swaps officer B for
//! C), operators alice and bob (MSP) who may run scripts two by two.
#![allow(dead_code)] // each test file uses part of it

use std::time::{SystemTime, UNIX_EPOCH};

use bulwark_agent::trust::{TrustKind, TrustOutcome, TrustState};
use bulwark_policy::envelope::Statement;
use bulwark_policy::policy::{ActionClass, OperatorKey, Policy, Quorum, ScriptHash};
use bulwark_policy::root::{Holder, RootKey, TrustRoot, root_fingerprint};
use bulwark_policy::{
    FreezeStatement, Interpreter, JobAction, JobStatement, JobTarget, Limits, PublicKey, Refusal,
    Signed, device_key_fingerprint,
};
use bulwark_protocol::audit_leaf::{AuditLeaf, JOB_RELEASED, job_released_detail};
use bulwark_protocol::message::{ByteBuf, Job, LogProof, Trust};
use bulwark_translog::tree::NodeId;
use bulwark_translog::{Checkpoint, Hash, NoteSigner, ProofError, leaf_hash, root_of_leaf_hashes};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use std::cell::RefCell;

pub const TENANT: &str = "tenant-acme";
pub const DEVICE: &str = "6f1c2a3b-0000-4000-8000-000000000001";
pub const TENANT_NAME: &str = "Acme";
/// The test device's public key (only its fingerprint is ever compared).
pub const DEVICE_PUBLIC_KEY: [u8; 32] = [0x42; 32];

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn public(k: &SigningKey) -> PublicKey {
    PublicKey::Ed25519(k.verifying_key().to_bytes())
}

pub fn signed<T: Statement>(statement: &T, signers: &[&SigningKey]) -> Signed {
    let mut s = Signed::new(statement);
    for k in signers {
        s.sign(k);
    }
    s
}

pub struct Keys {
    pub root_a: SigningKey,
    pub root_b: SigningKey,
    pub customer: SigningKey,
    /// A root key added at rotation to version 2.
    pub root_c: SigningKey,
    pub alice: SigningKey,
    pub bob: SigningKey,
    pub mallory: SigningKey,
}

pub fn keys() -> Keys {
    Keys {
        root_a: key(1),
        root_b: key(2),
        customer: key(3),
        root_c: key(4),
        alice: key(10),
        bob: key(11),
        mallory: key(66),
    }
}

pub fn root_key(k: &SigningKey, holder: Holder, name: &str) -> RootKey {
    RootKey {
        key: public(k),
        holder,
        name: name.into(),
    }
}

pub fn root_v1(k: &Keys) -> TrustRoot {
    TrustRoot {
        tenant: TENANT.into(),
        version: 1,
        threshold: 2,
        keys: vec![
            root_key(&k.root_a, Holder::Msp, "officer A"),
            root_key(&k.root_b, Holder::Msp, "officer B"),
            root_key(&k.customer, Holder::Customer, "customer CISO"),
        ],
    }
}

/// Version 2: officer B leaves, officer C joins.
pub fn root_v2(k: &Keys) -> TrustRoot {
    TrustRoot {
        tenant: TENANT.into(),
        version: 2,
        threshold: 2,
        keys: vec![
            root_key(&k.root_a, Holder::Msp, "officer A"),
            root_key(&k.root_c, Holder::Msp, "officer C"),
            root_key(&k.customer, Holder::Customer, "customer CISO"),
        ],
    }
}

pub fn signed_v1(k: &Keys) -> Signed {
    signed(&root_v1(k), &[&k.root_a, &k.root_b])
}

/// Signed by the old threshold (A, B) and the new one (A, C).
pub fn signed_v2(k: &Keys) -> Signed {
    signed(&root_v2(k), &[&k.root_a, &k.root_b, &k.root_c])
}

pub fn policy(k: &Keys, version: u64) -> Policy {
    Policy {
        tenant: TENANT.into(),
        version,
        // Fixed (year 2096), so that the same policy signs to the same bytes.
        expires_at: 4_000_000_000,
        operators: [(&k.alice, "alice"), (&k.bob, "bob")]
            .into_iter()
            .map(|(key, name)| OperatorKey {
                key: public(key),
                name: name.into(),
                holder: Holder::Msp,
                classes: vec![
                    ActionClass::InventoryRefresh,
                    ActionClass::RunScript,
                    ActionClass::InstallPatches,
                ],
            })
            .collect(),
        quorums: [
            ActionClass::InventoryRefresh,
            ActionClass::RunScript,
            ActionClass::InstallPatches,
        ]
        .into_iter()
        .map(|class| Quorum {
            class,
            signers: 2,
            customer_required: false,
            in_window_only: false,
        })
        .collect(),
        fan_out_limit: 10,
        allowed_scripts: Vec::new(),
        maintenance_windows: Vec::new(),
        tenant_name: Some(TENANT_NAME.into()),
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice: None,
    }
}

pub fn freeze(sequence: u64, frozen: bool) -> FreezeStatement {
    FreezeStatement {
        tenant: TENANT.into(),
        sequence,
        frozen,
        reason: "incident 12".into(),
    }
}

pub fn bytes(s: &Signed) -> Vec<u8> {
    s.to_bytes()
}

pub fn trust(roots: &[&Signed], policy: Option<&Signed>, freeze: Option<&Signed>) -> Trust {
    Trust {
        roots: roots.iter().map(|r| ByteBuf(bytes(r))).collect(),
        policy: policy.map(bytes),
        freeze: freeze.map(bytes),
    }
}

pub fn accepted(kind: TrustKind, version: u64) -> TrustOutcome {
    TrustOutcome::Accepted { kind, version }
}

pub fn refused(kind: TrustKind, version: u64, refusal: Refusal) -> TrustOutcome {
    TrustOutcome::Refused {
        kind,
        version,
        refusal,
    }
}

/// An agent pinned to the fixture's v1 root and log key, nothing accepted yet.
pub fn fresh(k: &Keys) -> TrustState {
    let mut state = TrustState::new(root_fingerprint(&signed_v1(k)));
    state.log_key = Some(log_signer().verifier());
    state
}

/// The fixture's transparency-log key.
pub fn log_signer() -> NoteSigner {
    NoteSigner::new("log.test/bulwark-log", key(50)).expect("log key")
}

/// A tenant log as the server keeps it, in memory: each job gets its
/// `job.released` entry and a proof under a freshly signed head, with a
/// consistency proof from the size last handed out (what the agent holds).
#[derive(Default)]
pub struct TestLog {
    pub leaves: Vec<Vec<u8>>,
    pub agent_size: Option<u64>,
}

thread_local! {
    /// The log of the test running on this thread.
    pub static LOG: RefCell<TestLog> = RefCell::new(TestLog::default());
}

impl TestLog {
    pub fn hashes(&self) -> Vec<Hash> {
        self.leaves.iter().map(|l| leaf_hash(l)).collect()
    }

    pub fn subtree(hashes: &[Hash], id: NodeId) -> Result<Hash, ProofError> {
        let first = usize::try_from(id.first_leaf()).expect("small");
        Ok(root_of_leaf_hashes(
            &hashes[first..first + (1usize << id.level)],
        ))
    }

    /// The signed head of the first `size` entries, by `signer`.
    pub fn head(&self, size: usize, signer: &NoteSigner, tenant: &str) -> String {
        let root = root_of_leaf_hashes(&self.hashes()[..size]);
        Checkpoint::new(
            bulwark_policy::log::log_origin(signer.name(), tenant),
            size as u64,
            root,
            vec![],
        )
        .expect("checkpoint")
        .sign(signer)
    }

    /// Appends `leaf` and proves it under a head of the whole log.
    pub fn append_and_prove(&mut self, leaf: Vec<u8>) -> LogProof {
        self.leaves.push(leaf);
        self.prove(self.leaves.len() - 1)
    }

    /// Proves entry `index` under a head of the whole log.
    pub fn prove(&mut self, index: usize) -> LogProof {
        let hashes = self.hashes();
        let size = hashes.len() as u64;
        let at = |id| Self::subtree(&hashes, id);
        let inclusion =
            bulwark_translog::inclusion_proof(index as u64, size, at).expect("inclusion");
        let from = self.agent_size.unwrap_or(0);
        let consistency = if from == 0 || from >= size {
            Vec::new()
        } else {
            bulwark_translog::consistency_proof(from, size, at).expect("consistency")
        };
        self.agent_size = Some(size);
        LogProof {
            leaf: self.leaves[index].clone(),
            index: index as u64,
            checkpoint: self.head(hashes.len(), &log_signer(), TENANT),
            inclusion: inclusion.iter().flat_map(|h| h.0).collect(),
            consistency_from: from,
            consistency: consistency.iter().flat_map(|h| h.0).collect(),
            witnessed_since: None,
            witnessed_since_consistency: None,
        }
    }

    /// The consistency proof between two sizes of this log, concatenated.
    pub fn consistency(&self, old: usize, new: usize) -> Vec<u8> {
        let hashes = self.hashes();
        if old == new {
            return Vec::new();
        }
        bulwark_translog::consistency_proof(old as u64, new as u64, |id| Self::subtree(&hashes, id))
            .expect("consistency")
            .iter()
            .flat_map(|h| h.0)
            .collect()
    }
}

/// The `job.released` leaf the server appends for `signed`.
pub fn release_leaf(signed: &Signed) -> Vec<u8> {
    let job_id = signed
        .statement::<JobStatement>(&Limits::default())
        .map(|j| j.job_id)
        .unwrap_or([0; 16]);
    AuditLeaf::new(
        1_700_000_000_000,
        Some(TENANT.into()),
        "server",
        JOB_RELEASED,
        hex::encode(job_id),
        job_released_detail(&signed.digest()),
    )
    .encode()
}

/// `job` delivered again (after a reconnect): the same entry, proven
/// afresh from the head the agent now holds.
pub fn redeliver(job: &Job) -> Job {
    let leaf = &job.log.as_ref().expect("a logged job").leaf;
    let proof = LOG.with(|log| {
        let mut log = log.borrow_mut();
        let index = log
            .leaves
            .iter()
            .position(|l| l == leaf)
            .expect("the job is in the log");
        log.prove(index)
    });
    Job {
        log: Some(proof),
        ..job.clone()
    }
}

/// `signed` and `script` as the server delivers them: released into this
/// thread's [`LOG`], with the proof.
pub fn logged(signed: &Signed, script: &[u8]) -> Job {
    let proof = LOG.with(|log| log.borrow_mut().append_and_prove(release_leaf(signed)));
    Job {
        envelope: signed.to_bytes(),
        script: script.to_vec(),
        log: Some(proof),
    }
}

/// An agent holding root v1 and policy v1.
pub fn ready(k: &Keys) -> TrustState {
    let mut state = fresh(k);
    let outcomes = state.apply(
        &trust(
            &[&signed_v1(k)],
            Some(&signed(&policy(k, 1), &[&k.root_a, &k.customer])),
            None,
        ),
        now(),
        &Limits::default(),
    );
    assert_eq!(
        outcomes,
        vec![accepted(TrustKind::Root, 1), accepted(TrustKind::Policy, 1)]
    );
    state
}

/// A script job for this device as an operator would choose it: by this
/// machine's host name and the device key, signed by alice and bob.
pub fn script_statement(id: u8, script: &[u8], timeout_secs: u32) -> JobStatement {
    JobStatement {
        tenant: TENANT.into(),
        job_id: [id; 16],
        targets: vec![JobTarget {
            device_id: DEVICE.into(),
            hostname: bulwark_agent::jobs::current_hostname(),
            device_key: Some(device_key_fingerprint(&DEVICE_PUBLIC_KEY)),
        }],
        class: ActionClass::RunScript,
        action: JobAction::RunScript {
            interpreter: Interpreter::from_shebang(script),
            script_sha256: ScriptHash(Sha256::digest(script).into()),
        },
        not_before: now() - 60,
        expires_at: now() + 3600,
        nonce: [id ^ 0x80; 16],
        reason: "ticket 4711".into(),
        timeout_secs,
        tenant_name: TENANT_NAME.into(),
    }
}

pub fn job_statement(k: &Keys, id: u8, script: &[u8], timeout_secs: u32) -> Signed {
    signed(
        &script_statement(id, script, timeout_secs),
        &[&k.alice, &k.bob],
    )
}

pub fn job(k: &Keys, id: u8, script: &[u8], timeout_secs: u32) -> Job {
    logged(&job_statement(k, id, script, timeout_secs), script)
}
