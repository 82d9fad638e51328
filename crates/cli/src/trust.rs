//! A tenant's trust, made and changed from the operator's own machine
//! (RFD 0002): `bulwark tenant init | freeze | unfreeze` and `bulwark policy …`.
//!
//! Roots, policies and freezes are signed here with keys from the local key
//! store (`crate::keys`); only envelopes go to the server. What the server
//! hands back is verified here as an agent verifies it (the root chain from
//! the first root, the policy against the latest root) before it is shown or
//! extended, so a server cannot get a new version signed on top of something
//! the root never signed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use bulwark_policy::policy::ScriptHash;
use bulwark_policy::root::root_fingerprint;
use bulwark_policy::{
    ActionClass, FreezeState, FreezeStatement, Holder, Limits, MaintenanceWindow, OperatorKey,
    Policy, PublicKey, Quorum, Refusal, RootKey, Signed, TrustHistory, TrustKind, TrustOutcome,
    TrustRoot,
};
use bulwark_protocol::token::fingerprint_text;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::keys::{self, KeyInfo, KeyStore, Registered, Unlocker};
use crate::operator::{Cell, Session, path_segment, print_json, render_table, unix_now};

const DAY: u64 = 86_400;
/// How long the first policy (and a default edit) stays in force.
pub(crate) const DEFAULT_POLICY_DAYS: u64 = 365;
pub(crate) const DEFAULT_FAN_OUT_LIMIT: u32 = 25;
/// The operator key `tenant init` uses (and creates) when none is named.
pub(crate) const DEFAULT_OPERATOR_KEY: &str = "operator";
/// Longest a policy may be made to last from a TOML file.
const MAX_POLICY_DAYS: u64 = 10 * 366;

/// `bulwark tenant …` commands about trust (flattened into `TenantCommand`).
#[derive(Debug, clap::Subcommand)]
pub enum TenantTrustCommand {
    /// Create a tenant's trust root (k of n keys) and first policy, signed on this machine.
    Init(InitArgs),
    /// Replace the tenant's root keys (root version + 1), signed by the threshold of the
    /// current root and of the new one; agents take it over their normal connection.
    RotateRoot(RotateRootArgs),
    /// Pull the kill switch: every agent of the tenant refuses every job.
    Freeze {
        #[arg(long)]
        tenant: String,
        /// The local root key to sign with: a customer-held root key freezes
        /// alone. Without it, the root threshold held on this machine signs.
        #[arg(long, value_name = "NAME")]
        key: Option<String>,
        /// Why (shown to operators and auditors).
        #[arg(long)]
        reason: String,
        /// The current TOTP code, if the server asks for a fresh MFA check
        /// (prompted for on a terminal otherwise).
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
    /// Lift a freeze (needs the root threshold).
    Unfreeze {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        reason: String,
        /// The current TOTP code, if the server asks for a fresh MFA check
        /// (prompted for on a terminal otherwise).
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    #[arg(long)]
    tenant: String,
    /// How many root keys must sign a policy or a new root (k of n).
    #[arg(long, default_value_t = 1, value_name = "K")]
    threshold: u32,
    /// How many MSP root keys to create on this machine (named root-TENANT-1, …).
    #[arg(long, default_value_t = 1, value_name = "N")]
    root_keys: u32,
    /// A customer-held root key (hex, from `bulwark keys export` on the
    /// customer's machine); repeat for several. Customer keys can freeze the tenant alone.
    #[arg(long = "customer-key", value_name = "HEX")]
    customer_keys: Vec<String>,
    /// Local key(s) that may sign jobs of every class in the first policy
    /// (default: the key named "operator", created if missing).
    #[arg(long = "operator-key", value_name = "NAME")]
    operator_keys: Vec<String>,
    /// The current TOTP code, if the server asks for a fresh MFA check
    /// (prompted for on a terminal otherwise).
    #[arg(long, value_name = "CODE")]
    otp: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RotateRootArgs {
    #[arg(long)]
    tenant: String,
    /// How many keys of the new root must sign a policy or the next root
    /// (default: the current root's threshold).
    #[arg(long, value_name = "K")]
    threshold: Option<u32>,
    /// How many new MSP root keys to create on this machine (named
    /// root-TENANT-VERSION-1, …).
    #[arg(long, default_value_t = 0, value_name = "N")]
    new_root_keys: u32,
    /// Keep only these keys of the current root (names as `bulwark policy
    /// show` lists them, or local key names). Default: keep every key not dropped.
    #[arg(long, value_name = "KEYNAME", num_args = 1.., conflicts_with = "drop")]
    keep: Vec<String>,
    /// Drop these keys of the current root: they sign nothing for this tenant
    /// once agents hold the new root.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    drop: Vec<String>,
    /// A customer-held root key to add (hex, from `bulwark keys export` on
    /// the customer's machine); repeat for several.
    #[arg(long = "add-customer-key", value_name = "HEX", num_args = 1..)]
    add_customer_keys: Vec<String>,
    /// The current TOTP code, if the server asks for a fresh MFA check
    /// (prompted for on a terminal otherwise).
    #[arg(long, value_name = "CODE")]
    otp: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `bulwark policy …`: a tenant's signed policy.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Show the tenant's policy, verified on this machine against its root.
    Show {
        #[arg(long)]
        tenant: String,
        /// Print JSON instead of text.
        #[arg(long, conflicts_with = "toml")]
        json: bool,
        /// Print an editable TOML document (for `bulwark policy sign`).
        #[arg(long)]
        toml: bool,
    },
    /// Sign a policy written in TOML as the next version and publish it.
    Sign {
        #[arg(long)]
        tenant: String,
        /// The policy (start from `bulwark policy show --toml`).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The current TOTP code, if the server asks for a fresh MFA check
        /// (prompted for on a terminal otherwise).
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
    /// Add a script's SHA-256 to the allow-list (a new policy version).
    AllowScript {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_name = "FILE")]
        script: PathBuf,
        /// The current TOTP code, if the server asks for a fresh MFA check
        /// (prompted for on a terminal otherwise).
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
    /// Authorise an operator key or passkey (a new policy version).
    AddOperator {
        #[arg(long)]
        tenant: String,
        /// The operator's Ed25519 public key, hex (`bulwark keys export`).
        #[arg(long, value_name = "HEX", required_unless_present_any = ["passkey_public_key", "passkey"], conflicts_with_all = ["passkey_public_key", "passkey"])]
        public_key: Option<String>,
        /// An approval passkey as a job signer: base64 of its policy key's
        /// canonical CBOR (RP id bulwark-approve.localhost).
        #[arg(long, value_name = "BASE64", conflicts_with = "passkey")]
        passkey_public_key: Option<String>,
        /// One of this machine's approval passkeys (`bulwark keys add-passkey`),
        /// by name: its public key as the authenticator gave it, not the server.
        #[arg(long, value_name = "NAME")]
        passkey: Option<String>,
        #[arg(long)]
        name: String,
        /// Action classes the key may sign, comma-separated (default: all).
        #[arg(long, value_delimiter = ',', value_name = "CLASS,…")]
        classes: Vec<String>,
        /// The key is held by the customer (it can then satisfy "customer co-signer").
        #[arg(long)]
        customer: bool,
        /// The current TOTP code, if the server asks for a fresh MFA check
        /// (prompted for on a terminal otherwise).
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
    /// Withdraw an operator key (a new policy version).
    RemoveOperator {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// The current TOTP code, if the server asks for a fresh MFA check
        /// (prompted for on a terminal otherwise).
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
}

pub async fn run_tenant(command: TenantTrustCommand) -> Result<()> {
    match command {
        TenantTrustCommand::Init(args) => init(args).await,
        TenantTrustCommand::RotateRoot(args) => rotate_root(args).await,
        TenantTrustCommand::Freeze {
            tenant,
            key,
            reason,
            otp,
        } => kill_switch(&tenant, true, key.as_deref(), reason, otp.as_deref()).await,
        TenantTrustCommand::Unfreeze {
            tenant,
            reason,
            otp,
        } => kill_switch(&tenant, false, None, reason, otp.as_deref()).await,
    }
}

pub async fn run_policy(command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Show { tenant, json, toml } => show(&tenant, json, toml).await,
        PolicyCommand::Sign { tenant, file, otp } => {
            let text = read_small(&file, 1024 * 1024)?;
            let doc: PolicyDoc = toml::from_str(&text)
                .with_context(|| format!("{} is not a valid policy document", file.display()))?;
            let session = Session::load()?;
            let trust = fetch_trust(&session, &tenant).await?;
            let version = trust.policy.as_ref().map_or(0, |p| p.version) + 1;
            let policy = doc_to_policy(&doc, &trust.tenant_id, &tenant, version, unix_now())
                .with_context(|| format!("in {}", file.display()))?;
            publish_policy(&session, &tenant, &trust, &policy, otp.as_deref()).await
        }
        PolicyCommand::AllowScript {
            tenant,
            script,
            otp,
        } => {
            let body =
                std::fs::read(&script).with_context(|| format!("reading {}", script.display()))?;
            let hash = ScriptHash(Sha256::digest(&body).into());
            let session = Session::load()?;
            let trust = fetch_trust(&session, &tenant).await?;
            let mut policy = next_policy(&trust, &tenant)?;
            if policy.allowed_scripts.contains(&hash) {
                println!(
                    "{} (sha256 {}) is already on tenant {tenant}'s allow-list.",
                    script.display(),
                    hex::encode(hash.0)
                );
                return Ok(());
            }
            policy.allowed_scripts.push(hash);
            publish_policy(&session, &tenant, &trust, &policy, otp.as_deref()).await?;
            println!(
                "{} (sha256 {}) is on the allow-list from this version on.",
                script.display(),
                hex::encode(hash.0)
            );
            Ok(())
        }
        PolicyCommand::AddOperator {
            tenant,
            public_key,
            passkey_public_key,
            passkey,
            name,
            classes,
            customer,
            otp,
        } => {
            let key = match (public_key, passkey_public_key, passkey) {
                (Some(hex), _, _) => parse_public_key(&hex)?,
                (None, Some(b64), _) => parse_passkey_key(&b64)?,
                (None, None, Some(passkey)) => own_passkey_key(&passkey).await?,
                (None, None, None) => {
                    bail!("name the key: --public-key, --passkey-public-key or --passkey")
                }
            };
            let classes = if classes.is_empty() {
                ALL_CLASSES.to_vec()
            } else {
                classes
                    .iter()
                    .map(|c| parse_class(c))
                    .collect::<Result<_>>()?
            };
            let session = Session::load()?;
            let trust = fetch_trust(&session, &tenant).await?;
            let mut policy = next_policy(&trust, &tenant)?;
            add_operator(
                &mut policy.operators,
                OperatorKey {
                    key,
                    name,
                    holder: if customer {
                        Holder::Customer
                    } else {
                        Holder::Msp
                    },
                    classes,
                },
            )?;
            publish_policy(&session, &tenant, &trust, &policy, otp.as_deref()).await
        }
        PolicyCommand::RemoveOperator { tenant, name, otp } => {
            let session = Session::load()?;
            let trust = fetch_trust(&session, &tenant).await?;
            let mut policy = next_policy(&trust, &tenant)?;
            remove_operator(&mut policy, &name)?;
            publish_policy(&session, &tenant, &trust, &policy, otp.as_deref()).await
        }
    }
}

// ---------------------------------------------------------------------------
// Action classes and the default policy
// ---------------------------------------------------------------------------

pub(crate) const ALL_CLASSES: [ActionClass; 9] = ActionClass::ALL;

/// What a security officer would pick: routine work with one signer, the
/// dangerous classes with two; no customer co-signer, no window restriction.
const DEFAULT_QUORUMS: [(ActionClass, u32); 9] = [
    (ActionClass::InventoryRefresh, 1),
    (ActionClass::RunAllowListedScript, 1),
    (ActionClass::RunScript, 1),
    (ActionClass::InstallPatches, 1),
    (ActionClass::OpenShell, 1),
    (ActionClass::OpenAdminShell, 2),
    (ActionClass::ChangeAgentSettings, 2),
    (ActionClass::UpdateAgent, 2),
    (ActionClass::RestoreBackup, 2),
];

/// The kebab-case name of a class (TOML, tables, `--classes`).
pub(crate) fn class_name(class: ActionClass) -> &'static str {
    class.name()
}

pub(crate) fn parse_class(text: &str) -> Result<ActionClass> {
    let text = text.trim();
    ActionClass::from_name(text).with_context(|| {
        format!(
            "unknown action class {text:?}; the classes are {}",
            ALL_CLASSES.map(class_name).join(", ")
        )
    })
}

/// An MSP-held operator key that may sign every class.
pub(crate) fn msp_operator(name: &str, key: PublicKey) -> OperatorKey {
    OperatorKey {
        key,
        name: name.to_owned(),
        holder: Holder::Msp,
        classes: ALL_CLASSES.to_vec(),
    }
}

/// Version 1 of a tenant's policy, with the defaults above, for a year.
pub(crate) fn default_policy(
    tenant_id: &str,
    tenant_name: &str,
    operators: Vec<OperatorKey>,
    now: u64,
) -> Policy {
    Policy {
        tenant: tenant_id.to_owned(),
        tenant_name: Some(tenant_name.to_owned()),
        version: 1,
        expires_at: now + DEFAULT_POLICY_DAYS * DAY,
        operators,
        quorums: DEFAULT_QUORUMS
            .iter()
            .map(|&(class, signers)| Quorum {
                class,
                signers,
                customer_required: false,
                in_window_only: false,
            })
            .collect(),
        fan_out_limit: DEFAULT_FAN_OUT_LIMIT,
        allowed_scripts: Vec::new(),
        maintenance_windows: Vec::new(),
    }
}

fn add_operator(operators: &mut Vec<OperatorKey>, operator: OperatorKey) -> Result<()> {
    if let Some(existing) = operators.iter().find(|o| o.key == operator.key) {
        bail!("this key is already in the policy, as {:?}", existing.name);
    }
    ensure!(
        !operators.iter().any(|o| o.name == operator.name),
        "the policy already has an operator key named {:?}",
        operator.name
    );
    operators.push(operator);
    Ok(())
}

fn remove_operator(policy: &mut Policy, name: &str) -> Result<()> {
    let before = policy.operators.len();
    policy.operators.retain(|o| o.name != name);
    if policy.operators.len() == before {
        let names: Vec<&str> = policy.operators.iter().map(|o| o.name.as_str()).collect();
        bail!(
            "the policy has no operator key named {name:?} (it has: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(())
}

/// Things a policy allows on paper but nobody can do, said before signing.
pub(crate) fn policy_warnings(policy: &Policy, now: u64) -> Vec<String> {
    let mut warnings = Vec::new();
    for q in &policy.quorums {
        let name = class_name(q.class);
        let keys = policy.signers_for(q.class, None).count();
        if keys < usize::try_from(q.signers).unwrap_or(usize::MAX) {
            warnings.push(format!(
                "{name} needs {} distinct signers but only {keys} key(s) may sign it: such jobs cannot be approved",
                q.signers
            ));
        }
        if q.customer_required
            && policy
                .signers_for(q.class, Some(Holder::Customer))
                .next()
                .is_none()
        {
            warnings.push(format!(
                "{name} requires a customer co-signer but no customer-held key may sign it"
            ));
        }
        if q.in_window_only && policy.maintenance_windows.is_empty() {
            warnings.push(format!(
                "{name} may run only inside a maintenance window and there is none"
            ));
        }
    }
    if policy.expires_at <= now + 30 * DAY {
        warnings.push(format!(
            "the policy expires {}: agents then refuse every job",
            date_text(policy.expires_at)
        ));
    }
    warnings
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

/// A tenant's first root and policy, signed and checked.
pub(crate) struct Genesis {
    pub root: Signed,
    pub policy: Signed,
    /// What agents pin at enrolment.
    pub fingerprint: [u8; 32],
}

/// A tenant's first root: the MSP keys in `msp_root`, then `customers`.
fn first_root(
    tenant_id: &str,
    threshold: u32,
    msp_root: &[(String, SigningKey)],
    customers: &[(String, PublicKey)],
) -> TrustRoot {
    let keys = msp_root
        .iter()
        .map(|(name, key)| RootKey {
            key: public_of(key),
            holder: Holder::Msp,
            name: name.clone(),
        })
        .chain(customers.iter().map(|(name, key)| RootKey {
            key: key.clone(),
            holder: Holder::Customer,
            name: name.clone(),
        }))
        .collect();
    TrustRoot {
        tenant: tenant_id.to_owned(),
        version: 1,
        threshold,
        keys,
    }
}

/// Builds, signs and checks a tenant's first root (the MSP keys in
/// `msp_root`, held here, plus `customers`) and its default first policy.
/// Pure: `tenant init` publishes the result; `up` may store it directly.
pub(crate) fn genesis(
    tenant_id: &str,
    tenant_name: &str,
    threshold: u32,
    msp_root: &[(String, SigningKey)],
    customers: &[(String, PublicKey)],
    operators: Vec<OperatorKey>,
    now: u64,
) -> Result<Genesis> {
    let need = usize::try_from(threshold).unwrap_or(usize::MAX);
    ensure!(
        need >= 1 && need <= msp_root.len(),
        "a root threshold of {threshold} needs that many root keys on this machine; there are {}",
        msp_root.len()
    );
    let root = first_root(tenant_id, threshold, msp_root, customers);
    let signers: Vec<&SigningKey> = msp_root.iter().take(need).map(|(_, k)| k).collect();
    let mut root_envelope = Signed::new(&root);
    for key in &signers {
        root_envelope.sign(key);
    }
    let fingerprint = root_fingerprint(&root_envelope);
    let root =
        TrustRoot::verify_pinned(&root_envelope, &fingerprint, tenant_id, &Limits::default())
            .map_err(refused("the new trust root"))?;
    let policy = sign_policy(
        &root,
        None,
        &default_policy(tenant_id, tenant_name, operators, now),
        &signers,
        now,
    )?;
    Ok(Genesis {
        root: root_envelope,
        policy,
        fingerprint,
    })
}

/// Signs `policy` with `keys` and checks it as an agent would before it leaves this machine.
fn sign_policy(
    root: &TrustRoot,
    current: Option<&Policy>,
    policy: &Policy,
    keys: &[&SigningKey],
    now: u64,
) -> Result<Signed> {
    let mut signed = Signed::new(policy);
    for key in keys {
        signed.sign(key);
    }
    Policy::verify_update(root, current, &signed, now, &Limits::default())
        .map_err(refused("the new policy"))?;
    Ok(signed)
}

fn public_of(key: &SigningKey) -> PublicKey {
    PublicKey::Ed25519(key.verifying_key().to_bytes())
}

/// The local keys of `root`, in the root's order.
pub(crate) fn held_root_keys(store: &KeyStore, root: &TrustRoot) -> Result<Vec<KeyInfo>> {
    let mut held = Vec::new();
    for root_key in &root.keys {
        if let Some(info) = store.find_by_public(&root_key.key)? {
            held.push(info);
        }
    }
    Ok(held)
}

/// Asks once for the passphrase that will encrypt the `keys` this command
/// creates, and lets `unlocker` try it first from now on.
fn new_passphrase(
    unlocker: &mut Unlocker,
    json: bool,
    keys: &str,
) -> Result<zeroize::Zeroizing<String>> {
    if !json {
        eprintln!(
            "Choose a passphrase for the {keys} (it encrypts them on this machine; \
             nobody can recover it)."
        );
    }
    let passphrase = KeyStore::passphrase(true)?;
    unlocker.remember(passphrase.clone());
    Ok(passphrase)
}

/// The root keys of `root` held here, unlocked: the threshold if this
/// machine holds it (`true`), else every one it holds (`false`: the
/// statement becomes a proposal others co-sign).
fn held_signing_keys(
    store: &KeyStore,
    root: &TrustRoot,
    unlocker: &mut Unlocker,
) -> Result<(Vec<SigningKey>, bool)> {
    let held = held_root_keys(store, root)?;
    let need = root.threshold();
    let keys = held
        .iter()
        .take(need)
        .map(|k| unlocker.unlock(store, &k.name))
        .collect::<Result<Vec<_>>>()?;
    let complete = keys.len() >= need;
    Ok((keys, complete))
}

/// Sends a statement this machine cannot complete (its signatures so far,
/// `have` of `need`) as a proposal, and says what the other key holders run.
/// Returns the proposal id.
async fn propose(
    session: &Session,
    tenant: &str,
    signed: &Signed,
    what: &str,
    have: usize,
    need: usize,
    otp: Option<&str>,
) -> Result<String> {
    let body = json!({
        "envelope": base64::engine::general_purpose::STANDARD.encode(signed.to_bytes()),
    });
    propose_body(session, tenant, &body, what, have, need, otp).await
}

/// [`propose`] with the request body given (a rotation carries companions).
async fn propose_body(
    session: &Session,
    tenant: &str,
    body: &Value,
    what: &str,
    have: usize,
    need: usize,
    otp: Option<&str>,
) -> Result<String> {
    let reply = session
        .post_privileged(&trust_path(tenant, "/proposals")?, body, otp)
        .await
        .with_context(|| format!("proposing {what}"))?;
    let id = reply["id"]
        .as_str()
        .context("the server's proposal has no id")?
        .to_owned();
    if reply["state"] == "published" {
        println!("Published {what} for tenant {tenant} (proposal {id}).");
        return Ok(id);
    }
    println!(
        "{what} for tenant {tenant} needs {need} root key signature(s); this machine holds {have}."
    );
    println!(
        "Proposed as {id} (open for 7 days). Each other root key holder checks and signs it on \
         their own machine:"
    );
    println!("  bulwark trust show {id}");
    println!("  bulwark trust sign {id}");
    println!("The server publishes it once the signatures reach the threshold.");
    Ok(id)
}

fn refused(what: &'static str) -> impl Fn(Refusal) -> anyhow::Error {
    move |refusal| anyhow!("{what} does not verify: {refusal} ({})", refusal.code())
}

// ---------------------------------------------------------------------------
// The server's copy, verified here
// ---------------------------------------------------------------------------

/// `GET /api/v1/tenants/{tenant}/trust`.
#[derive(Debug, Deserialize)]
struct TrustReply {
    tenant_id: String,
    #[serde(default)]
    roots: Vec<String>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    freeze: Option<String>,
    #[serde(default)]
    root_fingerprint: Option<String>,
}

/// A tenant's trust as this machine verified it.
#[derive(Debug)]
pub(crate) struct Trust {
    pub tenant_id: String,
    /// The first root's, which agents pin.
    pub fingerprint: Option<[u8; 32]>,
    /// The latest root, reached from the first by valid rotations.
    pub root: Option<TrustRoot>,
    /// Signed by the latest root's threshold.
    pub policy: Option<Policy>,
    pub freeze: Option<FreezeView>,
}

#[derive(Debug)]
pub(crate) struct FreezeView {
    pub statement: FreezeStatement,
    /// The envelope, as the server serves it.
    pub signed: Signed,
    /// Whether it verifies against the latest root.
    pub verified: bool,
}

impl Trust {
    fn freeze_state(&self) -> FreezeState {
        self.freeze
            .as_ref()
            .map_or_else(FreezeState::default, |f| FreezeState {
                sequence: f.statement.sequence,
                frozen: f.statement.frozen,
            })
    }
}

fn decode_envelope(text: &str, what: &str) -> Result<Signed> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .with_context(|| format!("the server's {what} is not base64"))?;
    Signed::from_bytes(&bytes, &Limits::default())
        .map_err(|r| anyhow!("the server's {what} is not an envelope: {r}"))
}

fn verify_trust(reply: &TrustReply) -> Result<Trust> {
    let limits = Limits::default();
    let roots = reply
        .roots
        .iter()
        .enumerate()
        .map(|(i, r)| decode_envelope(r, &format!("root {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    let policy = reply
        .policy
        .as_deref()
        .map(|text| decode_envelope(text, "policy"))
        .transpose()?;
    let freeze = reply
        .freeze
        .as_deref()
        .map(|text| decode_envelope(text, "freeze statement"))
        .transpose()?;
    let Some(pinned) = roots.first().map(root_fingerprint) else {
        ensure!(
            policy.is_none() && freeze.is_none(),
            "the server has a policy or freeze for this tenant but no trust root"
        );
        return Ok(Trust {
            tenant_id: reply.tenant_id.clone(),
            fingerprint: None,
            root: None,
            policy: None,
            freeze: None,
        });
    };
    if let Some(claimed) = &reply.root_fingerprint {
        ensure!(
            claimed.eq_ignore_ascii_case(&hex::encode(pinned)),
            "the server says the root fingerprint is {claimed}, but its first root hashes to {}",
            hex::encode(pinned)
        );
    }
    // The agents' replay. An expired policy is still shown (and replaced),
    // flagged as expired; a freeze that does not verify is shown as such.
    let (history, refusals) = TrustHistory::replay(
        &reply.tenant_id,
        Some(pinned),
        &roots,
        policy.as_ref(),
        freeze.as_ref(),
        &limits,
    );
    for outcome in &refusals {
        if let TrustOutcome::Refused { kind, refusal, .. } = outcome {
            match kind {
                TrustKind::Root => return Err(refused("the tenant's trust root")(refusal.clone())),
                TrustKind::Policy => return Err(refused("the tenant's policy")(refusal.clone())),
                TrustKind::Freeze => {}
            }
        }
    }
    let freeze = match freeze {
        None => None,
        Some(signed) => Some(FreezeView {
            statement: signed
                .statement(&limits)
                .map_err(refused("the tenant's freeze statement"))?,
            verified: history.freeze_signed().is_some(),
            signed,
        }),
    };
    Ok(Trust {
        tenant_id: reply.tenant_id.clone(),
        fingerprint: Some(pinned),
        root: history.root().cloned(),
        policy: history.policy().cloned(),
        freeze,
    })
}

pub(crate) fn trust_path(tenant: &str, what: &str) -> Result<String> {
    Ok(format!(
        "/api/v1/tenants/{}/trust{what}",
        path_segment(tenant)?
    ))
}

/// A tenant's trust as the server serves it, verified here (the root chain
/// replayed, the policy checked against the latest root) and compared with
/// this machine's pin of the tenant (pinned now on first contact).
pub(crate) async fn fetch_trust(session: &Session, tenant: &str) -> Result<Trust> {
    let reply = session.get(&trust_path(tenant, "")?).await?;
    let reply: TrustReply = serde_json::from_value(reply)
        .context("the server's trust reply is not what RFD 0002 describes")?;
    let trust = verify_trust(&reply)?;
    match trust.fingerprint {
        Some(root) => {
            let served = crate::pins::TenantPin {
                tenant_id: trust.tenant_id.clone(),
                root,
            };
            if let crate::pins::PinCheck::FirstUse(path) =
                crate::pins::check_tenant(session.server(), tenant, &served)?
            {
                eprintln!(
                    "First contact with tenant {tenant}: pinned id {} and trust root\n  {}\n  in {}. \
                     Compare the root with its holders out of band.",
                    trust.tenant_id,
                    fingerprint_text(&root),
                    path.display()
                );
            }
        }
        None => {
            if let Some(pinned) = crate::pins::tenant_pin(session.server(), tenant)? {
                bail!(
                    "STOP: the server says tenant {tenant:?} has no trust root, but this machine \
                     pinned root {} for it: the server lost or withholds it",
                    fingerprint_text(&pinned.root)
                );
            }
        }
    }
    Ok(trust)
}

/// `POST /tenants/{tenant}/trust/{what}` (a privileged action: the server
/// may ask for a fresh MFA check first).
async fn post_envelope(
    session: &Session,
    tenant: &str,
    what: &str,
    signed: &Signed,
    otp: Option<&str>,
) -> Result<()> {
    let body = json!({
        "envelope": base64::engine::general_purpose::STANDARD.encode(signed.to_bytes()),
    });
    session
        .post_privileged(&trust_path(tenant, &format!("/{what}"))?, &body, otp)
        .await?;
    Ok(())
}

async fn lookup_tenant_id(session: &Session, tenant: &str) -> Result<String> {
    let tenants = session.get("/api/v1/tenants").await?;
    crate::operator::items(&tenants)?
        .iter()
        .find(|t| t["name"].as_str() == Some(tenant))
        .and_then(|t| t["id"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no tenant named {tenant} (see `bulwark tenant list`)"))
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

async fn init(args: InitArgs) -> Result<()> {
    let InitArgs {
        tenant,
        threshold,
        root_keys,
        customer_keys,
        operator_keys,
        otp,
        json,
    } = args;
    let otp = otp.as_deref();

    // 1. Everything that can be refused is refused before anything is created.
    ensure!(
        (1..=16).contains(&root_keys),
        "--root-keys must be between 1 and 16"
    );
    ensure!(threshold >= 1, "--threshold must be at least 1");
    let customer_count = u32::try_from(customer_keys.len()).unwrap_or(u32::MAX);
    ensure!(
        threshold <= root_keys.saturating_add(customer_count),
        "a threshold of {threshold} needs at least {threshold} root keys, but there would be \
         {root_keys} on this machine and {customer_count} held by the customer"
    );
    let mut customers: Vec<(String, PublicKey)> = Vec::new();
    for (i, text) in customer_keys.iter().enumerate() {
        let key = parse_public_key(text).with_context(|| format!("--customer-key {text}"))?;
        ensure!(
            !customers.iter().any(|(_, k)| *k == key),
            "--customer-key {text} is given twice"
        );
        customers.push((format!("customer-{}", i + 1), key));
    }
    let total = usize::try_from(root_keys).unwrap_or(usize::MAX) + customers.len();
    ensure!(
        total <= Limits::default().max_root_keys,
        "a root may hold at most {} keys",
        Limits::default().max_root_keys
    );
    let store = KeyStore::open_default()?;
    let session = Session::load()?;
    let tenant_id = lookup_tenant_id(&session, &tenant).await?;
    let trust = fetch_trust(&session, &tenant).await?;
    ensure!(
        trust.tenant_id == tenant_id,
        "the server gives tenant {tenant} two ids ({tenant_id} and {})",
        trust.tenant_id
    );
    if let (Some(root), Some(policy)) = (&trust.root, &trust.policy) {
        bail!(
            "tenant {tenant} already has a trust root (version {}) and a policy (version {}): \
             change the policy with `bulwark policy …`",
            root.version,
            policy.version
        );
    }

    // Operator keys: existing local keys, or the default one, created below.
    let default_operator = operator_keys.is_empty();
    let mut operator_names: Vec<String> = Vec::new();
    if default_operator {
        operator_names.push(DEFAULT_OPERATOR_KEY.to_owned());
    }
    for name in operator_keys {
        if !operator_names.contains(&name) {
            operator_names.push(name);
        }
    }
    let mut operators: Vec<KeyInfo> = Vec::new();
    let mut create_operator = None;
    for name in &operator_names {
        if store.exists(name)? {
            operators.push(store.info(name)?);
        } else if default_operator {
            store.check_new(name, "operator")?;
            create_operator = Some(name.clone());
        } else {
            bail!(
                "no key named {name} on this machine: create it with `bulwark keys new --name {name}`"
            );
        }
    }

    // Root keys: new ones (reusing keys a failed earlier run made for this
    // tenant), or, if the root is on the server already, the local threshold.
    let role = format!("root:{tenant_id}");
    let mut root_slots: Vec<RootSlot> = Vec::new();
    match &trust.root {
        Some(root) => {
            if !json {
                eprintln!(
                    "Tenant {tenant} already has a trust root (version {}): signing its first \
                     policy with it (--threshold, --root-keys and --customer-key are ignored).",
                    root.version
                );
            }
        }
        None => {
            for i in 1..=root_keys {
                let name = format!("root-{tenant}-{i}");
                if store.exists(&name)? {
                    let info = store.info(&name)?;
                    ensure!(
                        info.role == role,
                        "a key named {name} already exists for something else (role {}); \
                         move {} away first",
                        info.role,
                        info.path.display()
                    );
                    root_slots.push(RootSlot::Reuse(info));
                } else {
                    store.check_new(&name, &role)?;
                    root_slots.push(RootSlot::Create(name));
                }
            }
        }
    }

    // 2. One passphrase for every key this command creates.
    let mut unlocker = Unlocker::new();
    let creates =
        create_operator.is_some() || root_slots.iter().any(|s| matches!(s, RootSlot::Create(_)));
    let passphrase = if creates {
        Some(new_passphrase(&mut unlocker, json, "new keys")?)
    } else {
        None
    };
    let mut created: Vec<KeyInfo> = Vec::new();
    if let (Some(name), Some(passphrase)) = (&create_operator, &passphrase) {
        let (info, _) = store.create_with(name, "operator", passphrase)?;
        created.push(info.clone());
        operators.push(info);
    }
    let policy_operators: Vec<OperatorKey> = operators
        .iter()
        .map(|k| msp_operator(&k.name, k.public_key.clone()))
        .collect();
    let now = unix_now();

    // 3. Sign and publish.
    let mut published_fingerprint = trust.fingerprint;
    match &trust.root {
        None => {
            let mut signers: Vec<(String, SigningKey)> = Vec::new();
            for slot in root_slots {
                match slot {
                    RootSlot::Reuse(info) => {
                        let key = unlocker.unlock(&store, &info.name)?;
                        signers.push((info.name, key));
                    }
                    RootSlot::Create(name) => {
                        let passphrase = passphrase
                            .as_ref()
                            .context("no passphrase for the new root keys")?;
                        let (info, key) = store.create_with(&name, &role, passphrase)?;
                        created.push(info);
                        signers.push((name, key));
                    }
                }
            }
            if usize::try_from(threshold).unwrap_or(usize::MAX) > signers.len() {
                // The first root must be signed by its own threshold, and
                // this machine does not hold it: the other holders co-sign
                // it, then this command, run again, signs the first policy
                // (a proposal too).
                let root = first_root(&tenant_id, threshold, &signers, &customers);
                let mut signed = Signed::new(&root);
                for (_, key) in &signers {
                    signed.sign(key);
                }
                let id = propose(
                    &session,
                    &tenant,
                    &signed,
                    "Trust root version 1",
                    signers.len(),
                    root.threshold(),
                    otp,
                )
                .await?;
                println!();
                println!(
                    "Root fingerprint (agents pin it at enrolment; compare it with the customer's copy):"
                );
                println!("  {}", grouped_hex(&root_fingerprint(&signed)));
                println!(
                    "Once proposal {id} is published, run `bulwark tenant init --tenant {tenant}` \
                     again here: it signs the first policy, which needs the same co-signers."
                );
                return Ok(());
            }
            let genesis = genesis(
                &tenant_id,
                &tenant,
                threshold,
                &signers,
                &customers,
                policy_operators,
                now,
            )?;
            published_fingerprint = Some(genesis.fingerprint);
            post_envelope(&session, &tenant, "roots", &genesis.root, otp)
                .await
                .context("publishing the trust root")?;
            // The root signed here is this machine's pin of the tenant.
            let path = crate::pins::record_tenant(
                session.server(),
                &tenant,
                &crate::pins::TenantPin {
                    tenant_id: tenant_id.clone(),
                    root: genesis.fingerprint,
                },
            )?;
            println!(
                "Pinned tenant {tenant} with trust root {} in {}.",
                fingerprint_text(&genesis.fingerprint),
                path.display()
            );
            post_envelope(&session, &tenant, "policy", &genesis.policy, otp)
                .await
                .context(
                    "the trust root is published, but not the first policy; run this command again",
                )?;
        }
        Some(root) => {
            let (keys, complete) = held_signing_keys(&store, root, &mut unlocker)?;
            let keys: Vec<&SigningKey> = keys.iter().collect();
            let policy = default_policy(&tenant_id, &tenant, policy_operators, now);
            if !complete {
                let mut signed = Signed::new(&policy);
                for key in &keys {
                    signed.sign(key);
                }
                for info in &operators {
                    if let Err(error) = keys::register(&session, info).await {
                        eprintln!(
                            "warning: {error:#}; run `bulwark keys register --name {}`",
                            info.name
                        );
                    }
                }
                propose(
                    &session,
                    &tenant,
                    &signed,
                    "Policy version 1",
                    keys.len(),
                    root.threshold(),
                    otp,
                )
                .await?;
                return Ok(());
            }
            let signed = sign_policy(root, None, &policy, &keys, now)?;
            post_envelope(&session, &tenant, "policy", &signed, otp)
                .await
                .context("publishing the first policy")?;
        }
    }

    // 4. The operator keys sign jobs as this account.
    let mut registration = Vec::new();
    for info in &operators {
        match keys::register(&session, info).await {
            Ok(Registered::New(_)) => registration.push((info.name.clone(), "registered")),
            Ok(Registered::Already) => {
                registration.push((info.name.clone(), "already registered"));
            }
            Err(error) => {
                eprintln!(
                    "warning: {error:#}; run `bulwark keys register --name {}`",
                    info.name
                );
                registration.push((info.name.clone(), "not registered"));
            }
        }
    }

    // 5. What the server serves now, verified from scratch.
    let trust = fetch_trust(&session, &tenant)
        .await
        .context("reading back the published trust")?;
    let root = trust
        .root
        .as_ref()
        .context("the server does not show the trust root just published")?;
    let fingerprint = trust
        .fingerprint
        .context("the server does not show the trust root just published")?;
    ensure!(
        Some(fingerprint) == published_fingerprint,
        "the server shows another trust root than the one just published (fingerprint {})",
        grouped_hex(&fingerprint)
    );
    let policy = trust
        .policy
        .as_ref()
        .context("the server does not show the policy just published")?;
    let local = store.list()?;
    let local_name = |key: &PublicKey| {
        local
            .iter()
            .find(|k| k.public_key == *key)
            .map(|k| (k.name.clone(), k.path.display().to_string()))
    };
    if json {
        return print_json(&json!({
            "tenant": tenant,
            "tenant_id": tenant_id,
            "root_fingerprint": hex::encode(fingerprint),
            "root": root_json(root, &local),
            "policy_version": policy.version,
            "policy_expires_at": policy.expires_at,
            "created_keys": created.iter().map(KeyInfo::to_json).collect::<Vec<_>>(),
            "operator_keys": registration.iter().map(|(name, state)| json!({"name": name, "registration": state})).collect::<Vec<_>>(),
        }));
    }
    println!("Tenant {tenant} (id {tenant_id}) has a trust root and a policy.");
    println!();
    println!("Root fingerprint (agents pin it at enrolment; compare it with the customer's copy):");
    println!("  {}", grouped_hex(&fingerprint));
    println!();
    println!(
        "Root version {}: {} of {} keys must sign a policy or a new root.",
        root.version,
        root.threshold,
        root.keys.len()
    );
    for key in &root.keys {
        let where_ = local_name(&key.key).map_or_else(
            || "held by the customer".to_owned(),
            |(_, path)| format!("on this machine: {path}"),
        );
        println!(
            "  {:<20} {:<8} {}  {where_}",
            key.name,
            holder_name(key.holder),
            key.key.id()
        );
    }
    println!();
    println!(
        "Policy version {}, expires {}; operator keys (every class):",
        policy.version,
        date_text(policy.expires_at)
    );
    for (name, state) in &registration {
        let path = store.path_of(name)?;
        println!("  {name:<20} {state}, {}", path.display());
    }
    let warnings = policy_warnings(policy, now);
    for warning in &warnings {
        println!("Note: {warning}.");
    }
    if warnings.iter().any(|w| w.contains("distinct signers")) {
        println!(
            "      Authorise a second person's key with `bulwark policy add-operator --tenant {tenant} …`."
        );
    }
    println!();
    println!(
        "Keep the root key files offline when you can: whoever holds {} of them controls what \
         this tenant's agents accept.",
        root.threshold
    );
    Ok(())
}

enum RootSlot {
    Reuse(KeyInfo),
    Create(String),
}

async fn show(tenant: &str, json: bool, toml: bool) -> Result<()> {
    let session = Session::load()?;
    let trust = fetch_trust(&session, tenant).await?;
    let local = KeyStore::open_default()?.list()?;
    let now = unix_now();
    if toml {
        let policy = trust.policy.as_ref().with_context(|| {
            format!(
                "tenant {tenant} has no policy yet: run `bulwark tenant init --tenant {tenant}`"
            )
        })?;
        print!("{}", policy_toml(tenant, &trust.tenant_id, policy, now)?);
        return Ok(());
    }
    if json {
        return print_json(&trust_json(tenant, &trust, &local, now));
    }
    print!("{}", render_trust(tenant, &trust, &local, now));
    Ok(())
}

/// The current policy, to be changed and published as the next version.
fn next_policy(trust: &Trust, tenant: &str) -> Result<Policy> {
    let mut policy = trust.policy.clone().with_context(|| {
        format!("tenant {tenant} has no policy yet: run `bulwark tenant init --tenant {tenant}`")
    })?;
    ensure!(
        policy.expires_at > unix_now(),
        "tenant {tenant}'s policy expired {}: write a new one with `bulwark policy show --tenant \
         {tenant} --toml > policy.toml`, set expires_in_days, then `bulwark policy sign`",
        date_text(policy.expires_at)
    );
    policy.version += 1;
    // Agents refuse jobs that name the tenant otherwise (RFD 0005).
    policy.tenant_name = Some(tenant.to_owned());
    Ok(policy)
}

async fn publish_policy(
    session: &Session,
    tenant: &str,
    trust: &Trust,
    policy: &Policy,
    otp: Option<&str>,
) -> Result<()> {
    let root = trust.root.as_ref().with_context(|| {
        format!(
            "tenant {tenant} has no trust root yet: run `bulwark tenant init --tenant {tenant}`"
        )
    })?;
    let now = unix_now();
    let warnings = policy_warnings(policy, now);
    let store = KeyStore::open_default()?;
    let mut unlocker = Unlocker::new();
    let (keys, complete) = held_signing_keys(&store, root, &mut unlocker)?;
    let keys: Vec<&SigningKey> = keys.iter().collect();
    if !complete {
        let mut signed = Signed::new(policy);
        for key in &keys {
            signed.sign(key);
        }
        propose(
            session,
            tenant,
            &signed,
            &format!("Policy version {}", policy.version),
            keys.len(),
            root.threshold(),
            otp,
        )
        .await?;
        for warning in warnings {
            println!("Note: {warning}.");
        }
        return Ok(());
    }
    let signed = sign_policy(root, trust.policy.as_ref(), policy, &keys, now)?;
    post_envelope(session, tenant, "policy", &signed, otp)
        .await
        .context("publishing the policy")?;
    println!(
        "Published policy version {} for tenant {tenant} (expires {}); agents apply it when they next hear from the server.",
        policy.version,
        date_text(policy.expires_at)
    );
    for warning in warnings {
        println!("Note: {warning}.");
    }
    Ok(())
}

async fn kill_switch(
    tenant: &str,
    frozen: bool,
    key: Option<&str>,
    reason: String,
    otp: Option<&str>,
) -> Result<()> {
    let reason = reason.trim().to_owned();
    ensure!(!reason.is_empty(), "--reason is empty: say why");
    ensure!(reason.len() <= 4096, "--reason is longer than 4096 bytes");
    let session = Session::load()?;
    let trust = fetch_trust(&session, tenant).await?;
    let root = trust.root.as_ref().with_context(|| {
        format!(
            "tenant {tenant} has no trust root yet: run `bulwark tenant init --tenant {tenant}`"
        )
    })?;
    let current = trust.freeze_state();
    ensure!(
        frozen || current.frozen,
        "tenant {tenant} is not frozen (sequence {})",
        current.sequence
    );
    let store = KeyStore::open_default()?;
    let mut unlocker = Unlocker::new();
    let keys = match key {
        Some(name) => {
            let info = store.info(name)?;
            let Some(root_key) = root.keys.iter().find(|k| k.key == info.public_key) else {
                bail!("key {name} is not one of tenant {tenant}'s root keys");
            };
            if root_key.holder == Holder::Msp && root.threshold() > 1 {
                bail!(
                    "key {name} is an MSP root key: only a customer-held root key freezes alone; \
                     otherwise {} root keys must sign (leave out --key to use those held here)",
                    root.threshold()
                );
            }
            (vec![unlocker.unlock(&store, name)?], true)
        }
        None => held_signing_keys(&store, root, &mut unlocker)?,
    };
    let (keys, complete) = keys;
    let keys: Vec<&SigningKey> = keys.iter().collect();
    if !complete {
        let statement = FreezeStatement {
            tenant: root.tenant.clone(),
            sequence: current.sequence + 1,
            frozen,
            reason,
        };
        let mut signed = Signed::new(&statement);
        for key in &keys {
            signed.sign(key);
        }
        let what = if frozen { "A freeze" } else { "An unfreeze" };
        propose(
            &session,
            tenant,
            &signed,
            &format!("{what} (sequence {})", statement.sequence),
            keys.len(),
            root.threshold(),
            otp,
        )
        .await?;
        return Ok(());
    }
    let (statement, signed) = sign_freeze(root, current, frozen, reason, &keys)?;
    post_envelope(&session, tenant, "freeze", &signed, otp)
        .await
        .context("publishing the freeze statement")?;
    if frozen {
        println!(
            "Tenant {tenant} is frozen (sequence {}): its agents refuse every job from the moment \
             they receive this, until the root threshold unfreezes it.",
            statement.sequence
        );
    } else {
        println!(
            "Tenant {tenant} is unfrozen (sequence {}): its agents accept jobs again under the policy.",
            statement.sequence
        );
    }
    Ok(())
}

/// The next freeze (or unfreeze) statement after `current`, signed by
/// `keys` and checked as an agent would check it.
fn sign_freeze(
    root: &TrustRoot,
    current: FreezeState,
    frozen: bool,
    reason: String,
    keys: &[&SigningKey],
) -> Result<(FreezeStatement, Signed)> {
    let statement = FreezeStatement {
        tenant: root.tenant.clone(),
        sequence: current.sequence + 1,
        frozen,
        reason,
    };
    let mut signed = Signed::new(&statement);
    for key in keys {
        signed.sign(key);
    }
    current
        .apply(root, &signed, &Limits::default())
        .map_err(refused("the freeze statement"))?;
    Ok((statement, signed))
}

// ---------------------------------------------------------------------------
// Root rotation
// ---------------------------------------------------------------------------

/// What `tenant rotate-root` was asked for.
#[derive(Debug, Default)]
pub(crate) struct RotationAsk<'a> {
    /// The tenant's name (new keys are named after it).
    pub tenant: &'a str,
    pub threshold: Option<u32>,
    pub new_root_keys: u32,
    pub keep: &'a [String],
    pub drop: &'a [String],
    pub customers: &'a [PublicKey],
}

/// The next root's key set, resolved against the current root and checked
/// before any key is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RotationPlan {
    pub version: u64,
    pub threshold: u32,
    /// Keys of the current root that stay, in its order.
    pub kept: Vec<RootKey>,
    /// Keys of the current root that go.
    pub dropped: Vec<RootKey>,
    /// MSP keys to create on this machine: `root-<tenant>-<version>-<i>`.
    pub new_names: Vec<String>,
    /// Customer-held keys to add.
    pub customers: Vec<RootKey>,
}

impl RotationPlan {
    /// The next root, once the new keys exist (`created`: name and public key,
    /// in `new_names` order).
    pub fn root(&self, current: &TrustRoot, created: &[(String, PublicKey)]) -> TrustRoot {
        let keys = self
            .kept
            .iter()
            .cloned()
            .chain(created.iter().map(|(name, key)| RootKey {
                key: key.clone(),
                holder: Holder::Msp,
                name: name.clone(),
            }))
            .chain(self.customers.iter().cloned())
            .collect();
        TrustRoot {
            tenant: current.tenant.clone(),
            version: self.version,
            threshold: self.threshold,
            keys,
        }
    }
}

/// Resolves and checks a rotation: which keys stay, go and come, the new
/// threshold, and that this machine holds the current root's threshold and
/// (with the keys it will create) the new one's. `local_name` names the
/// local key holding a public key, if any. Pure: nothing is created here.
pub(crate) fn plan_rotation(
    current: &TrustRoot,
    ask: &RotationAsk<'_>,
    local_name: &dyn Fn(&PublicKey) -> Option<String>,
) -> Result<RotationPlan> {
    let limits = Limits::default();
    ensure!(
        ask.new_root_keys <= 16,
        "--new-root-keys must be at most 16"
    );
    let version = current.version + 1;
    // A name given on the command line: the root's name for a key, or the
    // name of the local key holding it.
    let find = |name: &str, flag: &str| -> Result<usize> {
        let matches: Vec<usize> = current
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.name == name || local_name(&k.key).as_deref() == Some(name))
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => bail!(
                "{flag} {name}: root version {} has no key of that name (its keys: {})",
                current.version,
                current
                    .keys
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => bail!(
                "{flag} {name}: several keys of root version {} have that name",
                current.version
            ),
        }
    };
    let mut keep = vec![ask.keep.is_empty(); current.keys.len()];
    for name in ask.keep {
        keep[find(name, "--keep")?] = true;
    }
    for name in ask.drop {
        keep[find(name, "--drop")?] = false;
    }
    let mut kept: Vec<RootKey> = Vec::new();
    let mut dropped: Vec<RootKey> = Vec::new();
    for (key, keep) in current.keys.iter().zip(keep) {
        if keep {
            kept.push(key.clone());
        } else {
            dropped.push(key.clone());
        }
    }

    let mut customers: Vec<RootKey> = Vec::new();
    for key in ask.customers {
        if let Some(existing) = current.keys.iter().find(|k| k.key == *key) {
            bail!(
                "--add-customer-key {}: it is already root key {} (keep or drop it with --keep/--drop)",
                public_hex(key),
                existing.name
            );
        }
        ensure!(
            !customers.iter().any(|c| c.key == *key),
            "--add-customer-key {} is given twice",
            public_hex(key)
        );
        customers.push(RootKey {
            key: key.clone(),
            holder: Holder::Customer,
            name: format!("customer-{version}-{}", customers.len() + 1),
        });
    }
    let new_names: Vec<String> = (1..=ask.new_root_keys)
        .map(|i| format!("root-{}-{version}-{i}", ask.tenant))
        .collect();

    let total = kept.len() + new_names.len() + customers.len();
    ensure!(
        total >= 1,
        "the new root would have no keys: keep some or add some with --new-root-keys"
    );
    ensure!(
        total <= limits.max_root_keys,
        "the new root would have {total} keys; a root holds at most {}",
        limits.max_root_keys
    );
    let threshold = ask.threshold.unwrap_or(current.threshold);
    let need = usize::try_from(threshold).unwrap_or(usize::MAX);
    ensure!(threshold >= 1, "--threshold must be at least 1");
    ensure!(
        need <= total,
        "{} of {threshold} needs at least {threshold} keys, but the new root would have {total}{}",
        if ask.threshold.is_some() {
            "a threshold"
        } else {
            "the current threshold"
        },
        if ask.threshold.is_some() {
            ""
        } else {
            ": pass --threshold"
        }
    );
    ensure!(
        !(new_names.is_empty()
            && customers.is_empty()
            && dropped.is_empty()
            && threshold == current.threshold),
        "nothing would change: say what the new root is with --new-root-keys, --add-customer-key, \
         --drop, --keep or --threshold"
    );

    // Whether this machine holds the current root's threshold and the new
    // one's is `rotate_root`'s question: what it cannot sign becomes a
    // proposal the other key holders co-sign.
    Ok(RotationPlan {
        version,
        threshold,
        kept,
        dropped,
        new_names,
        customers,
    })
}

/// The keys that sign a rotation: a threshold of the current root and one of
/// the next, from those `held` here, a key in both counting for both.
pub(crate) fn rotation_signers(
    current: &TrustRoot,
    next: &TrustRoot,
    held: &dyn Fn(&PublicKey) -> bool,
) -> Result<Vec<PublicKey>> {
    let in_next = |k: &PublicKey| next.keys.iter().any(|n| n.key == *k);
    let mut old: Vec<&PublicKey> = current.public_keys().filter(|k| held(k)).collect();
    // Keys in both roots first: fewer keys to unlock.
    old.sort_by_key(|k| !in_next(k));
    ensure!(
        old.len() >= current.threshold(),
        "this machine holds {} of the {} keys the current root's threshold needs",
        old.len(),
        current.threshold()
    );
    let mut chosen: Vec<PublicKey> = old.into_iter().take(current.threshold()).cloned().collect();
    let mut new: Vec<&PublicKey> = next.public_keys().filter(|k| held(k)).collect();
    new.sort_by_key(|k| !chosen.contains(k));
    ensure!(
        new.len() >= next.threshold(),
        "this machine holds {} of the {} keys the new root's threshold needs",
        new.len(),
        next.threshold()
    );
    for key in new.into_iter().take(next.threshold()) {
        if !chosen.contains(key) {
            chosen.push(key.clone());
        }
    }
    Ok(chosen)
}

/// A signed rotation, and what goes with it, checked as agents check them.
pub(crate) struct Rotation {
    pub root: Signed,
    /// The current policy's content as the next version, signed by both
    /// thresholds: valid under the current root when published (before the
    /// root) and under the new one after.
    pub policy: Option<(Policy, Signed)>,
    /// The kill switch's current state as the next sequence, when the stored
    /// statement would not verify against the new root (signed by keys it drops).
    pub freeze: Option<(FreezeStatement, Signed)>,
}

/// Signs `next` with `keys` (thresholds of the current and next roots), and
/// re-signs the policy and, if the new root would not verify it, the freeze
/// statement; each is checked against both roots before it leaves here.
pub(crate) fn sign_rotation(
    current: &TrustRoot,
    next: &TrustRoot,
    policy: Option<&Policy>,
    freeze: Option<&FreezeView>,
    keys: &[&SigningKey],
    now: u64,
) -> Result<Rotation> {
    sign_rotation_with(current, next, policy, freeze, keys, now, true)
}

/// [`sign_rotation`]; with `complete` false, `keys` are only those held
/// here (a proposal others co-sign), so the thresholds are not checked.
fn sign_rotation_with(
    current: &TrustRoot,
    next: &TrustRoot,
    policy: Option<&Policy>,
    freeze: Option<&FreezeView>,
    keys: &[&SigningKey],
    now: u64,
    complete: bool,
) -> Result<Rotation> {
    let limits = Limits::default();
    let sign = |signed: &mut Signed| {
        for key in keys {
            signed.sign(key);
        }
    };
    let mut root = Signed::new(next);
    sign(&mut root);
    if complete {
        let verified = current
            .verify_rotation(&root, &limits)
            .map_err(refused("the new trust root"))?;
        ensure!(
            verified == *next,
            "the new trust root reads back differently"
        );
    }

    let policy = match policy {
        None => None,
        Some(held) => {
            let mut statement = held.clone();
            statement.version += 1;
            let mut signed = Signed::new(&statement);
            sign(&mut signed);
            if complete {
                Policy::verify_update(current, Some(held), &signed, now, &limits)
                    .map_err(refused("the re-signed policy (under the current root)"))?;
                Policy::verify_update(next, Some(held), &signed, now, &limits)
                    .map_err(refused("the re-signed policy (under the new root)"))?;
            }
            Some((statement, signed))
        }
    };

    let freeze = match freeze {
        Some(view)
            if FreezeState::default()
                .apply(next, &view.signed, &limits)
                .is_err() =>
        {
            let held = FreezeState {
                sequence: view.statement.sequence,
                frozen: view.statement.frozen,
            };
            let suffix = format!(" (re-signed for root version {})", next.version);
            let mut reason = view.statement.reason.clone();
            if reason.len() + suffix.len() <= 4096 {
                reason.push_str(&suffix);
            }
            let statement = FreezeStatement {
                tenant: current.tenant.clone(),
                sequence: held.sequence + 1,
                frozen: held.frozen,
                reason,
            };
            let mut signed = Signed::new(&statement);
            sign(&mut signed);
            if complete {
                held.apply(current, &signed, &limits).map_err(refused(
                    "the re-signed freeze statement (under the current root)",
                ))?;
                held.apply(next, &signed, &limits).map_err(refused(
                    "the re-signed freeze statement (under the new root)",
                ))?;
                FreezeState::default()
                    .apply(next, &signed, &limits)
                    .map_err(refused(
                        "the re-signed freeze statement (under the new root)",
                    ))?;
            }
            Some((statement, signed))
        }
        _ => None,
    };
    Ok(Rotation {
        root,
        policy,
        freeze,
    })
}

async fn rotate_root(args: RotateRootArgs) -> Result<()> {
    let RotateRootArgs {
        tenant,
        threshold,
        new_root_keys,
        keep,
        drop,
        add_customer_keys,
        otp,
        json,
    } = args;
    let otp = otp.as_deref();

    // 1. Everything that can be refused is refused before anything is created.
    let customers = add_customer_keys
        .iter()
        .map(|text| parse_public_key(text).with_context(|| format!("--add-customer-key {text}")))
        .collect::<Result<Vec<_>>>()?;
    let store = KeyStore::open_default()?;
    let session = Session::load()?;
    let trust = fetch_trust(&session, &tenant).await?;
    let current = trust.root.as_ref().with_context(|| {
        format!(
            "tenant {tenant} has no trust root yet: run `bulwark tenant init --tenant {tenant}`"
        )
    })?;
    let now = unix_now();
    if let Some(policy) = &trust.policy {
        ensure!(
            policy.expires_at > now,
            "tenant {tenant}'s policy expired {}: the rotation re-signs it, so sign a new one \
             first (`bulwark policy show --tenant {tenant} --toml > policy.toml`, set \
             expires_in_days, `bulwark policy sign`), then rotate",
            date_text(policy.expires_at)
        );
    }
    if let Some(freeze) = &trust.freeze {
        ensure!(
            freeze.verified,
            "tenant {tenant}'s freeze statement (sequence {}) does not verify against its \
             current root: the server refuses changes until that is resolved",
            freeze.statement.sequence
        );
    }
    let local = store.list()?;
    let local_name = |key: &PublicKey| {
        local
            .iter()
            .find(|k| k.public_key == *key)
            .map(|k| k.name.clone())
    };
    let plan = plan_rotation(
        current,
        &RotationAsk {
            tenant: &tenant,
            threshold,
            new_root_keys,
            keep: &keep,
            drop: &drop,
            customers: &customers,
        },
        &local_name,
    )?;
    // New keys: reuse those a failed earlier run made for this tenant.
    let role = format!("root:{}", trust.tenant_id);
    let mut slots: Vec<RootSlot> = Vec::new();
    for name in &plan.new_names {
        if store.exists(name)? {
            let info = store.info(name)?;
            ensure!(
                info.role == role,
                "a key named {name} already exists for something else (role {}); move {} away first",
                info.role,
                info.path.display()
            );
            ensure!(
                !current.keys.iter().any(|k| k.key == info.public_key),
                "key {name} is already a key of the current root"
            );
            slots.push(RootSlot::Reuse(info));
        } else {
            store.check_new(name, &role)?;
            slots.push(RootSlot::Create(name.clone()));
        }
    }

    // 2. New keys (one passphrase for all), then every signer unlocked.
    let mut unlocker = Unlocker::new();
    let mut created: Vec<KeyInfo> = Vec::new();
    let mut unlocked: Vec<(PublicKey, SigningKey)> = Vec::new();
    let passphrase = if slots.iter().any(|s| matches!(s, RootSlot::Create(_))) {
        Some(new_passphrase(&mut unlocker, json, "new root keys")?)
    } else {
        None
    };
    let mut new_keys: Vec<(String, PublicKey)> = Vec::new();
    for slot in slots {
        let (name, key) = match slot {
            RootSlot::Reuse(info) => {
                let key = unlocker.unlock(&store, &info.name)?;
                (info.name, key)
            }
            RootSlot::Create(name) => {
                let passphrase = passphrase
                    .as_ref()
                    .context("no passphrase for the new root keys")?;
                let (info, key) = store.create_with(&name, &role, passphrase)?;
                created.push(info);
                (name, key)
            }
        };
        new_keys.push((name, public_of(&key)));
        unlocked.push((public_of(&key), key));
    }
    let next = plan.root(current, &new_keys);
    let held =
        |key: &PublicKey| unlocked.iter().any(|(k, _)| k == key) || local_name(key).is_some();
    let Ok(signers) = rotation_signers(current, &next, &held) else {
        // Not both thresholds here: sign the root and its companions with
        // every key of either root held here, and propose them together.
        let mut keys: Vec<SigningKey> = Vec::new();
        let mut signed_by: Vec<PublicKey> = Vec::new();
        for public in current.public_keys().chain(next.public_keys()) {
            if signed_by.contains(public) || !held(public) {
                continue;
            }
            let key = match unlocked.iter().find(|(k, _)| k == public) {
                Some((_, key)) => key.clone(),
                None => {
                    let name = local_name(public).context("a signer is not held here")?;
                    unlocker.unlock(&store, &name)?
                }
            };
            signed_by.push(public.clone());
            keys.push(key);
        }
        let keys: Vec<&SigningKey> = keys.iter().collect();
        let rotation = sign_rotation_with(
            current,
            &next,
            trust.policy.as_ref(),
            trust.freeze.as_ref(),
            &keys,
            now,
            false,
        )?;
        let have = current
            .public_keys()
            .filter(|k| signed_by.contains(k))
            .count();
        let mut body = json!({
            "envelope": base64::engine::general_purpose::STANDARD.encode(rotation.root.to_bytes()),
        });
        if let Some((_, signed)) = &rotation.policy {
            body["policy_envelope"] = base64::engine::general_purpose::STANDARD
                .encode(signed.to_bytes())
                .into();
        }
        if let Some((_, signed)) = &rotation.freeze {
            body["freeze_envelope"] = base64::engine::general_purpose::STANDARD
                .encode(signed.to_bytes())
                .into();
        }
        let what = format!(
            "Trust root version {} ({} of {} keys{})",
            next.version,
            next.threshold,
            next.keys.len(),
            if rotation.policy.is_some() {
                ", with the current policy re-signed"
            } else {
                ""
            }
        );
        if !created.is_empty() && !json {
            for info in &created {
                println!(
                    "Created root key {} ({}): {}",
                    info.name,
                    info.public_key.id(),
                    info.path.display()
                );
            }
        }
        let id = propose_body(
            &session,
            &tenant,
            &body,
            &what,
            have,
            current.threshold(),
            otp,
        )
        .await?;
        if json {
            return print_json(&json!({
                "tenant": tenant,
                "proposal": id,
                "root": root_json(&next, &store.list()?),
                "created_keys": created.iter().map(KeyInfo::to_json).collect::<Vec<_>>(),
                "policy_version": rotation.policy.as_ref().map(|(p, _)| p.version),
                "freeze_resigned": rotation.freeze.as_ref().map(|(s, _)| s.sequence),
            }));
        }
        return Ok(());
    };
    let mut keys: Vec<SigningKey> = Vec::new();
    for public in &signers {
        let key = match unlocked.iter().find(|(k, _)| k == public) {
            Some((_, key)) => key.clone(),
            None => {
                let name = local_name(public).context("a signer is not held here")?;
                unlocker.unlock(&store, &name)?
            }
        };
        keys.push(key);
    }
    let keys: Vec<&SigningKey> = keys.iter().collect();
    let rotation = sign_rotation(
        current,
        &next,
        trust.policy.as_ref(),
        trust.freeze.as_ref(),
        &keys,
        now,
    )?;

    // 3. Publish: the policy and freeze statement first (valid under the
    // current root, and under the new one), then the root. The server and
    // the agents check a stored policy against the latest root, so at no
    // moment does the tenant hold a policy its latest root did not sign.
    if let Some((policy, signed)) = &rotation.policy {
        post_envelope(&session, &tenant, "policy", signed, otp)
            .await
            .with_context(|| {
                format!(
                    "publishing policy version {} (the current policy, signed by both roots); \
                     nothing was rotated: run this command again",
                    policy.version
                )
            })?;
    }
    if let Some((statement, signed)) = &rotation.freeze {
        post_envelope(&session, &tenant, "freeze", signed, otp)
            .await
            .with_context(|| {
                format!(
                    "publishing freeze statement {} (the kill switch as it is, signed by both \
                     roots); the root was not rotated: run this command again",
                    statement.sequence
                )
            })?;
    }
    post_envelope(&session, &tenant, "roots", &rotation.root, otp)
        .await
        .context("publishing the new trust root; it was not rotated: run this command again")?;

    // 4. What the server serves now, verified from the first root.
    let after = fetch_trust(&session, &tenant)
        .await
        .context("reading back the rotated trust")?;
    let root = after
        .root
        .as_ref()
        .context("the server does not show a trust root")?;
    ensure!(
        *root == next,
        "the server shows root version {} instead of the one just published",
        root.version
    );
    let local = store.list()?;
    let policy_version = after.policy.as_ref().map(|p| p.version);
    if json {
        return print_json(&json!({
            "tenant": tenant,
            "tenant_id": after.tenant_id,
            "root_fingerprint": after.fingerprint.map(hex::encode),
            "previous_root": root_json(current, &local),
            "root": root_json(root, &local),
            "dropped_keys": plan.dropped.iter().map(|k| json!({
                "name": k.name,
                "holder": holder_name(k.holder),
                "key_id": hex::encode(k.key.id().0),
            })).collect::<Vec<_>>(),
            "created_keys": created.iter().map(KeyInfo::to_json).collect::<Vec<_>>(),
            "policy_version": policy_version,
            "freeze_resigned": rotation.freeze.as_ref().map(|(s, _)| s.sequence),
        }));
    }
    println!(
        "Tenant {tenant}: trust root version {} published, signed by {} of the {} keys of version \
         {} and {} of its own {}.",
        root.version,
        current.threshold,
        current.keys.len(),
        current.version,
        root.threshold,
        root.keys.len()
    );
    println!();
    println!(
        "Root version {}: {} of {} keys must sign a policy or a new root.",
        root.version,
        root.threshold,
        root.keys.len()
    );
    for key in &root.keys {
        let status = if created.iter().any(|c| c.public_key == key.key) {
            "new"
        } else if plan.customers.iter().any(|c| c.key == key.key) {
            "added"
        } else {
            "kept"
        };
        let where_ = local.iter().find(|k| k.public_key == key.key).map_or_else(
            || "not on this machine".to_owned(),
            |k| format!("on this machine: {}", k.path.display()),
        );
        println!(
            "  {:<24} {:<8} {} {status:<5}  {where_}",
            key.name,
            holder_name(key.holder),
            key.key.id()
        );
    }
    for key in &plan.dropped {
        println!(
            "  {:<24} {:<8} {} dropped: signs nothing for this tenant once agents hold version {}",
            key.name,
            holder_name(key.holder),
            key.key.id(),
            root.version
        );
    }
    println!();
    if let Some(version) = policy_version {
        println!(
            "Policy version {version}: the same policy, re-signed so the new root's keys vouch for it."
        );
    }
    if let Some((statement, _)) = &rotation.freeze {
        println!(
            "Kill switch re-signed as sequence {} ({}).",
            statement.sequence,
            if statement.frozen {
                "still FROZEN"
            } else {
                "not frozen"
            }
        );
    }
    println!(
        "Agents take the new root over their normal connection (the root fingerprint they \
         pinned, {}, does not change): nothing to reinstall.",
        after
            .fingerprint
            .map_or_else(String::new, |f| grouped_hex(&f))
    );
    if !plan.dropped.is_empty() {
        println!(
            "Keep the dropped key files until every agent reports root version {} (`bulwark \
             policy show` shows the server's view), then destroy them.",
            root.version
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Showing trust
// ---------------------------------------------------------------------------

pub(crate) fn holder_name(holder: Holder) -> &'static str {
    match holder {
        Holder::Msp => "msp",
        Holder::Customer => "customer",
    }
}

fn parse_holder(text: &str) -> Result<Holder> {
    match text {
        "msp" => Ok(Holder::Msp),
        "customer" => Ok(Holder::Customer),
        other => bail!("unknown holder {other:?}: use \"msp\" or \"customer\""),
    }
}

pub(crate) fn public_hex(key: &PublicKey) -> String {
    match key {
        PublicKey::Ed25519(bytes) => hex::encode(bytes),
        // A passkey: as `GET /api/v1/passkeys` gives it, marked so the
        // policy TOML round-trips it (`parse_operator_key`).
        PublicKey::WebAuthn(_) => format!(
            "{PASSKEY_PREFIX}{}",
            base64::engine::general_purpose::STANDARD
                .encode(bulwark_protocol::codec::to_canonical(key))
        ),
        _ => "(unsupported key type)".to_owned(),
    }
}

/// How the policy TOML writes a passkey's public key.
const PASSKEY_PREFIX: &str = "webauthn:";

/// An approval passkey's policy key: base64 of the canonical CBOR of
/// `PublicKey::WebAuthn`, under the approval RP id (agents accept no other).
pub(crate) fn parse_passkey_key(text: &str) -> Result<PublicKey> {
    let text = text.trim();
    let text = text.strip_prefix(PASSKEY_PREFIX).unwrap_or(text);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .context("a passkey public key is base64 of its policy key's canonical CBOR")?;
    let key: PublicKey = bulwark_protocol::codec::from_canonical(&bytes)
        .map_err(|e| anyhow!("not a policy public key: {e}"))?;
    match &key {
        PublicKey::WebAuthn(credential) => ensure!(
            credential.rp_id == bulwark_policy::APPROVAL_RP_ID,
            "that passkey is bound to {:?}: only approval passkeys ({}, made by `bulwark keys \
             add-passkey`) approve jobs; a console sign-in passkey never does",
            credential.rp_id,
            bulwark_policy::APPROVAL_RP_ID
        ),
        _ => anyhow::bail!("that is not a passkey's key: use --public-key for an Ed25519 key"),
    }
    Ok(key)
}

/// An operator key in the policy TOML: Ed25519 hex, or `webauthn:BASE64`.
fn parse_operator_key(text: &str) -> Result<PublicKey> {
    if text.trim().starts_with(PASSKEY_PREFIX) {
        parse_passkey_key(text)
    } else {
        parse_public_key(text)
    }
}

/// One of this machine's approval passkeys, by name: the public key the
/// authenticator gave at `bulwark keys add-passkey`, never the server's word.
async fn own_passkey_key(name: &str) -> Result<PublicKey> {
    let key = crate::passkeys::load(name)?.key();
    eprintln!("Passkey {name:?}: key id {}", grouped_hex(&key.id().0));
    Ok(key)
}

/// An Ed25519 public key in hex, checked to be a valid point.
pub(crate) fn parse_public_key(text: &str) -> Result<PublicKey> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("a public key is 64 hex characters (32 bytes)")?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| anyhow!("{text} is not a valid Ed25519 public key"))?;
    Ok(PublicKey::Ed25519(bytes))
}

/// Hex in groups of four, for people to compare aloud.
pub(crate) fn grouped_hex(bytes: &[u8]) -> String {
    let text = hex::encode(bytes);
    text.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn date_text(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn window_days(window: &MaintenanceWindow) -> Vec<String> {
    WEEKDAYS
        .iter()
        .enumerate()
        .filter(|(i, _)| window.weekdays & (1 << i) != 0)
        .map(|(_, d)| (*d).to_owned())
        .collect()
}

fn minute_text(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn local_key_name<'a>(local: &'a [KeyInfo], key: &PublicKey) -> Option<&'a str> {
    local
        .iter()
        .find(|k| k.public_key == *key)
        .map(|k| k.name.as_str())
}

fn root_json(root: &TrustRoot, local: &[KeyInfo]) -> Value {
    json!({
        "version": root.version,
        "threshold": root.threshold,
        "keys": root.keys.iter().map(|k| json!({
            "name": k.name,
            "holder": holder_name(k.holder),
            "key_id": hex::encode(k.key.id().0),
            "public_key": public_hex(&k.key),
            "local_key": local_key_name(local, &k.key),
        })).collect::<Vec<_>>(),
    })
}

fn trust_json(tenant: &str, trust: &Trust, local: &[KeyInfo], now: u64) -> Value {
    let policy = trust.policy.as_ref().map(|p| {
        json!({
            "version": p.version,
            "expires_at": p.expires_at,
            "expired": p.expires_at <= now,
            "operators": p.operators.iter().map(|o| json!({
                "name": o.name,
                "holder": holder_name(o.holder),
                "key_id": hex::encode(o.key.id().0),
                "public_key": public_hex(&o.key),
                "local_key": local_key_name(local, &o.key),
                "classes": o.classes.iter().map(|c| class_name(*c)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "quorums": p.quorums.iter().map(|q| json!({
                "class": class_name(q.class),
                "signers": q.signers,
                "customer_required": q.customer_required,
                "in_window_only": q.in_window_only,
            })).collect::<Vec<_>>(),
            "fan_out_limit": p.fan_out_limit,
            "allowed_scripts": p.allowed_scripts.iter().map(|h| hex::encode(h.0)).collect::<Vec<_>>(),
            "maintenance_windows": p.maintenance_windows.iter().map(|w| json!({
                "days": window_days(w),
                "start": minute_text(w.start_minute),
                "duration_minutes": w.duration_minutes,
            })).collect::<Vec<_>>(),
            "warnings": policy_warnings(p, now),
        })
    });
    let freeze = trust.freeze.as_ref().map(|f| {
        json!({
            "sequence": f.statement.sequence,
            "frozen": f.statement.frozen,
            "reason": f.statement.reason,
            "verified": f.verified,
        })
    });
    json!({
        "tenant": tenant,
        "tenant_id": trust.tenant_id,
        "root_fingerprint": trust.fingerprint.map(hex::encode),
        "root": trust.root.as_ref().map(|r| root_json(r, local)),
        "policy": policy,
        "freeze": freeze,
    })
}

fn indented(out: &mut String, headers: &[&str], rows: &[Vec<Cell>]) {
    for line in render_table(headers, rows, false).lines() {
        let _ = writeln!(out, "  {line}");
    }
}

fn render_trust(tenant: &str, trust: &Trust, local: &[KeyInfo], now: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Tenant {tenant} (id {})", trust.tenant_id);
    let (Some(root), Some(fingerprint)) = (&trust.root, &trust.fingerprint) else {
        let _ = writeln!(
            out,
            "No trust root yet: run `bulwark tenant init --tenant {tenant}`."
        );
        return out;
    };
    let _ = writeln!(
        out,
        "\nRoot version {}: {} of {} keys must sign (verified from the first root)",
        root.version,
        root.threshold,
        root.keys.len()
    );
    let _ = writeln!(out, "  Fingerprint  {}", grouped_hex(fingerprint));
    let rows: Vec<Vec<Cell>> = root
        .keys
        .iter()
        .map(|k| {
            vec![
                k.name.as_str().into(),
                holder_name(k.holder).into(),
                k.key.id().to_string().into(),
                local_key_name(local, &k.key).unwrap_or("-").into(),
            ]
        })
        .collect();
    indented(
        &mut out,
        &["NAME", "HOLDER", "KEY ID", "ON THIS MACHINE"],
        &rows,
    );

    match &trust.policy {
        None => {
            let _ = writeln!(
                out,
                "\nNo policy yet: agents refuse every job. Run `bulwark tenant init --tenant {tenant}`."
            );
        }
        Some(policy) => render_policy(&mut out, policy, local, now),
    }

    let _ = writeln!(out);
    match &trust.freeze {
        None => {
            let _ = writeln!(out, "Kill switch: not frozen (never used).");
        }
        Some(f) => {
            let state = if f.statement.frozen {
                "FROZEN: agents refuse every job"
            } else {
                "not frozen"
            };
            let _ = writeln!(
                out,
                "Kill switch: {state} (sequence {}, reason: {}){}",
                f.statement.sequence,
                f.statement.reason,
                if f.verified {
                    ""
                } else {
                    " [WARNING: this statement does not verify against the current root]"
                }
            );
        }
    }
    out
}

fn render_policy(out: &mut String, policy: &Policy, local: &[KeyInfo], now: u64) {
    let remaining = if policy.expires_at > now {
        format!(
            "in {}",
            crate::operator::human_duration(policy.expires_at - now)
        )
    } else {
        "EXPIRED: agents refuse every job".to_owned()
    };
    let _ = writeln!(
        out,
        "\nPolicy version {} (signed by the root), expires {} ({remaining})",
        policy.version,
        date_text(policy.expires_at)
    );
    let _ = writeln!(out, "\nOperator keys");
    if policy.operators.is_empty() {
        let _ = writeln!(out, "  (none: nobody can sign jobs)");
    } else {
        let rows: Vec<Vec<Cell>> = policy
            .operators
            .iter()
            .map(|o| {
                let classes = if ALL_CLASSES.iter().all(|c| o.classes.contains(c)) {
                    "all".to_owned()
                } else {
                    o.classes
                        .iter()
                        .map(|c| class_name(*c))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                vec![
                    o.name.as_str().into(),
                    holder_name(o.holder).into(),
                    o.key.id().to_string().into(),
                    local_key_name(local, &o.key).unwrap_or("-").into(),
                    classes.into(),
                ]
            })
            .collect();
        indented(
            out,
            &["NAME", "HOLDER", "KEY ID", "ON THIS MACHINE", "CLASSES"],
            &rows,
        );
    }
    let _ = writeln!(out, "\nQuorums (distinct signers a job needs)");
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let rows: Vec<Vec<Cell>> = ALL_CLASSES
        .iter()
        .map(|class| match policy.quorum(*class) {
            Some(q) => vec![
                class_name(*class).into(),
                q.signers.to_string().into(),
                yes_no(q.customer_required).into(),
                yes_no(q.in_window_only).into(),
            ],
            None => vec![
                class_name(*class).into(),
                "not permitted".into(),
                "-".into(),
                "-".into(),
            ],
        })
        .collect();
    indented(
        out,
        &["CLASS", "SIGNERS", "CUSTOMER CO-SIGNER", "WINDOW ONLY"],
        &rows,
    );
    let _ = writeln!(
        out,
        "\nFan-out limit: {} devices (a job on more needs one more signer)",
        policy.fan_out_limit
    );
    if policy.allowed_scripts.is_empty() {
        let _ = writeln!(out, "Allowed scripts: none");
    } else {
        let _ = writeln!(out, "Allowed scripts (SHA-256):");
        for hash in &policy.allowed_scripts {
            let _ = writeln!(out, "  {}", hex::encode(hash.0));
        }
    }
    if policy.maintenance_windows.is_empty() {
        let _ = writeln!(out, "Maintenance windows (UTC): none");
    } else {
        let _ = writeln!(out, "Maintenance windows (UTC):");
        for w in &policy.maintenance_windows {
            let _ = writeln!(
                out,
                "  {} from {} for {} min",
                window_days(w).join(","),
                minute_text(w.start_minute),
                w.duration_minutes
            );
        }
    }
    for warning in policy_warnings(policy, now) {
        let _ = writeln!(out, "Note: {warning}.");
    }
}

// ---------------------------------------------------------------------------
// The editable TOML form
// ---------------------------------------------------------------------------

/// A policy as people edit it: names instead of enum numbers, hex keys,
/// days and "HH:MM" for windows, a lifetime in days instead of a timestamp.
/// Tenant and version are not in it: `policy sign` fills them in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyDoc {
    pub expires_in_days: u64,
    pub fan_out_limit: u32,
    #[serde(default)]
    pub allowed_scripts: Vec<String>,
    #[serde(default)]
    pub maintenance_windows: Vec<WindowDoc>,
    /// By class name; a class absent here is not permitted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quorums: BTreeMap<String, QuorumDoc>,
    #[serde(default)]
    pub operators: Vec<OperatorDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuorumDoc {
    pub signers: u32,
    #[serde(default)]
    pub customer_required: bool,
    #[serde(default)]
    pub in_window_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OperatorDoc {
    pub name: String,
    pub public_key: String,
    /// "msp" or "customer".
    pub holder: String,
    pub classes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowDoc {
    /// "mon" … "sun".
    pub days: Vec<String>,
    /// "HH:MM", UTC.
    pub start: String,
    pub duration_minutes: u16,
}

pub(crate) fn policy_to_doc(policy: &Policy, now: u64) -> PolicyDoc {
    PolicyDoc {
        expires_in_days: policy.expires_at.saturating_sub(now).div_ceil(DAY),
        fan_out_limit: policy.fan_out_limit,
        allowed_scripts: policy
            .allowed_scripts
            .iter()
            .map(|h| hex::encode(h.0))
            .collect(),
        maintenance_windows: policy
            .maintenance_windows
            .iter()
            .map(|w| WindowDoc {
                days: window_days(w),
                start: minute_text(w.start_minute),
                duration_minutes: w.duration_minutes,
            })
            .collect(),
        quorums: policy
            .quorums
            .iter()
            .map(|q| {
                (
                    class_name(q.class).to_owned(),
                    QuorumDoc {
                        signers: q.signers,
                        customer_required: q.customer_required,
                        in_window_only: q.in_window_only,
                    },
                )
            })
            .collect(),
        operators: policy
            .operators
            .iter()
            .map(|o| OperatorDoc {
                name: o.name.clone(),
                public_key: public_hex(&o.key),
                holder: holder_name(o.holder).to_owned(),
                classes: o
                    .classes
                    .iter()
                    .map(|c| class_name(*c).to_owned())
                    .collect(),
            })
            .collect(),
    }
}

pub(crate) fn doc_to_policy(
    doc: &PolicyDoc,
    tenant_id: &str,
    tenant_name: &str,
    version: u64,
    now: u64,
) -> Result<Policy> {
    ensure!(
        (1..=MAX_POLICY_DAYS).contains(&doc.expires_in_days),
        "expires_in_days must be between 1 and {MAX_POLICY_DAYS}"
    );
    let mut operators: Vec<OperatorKey> = Vec::new();
    for o in &doc.operators {
        let key =
            parse_operator_key(&o.public_key).with_context(|| format!("operator {:?}", o.name))?;
        ensure!(
            !o.name.trim().is_empty(),
            "an operator key has an empty name"
        );
        let classes = o
            .classes
            .iter()
            .map(|c| parse_class(c))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("operator {:?}", o.name))?;
        add_operator(
            &mut operators,
            OperatorKey {
                key,
                name: o.name.clone(),
                holder: parse_holder(&o.holder)
                    .with_context(|| format!("operator {:?}", o.name))?,
                classes,
            },
        )?;
    }
    let mut quorums = Vec::new();
    for (name, q) in &doc.quorums {
        let class = parse_class(name).context("in [quorums]")?;
        ensure!(q.signers >= 1, "{name} needs at least 1 signer");
        quorums.push(Quorum {
            class,
            signers: q.signers,
            customer_required: q.customer_required,
            in_window_only: q.in_window_only,
        });
    }
    quorums.sort_by_key(|q| q.class);
    let mut allowed_scripts = Vec::new();
    for text in &doc.allowed_scripts {
        let hash: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("allowed script {text:?} is not a SHA-256 in hex"))?;
        ensure!(
            !allowed_scripts.contains(&ScriptHash(hash)),
            "allowed script {text} is listed twice"
        );
        allowed_scripts.push(ScriptHash(hash));
    }
    let mut maintenance_windows = Vec::new();
    for w in &doc.maintenance_windows {
        let mut weekdays = 0u8;
        for day in &w.days {
            let index = WEEKDAYS
                .iter()
                .position(|d| d.eq_ignore_ascii_case(day.trim()))
                .with_context(|| {
                    format!("unknown day {day:?} in a maintenance window; use mon … sun")
                })?;
            weekdays |= 1 << index;
        }
        ensure!(weekdays != 0, "a maintenance window has no days");
        let start = parse_minute(&w.start)?;
        ensure!(
            (1..=1440).contains(&w.duration_minutes),
            "a maintenance window lasts 1 to 1440 minutes"
        );
        maintenance_windows.push(MaintenanceWindow {
            weekdays,
            start_minute: start,
            duration_minutes: w.duration_minutes,
        });
    }
    Ok(Policy {
        tenant: tenant_id.to_owned(),
        tenant_name: Some(tenant_name.to_owned()),
        version,
        expires_at: now + doc.expires_in_days * DAY,
        operators,
        quorums,
        fan_out_limit: doc.fan_out_limit,
        allowed_scripts,
        maintenance_windows,
    })
}

fn parse_minute(text: &str) -> Result<u16> {
    let parsed = text.trim().split_once(':').and_then(|(h, m)| {
        let h: u16 = h.parse().ok()?;
        let m: u16 = m.parse().ok()?;
        (h < 24 && m < 60).then_some(h * 60 + m)
    });
    parsed.with_context(|| format!("{text:?} is not a time of day as HH:MM (00:00 to 23:59)"))
}

/// The editable document, with a header saying what to do with it.
fn policy_toml(tenant: &str, tenant_id: &str, policy: &Policy, now: u64) -> Result<String> {
    let mut doc = policy_to_doc(policy, now);
    let quorums = std::mem::take(&mut doc.quorums);
    let body = toml::to_string_pretty(&doc).context("writing the policy as TOML")?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Policy of tenant {tenant} (id {tenant_id}), version {}, verified against its root.",
        policy.version
    );
    let _ = writeln!(
        out,
        "# Edit it, then sign and publish it as version {} with:",
        policy.version + 1
    );
    let _ = writeln!(out, "#   bulwark policy sign --tenant {tenant} --file FILE");
    let _ = writeln!(
        out,
        "# Classes: {}.",
        ALL_CLASSES.map(class_name).join(", ")
    );
    let _ = writeln!(
        out,
        "# A class absent from [quorums] is not permitted. Holders: \"msp\", \"customer\"."
    );
    let _ = writeln!(
        out,
        "# Windows: days mon … sun, start \"HH:MM\" in UTC. expires_in_days counts from signing."
    );
    out.push('\n');
    out.push_str(&body);
    // One line per class, in the classes' order: easier to read and edit
    // than the table-per-class the serializer would write.
    let _ = writeln!(out, "\n[quorums]");
    for class in ALL_CLASSES {
        if let Some(q) = quorums.get(class_name(class)) {
            let _ = writeln!(
                out,
                "{} = {{ signers = {}, customer_required = {}, in_window_only = {} }}",
                class_name(class),
                q.signers,
                q.customer_required,
                q.in_window_only
            );
        }
    }
    Ok(out)
}

fn read_small(path: &std::path::Path, limit: u64) -> Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    ensure!(
        len <= limit,
        "{} is larger than {limit} bytes",
        path.display()
    );
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000;

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand::rngs::OsRng)
    }

    fn rich_policy() -> Policy {
        let mut policy = default_policy(
            "0b6e0c8e-0000-4000-8000-000000000001",
            "acme",
            vec![msp_operator("alice", public_of(&key()))],
            NOW,
        );
        policy.operators.push(OperatorKey {
            key: public_of(&key()),
            name: "customer ciso".into(),
            holder: Holder::Customer,
            classes: vec![ActionClass::OpenAdminShell, ActionClass::RestoreBackup],
        });
        policy
            .quorums
            .retain(|q| q.class != ActionClass::UpdateAgent);
        if let Some(q) = policy
            .quorums
            .iter_mut()
            .find(|q| q.class == ActionClass::RestoreBackup)
        {
            q.customer_required = true;
            q.in_window_only = true;
        }
        policy.allowed_scripts = vec![ScriptHash([7; 32]), ScriptHash([1; 32])];
        policy.maintenance_windows = vec![
            MaintenanceWindow {
                weekdays: 0b0100_0001,
                start_minute: 22 * 60 + 30,
                duration_minutes: 180,
            },
            MaintenanceWindow {
                weekdays: 0b0001_1111,
                start_minute: 0,
                duration_minutes: 60,
            },
        ];
        policy.fan_out_limit = 7;
        policy
    }

    #[test]
    fn the_default_policy_is_what_a_security_officer_would_pick() {
        let operator = public_of(&key());
        let policy = default_policy(
            "t-1",
            "acme",
            vec![msp_operator("operator", operator.clone())],
            NOW,
        );
        assert_eq!(policy.tenant, "t-1");
        assert_eq!(policy.version, 1);
        assert_eq!(policy.expires_at, NOW + 365 * DAY);
        assert_eq!(policy.fan_out_limit, 25);
        assert!(policy.allowed_scripts.is_empty());
        assert!(policy.maintenance_windows.is_empty());
        assert_eq!(policy.operators.len(), 1);
        assert_eq!(policy.operators[0].key, operator);
        assert_eq!(policy.operators[0].holder, Holder::Msp);
        assert_eq!(policy.operators[0].classes, ALL_CLASSES.to_vec());
        let signers: Vec<(ActionClass, u32)> = policy
            .quorums
            .iter()
            .map(|q| (q.class, q.signers))
            .collect();
        assert_eq!(signers, DEFAULT_QUORUMS.to_vec());
        assert_eq!(
            policy
                .quorum(ActionClass::OpenAdminShell)
                .map(|q| q.signers),
            Some(2)
        );
        assert_eq!(
            policy.quorum(ActionClass::RunScript).map(|q| q.signers),
            Some(1)
        );
        assert!(
            policy
                .quorums
                .iter()
                .all(|q| !q.customer_required && !q.in_window_only)
        );
        // With one operator key, the two-signer classes cannot be approved: say so.
        let warnings = policy_warnings(&policy, NOW);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(
            warnings
                .iter()
                .all(|w| w.contains("needs 2 distinct signers"))
        );
    }

    #[test]
    fn genesis_signs_a_root_and_policy_an_agent_accepts() {
        let root_keys = vec![
            ("root-acme-1".to_owned(), key()),
            ("root-acme-2".to_owned(), key()),
        ];
        let customer = public_of(&key());
        let operator = public_of(&key());
        let g = genesis(
            "tenant-id",
            "acme",
            2,
            &root_keys,
            &[("customer-1".to_owned(), customer.clone())],
            vec![msp_operator("operator", operator.clone())],
            NOW,
        )
        .expect("genesis");
        let limits = Limits::default();
        let root = TrustRoot::verify_pinned(&g.root, &g.fingerprint, "tenant-id", &limits)
            .expect("root verifies");
        assert_eq!(root.threshold, 2);
        assert_eq!(root.keys.len(), 3);
        assert_eq!(root.customer_keys().collect::<Vec<_>>(), vec![&customer]);
        let policy =
            Policy::verify_update(&root, None, &g.policy, NOW, &limits).expect("policy verifies");
        assert_eq!(policy.operators[0].key, operator);

        // What `policy show` does with the server's reply.
        let b64 = |s: &Signed| base64::engine::general_purpose::STANDARD.encode(s.to_bytes());
        let reply = TrustReply {
            tenant_id: "tenant-id".into(),
            roots: vec![b64(&g.root)],
            policy: Some(b64(&g.policy)),
            freeze: None,
            root_fingerprint: Some(hex::encode(g.fingerprint)),
        };
        let trust = verify_trust(&reply).expect("verify");
        assert_eq!(trust.policy.as_ref(), Some(&policy));
        assert_eq!(trust.freeze_state(), FreezeState::default());
        let text = render_trust("acme", &trust, &[], NOW);
        assert!(text.contains(&grouped_hex(&g.fingerprint)), "{text}");
        assert!(text.contains("open-admin-shell"), "{text}");

        // A server naming another fingerprint, or another tenant, is caught.
        let lying = TrustReply {
            root_fingerprint: Some(hex::encode([0u8; 32])),
            ..reply
        };
        assert!(verify_trust(&lying).is_err());
        let other_tenant = TrustReply {
            tenant_id: "other".into(),
            roots: vec![b64(&g.root)],
            policy: None,
            freeze: None,
            root_fingerprint: None,
        };
        assert!(verify_trust(&other_tenant).is_err());

        // Too high a threshold for the keys held here is refused.
        assert!(genesis("tenant-id", "acme", 3, &root_keys, &[], vec![], NOW).is_err());
    }

    #[test]
    fn toml_round_trips_a_policy() {
        let policy = rich_policy();
        let text = policy_toml("acme", &policy.tenant, &policy, NOW).expect("toml");
        let doc: PolicyDoc = toml::from_str(&text).expect("parse");
        assert_eq!(doc, policy_to_doc(&policy, NOW));
        assert!(
            text.contains(
                "\nopen-admin-shell = { signers = 2, customer_required = false, in_window_only = false }\n"
            ),
            "{text}"
        );
        assert!(text.contains("start = \"22:30\""), "{text}");
        assert!(text.contains("\"sun\""), "{text}");
        let back =
            doc_to_policy(&doc, &policy.tenant, "acme", policy.version, NOW).expect("policy");
        assert_eq!(back, policy);
        // Signed as the next version, later.
        let next = doc_to_policy(&doc, &policy.tenant, "acme", 2, NOW + 10).expect("policy");
        assert_eq!(next.version, 2);
        assert_eq!(next.expires_at, policy.expires_at + 10);
    }

    #[test]
    fn toml_mistakes_are_refused_with_a_reason() {
        let base = policy_to_doc(&rich_policy(), NOW);
        let tenant = "t";
        let check = |edit: &dyn Fn(&mut PolicyDoc), expected: &str| {
            let mut doc = base.clone();
            edit(&mut doc);
            let error = doc_to_policy(&doc, tenant, "acme", 2, NOW).expect_err(expected);
            assert!(format!("{error:#}").contains(expected), "{error:#}");
        };
        check(&|d| d.expires_in_days = 0, "expires_in_days");
        check(
            &|d| d.operators[0].classes.push("reboot".into()),
            "unknown action class",
        );
        check(
            &|d| d.operators[0].holder = "vendor".into(),
            "unknown holder",
        );
        check(&|d| d.operators[0].public_key = "abcd".into(), "64 hex");
        check(
            &|d| {
                let dup = d.operators[0].clone();
                d.operators.push(dup);
            },
            "already in the policy",
        );
        check(
            &|d| {
                d.quorums.insert(
                    "run-script".into(),
                    QuorumDoc {
                        signers: 0,
                        customer_required: false,
                        in_window_only: false,
                    },
                );
            },
            "at least 1 signer",
        );
        check(
            &|d| d.maintenance_windows[0].start = "24:00".into(),
            "HH:MM",
        );
        check(
            &|d| d.maintenance_windows[0].days = vec!["funday".into()],
            "unknown day",
        );
        check(&|d| d.allowed_scripts.push("zz".into()), "SHA-256");
        assert!(
            toml::from_str::<PolicyDoc>("expires_in_days = 1\nfan_out_limit = 1\ntypo = 3\n")
                .is_err()
        );
    }

    #[test]
    fn operators_are_added_and_removed_by_name() {
        let mut policy = rich_policy();
        let key = public_of(&key());
        add_operator(&mut policy.operators, msp_operator("bob", key.clone())).expect("add");
        assert!(add_operator(&mut policy.operators, msp_operator("bob2", key.clone())).is_err());
        let other = public_of(&super::tests::key());
        assert!(add_operator(&mut policy.operators, msp_operator("bob", other)).is_err());
        remove_operator(&mut policy, "bob").expect("remove");
        assert!(!policy.operators.iter().any(|o| o.key == key));
        let error = remove_operator(&mut policy, "bob").expect_err("gone");
        assert!(error.to_string().contains("alice"), "{error}");
    }

    #[test]
    fn customers_freeze_alone_and_only_the_threshold_unfreezes() {
        let (msp1, msp2, customer) = (key(), key(), key());
        let root = TrustRoot {
            tenant: "t".into(),
            version: 1,
            threshold: 2,
            keys: vec![
                RootKey {
                    key: public_of(&msp1),
                    holder: Holder::Msp,
                    name: "root-t-1".into(),
                },
                RootKey {
                    key: public_of(&msp2),
                    holder: Holder::Msp,
                    name: "root-t-2".into(),
                },
                RootKey {
                    key: public_of(&customer),
                    holder: Holder::Customer,
                    name: "customer-1".into(),
                },
            ],
        };
        let none = FreezeState::default();
        let (statement, _) =
            sign_freeze(&root, none, true, "incident".into(), &[&customer]).expect("freeze");
        assert_eq!((statement.sequence, statement.frozen), (1, true));
        assert_eq!(statement.tenant, "t");
        let frozen = FreezeState {
            sequence: 1,
            frozen: true,
        };
        assert!(sign_freeze(&root, none, true, "r".into(), &[&msp1]).is_err());
        assert!(sign_freeze(&root, frozen, false, "r".into(), &[&customer]).is_err());
        assert!(sign_freeze(&root, frozen, false, "r".into(), &[&msp1, &customer]).is_ok());
        let (statement, signed) =
            sign_freeze(&root, frozen, false, "over".into(), &[&msp1, &msp2]).expect("unfreeze");
        assert_eq!((statement.sequence, statement.frozen), (2, false));
        // What `policy show` makes of it.
        assert_eq!(
            FreezeState::default()
                .apply(&root, &signed, &Limits::default())
                .map(|s| s.sequence),
            Ok(2)
        );
    }

    #[test]
    fn an_unlocker_tries_the_passphrases_it_was_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(dir.path().to_owned())
            .expect("store")
            .with_kdf(keys::KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            });
        let (a, _) = store
            .create_with("a", "operator", "first passphrase")
            .expect("a");
        let (b, _) = store
            .create_with("b", "operator", "second passphrase")
            .expect("b");
        let mut unlocker = Unlocker::default();
        unlocker.remember(zeroize::Zeroizing::new("first passphrase".to_owned()));
        unlocker.remember(zeroize::Zeroizing::new("second passphrase".to_owned()));
        for info in [a, b] {
            let key = unlocker.unlock(&store, &info.name).expect("unlock");
            assert_eq!(public_of(&key), info.public_key);
        }
    }

    fn root_key(name: &str, key: &SigningKey, holder: Holder) -> RootKey {
        RootKey {
            key: public_of(key),
            holder,
            name: name.into(),
        }
    }

    #[test]
    fn a_rotation_plan_resolves_the_key_set() {
        let (a, b, c) = (key(), key(), key());
        let current = TrustRoot {
            tenant: "t".into(),
            version: 3,
            threshold: 1,
            keys: vec![
                root_key("root-acme-1", &a, Holder::Msp),
                root_key("root-acme-2", &b, Holder::Msp),
                root_key("customer-1", &c, Holder::Customer),
            ],
        };
        // a and b are held here (b under another local name); c is the customer's.
        let (pa, pb) = (public_of(&a), public_of(&b));
        let local = move |k: &PublicKey| {
            if *k == pa {
                Some("root-acme-1".to_owned())
            } else if *k == pb {
                Some("laptop-root".to_owned())
            } else {
                None
            }
        };
        let none = |_: &PublicKey| None;
        let names = |keys: &[RootKey]| keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
        let s = |v: &[&str]| v.iter().map(|&x| x.to_owned()).collect::<Vec<_>>();
        let ask = RotationAsk {
            tenant: "acme",
            ..RotationAsk::default()
        };
        let error = |ask: &RotationAsk<'_>, local: &dyn Fn(&PublicKey) -> Option<String>| {
            format!(
                "{:#}",
                plan_rotation(&current, ask, local).expect_err("refused")
            )
        };

        // Two new keys, threshold 2, every old key kept by default.
        let plan = plan_rotation(
            &current,
            &RotationAsk {
                threshold: Some(2),
                new_root_keys: 2,
                ..ask
            },
            &local,
        )
        .expect("plan");
        assert_eq!(plan.version, 4);
        assert_eq!(plan.threshold, 2);
        assert_eq!(
            names(&plan.kept),
            s(&["root-acme-1", "root-acme-2", "customer-1"])
        );
        assert!(plan.dropped.is_empty());
        assert_eq!(plan.new_names, s(&["root-acme-4-1", "root-acme-4-2"]));

        // --drop by root name or by local name; --keep keeps only those named.
        let drop = s(&["root-acme-1", "laptop-root"]);
        let plan = plan_rotation(
            &current,
            &RotationAsk {
                new_root_keys: 1,
                drop: &drop,
                ..ask
            },
            &local,
        )
        .expect("plan");
        assert_eq!(names(&plan.kept), s(&["customer-1"]));
        assert_eq!(names(&plan.dropped), s(&["root-acme-1", "root-acme-2"]));
        assert_eq!(plan.threshold, 1, "the current threshold by default");
        let keep = s(&["customer-1"]);
        let by_keep = plan_rotation(
            &current,
            &RotationAsk {
                new_root_keys: 1,
                keep: &keep,
                ..ask
            },
            &local,
        )
        .expect("plan");
        assert_eq!(by_keep, plan);

        // A customer key added, named after the version; the next root is in order.
        let customer = public_of(&key());
        let customers = [customer.clone()];
        let plan = plan_rotation(
            &current,
            &RotationAsk {
                new_root_keys: 2,
                drop: &drop,
                customers: &customers,
                threshold: Some(2),
                ..ask
            },
            &local,
        )
        .expect("plan");
        let (new1, new2) = (public_of(&key()), public_of(&key()));
        let next = plan.root(
            &current,
            &[
                ("root-acme-4-1".into(), new1.clone()),
                ("root-acme-4-2".into(), new2),
            ],
        );
        assert_eq!((next.version, next.threshold), (4, 2));
        assert_eq!(
            next.keys
                .iter()
                .map(|k| (k.name.as_str(), k.holder))
                .collect::<Vec<_>>(),
            vec![
                ("customer-1", Holder::Customer),
                ("root-acme-4-1", Holder::Msp),
                ("root-acme-4-2", Holder::Msp),
                ("customer-4-1", Holder::Customer),
            ]
        );
        assert_eq!(next.keys[1].key, new1);
        assert_eq!(next.keys[3].key, customer);
        // Mistakes, each refused with a reason before anything is created.
        let unknown = s(&["nobody"]);
        let text = error(
            &RotationAsk {
                drop: &unknown,
                new_root_keys: 1,
                ..ask
            },
            &local,
        );
        assert!(
            text.contains("no key of that name") && text.contains("customer-1"),
            "{text}"
        );
        let existing = [public_of(&c)];
        let twice = [customer.clone(), customer.clone()];
        let all = s(&["root-acme-1", "root-acme-2", "customer-1"]);
        let mistakes = [
            (
                RotationAsk {
                    customers: &existing,
                    ..ask
                },
                "already root key customer-1",
            ),
            (
                RotationAsk {
                    customers: &twice,
                    ..ask
                },
                "twice",
            ),
            (
                RotationAsk {
                    threshold: Some(5),
                    new_root_keys: 1,
                    ..ask
                },
                "needs at least 5 keys",
            ),
            (
                RotationAsk {
                    threshold: Some(0),
                    new_root_keys: 1,
                    ..ask
                },
                "at least 1",
            ),
            (RotationAsk { drop: &all, ..ask }, "no keys"),
            (RotationAsk { ..ask }, "nothing would change"),
            (
                RotationAsk {
                    new_root_keys: 17,
                    ..ask
                },
                "at most 16",
            ),
        ];
        for (mistake, says) in &mistakes {
            let text = error(mistake, &local);
            assert!(text.contains(says), "{says:?}: {text}");
        }

        // Thresholds not held here are no longer refused by the plan: such
        // a rotation becomes a proposal (`rotate_root`).
        assert!(
            plan_rotation(
                &current,
                &RotationAsk {
                    new_root_keys: 1,
                    ..ask
                },
                &none,
            )
            .is_ok()
        );
    }

    #[test]
    fn a_rotation_is_signed_by_both_thresholds_and_agents_accept_it() {
        let old = key();
        let g = genesis(
            "tenant-id",
            "acme",
            1,
            &[("root-acme-1".to_owned(), old.clone())],
            &[],
            vec![msp_operator("operator", public_of(&key()))],
            NOW,
        )
        .expect("genesis");
        let limits = Limits::default();
        let current =
            TrustRoot::verify_pinned(&g.root, &g.fingerprint, "tenant-id", &limits).expect("v1");
        let policy = Policy::verify_update(&current, None, &g.policy, NOW, &limits).expect("p1");
        // A freeze by the key about to be dropped: the new root would not verify it.
        let (_, freeze) = sign_freeze(
            &current,
            FreezeState::default(),
            true,
            "incident".into(),
            &[&old],
        )
        .expect("freeze");
        let freeze_view = FreezeView {
            statement: freeze.statement(&limits).expect("statement"),
            signed: freeze.clone(),
            verified: true,
        };

        let drop = vec!["root-acme-1".to_owned()];
        let old_public = public_of(&old);
        let plan = plan_rotation(
            &current,
            &RotationAsk {
                tenant: "acme",
                threshold: Some(2),
                new_root_keys: 2,
                drop: &drop,
                ..RotationAsk::default()
            },
            &|k: &PublicKey| (*k == old_public).then(|| "root-acme-1".to_owned()),
        )
        .expect("plan");
        let (n1, n2) = (key(), key());
        let next = plan.root(
            &current,
            &[
                (plan.new_names[0].clone(), public_of(&n1)),
                (plan.new_names[1].clone(), public_of(&n2)),
            ],
        );
        let everyone = [old.clone(), n1.clone(), n2.clone()];
        let signers = rotation_signers(&current, &next, &|k: &PublicKey| {
            everyone.iter().any(|s| public_of(s) == *k)
        })
        .expect("signers");
        assert_eq!(
            signers,
            vec![public_of(&old), public_of(&n1), public_of(&n2)]
        );
        // Not enough of the new root held here.
        assert!(rotation_signers(&current, &next, &|k: &PublicKey| *k != public_of(&n2)).is_err());

        let rotation = sign_rotation(
            &current,
            &next,
            Some(&policy),
            Some(&freeze_view),
            &[&old, &n1, &n2],
            NOW,
        )
        .expect("rotation");
        // An agent's view: the chain from the pinned root, then the policy and freeze.
        let (history, refused) = TrustHistory::replay(
            "tenant-id",
            Some(g.fingerprint),
            &[g.root.clone(), rotation.root.clone()],
            None,
            None,
            &limits,
        );
        assert_eq!(refused, vec![]);
        let root = history.root().expect("chain").clone();
        assert_eq!(root, next);
        let (resigned, signed) = rotation.policy.expect("policy re-signed");
        assert_eq!(resigned.version, 2);
        assert_eq!(
            Policy {
                version: 1,
                ..resigned.clone()
            },
            policy
        );
        // Published first, under the old root; still valid under the new one.
        Policy::verify_update(&current, Some(&policy), &signed, NOW, &limits).expect("old root");
        Policy::verify_update(&root, Some(&policy), &signed, NOW, &limits).expect("new root");
        // The old policy does not verify under the new root: why it is re-signed.
        assert_eq!(
            Policy::verify_update(&root, None, &g.policy, NOW, &limits),
            Err(Refusal::RootThresholdNotMet)
        );
        let (statement, freeze) = rotation.freeze.expect("freeze re-signed");
        assert_eq!((statement.sequence, statement.frozen), (2, true));
        assert_eq!(
            FreezeState::default().apply(&root, &freeze, &limits),
            Ok(FreezeState {
                sequence: 2,
                frozen: true
            })
        );

        // Without the old threshold, or without the new one: refused here.
        for keys in [vec![&n1, &n2], vec![&old, &n1], vec![&old]] {
            let error = sign_rotation(&current, &next, Some(&policy), None, &keys, NOW)
                .err()
                .expect("refused");
            assert!(
                error.to_string().contains("root_threshold_not_met"),
                "{error:#}"
            );
        }
        // Kept keys need no freeze re-signing.
        let plain =
            sign_rotation(&current, &next, None, None, &[&old, &n1, &n2], NOW).expect("rotation");
        assert!(plain.policy.is_none() && plain.freeze.is_none());
    }

    #[test]
    fn classes_and_fingerprints_read_well() {
        for class in ALL_CLASSES {
            assert_eq!(parse_class(class_name(class)).ok(), Some(class));
        }
        assert!(parse_class("RunScript").is_err());
        assert_eq!(grouped_hex(&[0xab, 0xcd, 0xef, 0x01, 0x23]), "abcd ef01 23");
        assert_eq!(parse_minute("07:05").ok(), Some(425));
        assert!(parse_public_key(&"00".repeat(31)).is_err());
    }
}
