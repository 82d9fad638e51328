//! Signed notes and checkpoints: published vectors reproduced byte for byte,
//! our own golden checkpoint, and each malformed or forged note refused
//! with its own error.

use bulwark_translog::checkpoint::{
    Checkpoint, ExtensionError, check_extension, verify_log_note, verify_note,
};
use bulwark_translog::note::{NoteError, NoteSigner, NoteVerifier, key_id, open_note};
use bulwark_translog::{Hash, Limits, ProofError, consistency_proof, root_of_leaf_hashes};
use ed25519_dalek::SigningKey;

mod reference;
use reference::{Store, leaves};

// golang.org/x/mod/sumdb/note, note_test.go (TestSign, TestOpen).
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

// c2sp.org/signed-note, the example of the spec's earlier revision.
const FOO_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const FOO_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

// A real tree head of the Go checksum database, signed by sum.golang.org,
// whose verifier key Go pins in cmd/go/internal/modfetch/key.go.
const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
const SUMDB_NOTE: &str = "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n\u{2014} sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n";

/// Our own golden checkpoint: seed [7; 32], key name = origin.
const GOLDEN: &str = "bulwark.example/acme\n5\ndihGbCg0fZyrcpX95LY6z/nxx91AMt7Akva6V4hkZrY=\n\n\u{2014} bulwark.example/acme 376y+64nos7JmMLmZMSuUfT+HHJYoOaSkb0R4SAmuzXLRryddu5o+3TtqDj/ZXAPLC+8k6DC4KB7DuU3aAYQvG9L2Qo=\n";
/// Its verifier key, as Go's `note.NewVerifier` reads it.
const GOLDEN_VKEY: &str =
    "bulwark.example/acme+dfbeb2fb+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs";

fn limits() -> Limits {
    Limits::default()
}

fn log_signer() -> NoteSigner {
    NoteSigner::new("bulwark.example/acme", SigningKey::from_bytes(&[7; 32])).expect("valid name")
}

fn golden_checkpoint() -> Checkpoint {
    let root = root_of_leaf_hashes(&leaves(5, 9));
    Checkpoint::new("bulwark.example/acme", 5, root, vec![]).expect("valid")
}

#[test]
fn go_note_vector_peter_neumann_is_reproduced_byte_for_byte() {
    let signer = NoteSigner::from_skey(PETER_SKEY).expect("Go's signer key parses");
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(
        signer.verifier().to_vkey(),
        PETER_VKEY,
        "the derived verifier key"
    );
    let note = signer.sign(PETER_TEXT).expect("sign");
    assert_eq!(
        note,
        format!("{PETER_TEXT}\n{PETER_SIG}"),
        "Go's note.Sign output"
    );

    let peter = NoteVerifier::from_vkey(PETER_VKEY).expect("Go's verifier key parses");
    assert_eq!(open_note(&note, &peter, &limits()), Ok(PETER_TEXT));
    // Two signatures; the unknown one (Enoch's, to a Peter-only verifier) is ignored.
    let both = format!("{PETER_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    assert_eq!(open_note(&both, &peter, &limits()), Ok(PETER_TEXT));
    let enoch = NoteVerifier::from_vkey(ENOCH_VKEY).expect("parses");
    assert_eq!(
        open_note(&both, &enoch, &limits()),
        Ok(PETER_TEXT),
        "Enoch's signature verifies too"
    );
    assert!(matches!(
        open_note(&note, &enoch, &limits()),
        Err(NoteError::NoTrustedSignature {
            key_id: 0xaf0cfe78,
            ..
        })
    ));
}

#[test]
fn go_verifier_key_manglings_are_refused() {
    // As note_test.go's TestNewVerifier: every proper substring, every byte bumped.
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if (i, j) != (0, b.len())
                && let Ok(s) = std::str::from_utf8(&b[i..j])
            {
                assert!(
                    NoteVerifier::from_vkey(s).is_err(),
                    "substring {s:?} accepted"
                );
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] += 1;
        let s = String::from_utf8(m).expect("ascii");
        // Bumping a hex digit's case can give the same key id; everything else must fail.
        if s.to_lowercase() != PETER_VKEY.to_lowercase() {
            assert!(
                NoteVerifier::from_vkey(&s).is_err(),
                "mangled key {s:?} accepted"
            );
        }
    }
    for bad in [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(NoteVerifier::from_vkey(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_signed_note_spec_example_verifies() {
    let foo = NoteVerifier::from_vkey(FOO_VKEY).expect("parses");
    assert_eq!(
        open_note(FOO_NOTE, &foo, &limits()),
        Ok("This is an example message.\n")
    );
}

#[test]
fn a_real_go_checksum_database_tree_head_is_a_checkpoint() {
    let sumdb = NoteVerifier::from_vkey(SUMDB_VKEY).expect("Go's pinned key parses");
    let cp = verify_note(SUMDB_NOTE, &sumdb, &limits()).expect("sum.golang.org signed it");
    assert_eq!(cp.origin(), "go.sum database tree");
    assert_eq!(cp.size(), 65209736);
    assert!(cp.extensions().is_empty());
    assert_eq!(
        cp.to_note_body(),
        SUMDB_NOTE.split("\n\n").next().expect("body").to_owned() + "\n"
    );
}

#[test]
fn golden_checkpoint_byte_for_byte() {
    let signer = log_signer();
    let note = golden_checkpoint().sign(&signer);
    assert_eq!(note, GOLDEN);
    assert_eq!(signer.verifier().to_vkey(), GOLDEN_VKEY);
    assert_eq!(NoteVerifier::from_vkey(GOLDEN_VKEY), Ok(signer.verifier()));
    let cp = verify_note(&note, &signer.verifier(), &limits()).expect("round trip");
    assert_eq!(cp, golden_checkpoint());
}

#[test]
fn round_trip_with_extensions() {
    let signer = log_signer();
    let cp = Checkpoint::new(
        "bulwark.example/acme",
        0,
        Hash::empty_tree(),
        vec!["ext one".into(), "2".into()],
    )
    .expect("valid");
    let note = cp.sign(&signer);
    assert_eq!(verify_note(&note, &signer.verifier(), &limits()), Ok(cp));
}

fn check(note: &str, expect: NoteError) {
    let verifier = log_signer().verifier();
    assert_eq!(
        verify_note(note, &verifier, &limits()),
        Err(expect),
        "note {note:?}"
    );
}

fn signed(body: &str) -> String {
    log_signer().sign(body).expect("a text ending in a newline")
}

#[test]
fn forged_and_malformed_notes_are_refused() {
    let good = golden_checkpoint().sign(&log_signer());
    let body = golden_checkpoint().to_note_body();
    let lines: Vec<&str> = body.lines().collect();
    let sig_line = good.rsplit_once("\n\n").expect("split").1;
    let bad_sig = NoteError::BadSignature {
        name: "bulwark.example/acme".into(),
    };
    let untrusted = NoteError::NoTrustedSignature {
        name: "bulwark.example/acme".into(),
        key_id: log_signer().key_id(),
    };

    // A body line changed after signing.
    check(&good.replacen("\n5\n", "\n6\n", 1), bad_sig.clone());
    check(&good.replacen("acme", "acmf", 1), bad_sig.clone());
    // Signed by another key under the same name: the key id differs, so unknown.
    let mallory =
        NoteSigner::new("bulwark.example/acme", SigningKey::from_bytes(&[66; 32])).expect("name");
    check(&golden_checkpoint().sign(&mallory), untrusted.clone());
    // Another key given our key id: the signature must then verify, and does not.
    let mut blob = base64_decode(sig_line.rsplit_once(' ').expect("sig").1.trim_end());
    let forged_sig = mallory_sign_with_our_id(&body, &mut blob);
    check(&forged_sig, bad_sig.clone());
    // Our key under a different key id: unknown.
    let mut wrong_id = base64_decode(sig_line.rsplit_once(' ').expect("sig").1.trim_end());
    wrong_id[0] ^= 1;
    check(
        &format!(
            "{body}\n\u{2014} bulwark.example/acme {}\n",
            base64_encode(&wrong_id)
        ),
        untrusted.clone(),
    );
    // No signature at all.
    check(&format!("{body}\n"), NoteError::NoSignatures);
    check(&body, NoteError::NoSignatureBlock);
    // Extra whitespace.
    check(
        &good.replacen("\u{2014} ", "\u{2014}  ", 1),
        NoteError::BadKeyName(String::new()),
    );
    check(
        &format!("{} \n", good.trim_end()),
        NoteError::MalformedSignatureLine {
            line: 1,
            reason: "the signature is not base64",
        },
    );
    check(&format!("{good}\n"), NoteError::NoSignatures);
    check(
        &good.replacen("\u{2014} ", "-- ", 1),
        NoteError::MalformedSignatureLine {
            line: 1,
            reason: "it does not start with an em dash and a space",
        },
    );
    check(
        good.trim_end(),
        NoteError::MalformedSignatureLine {
            line: 1,
            reason: "the last signature line does not end with a newline",
        },
    );
    check(
        &signed(&format!(" {body}")),
        NoteError::MalformedCheckpoint("the origin has leading or trailing whitespace"),
    );
    check(
        &signed(&format!("{}\n5 \n{}\n", lines[0], lines[2])),
        NoteError::MalformedCheckpoint("the size is not a decimal number"),
    );
    check(
        &signed(&format!("{}\n5\n{} \n", lines[0], lines[2])),
        NoteError::MalformedCheckpoint("the root hash is not base64"),
    );
    check(&good.replacen('\n', "\r\n", 1), NoteError::ControlCharacter);
    // Size with leading zeros or a sign.
    for size in [
        "05",
        "+5",
        "-5",
        "00",
        "",
        "5.0",
        "0x5",
        "18446744073709551616",
    ] {
        let expect = match size {
            "05" | "00" => NoteError::MalformedCheckpoint("the size has leading zeros"),
            "18446744073709551616" => {
                NoteError::MalformedCheckpoint("the size does not fit in 64 bits")
            }
            _ => NoteError::MalformedCheckpoint("the size is not a decimal number"),
        };
        check(
            &signed(&format!("{}\n{size}\n{}\n", lines[0], lines[2])),
            expect,
        );
    }
    // Root hash: not base64, wrong length, non-canonical padding or trailing bits.
    for root in [
        "not base64!",
        "AAAA",
        "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo",
        "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRp=",
    ] {
        let note = signed(&format!("{}\n5\n{root}\n", lines[0]));
        let err = verify_note(&note, &log_signer().verifier(), &limits()).expect_err(root);
        assert!(
            matches!(err, NoteError::MalformedCheckpoint(_)),
            "root {root:?}: {err}"
        );
    }
    // Missing lines, empty origin, empty extension line.
    check(
        &signed(&format!("{}\n5\n", lines[0])),
        NoteError::MalformedCheckpoint("the body needs an origin, a size and a root hash line"),
    );
    check(
        &signed(&format!("\n5\n{}\n", lines[2])),
        NoteError::MalformedCheckpoint("the origin line is empty"),
    );
    // Over-long: the whole note, its lines, its signatures, its origin.
    check(
        &format!("{}{}", good, sig_line.repeat(1000)),
        NoteError::TooLarge("note bytes"),
    );
    check(
        &format!("{}{}", good, sig_line.repeat(40)),
        NoteError::TooLarge("signatures"),
    );
    check(
        &signed(&format!("{}{}", body, "x\n".repeat(200))),
        NoteError::TooLarge("note lines"),
    );
    check(
        &signed(&format!("{}\n5\n{}\n", "o".repeat(257), lines[2])),
        NoteError::TooLarge("origin"),
    );
    let tight = Limits {
        max_note_bytes: good.len() - 1,
        ..Limits::default()
    };
    assert_eq!(
        verify_note(&good, &log_signer().verifier(), &tight),
        Err(NoteError::TooLarge("note bytes"))
    );
    // Still fine: the good note, and the good note with an unknown cosignature.
    assert!(verify_note(&good, &log_signer().verifier(), &limits()).is_ok());
    let cosigned = format!("{good}\u{2014} witness.example AAAAAAB0ZXN0\n");
    assert!(verify_note(&cosigned, &log_signer().verifier(), &limits()).is_ok());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Mallory signs the body with her key but claims our key id.
fn mallory_sign_with_our_id(body: &str, blob: &mut [u8]) -> String {
    use ed25519_dalek::Signer;
    let sig = SigningKey::from_bytes(&[66; 32]).sign(body.as_bytes());
    blob[4..].copy_from_slice(&sig.to_bytes());
    format!(
        "{body}\n\u{2014} bulwark.example/acme {}\n",
        base64_encode(blob)
    )
}

#[test]
fn key_ids_follow_the_spec() {
    let signer = log_signer();
    assert_eq!(
        signer.key_id(),
        key_id(
            "bulwark.example/acme",
            &SigningKey::from_bytes(&[7; 32]).verifying_key()
        )
    );
    for bad in ["", "a b", "a+b", "tab\there"] {
        assert_eq!(
            NoteSigner::new(bad, SigningKey::from_bytes(&[7; 32])).map(|_| ()),
            Err(NoteError::BadKeyName(bad.into())),
            "{bad:?}"
        );
    }
}

// ---- check_extension: what an agent runs between two tree heads. ----

fn head(origin: &str, all: &[Hash], size: u64) -> Checkpoint {
    Checkpoint::new(
        origin,
        size,
        root_of_leaf_hashes(&all[..size as usize]),
        vec![],
    )
    .expect("valid")
}

#[test]
fn an_agent_refuses_a_forked_truncated_or_rewritten_log() {
    let all = leaves(20, 11);
    let o = "bulwark.example/acme";
    let proof = |old, new| {
        let store = Store::new(&all, new);
        consistency_proof(old, new, |id| store.get(id)).expect("generate")
    };
    let (old, new) = (head(o, &all, 7), head(o, &all, 20));
    assert_eq!(
        check_extension(&old, &new, &proof(7, 20)),
        Ok(()),
        "a genuine extension"
    );
    assert_eq!(
        check_extension(&old, &old, &[]),
        Ok(()),
        "the same head again"
    );
    let empty = Checkpoint::new(o, 0, Hash::empty_tree(), vec![]).expect("valid");
    assert_eq!(
        check_extension(&empty, &new, &[]),
        Ok(()),
        "everything extends the empty log"
    );

    // Truncated: the new head is smaller.
    assert_eq!(
        check_extension(&new, &old, &proof(7, 20)),
        Err(ExtensionError::Shrunk { old: 20, new: 7 })
    );
    // Another log.
    let other = head("bulwark.example/other", &all, 20);
    assert!(matches!(
        check_extension(&old, &other, &proof(7, 20)),
        Err(ExtensionError::OriginMismatch { .. })
    ));
    // Rewritten: entry 3 changed, the log re-signed at 20.
    let mut rewritten = all.clone();
    rewritten[3] = bulwark_translog::leaf_hash(b"rewritten");
    let forged = head(o, &rewritten, 20);
    let forged_proof = {
        let store = Store::new(&rewritten, 20);
        consistency_proof(7u64, 20u64, |id| store.get(id)).expect("generate")
    };
    assert!(
        matches!(
            check_extension(&old, &forged, &forged_proof),
            Err(ExtensionError::NotAnExtension(_))
        ),
        "rewritten history"
    );
    // Forked: same size, different root.
    let fork = head(o, &rewritten, 7);
    assert_eq!(
        check_extension(&old, &fork, &[]),
        Err(ExtensionError::NotAnExtension(
            ProofError::EqualSizesDifferentRoots
        ))
    );
    // A proof for other sizes, or none.
    assert!(
        check_extension(&old, &new, &proof(6, 20)).is_err(),
        "a proof from 6"
    );
    assert_eq!(
        check_extension(&old, &new, &[]),
        Err(ExtensionError::NotAnExtension(ProofError::EmptyProof))
    );
    // A bogus "empty" head.
    let bogus = Checkpoint::new(o, 0, all[0], vec![]).expect("valid");
    assert_eq!(
        check_extension(&bogus, &new, &[]),
        Err(ExtensionError::BadEmptyRoot)
    );
    assert_eq!(
        check_extension(&empty, &new, &proof(7, 20)),
        Err(ExtensionError::NotAnExtension(ProofError::TooManyHashes))
    );
}

#[test]
fn a_logs_head_is_signed_under_its_origin_and_read_either_way() {
    let log = log_signer();
    let key = log.verifier();
    let origin = format!("{}/tenant-1", log.name());
    let cp = Checkpoint::new(origin.as_str(), 5, Hash([1; 32]), vec![]).expect("checkpoint");
    // C2SP: the signature's key name is the origin.
    let note = cp.sign_as_log(&log).expect("signed");
    assert!(note.contains(&format!("\n\u{2014} {origin} ")), "{note}");
    assert_eq!(verify_log_note(&note, &key, &limits()), Ok(cp.clone()));
    // A head signed before, under the key's own name, still opens.
    assert_eq!(
        verify_log_note(&cp.sign(&log), &key, &limits()),
        Ok(cp.clone())
    );
    // Not under some third name, and not a head of another key's logs.
    let other_name = log.renamed("elsewhere/tenant-1").expect("renamed");
    assert!(matches!(
        verify_log_note(&cp.sign(&other_name), &key, &limits()),
        Err(NoteError::NoTrustedSignature { .. })
    ));
    let foreign = Checkpoint::new("elsewhere/tenant-1", 5, Hash([1; 32]), vec![]).expect("cp");
    assert!(matches!(
        verify_log_note(&foreign.sign(&log), &key, &limits()),
        Err(NoteError::MalformedCheckpoint(_))
    ));
}
