//! A key file of the CLI's key store opened without the CLI, shared by the
//! tests that play someone holding the file and its passphrase.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use bulwark_e2e::decode_hex;
use ed25519_dalek::SigningKey;
use serde_json::Value;

/// Opens a key file of the CLI's key store (`crates/cli/src/keys.rs`: argon2id,
/// then ChaCha20-Poly1305 with every other field as associated data), as a
/// thief holding the file and its passphrase would.
pub fn steal_key(path: &Path, passphrase: &str) -> Result<SigningKey> {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let text = |v: &Value| -> String { v.as_str().map_or_else(|| v.to_string(), str::to_owned) };
    let fields = [
        &file["format"],
        &file["version"],
        &file["name"],
        &file["kind"],
        &file["public_key"],
        &file["role"],
        &file["created_at"],
        &file["kdf"]["algorithm"],
        &file["kdf"]["argon2_version"],
        &file["kdf"]["memory_kib"],
        &file["kdf"]["iterations"],
        &file["kdf"]["parallelism"],
        &file["kdf"]["salt"],
        &file["cipher"]["algorithm"],
    ];
    let mut aad = Vec::new();
    for field in fields {
        let field = text(field);
        aad.extend_from_slice(&u32::try_from(field.len())?.to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    let number = |v: &Value| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .context("not a number")
    };
    let params = argon2::Params::new(
        number(&file["kdf"]["memory_kib"])?,
        number(&file["kdf"]["iterations"])?,
        number(&file["kdf"]["parallelism"])?,
        Some(32),
    )
    .map_err(|e| anyhow!("{e}"))?;
    let mut wrapping = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(
            passphrase.as_bytes(),
            &decode_hex(&text(&file["kdf"]["salt"]).to_uppercase())?,
            &mut wrapping,
        )
        .map_err(|e| anyhow!("{e}"))?;
    let nonce: [u8; 12] = decode_hex(&text(&file["cipher"]["nonce"]).to_uppercase())?
        .try_into()
        .map_err(|_| anyhow!("bad nonce"))?;
    let mut sealed = decode_hex(&text(&file["cipher"]["sealed_seed"]).to_uppercase())?;
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &wrapping)
            .map_err(|_| anyhow!("aead key"))?,
    );
    let seed = key
        .open_in_place(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(aad),
            &mut sealed,
        )
        .map_err(|_| anyhow!("cannot open {}", path.display()))?;
    let seed: [u8; 32] = (&*seed).try_into().context("seed")?;
    Ok(SigningKey::from_bytes(&seed))
}
