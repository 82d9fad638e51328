//! The operator's own signing keys, kept on the operator's own machine.
//!
//! Private signing keys never reach the server (DESIGN.md invariant 3): jobs,
//! policies, roots and freezes are signed here and only the signatures
//! travel. Each key is one file, `$BULWARK_CONFIG_DIR/keys/<name>.key`
//! (directory 0700, files 0600; a file others can read is refused, as the
//! agent refuses its own key), a small JSON document:
//!
//! ```json
//! {
//!   "format": "bulwark-signing-key",
//!   "version": 1,
//!   "name": "operator",
//!   "kind": "ed25519",
//!   "public_key": "<64 hex>",
//!   "role": "operator",
//!   "created_at": "2025-01-01T00:00:00Z",
//!   "kdf": { "algorithm": "argon2id", "argon2_version": 19, "memory_kib": 65536,
//!            "iterations": 3, "parallelism": 1, "salt": "<32 hex>" },
//!   "cipher": { "algorithm": "chacha20-poly1305", "nonce": "<24 hex>",
//!               "sealed_seed": "<96 hex: 32-byte seed + 16-byte tag>" }
//! }
//! ```
//!
//! The 32-byte Ed25519 seed is sealed with ChaCha20-Poly1305 under a key
//! derived from a passphrase with argon2id; every other field (name, public
//! key, role, KDF parameters…) is the AEAD's associated data, so editing any
//! of them makes the file fail to open. The passphrase comes from
//! `BULWARK_KEY_PASSPHRASE` (automation, tests) or a prompt without echo.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use bulwark_api::signing_keys::{SigningKeyRequest, SigningKeyView};
use bulwark_policy::{KeyId, PublicKey};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

/// Where automation and tests put the passphrase instead of typing it.
pub const PASSPHRASE_ENV: &str = "BULWARK_KEY_PASSPHRASE";
/// The shortest passphrase accepted for a new key.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

const FORMAT: &str = "bulwark-signing-key";
const FORMAT_VERSION: u32 = 1;
const KIND: &str = "ed25519";
const KDF_ALGORITHM: &str = "argon2id";
const CIPHER_ALGORITHM: &str = "chacha20-poly1305";
/// A key file is a few hundred bytes; anything much larger is not one.
const MAX_FILE_BYTES: u64 = 16 * 1024;

/// Operator commands on the local key store: `bulwark keys …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a signing key on this machine, encrypted with a passphrase.
    New {
        /// A name for the key: letters, digits, '.', '_' or '-' (at most 64).
        #[arg(long)]
        name: String,
        /// What the key is for: "operator" (signs jobs), or "root:<tenant id>"
        /// (a tenant root key, e.g. one a customer holds). A hint for people.
        #[arg(long, default_value = "operator")]
        role: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the keys held on this machine (public parts only).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Tell the server this key is yours, so jobs you sign with it are accepted as yours.
    Register {
        #[arg(long)]
        name: String,
    },
    /// Print a key's public key (hex): what a customer hands the MSP for their tenant's root.
    Export {
        #[arg(long)]
        name: String,
    },
    /// Create a passkey that approves jobs, in a page this `bulwark` serves on
    /// this machine (RP id bulwark-approve.localhost), and register its public key.
    AddPasskey {
        /// A name for the passkey: letters, digits, '.', '_' or '-' (at most 64).
        #[arg(long)]
        name: String,
    },
}

pub async fn run(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::New { name, role, json } => {
            let store = KeyStore::open_default()?;
            store.create(&name, &role)?;
            let info = store.info(&name)?;
            if json {
                crate::output::print_json(&info.to_json())
            } else {
                println!("Created key {} ({}).", info.name, info.role);
                println!("  Public key  {}", info.public_hex());
                println!("  Key id      {}", info.key_id());
                println!("  File        {}", info.path.display());
                println!(
                    "The passphrase is the only way to use this key: Bulwark cannot recover it."
                );
                Ok(())
            }
        }
        KeysCommand::List { json } => {
            let keys = KeyStore::open_default()?.list()?;
            if json {
                crate::output::print_json(&serde_json::Value::Array(
                    keys.iter().map(KeyInfo::to_json).collect(),
                ))
            } else {
                print_key_table(&keys);
                Ok(())
            }
        }
        KeysCommand::Register { name } => {
            let info = KeyStore::open_default()?.info(&name)?;
            let session = crate::client::Session::load()?;
            match register(&session, &info).await? {
                Registered::New(reply) => {
                    println!("Registered key {} (key id {}).", info.name, reply.key_id);
                }
                Registered::Already => println!(
                    "Key {} (key id {}) was already registered.",
                    info.name,
                    info.key_id()
                ),
            }
            Ok(())
        }
        KeysCommand::Export { name } => {
            let info = KeyStore::open_default()?.info(&name)?;
            println!("{}", info.public_hex());
            Ok(())
        }
        KeysCommand::AddPasskey { name } => crate::commands::passkeys::add(&name).await,
    }
}

fn print_key_table(keys: &[KeyInfo]) {
    if keys.is_empty() {
        println!("No keys. Create one with `bulwark keys new --name NAME`.");
        return;
    }
    let rows: Vec<Vec<crate::output::Cell>> = keys
        .iter()
        .map(|k| {
            vec![
                k.name.as_str().into(),
                k.role.as_str().into(),
                k.key_id().to_string().into(),
                k.created_at.as_str().into(),
                k.public_hex().into(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::output::render_table(
            &["NAME", "ROLE", "KEY ID", "CREATED", "PUBLIC KEY"],
            &rows,
            false
        )
    );
}

/// What `POST /api/v1/signing-keys` said.
pub(crate) enum Registered {
    New(SigningKeyView),
    /// 409: this key is registered already.
    Already,
}

/// Registers a key's public half with the server (`POST /api/v1/signing-keys`).
pub(crate) async fn register(
    session: &crate::client::Session,
    info: &KeyInfo,
) -> Result<Registered> {
    let PublicKey::Ed25519(bytes) = &info.public_key else {
        bail!("key {} is not an Ed25519 key", info.name);
    };
    let body = SigningKeyRequest {
        name: info.name.clone(),
        public_key: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        webauthn_credential: None,
    };
    match session.post("/api/v1/signing-keys", &body).await {
        Ok(reply) => Ok(Registered::New(reply)),
        Err(error)
            if error
                .downcast_ref::<crate::client::ApiError>()
                .is_some_and(|e| e.status == reqwest::StatusCode::CONFLICT) =>
        {
            Ok(Registered::Already)
        }
        Err(error) => Err(error.context(format!("registering key {}", info.name))),
    }
}

// ---------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------

/// argon2id cost parameters, stored in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// For an offline KDF run once per signature: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// Refuses parameters a tampered file could use to exhaust memory or time.
    fn check(&self) -> Result<()> {
        ensure!(
            (8..=1024 * 1024).contains(&self.memory_kib)
                && (1..=64).contains(&self.iterations)
                && (1..=16).contains(&self.parallelism),
            "unsupported argon2id parameters (m={} KiB, t={}, p={})",
            self.memory_kib,
            self.iterations,
            self.parallelism
        );
        Ok(())
    }
}

/// The public part of a key, as read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub name: String,
    pub kind: String,
    pub public_key: PublicKey,
    /// "operator" or "root:<tenant id>": a hint for people, never trusted.
    pub role: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub path: PathBuf,
}

impl KeyInfo {
    pub fn key_id(&self) -> KeyId {
        self.public_key.id()
    }

    pub fn public_hex(&self) -> String {
        match &self.public_key {
            PublicKey::Ed25519(bytes) => hex::encode(bytes),
            _ => String::new(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "kind": self.kind,
            "public_key": self.public_hex(),
            "key_id": hex::encode(self.key_id().0),
            "role": self.role,
            "created_at": self.created_at,
            "path": self.path.display().to_string(),
        })
    }
}

/// A wrong passphrase (or an altered file: the two look the same to AEAD).
#[derive(Debug)]
pub struct WrongPassphrase {
    pub name: String,
}

impl std::fmt::Display for WrongPassphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrong passphrase for key {} (or its file has been altered)",
            self.name
        )
    }
}

impl std::error::Error for WrongPassphrase {}

pub fn is_wrong_passphrase(error: &anyhow::Error) -> bool {
    error.downcast_ref::<WrongPassphrase>().is_some()
}

/// The key store: one directory of key files.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
    kdf: KdfParams,
}

impl KeyStore {
    /// `$BULWARK_CONFIG_DIR/keys` (the directory `bulwark login` uses, plus `keys`).
    pub fn open_default() -> Result<Self> {
        Self::open(crate::client::Credentials::dir()?.join("keys"))
    }

    /// A store in `dir`, created with mode 0700 (an existing one is tightened).
    pub fn open(dir: PathBuf) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating the key store {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
        Ok(Self {
            dir,
            kdf: KdfParams::DEFAULT,
        })
    }

    /// Uses other argon2id parameters for keys created from now on (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn with_kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of key `name` (which need not exist).
    pub fn path_of(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.dir.join(format!("{name}.key")))
    }

    pub fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.path_of(name)?.exists())
    }

    /// Would `create(name, role)` be accepted? (Checked before asking for a passphrase.)
    pub fn check_new(&self, name: &str, role: &str) -> Result<()> {
        check_role(role)?;
        let path = self.path_of(name)?;
        ensure!(
            !path.exists(),
            "a key named {name} already exists ({})",
            path.display()
        );
        Ok(())
    }

    /// Creates a key, asking for a new passphrase (twice) or taking it from
    /// `BULWARK_KEY_PASSPHRASE`.
    pub fn create(&self, name: &str, role: &str) -> Result<PublicKey> {
        self.check_new(name, role)?;
        let passphrase = Self::passphrase(true)?;
        Ok(self.create_with(name, role, &passphrase)?.0.public_key)
    }

    /// Creates a key sealed with `passphrase`; returns it unsealed too, so a
    /// caller that signs right away does not pay the KDF twice.
    pub fn create_with(
        &self,
        name: &str,
        role: &str,
        passphrase: &str,
    ) -> Result<(KeyInfo, SigningKey)> {
        self.check_new(name, role)?;
        ensure!(
            passphrase.chars().count() >= MIN_PASSPHRASE_CHARS,
            "the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters"
        );
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let public = key.verifying_key().to_bytes();
        let created_at = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            .format(&time::format_description::well_known::Rfc3339)
            .context("formatting the creation time")?;
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let mut file = KeyFile {
            format: FORMAT.to_owned(),
            version: FORMAT_VERSION,
            name: name.to_owned(),
            kind: KIND.to_owned(),
            public_key: hex::encode(public),
            role: role.to_owned(),
            created_at,
            kdf: KdfSection {
                algorithm: KDF_ALGORITHM.to_owned(),
                argon2_version: 0x13,
                memory_kib: self.kdf.memory_kib,
                iterations: self.kdf.iterations,
                parallelism: self.kdf.parallelism,
                salt: hex::encode(salt),
            },
            cipher: CipherSection {
                algorithm: CIPHER_ALGORITHM.to_owned(),
                nonce: hex::encode(nonce),
                sealed_seed: String::new(),
            },
        };
        let wrapping = derive_key(passphrase, &salt, self.kdf)?;
        let aead = aead_key(&wrapping)?;
        // Room for the tag up front: no reallocation leaves a copy of the seed behind.
        let mut sealed = Zeroizing::new(Vec::with_capacity(32 + 16));
        sealed.extend_from_slice(key.as_bytes());
        aead.seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(file.associated_data()),
            &mut *sealed,
        )
        .map_err(|_| anyhow!("sealing the key failed"))?;
        file.cipher.sealed_seed = hex::encode(&*sealed);
        let path = self.path_of(name)?;
        write_new_private(&path, &serde_json::to_vec_pretty(&file)?)?;
        let info = file.info(path)?;
        Ok((info, key))
    }

    /// The public part of key `name`.
    pub fn info(&self, name: &str) -> Result<KeyInfo> {
        let path = self.path_of(name)?;
        ensure!(
            path.exists(),
            "no key named {name} in {} (see `bulwark keys list`)",
            self.dir.display()
        );
        read_key_file(&path)?.info(path)
    }

    /// Opens key `name` with `passphrase`.
    pub fn load_signing_key(&self, name: &str, passphrase: &str) -> Result<SigningKey> {
        let path = self.path_of(name)?;
        ensure!(
            path.exists(),
            "no key named {name} in {} (see `bulwark keys list`)",
            self.dir.display()
        );
        let file = read_key_file(&path)?;
        let info = file.info(path.clone())?;
        let params = KdfParams {
            memory_kib: file.kdf.memory_kib,
            iterations: file.kdf.iterations,
            parallelism: file.kdf.parallelism,
        };
        let salt = hex::decode(&file.kdf.salt).context("the salt is not hex")?;
        let nonce: [u8; 12] = hex::decode(&file.cipher.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .with_context(|| format!("{} is damaged: bad nonce", path.display()))?;
        let mut sealed = Zeroizing::new(
            hex::decode(&file.cipher.sealed_seed)
                .with_context(|| format!("{} is damaged: sealed seed", path.display()))?,
        );
        let wrapping = derive_key(passphrase, &salt, params)?;
        let aead = aead_key(&wrapping)?;
        let plain = aead
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(file.associated_data()),
                &mut sealed,
            )
            .map_err(|_| WrongPassphrase {
                name: name.to_owned(),
            })?;
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            <[u8; 32]>::try_from(&*plain)
                .map_err(|_| anyhow!("{} is damaged: the seed is not 32 bytes", path.display()))?,
        );
        let key = SigningKey::from_bytes(&seed);
        ensure!(
            PublicKey::Ed25519(key.verifying_key().to_bytes()) == info.public_key,
            "{} is damaged: its seed does not match its public key",
            path.display()
        );
        Ok(key)
    }

    /// Every key in the store, by name. Files that cannot be read are
    /// reported on stderr and skipped.
    pub fn list(&self) -> Result<Vec<KeyInfo>> {
        self.scan(true)
    }

    /// The local key with this public key, if this machine holds it.
    pub fn find_by_public(&self, public: &PublicKey) -> Result<Option<KeyInfo>> {
        Ok(self
            .scan(false)?
            .into_iter()
            .find(|k| k.public_key == *public))
    }

    fn scan(&self, warn: bool) -> Result<Vec<KeyInfo>> {
        let mut keys = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "key") {
                continue;
            }
            match read_key_file(&path).and_then(|file| file.info(path.clone())) {
                Ok(info) => keys.push(info),
                Err(error) if warn => {
                    eprintln!("warning: skipping {}: {error:#}", path.display());
                }
                Err(_) => {}
            }
        }
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    /// Same as the free function [`passphrase`].
    pub fn passphrase(confirm: bool) -> Result<Zeroizing<String>> {
        passphrase(confirm)
    }
}

/// The passphrase: `BULWARK_KEY_PASSPHRASE` if set, else asked on the
/// terminal without echo; `confirm` (for a new key) asks twice and requires
/// at least [`MIN_PASSPHRASE_CHARS`] characters.
pub fn passphrase(confirm: bool) -> Result<Zeroizing<String>> {
    let prompt = if confirm {
        "New key passphrase: "
    } else {
        "Key passphrase: "
    };
    read_passphrase(prompt, confirm)
}

/// Unlocks several keys in one command, asking for each passphrase at most
/// once: passphrases already given in this run are tried first.
#[derive(Default)]
pub struct Unlocker {
    known: Vec<Zeroizing<String>>,
    from_env: bool,
}

impl Unlocker {
    pub fn new() -> Self {
        match std::env::var(PASSPHRASE_ENV) {
            Ok(passphrase) if !passphrase.is_empty() => Self {
                known: vec![Zeroizing::new(passphrase)],
                from_env: true,
            },
            _ => Self::default(),
        }
    }

    /// Tries `passphrase` first from now on (e.g. the one just chosen for new keys).
    pub fn remember(&mut self, passphrase: Zeroizing<String>) {
        if !self.known.contains(&passphrase) {
            self.known.push(passphrase);
        }
    }

    pub fn unlock(&mut self, store: &KeyStore, name: &str) -> Result<SigningKey> {
        for passphrase in &self.known {
            match store.load_signing_key(name, passphrase) {
                Ok(key) => return Ok(key),
                Err(error) if is_wrong_passphrase(&error) => {}
                Err(error) => return Err(error),
            }
        }
        if self.from_env {
            return Err(WrongPassphrase {
                name: name.to_owned(),
            }
            .into());
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let passphrase = read_passphrase(&format!("Passphrase for key {name}: "), false)?;
            match store.load_signing_key(name, &passphrase) {
                Ok(key) => {
                    self.known.push(passphrase);
                    return Ok(key);
                }
                Err(error) if is_wrong_passphrase(&error) && attempts < 3 => {
                    eprintln!("{error}; try again.");
                }
                Err(error) => return Err(error),
            }
        }
    }
}

fn read_passphrase(prompt: &str, confirm: bool) -> Result<Zeroizing<String>> {
    let passphrase = match std::env::var(PASSPHRASE_ENV) {
        Ok(passphrase) if !passphrase.is_empty() => Zeroizing::new(passphrase),
        _ => {
            let first = Zeroizing::new(rpassword::prompt_password(prompt).with_context(|| {
                format!("no terminal to ask for the key passphrase: set {PASSPHRASE_ENV}")
            })?);
            if confirm {
                ensure!(
                    first.chars().count() >= MIN_PASSPHRASE_CHARS,
                    "the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters"
                );
                let again = Zeroizing::new(
                    rpassword::prompt_password("Repeat the passphrase: ")
                        .context("reading the passphrase")?,
                );
                ensure!(first == again, "the two passphrases differ");
            }
            first
        }
    };
    ensure!(!passphrase.is_empty(), "the passphrase is empty");
    if confirm {
        ensure!(
            passphrase.chars().count() >= MIN_PASSPHRASE_CHARS,
            "the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters"
        );
    }
    Ok(passphrase)
}

// ---------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    version: u32,
    name: String,
    kind: String,
    public_key: String,
    role: String,
    created_at: String,
    kdf: KdfSection,
    cipher: CipherSection,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfSection {
    algorithm: String,
    argon2_version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherSection {
    algorithm: String,
    nonce: String,
    sealed_seed: String,
}

impl KeyFile {
    /// Every field but the nonce (itself an AEAD input) and the sealed seed,
    /// each length-prefixed so no two headers give the same bytes.
    fn associated_data(&self) -> Vec<u8> {
        let fields = [
            self.format.clone(),
            self.version.to_string(),
            self.name.clone(),
            self.kind.clone(),
            self.public_key.clone(),
            self.role.clone(),
            self.created_at.clone(),
            self.kdf.algorithm.clone(),
            self.kdf.argon2_version.to_string(),
            self.kdf.memory_kib.to_string(),
            self.kdf.iterations.to_string(),
            self.kdf.parallelism.to_string(),
            self.kdf.salt.clone(),
            self.cipher.algorithm.clone(),
        ];
        let mut out = Vec::new();
        for field in fields {
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }

    fn info(&self, path: PathBuf) -> Result<KeyInfo> {
        let public: [u8; 32] = hex::decode(&self.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{} is damaged: bad public key", path.display()))?;
        Ok(KeyInfo {
            name: self.name.clone(),
            kind: self.kind.clone(),
            public_key: PublicKey::Ed25519(public),
            role: self.role.clone(),
            created_at: self.created_at.clone(),
            path,
        })
    }
}

fn read_key_file(path: &Path) -> Result<KeyFile> {
    check_private(path)?;
    let metadata =
        std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        metadata.len() <= MAX_FILE_BYTES,
        "{} is too large to be a key file",
        path.display()
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: KeyFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a Bulwark key file", path.display()))?;
    ensure!(
        file.format == FORMAT,
        "{} is not a Bulwark key file",
        path.display()
    );
    ensure!(
        file.version == FORMAT_VERSION,
        "{} has key file version {}; this bulwark reads version {FORMAT_VERSION}",
        path.display(),
        file.version
    );
    ensure!(
        file.kind == KIND,
        "{} holds a {:?} key; only {KIND} is supported",
        path.display(),
        file.kind
    );
    ensure!(
        file.kdf.algorithm == KDF_ALGORITHM
            && file.kdf.argon2_version == 0x13
            && file.cipher.algorithm == CIPHER_ALGORITHM,
        "{} uses an unsupported KDF or cipher",
        path.display()
    );
    KdfParams {
        memory_kib: file.kdf.memory_kib,
        iterations: file.kdf.iterations,
        parallelism: file.kdf.parallelism,
    }
    .check()
    .with_context(|| format!("{} is damaged", path.display()))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    ensure!(
        file.name == stem,
        "{} holds key {:?}: a key file must be named after its key",
        path.display(),
        file.name
    );
    Ok(file)
}

fn derive_key(passphrase: &str, salt: &[u8], params: KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    params.check()?;
    let argon_params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|e| anyhow!("invalid argon2id parameters: {e}"))?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut *out)
        .map_err(|e| anyhow!("deriving the key from the passphrase: {e}"))?;
    Ok(out)
}

fn aead_key(key: &[u8; 32]) -> Result<ring::aead::LessSafeKey> {
    let unbound = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, key)
        .map_err(|_| anyhow!("ChaCha20-Poly1305 is unavailable"))?;
    Ok(ring::aead::LessSafeKey::new(unbound))
}

/// Key names become file names: keep them plain.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    ensure!(
        first_ok
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
        "invalid key name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    );
    Ok(())
}

fn check_role(role: &str) -> Result<()> {
    let ok = role == "operator"
        || role.strip_prefix("root:").is_some_and(|tenant| {
            !tenant.is_empty()
                && tenant.len() <= 128
                && tenant.chars().all(|c| c.is_ascii_graphic())
        });
    ensure!(
        ok,
        "invalid role {role:?}: use \"operator\" or \"root:<tenant id>\""
    );
    Ok(())
}

/// Refuses a key file others can read: someone may have copied it.
fn check_private(path: &Path) -> Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:o}); it must be 0600: check who copied it, then `chmod 600` it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// Writes a new 0600 file atomically, never replacing an existing one.
fn write_new_private(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().context("a key file path has no directory")?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("a key file path has no name")?;
    let mut temp_name = String::from(".");
    let _ = write!(temp_name, "{name}.tmp");
    let temp = dir.join(temp_name);
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("creating {}", temp.display()))?;
    // The mode given to open() is reduced by the umask, never widened.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()));
    drop(file);
    // A hard link, unlike rename, fails if the key exists: never overwrite a key.
    let linked = written.and_then(|()| {
        std::fs::hard_link(&temp, path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow!(
                    "a key named {} already exists",
                    name.trim_end_matches(".key")
                )
            } else {
                anyhow::Error::new(error).context(format!("writing {}", path.display()))
            }
        })
    });
    let _ = std::fs::remove_file(&temp);
    linked?;
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn store() -> (tempfile::TempDir, KeyStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(dir.path().join("keys"))
            .expect("open")
            .with_kdf(CHEAP);
        (dir, store)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn create_and_load_round_trip_with_the_real_parameters() {
        let (_dir, store) = store();
        let store = store.with_kdf(KdfParams::DEFAULT);
        let (info, key) = store
            .create_with("alice", "operator", "correct horse battery")
            .expect("create");
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&info.path), 0o600);
        assert_eq!(info.path, store.dir().join("alice.key"));
        assert_eq!(
            info.public_key,
            PublicKey::Ed25519(key.verifying_key().to_bytes())
        );
        let text = std::fs::read_to_string(&info.path).expect("read");
        let file: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(file["kdf"]["memory_kib"], 65536);
        assert_eq!(file["kdf"]["iterations"], 3);
        assert_eq!(file["kdf"]["parallelism"], 1);
        assert_eq!(file["public_key"], info.public_hex());
        assert!(!text.contains(&hex::encode(key.as_bytes())));

        let loaded = store
            .load_signing_key("alice", "correct horse battery")
            .expect("load");
        assert_eq!(loaded.to_bytes(), key.to_bytes());
        assert_eq!(store.info("alice").expect("info"), info);
    }

    #[test]
    fn a_wrong_passphrase_is_named_as_such() {
        let (_dir, store) = store();
        store
            .create_with("bob", "operator", "right passphrase")
            .expect("create");
        let error = store
            .load_signing_key("bob", "wrong passphrase")
            .expect_err("wrong passphrase");
        assert!(is_wrong_passphrase(&error));
        assert!(
            error
                .to_string()
                .starts_with("wrong passphrase for key bob"),
            "{error}"
        );
    }

    #[test]
    fn an_edited_header_does_not_open() {
        let (_dir, store) = store();
        let (info, _) = store
            .create_with("carol", "operator", "right passphrase")
            .expect("create");
        let (other, _) = store
            .create_with("mallory", "operator", "right passphrase")
            .expect("create");
        let original = std::fs::read_to_string(&info.path).expect("read");
        let edits: [(&str, String); 4] = [
            ("public_key", other.public_hex()),
            ("role", "root:some-tenant".to_owned()),
            ("created_at", "2001-01-01T00:00:00Z".to_owned()),
            ("kdf.iterations", "2".to_owned()),
        ];
        for (field, value) in edits {
            let mut file: serde_json::Value = serde_json::from_str(&original).expect("json");
            match field.split_once('.') {
                Some((section, key)) => {
                    file[section][key] = serde_json::json!(value.parse::<u32>().expect("number"))
                }
                None => file[field] = serde_json::json!(value),
            }
            std::fs::write(
                &info.path,
                serde_json::to_vec_pretty(&file).expect("serialise"),
            )
            .expect("write");
            let error = store
                .load_signing_key("carol", "right passphrase")
                .expect_err(field);
            assert!(is_wrong_passphrase(&error), "{field}: {error:#}");
        }
        // A key file renamed to another key's name is refused outright.
        std::fs::write(&info.path, &original).expect("restore");
        std::fs::remove_file(&other.path).expect("remove");
        std::fs::rename(&info.path, &other.path).expect("rename");
        let error = store
            .load_signing_key("mallory", "right passphrase")
            .expect_err("renamed");
        assert!(
            format!("{error:#}").contains("named after its key"),
            "{error:#}"
        );
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let (_dir, store) = store();
        let (info, _) = store
            .create_with("dave", "operator", "right passphrase")
            .expect("create");
        std::fs::set_permissions(&info.path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let error = store
            .load_signing_key("dave", "right passphrase")
            .expect_err("0644");
        assert!(
            format!("{error:#}").contains("readable by other users"),
            "{error:#}"
        );
        assert!(store.info("dave").is_err());
        assert!(store.list().expect("list").is_empty());
        std::fs::set_permissions(&info.path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        assert!(store.load_signing_key("dave", "right passphrase").is_ok());
    }

    #[test]
    fn list_and_find_by_public_key() {
        let (_dir, store) = store();
        assert!(store.list().expect("list").is_empty());
        let (b, _) = store
            .create_with("b-key", "root:3f2a", "passphrase 1")
            .expect("create");
        let (a, _) = store
            .create_with("a-key", "operator", "passphrase 2")
            .expect("create");
        std::fs::write(store.dir().join("notes.txt"), "not a key").expect("write");
        let keys = store.list().expect("list");
        assert_eq!(keys, vec![a.clone(), b.clone()]);
        assert_eq!(keys[1].role, "root:3f2a");
        assert_eq!(
            store.find_by_public(&b.public_key).expect("find"),
            Some(b.clone())
        );
        let stranger = PublicKey::Ed25519(
            SigningKey::generate(&mut rand::rngs::OsRng)
                .verifying_key()
                .to_bytes(),
        );
        assert_eq!(store.find_by_public(&stranger).expect("find"), None);
        let json = a.to_json();
        assert_eq!(json["key_id"], hex::encode(a.key_id().0));
        assert_eq!(json["public_key"], a.public_hex());
    }

    #[test]
    fn names_roles_passphrases_and_duplicates_are_checked() {
        let (_dir, store) = store();
        for bad in ["", "../x", ".hidden", "a b", "a/b", &"x".repeat(65)] {
            assert!(
                store.create_with(bad, "operator", "long enough").is_err(),
                "{bad:?}"
            );
        }
        for bad in ["admin", "root:", "root:a b", "Operator"] {
            assert!(store.create_with("k", bad, "long enough").is_err(), "{bad}");
        }
        assert!(store.create_with("k", "operator", "short").is_err());
        let (first, _) = store
            .create_with("k", "operator", "long enough")
            .expect("create");
        let error = store
            .create_with("k", "operator", "long enough")
            .expect_err("duplicate");
        assert!(error.to_string().contains("already exists"), "{error}");
        // The first key is untouched.
        assert_eq!(store.info("k").expect("info"), first);
        assert!(store.load_signing_key("k", "long enough").is_ok());
        assert!(store.info("missing").is_err());
    }

    #[test]
    fn absurd_kdf_parameters_in_a_file_are_refused_before_running() {
        let (_dir, store) = store();
        let (info, _) = store
            .create_with("erin", "operator", "long enough")
            .expect("create");
        let mut file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&info.path).expect("read"))
                .expect("json");
        file["kdf"]["memory_kib"] = serde_json::json!(u32::MAX);
        std::fs::write(&info.path, serde_json::to_vec(&file).expect("json")).expect("write");
        let error = store
            .load_signing_key("erin", "long enough")
            .expect_err("huge memory");
        assert!(
            format!("{error:#}").contains("unsupported argon2id"),
            "{error:#}"
        );
    }
}
