//! Showing a tenant's trust: the table and the `--json` form.

use super::*;

pub(crate) fn holder_name(holder: Holder) -> &'static str {
    match holder {
        Holder::Msp => "msp",
        Holder::Customer => "customer",
    }
}

pub(super) fn parse_holder(text: &str) -> Result<Holder> {
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
pub(super) const PASSKEY_PREFIX: &str = "webauthn:";

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
pub(super) fn parse_operator_key(text: &str) -> Result<PublicKey> {
    if text.trim().starts_with(PASSKEY_PREFIX) {
        parse_passkey_key(text)
    } else {
        parse_public_key(text)
    }
}

/// One of this machine's approval passkeys, by name: the public key the
/// authenticator gave at `bulwark keys add-passkey`, never the server's word.
pub(super) async fn own_passkey_key(name: &str) -> Result<PublicKey> {
    let key = crate::commands::passkeys::load(name)?.key();
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

pub(super) const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

pub(super) fn window_days(window: &MaintenanceWindow) -> Vec<String> {
    WEEKDAYS
        .iter()
        .enumerate()
        .filter(|(i, _)| window.weekdays & (1 << i) != 0)
        .map(|(_, d)| (*d).to_owned())
        .collect()
}

pub(super) fn minute_text(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

pub(super) fn local_key_name<'a>(local: &'a [KeyInfo], key: &PublicKey) -> Option<&'a str> {
    local
        .iter()
        .find(|k| k.public_key == *key)
        .map(|k| k.name.as_str())
}

pub(super) fn root_json(root: &TrustRoot, local: &[KeyInfo]) -> Value {
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

pub(super) fn trust_json(tenant: &str, trust: &Trust, local: &[KeyInfo], now: u64) -> Value {
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
            "witnesses": p.witnessing.as_ref().map(|w| json!({
                "required": w.threshold,
                "freshness_secs": w.freshness_secs,
                "list": w.witnesses.iter().map(|k| json!({"vkey": k.vkey, "url": k.url})).collect::<Vec<_>>(),
            })),
            "mass_action_delay": p.mass_action_delay.as_ref().map(|d| json!({
                "more_than_targets": d.more_than_targets,
                "classes": d.classes.iter().map(|c| class_name(*c)).collect::<Vec<_>>(),
                "delay_secs": d.delay_secs,
            })),
            "checks": p.checks().iter().map(|c| json!({
                "name": c.name,
                "kind": c.probe.kind(),
                "target": probe_target(&c.probe),
                "interval_secs": c.interval_secs,
                "warning": c.warning,
                "critical": c.critical,
                "for_secs": c.for_secs,
                "timeout_secs": c.timeout_secs,
                "groups": c.groups,
            })).collect::<Vec<_>>(),
            "device_groups": p.device_groups().iter().map(|g| json!({
                "name": g.name,
                "members": g.members.iter().map(|m| json!({
                    "hostname": m.hostname,
                    "device_id": m.device_id,
                    "key": hex::encode(m.device_key),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "shell_notice": p.shell_notice.as_ref().map(|n| json!({
                "at_start": n.at_start,
                "at_end": n.at_end,
                "message": n.message,
            })),
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

pub(super) fn indented(out: &mut String, headers: &[&str], rows: &[Vec<Cell>]) {
    for line in render_table(headers, rows, false).lines() {
        let _ = writeln!(out, "  {line}");
    }
}

pub(super) fn render_trust(tenant: &str, trust: &Trust, local: &[KeyInfo], now: u64) -> String {
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

pub(super) fn render_policy(out: &mut String, policy: &Policy, local: &[KeyInfo], now: u64) {
    let remaining = if policy.expires_at > now {
        format!(
            "in {}",
            crate::output::human_duration(policy.expires_at - now)
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
    match &policy.witnessing {
        None => {
            let _ = writeln!(
                out,
                "Witnesses: none (a tree head signed by the log key alone is enough)"
            );
        }
        Some(w) => {
            let _ = writeln!(
                out,
                "Witnesses: {} of {} must have cosigned a job's tree head within {} s:",
                w.threshold,
                w.witnesses.len(),
                w.freshness_secs
            );
            for k in &w.witnesses {
                let _ = writeln!(out, "  {}  {}", k.vkey, k.url.as_deref().unwrap_or("-"));
            }
        }
    }
    if let Some(d) = &policy.mass_action_delay {
        let mut jobs: Vec<String> = d
            .classes
            .iter()
            .map(|c| class_name(*c).to_owned())
            .collect();
        if let Some(n) = d.more_than_targets {
            jobs.push(format!("jobs on more than {n} devices"));
        }
        let _ = writeln!(
            out,
            "Mass actions ({}) wait {} s after the witnesses first see them in the log",
            jobs.join(", "),
            d.delay_secs
        );
    }
    if policy.checks().is_empty() {
        let _ = writeln!(out, "Checks: none");
    } else {
        let _ = writeln!(
            out,
            "Checks (every agent runs them, but those on a group: its members only):"
        );
        for check in policy.checks() {
            let _ = writeln!(out, "  {}", check_line(check));
        }
    }
    if !policy.device_groups().is_empty() {
        let _ = writeln!(out, "Device groups (members by id and key):");
        for group in policy.device_groups() {
            out.push_str(&group_lines(policy, group));
        }
    }
    let _ = writeln!(
        out,
        "Shell notices: {}",
        bulwark_policy::shell::notice_summary(policy.shell_notice.as_ref())
    );
    for warning in policy_warnings(policy, now) {
        let _ = writeln!(out, "Note: {warning}.");
    }
}
