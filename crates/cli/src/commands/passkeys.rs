//! Approval passkeys (RFD 0005): created in the page this `bulwark` serves
//! on the operator's machine (`approval_page`), under the RP id
//! `bulwark-approve.localhost`, and kept in `$BULWARK_CONFIG_DIR/passkeys/`
//! (credential id and public key only; the private key never leaves the
//! authenticator). A policy lists such a passkey with the public key read
//! here from the authenticator's own registration, never from the server.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use bulwark_api::signing_keys::{SigningKeyRequest, SigningKeyView};
use bulwark_policy::webauthn::{
    MAX_ATTESTATION_OBJECT, MAX_CLIENT_DATA_JSON, MAX_CREDENTIAL_ID, WebAuthnCredential,
    WebAuthnSignature, parse_registration,
};
use bulwark_policy::{APPROVAL_RP_ID, PublicKey, SignatureEntry, Signed};
use rand::RngCore as _;
use serde_json::{Value, json};

use crate::approval_page::{self, Ceremony, field};

/// An approval passkey this machine registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApprovalPasskey {
    pub name: String,
    pub credential_id: Vec<u8>,
    pub credential: WebAuthnCredential,
}

impl ApprovalPasskey {
    /// How a policy lists it and a signature names it.
    pub fn key(&self) -> PublicKey {
        PublicKey::WebAuthn(self.credential.clone())
    }
}

fn dir() -> Result<PathBuf> {
    Ok(crate::client::Credentials::dir()?.join("passkeys"))
}

fn path_of(name: &str) -> Result<PathBuf> {
    crate::commands::keys::check_name(name)?;
    Ok(dir()?.join(format!("{name}.json")))
}

/// The approval passkey called `name` on this machine.
pub(crate) fn load(name: &str) -> Result<ApprovalPasskey> {
    let path = path_of(name)?;
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("no approval passkey {name:?} here (create one with `bulwark keys add-passkey --name {name}`)")
    })?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?;
    let credential_id = URL_SAFE_NO_PAD
        .decode(value["credential_id"].as_str().unwrap_or_default())
        .with_context(|| format!("{} is corrupt", path.display()))?;
    let credential: WebAuthnCredential = B64
        .decode(value["credential"].as_str().unwrap_or_default())
        .ok()
        .and_then(|b| bulwark_protocol::codec::from_canonical(&b).ok())
        .with_context(|| format!("{} is corrupt", path.display()))?;
    ensure!(
        credential.rp_id == APPROVAL_RP_ID,
        "{} is not an approval passkey",
        path.display()
    );
    Ok(ApprovalPasskey {
        name: name.to_owned(),
        credential_id,
        credential,
    })
}

fn save(passkey: &ApprovalPasskey) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = dir()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = path_of(&passkey.name)?;
    let text = serde_json::to_string_pretty(&json!({
        "name": passkey.name,
        "credential_id": URL_SAFE_NO_PAD.encode(&passkey.credential_id),
        "credential": B64.encode(bulwark_protocol::codec::to_canonical(&passkey.credential)),
    }))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| {
            format!(
                "creating {} (a passkey of that name exists?)",
                path.display()
            )
        })?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Ok(path)
}

/// `bulwark keys add-passkey`: the registration ceremony in the local page,
/// checked here, stored here, and registered with the server as one of the
/// caller's signing keys (its public half only).
pub(crate) async fn add(name: &str) -> Result<()> {
    path_of(name)?;
    ensure!(
        load(name).is_err(),
        "an approval passkey {name:?} exists already on this machine"
    );
    let mut user_id = [0u8; 16];
    let mut challenge = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut user_id);
    rand::rngs::OsRng.fill_bytes(&mut challenge);
    let registered = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = registered.clone();
    let check: approval_page::Check = Box::new(move |value: &Value| {
        let attestation = field(value, "attestation_object", MAX_ATTESTATION_OBJECT)?;
        let client_data = field(value, "client_data_json", MAX_CLIENT_DATA_JSON)?;
        let credential =
            parse_registration(&attestation, &client_data, &challenge, APPROVAL_RP_ID, true)
                .map_err(|e| {
                    anyhow::anyhow!("the authenticator's registration does not verify: {e}")
                })?;
        ensure!(
            credential.credential_id.len() <= MAX_CREDENTIAL_ID,
            "the credential id is too long"
        );
        let key_id = PublicKey::WebAuthn(credential.credential.clone()).id();
        *slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(credential);
        Ok(format!(
            "Created. Key id {}: bulwark shows the same in the terminal.",
            hex::encode(key_id.0)
        ))
    });
    approval_page::run(
        Ceremony::Register {
            name: name.to_owned(),
            user_id,
            challenge,
        },
        check,
    )
    .await?;
    let credential = registered
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .context("the page returned no credential")?;
    let passkey = ApprovalPasskey {
        name: name.to_owned(),
        credential_id: credential.credential_id,
        credential: credential.credential,
    };
    let path = save(&passkey)?;
    let key_id = hex::encode(passkey.key().id().0);
    println!(
        "Created approval passkey {name} (key id {key_id}) in {}.",
        path.display()
    );
    let session = crate::client::Session::load()?;
    let request = SigningKeyRequest {
        name: name.to_owned(),
        public_key: None,
        webauthn_credential: Some(
            B64.encode(bulwark_protocol::codec::to_canonical(&passkey.credential)),
        ),
    };
    let _: SigningKeyView = session
        .post("/api/v1/signing-keys", &request)
        .await
        .with_context(|| format!("registering passkey {name} with your account"))?;
    println!("Registered it with your account. A tenant's root holders list it with:");
    println!("  bulwark policy add-operator --tenant TENANT --passkey {name} --name \"YOUR NAME\"");
    Ok(())
}

/// The approval of `signed` by `passkey`, made in the local page: the
/// assertion is checked here with the agents' own rules before it leaves.
pub(crate) async fn approve(
    passkey: &ApprovalPasskey,
    signed: &Signed,
    summary: String,
    script: String,
) -> Result<WebAuthnSignature> {
    let key = passkey.key();
    let message = signed.signing_bytes();
    let key_id = key.id();
    let credential = passkey.credential.clone();
    let challenge = signed.approval_challenge();
    let check: approval_page::Check = Box::new(move |value: &Value| {
        let assertion = assertion_of(value)?;
        assertion
            .verify(&credential, &challenge, true)
            .map_err(|e| anyhow::anyhow!("the approval does not verify: {e}"))?;
        let entry = SignatureEntry {
            key_id,
            signature: [0; 64],
            webauthn: Some(assertion),
        };
        ensure!(
            key.verify(&message, &entry),
            "the approval does not verify as endpoints check it"
        );
        Ok(
            "Approved. bulwark sends your signature to the server now; you may close this page."
                .into(),
        )
    });
    let value = approval_page::run(
        Ceremony::Approve {
            summary,
            script,
            challenge,
            credential_id: passkey.credential_id.clone(),
        },
        check,
    )
    .await?;
    assertion_of(&value)
}

fn assertion_of(value: &Value) -> Result<WebAuthnSignature> {
    use bulwark_policy::webauthn::{MAX_AUTHENTICATOR_DATA, MAX_SIGNATURE};
    Ok(WebAuthnSignature {
        authenticator_data: field(value, "authenticator_data", MAX_AUTHENTICATOR_DATA)?,
        client_data_json: field(value, "client_data_json", MAX_CLIENT_DATA_JSON)?,
        signature: field(value, "signature", MAX_SIGNATURE)?,
    })
}
