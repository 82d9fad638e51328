//! What this operator's machine pinned, per server: each tenant's id and
//! the fingerprint of its first trust root (`pins/<server>/<tenant>.pin`),
//! and the server's log key (`log-keys/<server>.vkey`), all under
//! `$BULWARK_CONFIG_DIR`.
//!
//! Everything the server says is the attacker's word once it is owned
//! (RFD 0005), so trust anchors reach agents from this side: a tenant is
//! pinned at `bulwark tenant init` (from the root signed here) or on first
//! contact (printed in full, to compare out of band), and every command
//! that reads a tenant's trust from the server compares what it reads with
//! the pin and stops on a mismatch. Enrolment commands carry the pinned
//! values to the agent (`bulwark-agent enroll --root … --log-key …`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use bulwark_protocol::token::{fingerprint_text, parse_fingerprint};

use crate::client::Credentials;

/// A tenant as this machine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TenantPin {
    pub tenant_id: String,
    /// SHA-256 of the tenant's first root payload: what its agents pin.
    pub root: [u8; 32],
}

/// How a pin check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PinCheck {
    /// The server's answer agrees with the pin.
    Matched,
    /// Nothing was pinned: the server's answer is pinned now.
    FirstUse(PathBuf),
}

/// `<server>` as a file name: scheme dropped, anything odd replaced.
pub(crate) fn server_file_name(server: &str) -> String {
    let bare = server
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    file_name(bare)
}

/// A tenant name as a file name: safe characters kept, others escaped, so
/// two names never share a file.
fn tenant_file_name(tenant: &str) -> String {
    let mut out = String::new();
    for b in tenant.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' && !out.is_empty() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

fn file_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn tenant_pin_path(server: &str, tenant: &str) -> Result<PathBuf> {
    Ok(Credentials::dir()?
        .join("pins")
        .join(server_file_name(server))
        .join(format!("{}.pin", tenant_file_name(tenant))))
}

fn encode(pin: &TenantPin) -> String {
    format!(
        "tenant_id {}\nroot {}\n",
        pin.tenant_id,
        fingerprint_text(&pin.root)
    )
}

fn decode(text: &str) -> Result<TenantPin> {
    let mut tenant_id = None;
    let mut root = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("tenant_id", id)) => tenant_id = Some(id.trim().to_owned()),
            Some(("root", fp)) => root = Some(parse_fingerprint(fp)?),
            _ => {}
        }
    }
    Ok(TenantPin {
        tenant_id: tenant_id.context("no tenant_id line")?,
        root: root.context("no root line")?,
    })
}

/// The pin of `tenant` on `server`, if this machine holds one.
pub(crate) fn tenant_pin(server: &str, tenant: &str) -> Result<Option<TenantPin>> {
    let path = tenant_pin_path(server, tenant)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(&text)
            .map(Some)
            .with_context(|| format!("{} is corrupt", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The pin of the tenant whose id is `tenant_id` on `server`, whatever
/// name it was pinned under.
pub(crate) fn pin_by_tenant_id(server: &str, tenant_id: &str) -> Result<Option<TenantPin>> {
    find_in(
        &Credentials::dir()?
            .join("pins")
            .join(server_file_name(server)),
        tenant_id,
    )
}

/// The pin of the tenant `tenant_id` under any server (an offline check
/// knows the tenant, not the server's address).
pub(crate) fn pin_by_tenant_id_anywhere(tenant_id: &str) -> Result<Option<TenantPin>> {
    for server in read_dir_if_any(&Credentials::dir()?.join("pins"))? {
        if let Some(pin) = find_in(&server, tenant_id)? {
            return Ok(Some(pin));
        }
    }
    Ok(None)
}

/// The entries of `dir`, none if it does not exist.
fn read_dir_if_any(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| Ok(e?.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// The pin in `dir` (one server's pins) whose tenant id is `tenant_id`.
fn find_in(dir: &std::path::Path, tenant_id: &str) -> Result<Option<TenantPin>> {
    for path in read_dir_if_any(dir)? {
        if path.extension().is_some_and(|e| e == "pin") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let pin = decode(&text).with_context(|| format!("{} is corrupt", path.display()))?;
            if pin.tenant_id == tenant_id {
                return Ok(Some(pin));
            }
        }
    }
    Ok(None)
}

fn write_pin(server: &str, tenant: &str, pin: &TenantPin) -> Result<PathBuf> {
    let path = tenant_pin_path(server, tenant)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, encode(pin)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Compares what the server says of `tenant` with this machine's pin, or
/// pins it on first contact. A mismatch is an error that names both.
pub(crate) fn check_tenant(server: &str, tenant: &str, served: &TenantPin) -> Result<PinCheck> {
    match tenant_pin(server, tenant)? {
        Some(pinned) => {
            compare(tenant, &pinned, served)?;
            Ok(PinCheck::Matched)
        }
        None => Ok(PinCheck::FirstUse(write_pin(server, tenant, served)?)),
    }
}

/// The pure comparison behind [`check_tenant`].
pub(crate) fn compare(tenant: &str, pinned: &TenantPin, served: &TenantPin) -> Result<()> {
    ensure!(
        pinned.tenant_id == served.tenant_id,
        "STOP: the server says tenant {tenant:?} is {}, but this machine pinned it as {}. \
         The server may be answering with another customer's tenant; do not act on it. \
         If the tenant really was replaced (confirm out of band), delete the pin file",
        served.tenant_id,
        pinned.tenant_id
    );
    ensure!(
        pinned.root == served.root,
        "STOP: the server serves tenant {tenant:?} with trust root {}, but this machine pinned \
         {}. A server serving another root is what an attacker who owns it would do; do not \
         enrol, sign or approve anything for this tenant until the difference is explained \
         out of band",
        fingerprint_text(&served.root),
        fingerprint_text(&pinned.root)
    );
    Ok(())
}

/// Records the root this machine just made and signed (`tenant init`).
/// An existing pin must agree: a second init never silently re-pins.
pub(crate) fn record_tenant(server: &str, tenant: &str, pin: &TenantPin) -> Result<PathBuf> {
    if let Some(pinned) = tenant_pin(server, tenant)? {
        compare(tenant, &pinned, pin)?;
    }
    write_pin(server, tenant, pin)
}

/// The log key pinned for `server`, or `served` pinned now on first use
/// (the second value says which). A served key that differs is an error.
pub(crate) fn check_log_key(server: &str, served: &str) -> Result<(String, Option<PathBuf>)> {
    let dir = Credentials::dir()?.join("log-keys");
    let path = dir.join(format!("{}.vkey", server_file_name(server)));
    match std::fs::read_to_string(&path) {
        Ok(pinned) => {
            if pinned.trim() != served {
                bail!(
                    "the server's log key changed: {} pins {}, the server now serves {served}. \
                     A different key means a different log history; if the change is expected \
                     (confirm out of band), delete that file",
                    path.display(),
                    pinned.trim()
                );
            }
            Ok((path.display().to_string(), None))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(&path, format!("{served}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok((path.display().to_string(), Some(path)))
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_become_file_names() {
        assert_eq!(server_file_name("http://localhost:8080"), "localhost_8080");
        assert_eq!(
            server_file_name("https://bulwark.example.net/"),
            "bulwark.example.net"
        );
        assert_eq!(server_file_name("https://a/../b"), "a_.._b");
    }

    #[test]
    fn tenant_names_never_share_a_file() {
        let names = ["acme", "ACME", "a/b", "a_2fb", "..", ".x", "a b", "é"];
        let files: std::collections::BTreeSet<String> =
            names.iter().map(|n| tenant_file_name(n)).collect();
        assert_eq!(files.len(), names.len(), "{files:?}");
        assert!(
            files
                .iter()
                .all(|f| !f.contains('/') && !f.starts_with('.'))
        );
    }

    #[test]
    fn pins_round_trip_and_mismatches_stop() {
        let pin = TenantPin {
            tenant_id: "0b6e0c8e-0000-4000-8000-000000000001".into(),
            root: [7; 32],
        };
        assert_eq!(decode(&encode(&pin)).expect("decodes"), pin);
        assert!(compare("acme", &pin, &pin).is_ok());
        let other_root = TenantPin {
            root: [8; 32],
            ..pin.clone()
        };
        let error = compare("acme", &pin, &other_root).expect_err("another root");
        assert!(error.to_string().contains("trust root"), "{error}");
        let other_tenant = TenantPin {
            tenant_id: "another".into(),
            ..pin.clone()
        };
        let error = compare("acme", &pin, &other_tenant).expect_err("another tenant");
        assert!(error.to_string().contains("another customer"), "{error}");
    }
}
