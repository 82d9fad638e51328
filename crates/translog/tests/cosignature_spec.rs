//! Cosignatures checked by a second implementation of C2SP
//! tlog-cosignature/v1 (Ed25519), written here from the spec's text and
//! sharing no code with `bulwark_translog::cosignature`: the key ID, the
//! signed message and the `timestamped_signature` layout, byte by byte.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bulwark_translog::checkpoint::Checkpoint;
use bulwark_translog::cosignature::{CosignatureVerifier, Cosigner, cosignature_times};
use bulwark_translog::hash::Hash;
use bulwark_translog::note::NoteSigner;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use sha2::{Digest, Sha256};

/// "SHA-256(<name> || "\n" || 0x04 || 32-byte Ed25519 cosigner public key)[:4]"
fn spec_key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut input = name.as_bytes().to_vec();
    input.push(b'\n');
    input.push(0x04);
    input.extend_from_slice(public);
    let digest = Sha256::digest(&input);
    [digest[0], digest[1], digest[2], digest[3]]
}

/// "two newline terminated lines (one header line and one timestamp line)
/// followed by the whole note body of the cosigned checkpoint"
fn spec_message(body: &str, timestamp: u64) -> Vec<u8> {
    let mut message = b"cosignature/v1\n".to_vec();
    message.extend_from_slice(b"time ");
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'\n');
    message.extend_from_slice(body.as_bytes());
    message
}

fn checkpoint_note() -> (String, String) {
    let log = NoteSigner::new("log.example", SigningKey::from_bytes(&[5; 32])).expect("log key");
    let checkpoint =
        Checkpoint::new("log.example/acme", 20_852_163, Hash([3; 32]), vec![]).expect("checkpoint");
    (checkpoint.to_note_body(), checkpoint.sign(&log))
}

#[test]
fn our_cosignature_verifies_by_the_spec() {
    let secret = SigningKey::from_bytes(&[11; 32]);
    let public = secret.verifying_key().to_bytes();
    let name = "witness.example/w1";
    let (body, _) = checkpoint_note();
    let line = Cosigner::new(name, secret)
        .expect("cosigner")
        .cosign(&body, 1_679_315_147)
        .expect("cosign");

    // "— <key name> base64(32-bit key ID || signature)"
    let rest = line
        .strip_prefix("\u{2014} ")
        .and_then(|l| l.strip_suffix('\n'))
        .expect("a note signature line");
    let (line_name, b64) = rest.split_once(' ').expect("name and signature");
    assert_eq!(line_name, name);
    let blob = STANDARD.decode(b64).expect("base64");
    assert_eq!(
        blob.len(),
        4 + 8 + 64,
        "key ID, u64 timestamp, Ed25519 signature"
    );
    assert_eq!(blob[..4], spec_key_id(name, &public));
    // "the timestamp encoded in big-endian order"
    let timestamp = u64::from_be_bytes(blob[4..12].try_into().expect("8 bytes"));
    assert_eq!(timestamp, 1_679_315_147);
    let signature = Signature::from_bytes(&blob[12..].try_into().expect("64 bytes"));
    ed25519_dalek::VerifyingKey::from_bytes(&public)
        .expect("public key")
        .verify(&spec_message(&body, timestamp), &signature)
        .expect("the spec's message verifies");
}

#[test]
fn a_cosignature_made_by_the_spec_verifies_here() {
    let secret = SigningKey::from_bytes(&[12; 32]);
    let public = secret.verifying_key().to_bytes();
    let name = "witness.example/w2";
    let (body, note) = checkpoint_note();
    let timestamp = 1_700_000_000_u64;
    let mut blob = spec_key_id(name, &public).to_vec();
    blob.extend_from_slice(&timestamp.to_be_bytes());
    blob.extend_from_slice(&secret.sign(&spec_message(&body, timestamp)).to_bytes());
    let line = format!("\u{2014} {name} {}\n", STANDARD.encode(&blob));

    // "Ed25519 public keys MAY be encoded as vkeys with signature type 0x04"
    let mut material = vec![0x04];
    material.extend_from_slice(&public);
    let vkey = format!(
        "{name}+{}+{}",
        hex::encode(spec_key_id(name, &public)),
        STANDARD.encode(&material)
    );
    let witness = CosignatureVerifier::from_vkey(&vkey).expect("a type 0x04 vkey");
    let times = cosignature_times(
        &format!("{note}{line}"),
        &[witness],
        &bulwark_translog::Limits::default(),
    )
    .expect("the note reads");
    assert_eq!(times, [Some(timestamp)]);
}
