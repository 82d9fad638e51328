//! A software passkey for tests: a ring P-256 key answering the server's
//! WebAuthn options with the bytes a browser and a CTAP2 authenticator
//! would send (clientDataJSON as Chrome writes it, authenticator data per
//! WebAuthn §6.1, a "none" attestation object in CBOR).

#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const UP: u8 = 0x01;
pub const UV: u8 = 0x04;
pub const BE: u8 = 0x08;
pub const AT: u8 = 0x40;

pub struct SoftPasskey {
    pair: EcdsaKeyPair,
    pub credential_id: Vec<u8>,
    /// The signature counter: each assertion adds one first.
    pub counter: u32,
    /// Where the "browser" runs (`http://localhost:PORT`).
    pub origin: String,
    /// The RP id whose hash the authenticator writes.
    pub rp_id: String,
    /// Flags of assertions (UP and UV by default).
    pub flags: u8,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn cbor_head(out: &mut Vec<u8>, major: u8, len: usize) {
    let major = major << 5;
    match len {
        0..=23 => out.push(major | u8::try_from(len).expect("small")),
        24..=255 => {
            out.push(major | 24);
            out.push(u8::try_from(len).expect("u8"));
        }
        _ => {
            out.push(major | 25);
            out.extend_from_slice(&u16::try_from(len).expect("u16").to_be_bytes());
        }
    }
}

fn cbor_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    cbor_head(out, 2, bytes.len());
    out.extend_from_slice(bytes);
}

fn cbor_text(out: &mut Vec<u8>, text: &str) {
    cbor_head(out, 3, text.len());
    out.extend_from_slice(text.as_bytes());
}

impl SoftPasskey {
    /// A new credential for the console at `origin` (`scheme://host[:port]`).
    pub fn new(origin: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pkcs8");
        let mut credential_id = vec![0; 32];
        ring::rand::SecureRandom::fill(&rng, &mut credential_id).expect("random");
        let host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .split(':')
            .next()
            .expect("host")
            .to_owned();
        Self {
            pair,
            credential_id,
            counter: 0,
            origin: origin.trim_end_matches('/').to_owned(),
            rp_id: host,
            flags: UP | UV,
        }
    }

    /// The credential as a policy lists it (its RP id and P-256 key).
    pub fn webauthn_credential(&self) -> bulwark_policy::webauthn::WebAuthnCredential {
        bulwark_policy::webauthn::WebAuthnCredential {
            rp_id: self.rp_id.clone(),
            key: bulwark_policy::webauthn::CoseKey::Es256 {
                sec1: self
                    .pair
                    .public_key()
                    .as_ref()
                    .try_into()
                    .expect("65 bytes"),
            },
        }
    }

    pub fn credential_id_b64(&self) -> String {
        b64(&self.credential_id)
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        format!(
            r#"{{"type":"{kind}","challenge":"{challenge}","origin":"{}","crossOrigin":false}}"#,
            self.origin
        )
        .into_bytes()
    }

    fn auth_data(&self, flags: u8, counter: u32) -> Vec<u8> {
        let mut data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        data.push(flags);
        data.extend_from_slice(&counter.to_be_bytes());
        data
    }

    fn cose_key(&self) -> Vec<u8> {
        let point = self.pair.public_key().as_ref();
        let mut out = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cbor_bytes(&mut out, &point[1..33]);
        out.push(0x22);
        cbor_bytes(&mut out, &point[33..65]);
        out
    }

    fn sign(&self, auth_data: &[u8], client_data: &[u8]) -> Vec<u8> {
        let mut message = auth_data.to_vec();
        message.extend_from_slice(&Sha256::digest(client_data));
        self.pair
            .sign(&SystemRandom::new(), &message)
            .expect("sign")
            .as_ref()
            .to_vec()
    }

    /// `navigator.credentials.create` for the options of `ceremony`
    /// (`{ceremony, publicKey}`): the registration body, without its name.
    pub fn create(&self, ceremony: &Value) -> Value {
        let challenge = ceremony["publicKey"]["challenge"]
            .as_str()
            .expect("challenge");
        let client_data = self.client_data("webauthn.create", challenge);
        let mut auth_data = self.auth_data(UP | UV | AT, 0);
        auth_data.extend_from_slice(&[0; 16]); // AAGUID
        auth_data.extend_from_slice(
            &u16::try_from(self.credential_id.len())
                .expect("u16")
                .to_be_bytes(),
        );
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_key());
        let mut attestation = vec![0xa3];
        cbor_text(&mut attestation, "fmt");
        cbor_text(&mut attestation, "none");
        cbor_text(&mut attestation, "attStmt");
        attestation.push(0xa0);
        cbor_text(&mut attestation, "authData");
        cbor_bytes(&mut attestation, &auth_data);
        json!({
            "ceremony": ceremony["ceremony"],
            "attestationObject": b64(&attestation),
            "clientDataJSON": b64(&client_data),
        })
    }

    /// `navigator.credentials.get` for `ceremony` with the next counter.
    pub fn get(&mut self, ceremony: &Value) -> Value {
        self.counter += 1;
        self.get_with_counter(ceremony, self.counter)
    }

    /// `navigator.credentials.get` for `ceremony` claiming `counter`.
    pub fn get_with_counter(&self, ceremony: &Value, counter: u32) -> Value {
        let challenge = ceremony["publicKey"]["challenge"]
            .as_str()
            .expect("challenge");
        let client_data = self.client_data("webauthn.get", challenge);
        let auth_data = self.auth_data(self.flags, counter);
        json!({
            "ceremony": ceremony["ceremony"],
            "credentialId": self.credential_id_b64(),
            "authenticatorData": b64(&auth_data),
            "clientDataJSON": b64(&client_data),
            "signature": b64(&self.sign(&auth_data, &client_data)),
        })
    }
}

/// `into` with `extra`'s fields added (objects only).
pub fn with(mut into: Value, extra: Value) -> Value {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
    into
}
