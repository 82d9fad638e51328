//! A tenant's trust, made and changed from the operator's own machine
//! (RFD 0002): `bulwark tenant init | freeze | unfreeze` and `bulwark policy …`.
//!
//! Roots, policies and freezes are signed here with keys from the local key
//! store (`crate::commands::keys`); only envelopes go to the server. What the server
//! hands back is verified here as an agent verifies it (the root chain from
//! the first root, the policy against the latest root) before it is shown or
//! extended, so a server cannot get a new version signed on top of something
//! the root never signed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use bulwark_api::proposals::{ProposalRequest, ProposalView};
use bulwark_api::tenants::TenantView;
use bulwark_api::trust::{EnvelopeRequest, TrustView};
use bulwark_policy::policy::ScriptHash;
use bulwark_policy::root::root_fingerprint;
use bulwark_policy::shell::ShellNotice;
use bulwark_policy::{
    ActionClass, FreezeState, FreezeStatement, Holder, Limits, MaintenanceWindow, MassActionDelay,
    OperatorKey, Policy, PublicKey, Quorum, Refusal, RootKey, Signed, TrustHistory, TrustKind,
    TrustOutcome, TrustRoot, WitnessKey, Witnessing,
};
use bulwark_protocol::token::fingerprint_text;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::client::{Session, path_segment};
use crate::commands::keys::{self, KeyInfo, KeyStore, Registered, Unlocker};
use crate::output::{Cell, print_json, render_table, unix_now};

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
    /// Define a device group for checks (a new policy version, RFD 0022):
    /// the devices by host name or id, resolved through the server, held
    /// to this machine's device pins, shown with their keys before signing.
    /// Put a check on it with `groups = ["NAME"]` in its `[[checks]]`.
    SetGroup {
        #[arg(long)]
        tenant: String,
        /// The group's name (lowercase letters, digits, '-', '_', '.').
        #[arg(long)]
        name: String,
        /// Host names or ids, comma-separated: the group's members exactly.
        #[arg(long, value_delimiter = ',', value_name = "HOST,…", required = true)]
        devices: Vec<String>,
        /// The current TOTP code, if the server asks for a fresh MFA check
        /// (prompted for on a terminal otherwise).
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
    /// Tell the devices' logged-in users when a remote shell starts and
    /// ends, like wall(1) (a new policy version; RFD 0015). Without --start
    /// or --end: both.
    ShellNotice {
        #[arg(long)]
        tenant: String,
        /// Tell them when a session opens.
        #[arg(long, conflicts_with = "off")]
        start: bool,
        /// Tell them when a session ends.
        #[arg(long, conflicts_with = "off")]
        end: bool,
        /// A line added to every notice, e.g. whom to call (at most 200
        /// bytes, no control characters).
        #[arg(long, value_name = "TEXT", conflicts_with = "off")]
        message: Option<String>,
        /// Stop telling them.
        #[arg(long)]
        off: bool,
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
            let label = script.display().to_string();
            allow_script_hash(&session, &tenant, &trust, hash, &label, otp.as_deref()).await
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
        PolicyCommand::SetGroup {
            tenant,
            name,
            devices,
            otp,
        } => set_group(&tenant, &name, &devices, otp.as_deref()).await,
        PolicyCommand::ShellNotice {
            tenant,
            start,
            end,
            message,
            off,
            otp,
        } => {
            let both = !start && !end;
            let setting = (!off)
                .then(|| shell_notice(start || both, end || both, message.as_deref()))
                .flatten();
            if let Some(notice) = &setting {
                notice.validate().context("--message")?;
            }
            let session = Session::load()?;
            let trust = fetch_trust(&session, &tenant).await?;
            let mut policy = next_policy(&trust, &tenant)?;
            policy.shell_notice = setting;
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

/// Adds `hash` to the tenant's allow-list as the next policy version
/// (published when this machine holds the root threshold, else proposed
/// for the other root holders: `publish_policy`). `label` names the script.
pub(crate) async fn allow_script_hash(
    session: &Session,
    tenant: &str,
    trust: &Trust,
    hash: ScriptHash,
    label: &str,
    otp: Option<&str>,
) -> Result<()> {
    let mut policy = next_policy(trust, tenant)?;
    if policy.allowed_scripts.contains(&hash) {
        println!(
            "{label} (sha256 {}) is already on tenant {tenant}'s allow-list.",
            hex::encode(hash.0)
        );
        return Ok(());
    }
    policy.allowed_scripts.push(hash);
    publish_policy(session, tenant, trust, &policy, otp).await?;
    println!(
        "{label} (sha256 {}) is on the allow-list of that policy version once it is published.",
        hex::encode(hash.0)
    );
    Ok(())
}

mod checks_toml;
mod commands;
mod default_policy;
mod groups_toml;
mod policy_toml;
mod render;
mod rotation;
mod signing;
mod verified;
pub(crate) mod witness_freeze;

pub(crate) use checks_toml::*;
use commands::*;
pub(crate) use default_policy::*;
pub(crate) use groups_toml::*;
pub(crate) use policy_toml::*;
pub(crate) use render::*;
pub(crate) use rotation::*;
pub(crate) use signing::*;
pub(crate) use verified::*;

#[cfg(test)]
mod tests;
