//! `bulwark trust proposals | show | sign`: trust statements signed by
//! several people on their own machines (RFD 0002, "Proposals").
//!
//! A proposal is checked here before it is shown or signed, as an agent
//! would check it: it must be the next statement of its kind for the tenant
//! (against the tenant's trust verified from its first root), and every
//! signature already on it must verify against a root key. What is shown is
//! decoded from the envelope itself, never from the server's summary.

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::proposals::{CompanionSignature, ProposalSignatureRequest, ProposalView};
use bulwark_policy::envelope::Statement;
use bulwark_policy::{
    FreezeStatement, Limits, OperatorKey, Policy, PublicKey, RootKey, Signed, TrustRoot,
};
use serde_json::json;

use crate::client::{Session, path_segment};
use crate::commands::keys::{KeyStore, Unlocker};
use crate::commands::trust::{
    Trust, date_text, fetch_trust, holder_name, trust_path, witness_freeze,
};
use crate::output::{Cell, print_json, unix_now};

/// `bulwark trust …`.
#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// A tenant's open proposals and their signatures so far.
    Proposals {
        #[arg(long)]
        tenant: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// What a proposal would change, checked on this machine.
    Show {
        /// The proposal id.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a proposal on this machine, then add a root key's signature.
    Sign {
        /// The proposal id.
        id: String,
        /// The local root key to sign with (default: the first root key
        /// held here that has not signed it yet).
        #[arg(long, value_name = "NAME")]
        key: Option<String>,
        /// The current TOTP code, if the server asks for a fresh MFA check
        /// (prompted for on a terminal otherwise).
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
        /// Do not ask for confirmation after showing the proposal.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(command: TrustCommand) -> Result<()> {
    match command {
        TrustCommand::Proposals { tenant, json } => list(&tenant, json).await,
        TrustCommand::Show { id, json } => show(&id, json).await,
        TrustCommand::Sign { id, key, otp, yes } => {
            sign(&id, key.as_deref(), otp.as_deref(), yes).await
        }
    }
}

async fn list(tenant: &str, json: bool) -> Result<()> {
    let session = Session::load()?;
    let items: Vec<ProposalView> = session.get(&trust_path(tenant, "/proposals")?).await?;
    if json {
        return print_json(&items);
    }
    if items.is_empty() {
        println!("Tenant {tenant} has no open proposals.");
        return Ok(());
    }
    for p in &items {
        let thresholds: Vec<String> = p
            .thresholds
            .iter()
            .map(|t| format!("{} {}/{}", t.what, t.have, t.need))
            .collect();
        println!(
            "{}  {} v{}  {}  expires {}",
            p.id,
            p.kind,
            p.version,
            thresholds.join(", "),
            p.expires_at,
        );
    }
    println!("Check one with `bulwark trust show ID`, sign it with `bulwark trust sign ID`.");
    Ok(())
}

/// A proposal as this machine checked it.
struct Checked {
    reply: ProposalView,
    tenant: String,
    signed: Signed,
    /// "policy version 3", ….
    title: String,
    /// What changes, for people.
    changes: Vec<String>,
    /// Root keys that may sign it (current root, and a proposed root's).
    signers: Vec<RootKey>,
    /// The keys among them that signed already.
    signed_by: Vec<RootKey>,
    /// A root rotation's companions, checked: ("policy" or "freeze", envelope).
    companions: Vec<(&'static str, Signed)>,
    /// The tenant's trust as this machine verified it from the pinned root.
    trust: Trust,
}

async fn fetch(session: &Session, id: &str) -> Result<Checked> {
    let reply: ProposalView = session
        .get(&format!("/api/v1/trust-proposals/{}", path_segment(id)?))
        .await?;
    let tenant = reply.tenant.clone();
    let envelope = B64
        .decode(&reply.envelope)
        .context("the proposal's envelope is not base64")?;
    let limits = Limits::default();
    let signed = Signed::from_bytes(&envelope, &limits)
        .map_err(|r| anyhow!("the proposal's envelope does not decode: {r}"))?;
    let trust = fetch_trust(session, &tenant).await?;
    let (title, mut changes, signers) = examine(&trust, &signed, unix_now())?;
    let mut companions = Vec::new();
    for (field, kind, text) in [
        ("policy_envelope", "policy", &reply.policy_envelope),
        ("freeze_envelope", "freeze", &reply.freeze_envelope),
    ] {
        let Some(text) = text else {
            continue;
        };
        let bytes = B64
            .decode(text)
            .with_context(|| format!("the proposal's {field} is not base64"))?;
        let companion = Signed::from_bytes(&bytes, &limits)
            .map_err(|r| anyhow!("the proposal's {field} does not decode: {r}"))?;
        changes.push(examine_companion(&trust, &signed, kind, &companion)?);
        let tally = companion.tally(signers.iter().map(|k| &k.key));
        ensure!(
            tally.bad == 0 && tally.unknown == 0,
            "a signature on proposal {id}'s {kind} companion does not verify against tenant \
             {tenant}'s root keys: do not sign it"
        );
        companions.push((kind, companion));
    }
    let tally = signed.tally(signers.iter().map(|k| &k.key));
    ensure!(
        tally.bad == 0 && tally.unknown == 0,
        "a signature on proposal {id} does not verify against tenant {tenant}'s root keys: \
         do not sign it"
    );
    let signed_by = signers
        .iter()
        .filter(|k| tally.valid.contains(&k.key.id()))
        .cloned()
        .collect();
    Ok(Checked {
        reply,
        tenant,
        signed,
        title,
        changes,
        signers,
        signed_by,
        companions,
        trust,
    })
}

/// A root rotation's companion must be the tenant's current policy (or
/// kill switch) unchanged but for its version: nothing else rides along.
fn examine_companion(
    trust: &Trust,
    root: &Signed,
    kind: &str,
    companion: &Signed,
) -> Result<String> {
    let limits = Limits::default();
    ensure!(
        root.payload_type == TrustRoot::PAYLOAD_TYPE && trust.root.is_some(),
        "only a root rotation carries a {kind} with it"
    );
    let bad = |r| anyhow!("the {kind} companion does not decode: {r}");
    if kind == "policy" {
        ensure!(
            companion.payload_type == Policy::PAYLOAD_TYPE,
            "the policy companion is not a policy"
        );
        let policy: Policy = companion.statement(&limits).map_err(bad)?;
        policy
            .validate(&limits)
            .map_err(|r| anyhow!("the policy companion is malformed: do not sign it: {r}"))?;
        let current = trust
            .policy
            .as_ref()
            .context("the tenant has no policy to re-sign")?;
        let mut same = policy.clone();
        same.version = current.version;
        ensure!(
            same == *current && policy.version == current.version + 1,
            "the policy companion is not the current policy (version {}) re-signed as version \
             {}: {}; do not sign it",
            current.version,
            current.version + 1,
            policy_diff(Some(current), &policy).join("; ")
        );
        Ok(format!(
            "policy version {}: the current policy (version {}) unchanged, re-signed so the new \
             root vouches for it",
            policy.version, current.version
        ))
    } else {
        ensure!(
            companion.payload_type == FreezeStatement::PAYLOAD_TYPE,
            "the freeze companion is not a freeze statement"
        );
        let statement: FreezeStatement = companion.statement(&limits).map_err(bad)?;
        let (sequence, frozen) = trust
            .freeze
            .as_ref()
            .map_or((0, false), |f| (f.statement.sequence, f.statement.frozen));
        ensure!(
            statement.tenant == trust.tenant_id
                && statement.sequence == sequence + 1
                && statement.frozen == frozen,
            "the freeze companion does not keep the kill switch as it is (sequence {sequence}, \
             {}): do not sign it",
            if frozen { "frozen" } else { "not frozen" }
        );
        Ok(format!(
            "freeze sequence {}: the kill switch unchanged ({}), re-signed for the new root",
            statement.sequence,
            if frozen { "frozen" } else { "not frozen" }
        ))
    }
}

/// Decodes the statement and checks it is the next of its kind for the
/// tenant; returns a title, what changes, and the keys that may sign it.
fn examine(
    trust: &Trust,
    signed: &Signed,
    now: u64,
) -> Result<(String, Vec<String>, Vec<RootKey>)> {
    let limits = Limits::default();
    let bad = |r| anyhow!("the proposed statement does not decode: {r}");
    let current_keys: Vec<RootKey> = trust.root.iter().flat_map(|r| r.keys.clone()).collect();
    match signed.payload_type.as_str() {
        Policy::PAYLOAD_TYPE => {
            let policy: Policy = signed.statement(&limits).map_err(bad)?;
            // Agents would refuse it whoever signs it (a console passkey
            // listed, a key listed twice, ...): nothing to co-sign.
            policy
                .validate(&limits)
                .map_err(|r| anyhow!("the proposed policy is malformed: do not sign it: {r}"))?;
            ensure!(
                policy.tenant == trust.tenant_id,
                "the policy is for another tenant"
            );
            ensure!(trust.root.is_some(), "the tenant has no trust root");
            let current = trust.policy.as_ref();
            let held = current.map_or(0, |p| p.version);
            ensure!(
                policy.version > held,
                "policy version {} is not newer than the current version {held}",
                policy.version
            );
            ensure!(
                policy.expires_at > now,
                "the proposed policy expired {}",
                date_text(policy.expires_at)
            );
            Ok((
                format!("policy version {} (current: {held})", policy.version),
                policy_diff(current, &policy),
                current_keys,
            ))
        }
        TrustRoot::PAYLOAD_TYPE => {
            let root: TrustRoot = signed.statement(&limits).map_err(bad)?;
            ensure!(
                root.tenant == trust.tenant_id,
                "the root is for another tenant"
            );
            let next = trust.root.as_ref().map_or(1, |r| r.version + 1);
            ensure!(
                root.version == next,
                "root version {} is not the next one ({next})",
                root.version
            );
            let mut changes = root_diff(trust.root.as_ref(), &root);
            changes.push(format!(
                "new root version {}: {} of {} keys must sign a policy or a new root: {}",
                root.version,
                root.threshold,
                root.keys.len(),
                root.keys
                    .iter()
                    .map(|k| format!(
                        "{} ({}, key {})",
                        k.name,
                        holder_name(k.holder),
                        key_text(&k.key)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let mut signers = current_keys;
            for key in &root.keys {
                if !signers.iter().any(|k| k.key == key.key) {
                    signers.push(key.clone());
                }
            }
            Ok((
                format!("trust root version {}", root.version),
                changes,
                signers,
            ))
        }
        FreezeStatement::PAYLOAD_TYPE => {
            let statement: FreezeStatement = signed.statement(&limits).map_err(bad)?;
            ensure!(
                statement.tenant == trust.tenant_id,
                "the statement is for another tenant"
            );
            ensure!(trust.root.is_some(), "the tenant has no trust root");
            let held = trust.freeze.as_ref().map_or(0, |f| f.statement.sequence);
            ensure!(
                statement.sequence > held,
                "freeze sequence {} is not newer than the current {held}",
                statement.sequence
            );
            let what = if statement.frozen {
                "FREEZE the tenant: every agent refuses every job"
            } else {
                "UNFREEZE the tenant: agents accept jobs again under the policy"
            };
            Ok((
                format!(
                    "{} (sequence {})",
                    if statement.frozen {
                        "freeze"
                    } else {
                        "unfreeze"
                    },
                    statement.sequence
                ),
                vec![what.to_owned(), format!("reason: {}", statement.reason)],
                current_keys,
            ))
        }
        other => bail!("{other:?} is not a trust statement"),
    }
}

fn key_text(key: &PublicKey) -> String {
    key.id().to_string()
}

fn operator_text(o: &OperatorKey) -> String {
    format!(
        "{} ({}, key {}), classes: {}",
        o.name,
        holder_name(o.holder),
        key_text(&o.key),
        o.classes
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A policy's changes against the current one, in readable form.
pub(crate) fn policy_diff(old: Option<&Policy>, new: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    let Some(old) = old else {
        out.push("first policy of the tenant".into());
        for o in &new.operators {
            out.push(format!("+ operator {}", operator_text(o)));
        }
        for q in &new.quorums {
            out.push(format!(
                "+ quorum {}: {} signer(s)",
                q.class.name(),
                q.signers
            ));
        }
        out.push(format!("expires {}", date_text(new.expires_at)));
        return out;
    };
    for o in &new.operators {
        match old.operators.iter().find(|p| p.key == o.key) {
            None => out.push(format!("+ operator {}", operator_text(o))),
            Some(p) if p != o => out.push(format!(
                "~ operator {} -> {}",
                operator_text(p),
                operator_text(o)
            )),
            Some(_) => {}
        }
    }
    for p in &old.operators {
        if !new.operators.iter().any(|o| o.key == p.key) {
            out.push(format!("- operator {}", operator_text(p)));
        }
    }
    let quorum_text = |q: &bulwark_policy::Quorum| {
        let mut text = format!("{} signer(s)", q.signers);
        if q.customer_required {
            text.push_str(", customer co-signer required");
        }
        if q.in_window_only {
            text.push_str(", maintenance window only");
        }
        text
    };
    for q in &new.quorums {
        match old.quorum(q.class) {
            None => out.push(format!("+ quorum {}: {}", q.class.name(), quorum_text(q))),
            Some(p) if p != q => out.push(format!(
                "~ quorum {}: {} -> {}",
                q.class.name(),
                quorum_text(p),
                quorum_text(q)
            )),
            Some(_) => {}
        }
    }
    for p in &old.quorums {
        if new.quorum(p.class).is_none() {
            out.push(format!(
                "- quorum {} (the class is no longer permitted)",
                p.class.name()
            ));
        }
    }
    for h in &new.allowed_scripts {
        if !old.allowed_scripts.contains(h) {
            out.push(format!("+ allow-listed script sha256 {}", hex::encode(h.0)));
        }
    }
    for h in &old.allowed_scripts {
        if !new.allowed_scripts.contains(h) {
            out.push(format!("- allow-listed script sha256 {}", hex::encode(h.0)));
        }
    }
    if old.fan_out_limit != new.fan_out_limit {
        out.push(format!(
            "~ fan-out limit {} -> {}",
            old.fan_out_limit, new.fan_out_limit
        ));
    }
    if old.maintenance_windows != new.maintenance_windows {
        out.push(format!(
            "~ maintenance windows: {} -> {}",
            old.maintenance_windows.len(),
            new.maintenance_windows.len()
        ));
    }
    out.extend(witness_diff(
        old.witnessing.as_ref(),
        new.witnessing.as_ref(),
    ));
    if old.mass_action_delay != new.mass_action_delay {
        let summary = |d: Option<&bulwark_policy::MassActionDelay>| match d {
            None => "none".to_owned(),
            Some(d) => {
                let mut jobs: Vec<String> = d.classes.iter().map(|c| c.name().to_owned()).collect();
                if let Some(n) = d.more_than_targets {
                    jobs.push(format!("more than {n} devices"));
                }
                format!("{} wait {} s", jobs.join(" or "), d.delay_secs)
            }
        };
        out.push(format!(
            "~ mass-action delay: {} -> {}",
            summary(old.mass_action_delay.as_ref()),
            summary(new.mass_action_delay.as_ref())
        ));
    }
    if old.shell_notice != new.shell_notice {
        out.push(format!(
            "~ shell notices: {} -> {}",
            bulwark_policy::shell::notice_summary(old.shell_notice.as_ref()),
            bulwark_policy::shell::notice_summary(new.shell_notice.as_ref())
        ));
    }
    for check in new.checks() {
        match old.checks().iter().find(|c| c.name == check.name) {
            None => out.push(format!(
                "+ check {}",
                crate::commands::trust::check_line(check)
            )),
            Some(before) if before != check => out.push(format!(
                "~ check {} (was {})",
                crate::commands::trust::check_line(check),
                crate::commands::trust::check_line(before)
            )),
            Some(_) => {}
        }
    }
    for check in old.checks() {
        if !new.checks().iter().any(|c| c.name == check.name) {
            out.push(format!(
                "- check {}",
                crate::commands::trust::check_line(check)
            ));
        }
    }
    out.extend(group_diff(old, new));
    if old.expires_at != new.expires_at {
        out.push(format!(
            "~ expires {} -> {}",
            date_text(old.expires_at),
            date_text(new.expires_at)
        ));
    }
    if out.is_empty() {
        out.push("no change but the version".into());
    }
    out
}

/// What a root holder must see before signing: a witness removed or a
/// lower threshold weakens the log's protection as much as a new operator
/// key widens who may act.
fn witness_diff(
    old: Option<&bulwark_policy::Witnessing>,
    new: Option<&bulwark_policy::Witnessing>,
) -> Vec<String> {
    let summary = |w: Option<&bulwark_policy::Witnessing>| match w {
        None => "none".to_owned(),
        Some(w) => format!(
            "{} of {} within {} s",
            w.threshold,
            w.witnesses.len(),
            w.freshness_secs
        ),
    };
    let mut out = Vec::new();
    if summary(old) != summary(new) {
        out.push(format!(
            "~ witnesses required: {} -> {}",
            summary(old),
            summary(new)
        ));
    }
    let keys =
        |w: Option<&bulwark_policy::Witnessing>| w.map(|w| w.witnesses.clone()).unwrap_or_default();
    let (old, new) = (keys(old), keys(new));
    for k in &new {
        if !old.iter().any(|o| o.vkey == k.vkey) {
            out.push(format!("+ witness {}", k.vkey));
        } else if !old.contains(k) {
            out.push(format!(
                "~ witness {} now reached at {}",
                k.vkey,
                k.url.as_deref().unwrap_or("-")
            ));
        }
    }
    for k in &old {
        if !new.iter().any(|n| n.vkey == k.vkey) {
            out.push(format!("- witness {}", k.vkey));
        }
    }
    out
}

fn root_diff(old: Option<&TrustRoot>, new: &TrustRoot) -> Vec<String> {
    let key = |k: &RootKey| {
        format!(
            "{} ({}, key {})",
            k.name,
            holder_name(k.holder),
            key_text(&k.key)
        )
    };
    let mut out = Vec::new();
    match old {
        None => out.push(format!(
            "first root of the tenant: {} of {} keys must sign a policy or a new root",
            new.threshold,
            new.keys.len()
        )),
        Some(old) if old.threshold != new.threshold || old.keys.len() != new.keys.len() => {
            out.push(format!(
                "~ threshold {} of {} -> {} of {}",
                old.threshold,
                old.keys.len(),
                new.threshold,
                new.keys.len()
            ));
        }
        Some(_) => {}
    }
    for k in &new.keys {
        if !old.is_some_and(|o| o.keys.iter().any(|p| p.key == k.key)) {
            out.push(format!("+ root key {}", key(k)));
        }
    }
    for k in old.iter().flat_map(|o| &o.keys) {
        if !new.keys.iter().any(|n| n.key == k.key) {
            out.push(format!("- root key {}", key(k)));
        }
    }
    out
}

fn render(checked: &Checked) -> String {
    let r = &checked.reply;
    let mut out = format!(
        "Proposal {} for tenant {}: {}\n  state {}, proposed {}, expires {}\n",
        r.id, checked.tenant, checked.title, r.state, r.created_at, r.expires_at,
    );
    out.push_str("What it changes (decoded and checked on this machine):\n");
    for line in &checked.changes {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("Signed by:\n");
    if checked.signed_by.is_empty() {
        out.push_str("  nobody yet\n");
    }
    for k in &checked.signed_by {
        out.push_str(&format!(
            "  {} ({}, key {})\n",
            k.name,
            holder_name(k.holder),
            key_text(&k.key)
        ));
    }
    for t in &r.thresholds {
        out.push_str(&format!("  {}: {} of {} needed\n", t.what, t.have, t.need));
    }
    out
}

async fn show(id: &str, json: bool) -> Result<()> {
    let session = Session::load()?;
    let checked = fetch(&session, id).await?;
    if json {
        return print_json(&json!({
            "id": checked.reply.id,
            "tenant": checked.tenant,
            "kind": checked.reply.kind,
            "state": checked.reply.state,
            "title": checked.title,
            "changes": checked.changes,
            "signed_by": checked.signed_by.iter().map(|k| json!({
                "name": k.name,
                "holder": holder_name(k.holder),
                "key_id": hex::encode(k.key.id().0),
            })).collect::<Vec<_>>(),
            "thresholds": checked.reply.thresholds,
        }));
    }
    print!("{}", render(&checked));
    Ok(())
}

async fn sign(id: &str, key: Option<&str>, otp: Option<&str>, yes: bool) -> Result<()> {
    let session = Session::load()?;
    let checked = fetch(&session, id).await?;
    ensure!(
        checked.reply.state == "open",
        "proposal {id} is {}: nothing to sign",
        checked.reply.state
    );
    let store = KeyStore::open_default()?;
    let info = match key {
        Some(name) => {
            let info = store.info(name)?;
            ensure!(
                checked.signers.iter().any(|k| k.key == info.public_key),
                "key {name} is not a root key of tenant {} (current or proposed)",
                checked.tenant
            );
            info
        }
        None => {
            let mut found = None;
            for k in &checked.signers {
                if checked.signed_by.iter().any(|s| s.key == k.key) {
                    continue;
                }
                if let Some(info) = store.find_by_public(&k.key)? {
                    found = Some(info);
                    break;
                }
            }
            found.with_context(|| {
                format!(
                    "this machine holds no root key of tenant {} that has not signed proposal {id}",
                    checked.tenant
                )
            })?
        }
    };
    ensure!(
        !checked.signed_by.iter().any(|k| k.key == info.public_key),
        "key {} already signed proposal {id}",
        info.name
    );
    print!("{}", render(&checked));
    if !yes {
        let answer =
            crate::output::prompt_line(&format!("\nSign this with key {}? Type yes: ", info.name))?;
        ensure!(answer.trim() == "yes", "not signed");
    }
    let mut unlocker = Unlocker::new();
    let signing_key = unlocker.unlock(&store, &info.name)?;
    let mut signed = checked.signed.clone();
    signed.sign(&signing_key);
    let entry = signed.signatures.last().context("no signature")?;
    // The same key signs each companion: the rotation publishes with them.
    let mut companions = Vec::new();
    for (kind, companion) in &checked.companions {
        let mut companion = companion.clone();
        companion.sign(&signing_key);
        let entry = companion.signatures.last().context("no signature")?;
        companions.push(CompanionSignature {
            kind: (*kind).to_owned(),
            signature: B64.encode(entry.signature),
        });
    }
    let body = ProposalSignatureRequest {
        key_id: hex::encode(entry.key_id.0),
        signature: B64.encode(entry.signature),
        companions,
    };
    // A freeze or unfreeze this signature completes goes to the tenant's
    // witnesses whatever the server answers (RFD 0006): judged from the
    // signatures here, not from the state the server reports.
    let kill_switch = completed_kill_switch(&checked, &signed);
    let chain = match kill_switch {
        Some(_) => {
            Some(witness_freeze::root_chain(&session, &checked.tenant, &checked.trust).await)
        }
        None => None,
    };
    let reply: Result<ProposalView> = session
        .post_privileged(
            &format!("/api/v1/trust-proposals/{}/signatures", path_segment(id)?),
            &body,
            otp,
        )
        .await
        .context("adding the signature");
    if let (Some(frozen), Some(chain)) = (kill_switch, chain) {
        witness_freeze::give_to_witnesses(&checked.tenant, &checked.trust, chain, &signed, frozen)
            .await;
    }
    let reply = reply?;
    match reply.state.as_str() {
        "published" => println!(
            "Signed with key {}: the signatures reach the threshold and {} is published; \
             agents apply it when they next hear from the server.",
            info.name, checked.title
        ),
        _ => println!(
            "Signed with key {}: proposal {id} still needs signatures (`bulwark trust show {id}`).",
            info.name
        ),
    }
    Ok(())
}

/// `Some(frozen)` when `signed` is the tenant's next freeze (or unfreeze)
/// and carries the current root's threshold of valid signatures.
fn completed_kill_switch(checked: &Checked, signed: &Signed) -> Option<bool> {
    if signed.payload_type != FreezeStatement::PAYLOAD_TYPE {
        return None;
    }
    let root = checked.trust.root.as_ref()?;
    let statement: FreezeStatement = signed.statement(&Limits::default()).ok()?;
    let tally = signed.tally(root.keys.iter().map(|k| &k.key));
    (tally.bad == 0 && tally.valid.len() >= root.threshold()).then_some(statement.frozen)
}

/// Device groups (RFD 0022) member by member, each with its id and key:
/// what a root holder approves is which machines a group's checks run on.
fn group_diff(old: &Policy, new: &Policy) -> Vec<String> {
    use bulwark_policy::groups::GroupMember;
    let member = |m: &GroupMember| {
        format!(
            "{} ({}, key {})",
            Cell::from(m.hostname.as_str()).text,
            Cell::from(m.device_id.as_str()).text,
            hex::encode(m.device_key)
        )
    };
    let mut out = Vec::new();
    for group in new.device_groups() {
        let before = old.device_groups().iter().find(|g| g.name == group.name);
        if before.is_none() {
            out.push(format!("+ device group {}", group.name));
        }
        let had = |m: &GroupMember| before.is_some_and(|b| b.members.contains(m));
        for m in group.members.iter().filter(|m| !had(m)) {
            out.push(format!("+ device group {}: {}", group.name, member(m)));
        }
        for m in before.iter().flat_map(|b| &b.members) {
            if !group.members.contains(m) {
                out.push(format!("- device group {}: {}", group.name, member(m)));
            }
        }
    }
    for group in old.device_groups() {
        if !new.device_groups().iter().any(|g| g.name == group.name) {
            out.push(format!("- device group {}", group.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bulwark_policy::policy::ScriptHash;
    use bulwark_policy::{ActionClass, Holder, Quorum};

    use super::*;

    fn policy() -> Policy {
        Policy {
            tenant: "t".into(),
            tenant_name: Some("t".into()),
            witnessing: None,
            mass_action_delay: None,
            checks: None,
            revoked_schedules: None,
            device_groups: None,
            shell_notice: None,
            version: 1,
            expires_at: 2_000_000_000,
            operators: vec![OperatorKey {
                key: PublicKey::Ed25519([7; 32]),
                name: "alice".into(),
                holder: Holder::Msp,
                classes: vec![ActionClass::RunScript],
            }],
            quorums: vec![Quorum {
                class: ActionClass::RunScript,
                signers: 1,
                customer_required: false,
                in_window_only: false,
            }],
            fan_out_limit: 25,
            allowed_scripts: vec![ScriptHash([1; 32])],
            maintenance_windows: Vec::new(),
        }
    }

    /// A proposal from an owned server listing a console passkey (or any
    /// policy an agent would refuse) is not offered for signing.
    #[test]
    fn a_malformed_proposed_policy_is_not_signed() {
        use bulwark_policy::webauthn::{CoseKey, WebAuthnCredential};
        let trust = Trust {
            tenant_id: "t".into(),
            fingerprint: None,
            root: None,
            policy: None,
            freeze: None,
        };
        let mut proposed = policy();
        proposed.operators.push(OperatorKey {
            key: PublicKey::WebAuthn(WebAuthnCredential {
                rp_id: "rmm.example.com".into(),
                key: CoseKey::Ed25519([9; 32]),
            }),
            name: "owner's console passkey".into(),
            holder: Holder::Msp,
            classes: vec![ActionClass::RunScript],
        });
        let error = examine(&trust, &Signed::new(&proposed), 1_900_000_000)
            .expect_err("a console passkey in a proposed policy")
            .to_string();
        assert!(
            error.contains("malformed") && error.contains("only approval passkeys"),
            "{error}"
        );
    }

    #[test]
    fn policy_diff_names_every_change() {
        let old = policy();
        let mut new = old.clone();
        new.version = 2;
        assert_eq!(policy_diff(Some(&old), &new), ["no change but the version"]);
        new.operators.push(OperatorKey {
            key: PublicKey::Ed25519([8; 32]),
            name: "bob".into(),
            holder: Holder::Customer,
            classes: vec![ActionClass::InventoryRefresh],
        });
        new.operators.remove(0);
        new.quorums[0].signers = 2;
        new.quorums[0].customer_required = true;
        new.allowed_scripts = vec![ScriptHash([2; 32])];
        new.expires_at += 86_400;
        let diff = policy_diff(Some(&old), &new).join("\n");
        for needle in [
            "+ operator bob (customer",
            "- operator alice (msp",
            "~ quorum run-script: 1 signer(s) -> 2 signer(s), customer co-signer required",
            &format!("+ allow-listed script sha256 {}", "02".repeat(32)),
            &format!("- allow-listed script sha256 {}", "01".repeat(32)),
            "~ expires",
        ] {
            assert!(diff.contains(needle), "{needle:?} not in:\n{diff}");
        }
    }

    #[test]
    fn a_group_diff_names_each_device_with_its_key() {
        use bulwark_policy::groups::{DeviceGroup, GroupMember};
        let member = |n: u8| GroupMember {
            device_id: format!("id-{n}"),
            device_key: [n; 32],
            hostname: format!("host-{n}"),
        };
        let group = |members| DeviceGroup {
            name: "db".into(),
            members,
        };
        let mut old = policy();
        old.device_groups = Some(vec![group(vec![member(1), member(2)])]);
        let mut new = old.clone();
        new.device_groups = Some(vec![group(vec![member(2), member(3)])]);
        assert_eq!(
            group_diff(&old, &new),
            [
                format!("+ device group db: host-3 (id-3, key {})", "03".repeat(32)),
                format!("- device group db: host-1 (id-1, key {})", "01".repeat(32)),
            ]
        );
        new.device_groups = None;
        assert_eq!(group_diff(&old, &new), ["- device group db"]);
    }
}
