//! The demo tenant's trust statement rows, read and written behind the
//! server's back as an attacker holding its SQLite file would.

use anyhow::{Result, anyhow};
use bulwark_e2e::{OperatorSetup, decode_hex};
use bulwark_policy::{Limits, Policy, Signed};

/// Inserts a trust statement row for demo.
pub fn insert_statement(
    s: &OperatorSetup,
    kind: &str,
    version: u64,
    signed: &Signed,
) -> Result<()> {
    let hex: String = signed
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    s.sql(&format!(
        "INSERT INTO trust_statements (tenant_id, kind, version, envelope, created_by, created_at) \
         VALUES ((SELECT id FROM tenants WHERE name = 'demo'), '{kind}', {version}, X'{hex}', NULL, 0)"
    ))?;
    Ok(())
}

/// Removes demo's statement row of `kind` and `version`.
#[allow(dead_code)] // Not every test that includes this module removes rows.
pub fn delete_statement(s: &OperatorSetup, kind: &str, version: u64) -> Result<()> {
    s.sql(&format!(
        "DELETE FROM trust_statements WHERE kind = '{kind}' AND version = {version} \
         AND tenant_id = (SELECT id FROM tenants WHERE name = 'demo')"
    ))?;
    Ok(())
}

/// The latest stored demo statement of `kind`.
pub fn latest_statement(s: &OperatorSetup, kind: &str) -> Result<Signed> {
    let hex = s.sql(&format!(
        "SELECT hex(envelope) FROM trust_statements WHERE kind = '{kind}' \
         AND tenant_id = (SELECT id FROM tenants WHERE name = 'demo') ORDER BY version DESC LIMIT 1"
    ))?;
    Signed::from_bytes(&decode_hex(hex.trim())?, &Limits::default()).map_err(|e| anyhow!("{e}"))
}

/// Demo's latest policy `bump` versions on, signed by a key made from
/// `seed` that is no root key of demo (not stored: see [`insert_statement`]).
#[allow(dead_code)] // Not every test that includes this module forges.
pub fn forged_policy(s: &OperatorSetup, bump: u64, seed: u8) -> Result<(u64, Signed)> {
    let mut policy: Policy = latest_statement(s, "policy")?
        .statement(&Limits::default())
        .map_err(|e| anyhow!("{e}"))?;
    policy.version += bump;
    let mut forged = Signed::new(&policy);
    forged.sign(&ed25519_dalek::SigningKey::from_bytes(&[seed; 32]));
    Ok((policy.version, forged))
}
