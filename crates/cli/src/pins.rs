//! What this operator's machine pinned, per server: each tenant's id and
//! the fingerprint of its first trust root (`pins/<server>/<tenant>.pin`),
//! the key of every device a job was signed for
//! (`pins/<server>/<tenant>.devices`), and the server's log key
//! (`log-keys/<server>.vkey`), all under `$BULWARK_CONFIG_DIR`.
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

/// A device as this machine first signed a job for it: the key is the
/// device (the agent checks it against its own), the host name is how a
/// person named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DevicePin {
    pub device_id: String,
    /// [`bulwark_policy::device_key_fingerprint`] of the device's key.
    pub key: [u8; 32],
    pub hostname: String,
}

/// How the operator named a device: by host name a pinned name must keep
/// its device; by id, tag or group only the id's key is held to its pin
/// (two machines may share a host name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NamedBy {
    Hostname,
    Other,
}

fn device_pins_path(server: &str, tenant: &str) -> Result<PathBuf> {
    Ok(Credentials::dir()?
        .join("pins")
        .join(server_file_name(server))
        .join(format!("{}.devices", tenant_file_name(tenant))))
}

/// One line per device: `device <id> <key hex> <host name>`.
fn encode_device(pin: &DevicePin) -> String {
    format!(
        "device {} {} {}\n",
        pin.device_id,
        hex::encode(pin.key),
        pin.hostname
    )
}

fn decode_devices(text: &str) -> Result<Vec<DevicePin>> {
    let mut pins = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(4, ' ');
        let (Some("device"), Some(id), Some(key), Some(hostname)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!("line {}: not `device <id> <key> <host name>`", n + 1);
        };
        pins.push(DevicePin {
            device_id: id.to_owned(),
            key: parse_device_key(key).with_context(|| format!("line {}", n + 1))?,
            hostname: hostname.to_owned(),
        });
    }
    Ok(pins)
}

/// A device key fingerprint as the server and the pin files write it: 64
/// hex digits, nothing else.
pub(crate) fn parse_device_key(text: &str) -> Result<[u8; 32]> {
    ensure!(
        text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "a device key fingerprint is 64 hex digits, not {:?}",
        text.chars().take(80).collect::<String>()
    );
    let bytes = hex::decode(text).context("hex")?;
    <[u8; 32]>::try_from(bytes).map_err(|_| anyhow::anyhow!("32 bytes"))
}

/// The devices this machine pinned for `tenant` on `server`.
pub(crate) fn device_pins(server: &str, tenant: &str) -> Result<Vec<DevicePin>> {
    let path = device_pins_path(server, tenant)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => decode_devices(&text).with_context(|| format!("{} is corrupt", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Holds the devices the server resolved a job's targets to against the
/// pins: a pinned device id served with another key, or a host name the
/// operator typed that this machine pinned to another device, stops
/// everything (that is how a server that swapped in a machine it controls
/// looks). Returns the devices seen for the first time, to pin.
pub(crate) fn check_devices(
    pinned: &[DevicePin],
    chosen: &[(DevicePin, NamedBy)],
    pin_file: &str,
) -> Result<Vec<DevicePin>> {
    let mut first_seen = Vec::new();
    for (served, named_by) in chosen {
        if let Some(pin) = pinned.iter().find(|p| p.device_id == served.device_id) {
            ensure!(
                pin.key == served.key,
                "STOP: the server says device {} ({}) has key {}, but this machine pinned key {} \
                 for it. A device's key never changes; a server that swapped it is steering the job \
                 to a machine it controls. Nothing was signed. If the device was re-installed \
                 (compare the key with the `key hash` `bulwark-agent status` prints on the machine), delete its line \
                 from {pin_file}",
                served.device_id,
                served.hostname,
                hex::encode(served.key),
                hex::encode(pin.key)
            );
            continue;
        }
        if *named_by == NamedBy::Hostname
            && let Some(pin) = pinned
                .iter()
                .find(|p| p.hostname.eq_ignore_ascii_case(&served.hostname))
        {
            bail!(
                "STOP: {} is device {} with key {} on this machine, but the server now answers \
                 device {} with key {}. A re-enrolled machine looks like this, and so does a \
                 server that put a machine it controls in its place. Nothing was signed. Compare \
                 the key with the `key hash` `bulwark-agent status` prints on the machine, then delete the old line from \
                 {pin_file}",
                served.hostname,
                pin.device_id,
                hex::encode(pin.key),
                served.device_id,
                hex::encode(served.key)
            );
        }
        if !first_seen
            .iter()
            .any(|p: &DevicePin| p.device_id == served.device_id)
        {
            first_seen.push(served.clone());
        }
    }
    Ok(first_seen)
}

/// Checks the chosen devices against this machine's pins for `tenant` and
/// pins the new ones (printing each, to compare out of band if it matters).
pub(crate) fn hold_devices(
    server: &str,
    tenant: &str,
    chosen: &[(DevicePin, NamedBy)],
) -> Result<()> {
    let path = device_pins_path(server, tenant)?;
    let pinned = device_pins(server, tenant)?;
    let new = check_devices(&pinned, chosen, &path.display().to_string())?;
    if new.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut text = String::new();
    for pin in &new {
        text.push_str(&encode_device(pin));
    }
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    if new.len() <= 5 {
        for pin in &new {
            eprintln!(
                "First use: pinned device {} ({}) with key {}",
                pin.hostname,
                pin.device_id,
                hex::encode(pin.key)
            );
        }
    } else {
        eprintln!("First use: pinned {} devices' keys", new.len());
    }
    eprintln!("  in {}", path.display());
    Ok(())
}

/// Removes from `pinned` every device `named` names (its id, or its host
/// name in any case); returns what is left and what was removed.
pub(crate) fn without_devices(
    pinned: Vec<DevicePin>,
    named: &str,
) -> (Vec<DevicePin>, Vec<DevicePin>) {
    pinned
        .into_iter()
        .partition(|p| p.device_id != named && !p.hostname.eq_ignore_ascii_case(named))
}

/// Rewrites the device pins of `tenant` (a whole new file, renamed into
/// place, so a crash leaves the old or the new one).
fn write_device_pins(server: &str, tenant: &str, pins: &[DevicePin]) -> Result<PathBuf> {
    let path = device_pins_path(server, tenant)?;
    let dir = path.parent().context("pin file has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text: String = pins.iter().map(encode_device).collect();
    let temp = path.with_extension("devices.new");
    std::fs::write(&temp, text).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(path)
}

/// Forgets the pins of the device `named` names (id or host name): the
/// next job pins whatever key the server shows then. Returns what was
/// removed (nothing removed is an error: a typo should not pass silently).
pub(crate) fn forget_device(
    server: &str,
    tenant: &str,
    named: &str,
) -> Result<(Vec<DevicePin>, PathBuf)> {
    let (kept, removed) = without_devices(device_pins(server, tenant)?, named);
    let path = device_pins_path(server, tenant)?;
    ensure!(
        !removed.is_empty(),
        "no device named {named:?} is pinned for tenant {tenant:?} in {}",
        path.display()
    );
    write_device_pins(server, tenant, &kept)?;
    Ok((removed, path))
}

/// Pins `pin` in place of any pin for its device id or host name (a
/// device re-installed, its new key read on the machine itself).
pub(crate) fn replace_device(
    server: &str,
    tenant: &str,
    pin: &DevicePin,
) -> Result<(Vec<DevicePin>, PathBuf)> {
    let (mut kept, mut removed) = without_devices(device_pins(server, tenant)?, &pin.device_id);
    let (rest, by_name) = without_devices(kept, &pin.hostname);
    kept = rest;
    removed.extend(by_name);
    kept.push(pin.clone());
    let path = write_device_pins(server, tenant, &kept)?;
    Ok((removed, path))
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

    fn device(id: &str, key: u8, hostname: &str) -> DevicePin {
        DevicePin {
            device_id: id.into(),
            key: [key; 32],
            hostname: hostname.into(),
        }
    }

    #[test]
    fn device_pins_round_trip() {
        let pins = vec![device("d1", 1, "db01"), device("d2", 2, "web 01")];
        let text: String = pins.iter().map(encode_device).collect();
        assert_eq!(decode_devices(&text).expect("decodes"), pins);
        assert!(decode_devices("device d1 00 db01\n").is_err());
        assert!(decode_devices("device d1\n").is_err());
        assert!(parse_device_key(&"g".repeat(64)).is_err());
        assert!(parse_device_key("").is_err());
    }

    #[test]
    fn a_swapped_device_key_stops_the_job() {
        let pinned = vec![device("d1", 1, "db01")];
        // The same device, the same key: nothing new.
        let same = [(device("d1", 1, "db01"), NamedBy::Hostname)];
        assert!(check_devices(&pinned, &same, "F").expect("same").is_empty());
        // A renamed device keeps its pin by key.
        let renamed = [(device("d1", 1, "db02"), NamedBy::Other)];
        assert!(
            check_devices(&pinned, &renamed, "F")
                .expect("renamed")
                .is_empty()
        );
        // The server swaps the key of a pinned device: stop, however named.
        for named_by in [NamedBy::Hostname, NamedBy::Other] {
            let swapped = [(device("d1", 9, "db01"), named_by)];
            let error = check_devices(&pinned, &swapped, "F").expect_err("swapped key");
            assert!(error.to_string().contains("STOP"), "{error}");
        }
        // The server answers the typed host name with another device.
        let other = [(device("rogue", 9, "DB01"), NamedBy::Hostname)];
        let error = check_devices(&pinned, &other, "F").expect_err("another device");
        assert!(error.to_string().contains("rogue"), "{error}");
        // Chosen by id or tag, a second machine of the same name is new.
        let twin = [(device("d3", 3, "db01"), NamedBy::Other)];
        assert_eq!(
            check_devices(&pinned, &twin, "F").expect("twin"),
            vec![device("d3", 3, "db01")]
        );
    }

    #[test]
    fn forgetting_matches_an_id_or_a_host_name_only() {
        let pin = |id: &str, host: &str| DevicePin {
            device_id: id.into(),
            key: [1; 32],
            hostname: host.into(),
        };
        let pinned = vec![pin("a", "db01"), pin("b", "DB01"), pin("c", "web01")];
        let (kept, removed) = without_devices(pinned.clone(), "db01");
        assert_eq!(removed, [pin("a", "db01"), pin("b", "DB01")]);
        assert_eq!(kept, [pin("c", "web01")]);
        let (kept, removed) = without_devices(pinned.clone(), "c");
        assert_eq!(removed, [pin("c", "web01")]);
        assert_eq!(kept.len(), 2);
        // A prefix or a part is no match.
        let (kept, removed) = without_devices(pinned, "db0");
        assert!(removed.is_empty());
        assert_eq!(kept.len(), 3);
    }
}
