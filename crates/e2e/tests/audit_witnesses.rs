//! Witness cosignatures in `bulwark audit verify` (RFD 0006) against the
//! real binaries, played as the attacker who owns the server: the log key
//! is in its data directory (`log/log.skey`), so a tenant's history can be
//! rewritten, its tree rebuilt and every head re-signed. An auditor who
//! saved no head accepts that history (exit 0: the finding of issue 14);
//! with the witnesses' keys (`--witness`, or the tenant's root-signed
//! policy) it refuses it with exit 4, because no witness cosigns a fork,
//! while the honest history, cosigned, verifies. A witness's cosignature
//! copied onto the re-signed head does not verify (exit 1).
//!
//! The witnesses are played by the test (`Cosigner`): the server has no
//! way to obtain their cosignatures, so every head it hands out lacks them.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::tenants::TenantView;
use bulwark_e2e::{Finished, OperatorSetup, copy_dir, json_lines, write_json_lines};
use bulwark_protocol::audit_leaf::AuditLeaf;
use bulwark_translog::proof::{ProofError, consistency_proof};
use bulwark_translog::{Checkpoint, Cosigner, Hash, NoteSigner, leaf_hash, root_of_leaf_hashes};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

const PASSPHRASE: &str = "e2e audit witnesses: a passphrase nobody guesses";
const TENANT: &str = "witnessed";
/// When the test's witnesses cosign: 2023-11-14T22:13:20Z.
const COSIGNED_AT: u64 = 1_700_000_000;
const COSIGNED_AT_UTC: &str = "2023-11-14T22:13:20Z";

async fn events(s: &OperatorSetup, n: usize) -> Result<()> {
    for _ in 0..n {
        s.api.issue_token_reply(TENANT).await?;
    }
    Ok(())
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

fn head_json(dir: &Path) -> Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        dir.join("head.json"),
    )?)?)
}

/// The checkpoint body a cosignature signs: the note up to its blank line.
fn body(note: &str) -> Result<&str> {
    Ok(&note[..note.find("\n\n").context("a note without a blank line")? + 1])
}

/// Appends `witness`'s cosignature of `over` (a note's body) to the newest
/// head of the directory: its last `checkpoints.ndjson` line and
/// `head.json`, which are the same head.
fn cosign_newest(dir: &Path, witness: &Cosigner, over: Option<&str>) -> Result<()> {
    let mut checkpoints = json_lines(dir, "checkpoints.ndjson")?;
    let last = checkpoints.last_mut().context("no checkpoints")?;
    let note = last["note"].as_str().context("note")?.to_owned();
    let line = witness.cosign(over.unwrap_or(body(&note)?), COSIGNED_AT)?;
    last["note"] = json!(format!("{note}{line}"));
    write_json_lines(dir, "checkpoints.ndjson", &checkpoints)?;
    let mut head = head_json(dir)?;
    let note = head["note"].as_str().context("head note")?.to_owned();
    head["note"] = json!(format!("{note}{line}"));
    std::fs::write(dir.join("head.json"), format!("{head}\n"))?;
    Ok(())
}

/// The attacker's work on a copy of `export`: one entry's actor changed to
/// `mallory` (an entry that is no trust statement and no job, so the
/// meaning still replays), the leaf hashes listed beside the entries
/// rebuilt, every head re-signed over the new tree with the stolen log key,
/// the consistency proofs recomputed. Returns the entry rewritten.
fn rewrite(export: &Path, to: &Path, signer: &NoteSigner) -> Result<u64> {
    let dir = copy_dir(export, to)?;
    let mut entries = json_lines(&dir, "entries.ndjson")?;
    let mut leaves: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| Ok(B64.decode(e["leaf"].as_str().context("leaf")?)?))
        .collect::<Result<_>>()?;
    let target = (0..leaves.len())
        .rev()
        .find(|&i| {
            AuditLeaf::decode(&leaves[i])
                .is_ok_and(|l| !l.action.starts_with("trust.") && !l.action.starts_with("job."))
        })
        .context("no entry to rewrite")?;
    let mut leaf = AuditLeaf::decode(&leaves[target])?;
    leaf.actor = "mallory".into();
    leaves[target] = leaf.encode();
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
    entries[target]["leaf"] = json!(B64.encode(&leaves[target]));
    entries[target]["hash"] = json!(B64.encode(hashes[target].0));
    write_json_lines(&dir, "entries.ndjson", &entries)?;

    let resign = |note: &str, size: u64| -> Result<String> {
        let origin = note.lines().next().context("origin")?;
        let size_usize = usize::try_from(size)?;
        Ok(Checkpoint::new(
            origin,
            size,
            root_of_leaf_hashes(&hashes[..size_usize]),
            vec![],
        )?
        .sign(signer))
    };
    let mut checkpoints = json_lines(&dir, "checkpoints.ndjson")?;
    for line in &mut checkpoints {
        let size = line["size"].as_u64().context("size")?;
        let note = resign(line["note"].as_str().context("note")?, size)?;
        line["note"] = json!(note);
    }
    write_json_lines(&dir, "checkpoints.ndjson", &checkpoints)?;
    let mut head = head_json(&dir)?;
    let size = head["size"].as_u64().context("size")?;
    head["note"] = json!(resign(head["note"].as_str().context("note")?, size)?);
    std::fs::write(dir.join("head.json"), format!("{head}\n"))?;

    let mut proofs = json_lines(&dir, "proofs.ndjson")?;
    for line in &mut proofs {
        let from = line["from"].as_u64().context("from")?;
        let to = line["to"].as_u64().context("to")?;
        let proof = consistency_proof::<ProofError>(from, to, |node| {
            let first = usize::try_from(node.first_leaf()).expect("small tree");
            Ok(root_of_leaf_hashes(
                &hashes[first..first + (1usize << node.level)],
            ))
        })?;
        line["hashes"] = json!(proof.iter().map(|h| B64.encode(h.0)).collect::<Vec<_>>());
    }
    write_json_lines(&dir, "proofs.ndjson", &proofs)?;
    Ok(u64::try_from(target)?)
}

/// The `--json` reply of a verify that exited with `code`.
fn reply(what: &str, out: &Finished, code: i32) -> Result<Value> {
    ensure!(
        out.status.code() == Some(code),
        "{what}: expected exit {code}, got {}:\n{}",
        out.status,
        out.all_output()
    );
    serde_json::from_str(&out.stdout)
        .with_context(|| format!("{what}: not JSON:\n{}", out.all_output()))
}

/// A verify refused for lack of cosignatures (exit 4), with `cosigned` of
/// the witnesses on the newest head.
fn not_witnessed(what: &str, out: &Finished, cosigned: u64) -> Result<Value> {
    let reply = reply(what, out, 4)?;
    ensure!(
        reply["ok"] == false
            && reply["problem"] == "not_witnessed"
            && reply["witnesses"]["ok"] == false
            && reply["witnesses"]["cosigned"] == cosigned,
        "{what}: {reply}"
    );
    Ok(reply)
}

#[tokio::test]
async fn witnesses_expose_a_history_rewritten_and_re_signed_with_the_log_key() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let _: TenantView = s
        .api
        .post_as("/api/v1/tenants", &json!({ "name": TENANT }))
        .await?;
    s.cli(&["tenant", "init", "--tenant", TENANT], None)
        .await?
        .ok()?;
    events(&s, 8).await?;
    let work = s.work.path();
    let one = Cosigner::new("witness.test/one", SigningKey::from_bytes(&[41; 32]))?;
    let two = Cosigner::new("witness.test/two", SigningKey::from_bytes(&[42; 32]))?;
    let (vkey_one, vkey_two) = (one.verifier().to_vkey(), two.verifier().to_vkey());
    // An auditor with nothing saved: no session, no pinned key, no pinned
    // root, no saved head. Only what it is told out of band.
    let fresh = work.join("fresh-auditor");
    std::fs::create_dir_all(&fresh)?;
    let auditor = |args: Vec<String>| {
        let fresh = fresh.clone();
        let s = &s;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            s.cli_in(&fresh, &args, None).await
        }
    };
    let verify_from = |dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "audit".to_owned(),
            "verify".to_owned(),
            "--from".to_owned(),
            text(dir),
            "--json".to_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    };

    let export = work.join("export");
    s.cli(
        &[
            "audit",
            "export",
            "--tenant",
            TENANT,
            "--out",
            &text(&export),
        ],
        None,
    )
    .await?
    .ok()?;
    let honest_newest = json_lines(&export, "checkpoints.ndjson")?
        .last()
        .and_then(|l| l["note"].as_str().map(str::to_owned))
        .context("newest head")?;

    // The attack: the stolen log key re-signs a rewritten history.
    let skey = std::fs::read_to_string(s.up.data_dir().join("log").join("log.skey"))?;
    let signer = NoteSigner::from_skey(skey.trim())?;
    let forged = work.join("forged");
    let rewritten = rewrite(&export, &forged, &signer)?;

    // 1. Without witnesses, the rewritten history passes, for the fresh
    //    auditor and for the operator who pinned the tenant's root alike:
    //    every head is signed by the real log key and every entry matches.
    for out in [
        auditor(verify_from(&forged, &[])).await?,
        s.cli(
            &["audit", "verify", "--from", &text(&forged), "--json"],
            None,
        )
        .await?,
    ] {
        let r = reply("the rewritten export, no witnesses", &out, 0)?;
        ensure!(
            r["ok"] == true && r["meaning_replayed"] == true && r["witnesses"]["checked"] == false,
            "{r}"
        );
    }
    let changed = json_lines(&forged, "entries.ndjson")?;
    let leaf = B64.decode(
        changed[usize::try_from(rewritten)?]["leaf"]
            .as_str()
            .context("leaf")?,
    )?;
    ensure!(AuditLeaf::decode(&leaf)?.actor == "mallory");

    // 2. With the witness's key, the same auditor refuses it: exit 4, and
    //    nobody cosigned.
    let out = auditor(verify_from(&forged, &["--witness", &vkey_one])).await?;
    let r = not_witnessed("the rewritten export, --witness", &out, 0)?;
    ensure!(
        r["witnesses"]["source"]["kind"] == "flags"
            && r["witnesses"]["required"] == 1
            && r["witnesses"]["witnesses"][0]["cosigned_at"].is_null(),
        "{r}"
    );
    // The text output names who did not cosign.
    let out = s
        .cli_in(
            &fresh,
            &[
                "audit",
                "verify",
                "--from",
                &text(&forged),
                "--witness",
                &vkey_one,
            ],
            None,
        )
        .await?;
    ensure!(
        out.status.code() == Some(4)
            && out.stdout.contains("NOT WITNESSED")
            && out.stdout.contains("witness.test/one did NOT cosign")
            && out.stdout.contains("not_witnessed"),
        "{}",
        out.all_output()
    );

    // 3. The honest history, cosigned by the witness, passes; the time of
    //    each cosignature is printed.
    let cosigned = copy_dir(&export, &work.join("cosigned"))?;
    cosign_newest(&cosigned, &one, None)?;
    let out = auditor(verify_from(&cosigned, &["--witness", &vkey_one])).await?;
    let r = reply("the honest export, cosigned", &out, 0)?;
    ensure!(
        r["ok"] == true
            && r["witnesses"]["ok"] == true
            && r["witnesses"]["cosigned"] == 1
            && r["witnesses"]["head_size"] == r["size"]
            && r["witnesses"]["witnesses"][0]["cosigned_at"] == COSIGNED_AT
            && r["witnesses"]["witnesses"][0]["cosigned_at_utc"] == COSIGNED_AT_UTC,
        "{r}"
    );
    let out = s
        .cli_in(
            &fresh,
            &[
                "audit",
                "verify",
                "--from",
                &text(&cosigned),
                "--witness",
                &vkey_one,
            ],
            None,
        )
        .await?
        .ok()?;
    ensure!(
        out.stdout
            .contains(&format!("witness.test/one cosigned at {COSIGNED_AT_UTC}")),
        "{}",
        out.stdout
    );
    // Two witnesses listed, one cosigned: all are required by default...
    let out = auditor(verify_from(
        &cosigned,
        &["--witness", &vkey_one, "--witness", &vkey_two],
    ))
    .await?;
    let r = not_witnessed("one of two", &out, 1)?;
    ensure!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("2 required, 1 of the 2") && m.contains("witness.test/one")),
        "{r}"
    );
    // ...or as many as --witnesses-required says.
    let out = auditor(verify_from(
        &cosigned,
        &[
            "--witness",
            &vkey_one,
            "--witness",
            &vkey_two,
            "--witnesses-required",
            "1",
        ],
    ))
    .await?;
    reply("one of two, one required", &out, 0)?;
    // The honest export as the server wrote it: the server could not get
    // this witness's cosignature, so it is not witnessed either.
    let out = auditor(verify_from(&export, &["--witness", &vkey_one])).await?;
    not_witnessed("the server's export, uncosigned", &out, 0)?;

    // 4. The witness's cosignature of the honest head copied onto the
    //    re-signed one: it does not verify, the head was altered (exit 1).
    let copied = copy_dir(&forged, &work.join("forged-copied"))?;
    cosign_newest(&copied, &one, Some(body(&honest_newest)?))?;
    let out = auditor(verify_from(&copied, &["--witness", &vkey_one])).await?;
    let r = reply("a copied cosignature", &out, 1)?;
    ensure!(r["problem"] == "bad_cosignature", "{r}");

    // 5. Usage errors (exit 2): a K above the witnesses given, a log key
    //    given as a witness key, a witness twice, K without witnesses.
    let log_vkey = signer.verifier().to_vkey();
    for extra in [
        vec!["--witness", vkey_one.as_str(), "--witnesses-required", "2"],
        vec!["--witness", log_vkey.as_str()],
        vec![
            "--witness",
            vkey_one.as_str(),
            "--witness",
            vkey_one.as_str(),
        ],
        vec!["--witnesses-required", "1"],
    ] {
        let out = auditor(verify_from(&cosigned, &extra)).await?;
        ensure!(
            out.status.code() == Some(2),
            "{extra:?}: {}",
            out.all_output()
        );
    }

    // 6. Online: the server hands out no cosignature of this witness.
    let out = s
        .cli(
            &[
                "audit",
                "verify",
                "--tenant",
                TENANT,
                "--witness",
                &vkey_one,
                "--json",
            ],
            None,
        )
        .await?;
    not_witnessed("online, --witness", &out, 0)?;

    // 7. The witnesses named by the tenant's root-signed policy, with no
    //    flag: the operator's machine pinned the root (`tenant init`), and
    //    the replay of the log finds the policy in force.
    let toml = s
        .cli(&["policy", "show", "--tenant", TENANT, "--toml"], None)
        .await?
        .ok()?
        .stdout;
    if toml.contains("[witnesses]") {
        bail!("the tenant's policy already names witnesses:\n{toml}");
    }
    let toml = format!(
        "{toml}\n[witnesses]\nrequired = 1\nfreshness_secs = 600\n\n[[witnesses.list]]\nvkey = \"{vkey_one}\"\n"
    );
    let file = work.join("policy.toml");
    std::fs::write(&file, toml)?;
    s.cli(
        &["policy", "sign", "--tenant", TENANT, "--file", &text(&file)],
        None,
    )
    .await?
    .ok()?;
    events(&s, 3).await?;
    let export2 = work.join("export-2");
    s.cli(
        &[
            "audit",
            "export",
            "--tenant",
            TENANT,
            "--out",
            &text(&export2),
        ],
        None,
    )
    .await?
    .ok()?;
    let mine = |dir: &Path| {
        let (dir, s) = (text(dir), &s);
        async move {
            s.cli(&["audit", "verify", "--from", &dir, "--json"], None)
                .await
        }
    };
    let out = mine(&export2).await?;
    let r = not_witnessed("the policy's witnesses, uncosigned", &out, 0)?;
    ensure!(
        r["witnesses"]["source"]["kind"] == "policy"
            && r["witnesses"]["source"]["root_pinned"] == true
            && r["witnesses"]["source"]["policy_version"].as_u64() >= Some(2),
        "{r}"
    );
    let cosigned2 = copy_dir(&export2, &work.join("cosigned-2"))?;
    cosign_newest(&cosigned2, &one, None)?;
    let r = reply(
        "the policy's witnesses, cosigned",
        &mine(&cosigned2).await?,
        0,
    )?;
    ensure!(
        r["witnesses"]["ok"] == true && r["witnesses"]["source"]["kind"] == "policy",
        "{r}"
    );
    // The rewritten, re-signed history is refused by the policy's witnesses.
    let forged2 = work.join("forged-2");
    rewrite(&export2, &forged2, &signer)?;
    not_witnessed(
        "the policy's witnesses, rewritten",
        &mine(&forged2).await?,
        0,
    )?;
    // Online too, with no flag.
    let out = s
        .cli(&["audit", "verify", "--tenant", TENANT, "--json"], None)
        .await?;
    let r = not_witnessed("online, the policy's witnesses", &out, 0)?;
    ensure!(r["witnesses"]["source"]["kind"] == "policy", "{r}");
    Ok(())
}
