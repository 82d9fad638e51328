//! What `audit` reads from the server: the pinned log key, signed heads and
//! entries, and the announcement of every read (`log.exported`).

use super::*;

pub(super) fn decode_leaf(entry: &Value) -> Result<(u64, Vec<u8>)> {
    let index = entry["index"]
        .as_u64()
        .ok_or_else(|| anyhow!("an entry without an index: {entry}"))?;
    let leaf = entry["leaf"]
        .as_str()
        .ok_or_else(|| anyhow!("entry {index} has no leaf"))?;
    let leaf = B64
        .decode(leaf)
        .with_context(|| format!("entry {index}'s leaf is not base64"))?;
    Ok((index, leaf))
}

pub(super) fn decode_hashes(value: &Value) -> Result<Vec<Hash>> {
    value
        .as_array()
        .ok_or_else(|| anyhow!("a proof without hashes"))?
        .iter()
        .map(|h| {
            let bytes = B64
                .decode(h.as_str().unwrap_or_default())
                .context("a proof hash is not base64")?;
            Hash::try_from(bytes.as_slice()).map_err(|_| anyhow!("a proof hash is not 32 bytes"))
        })
        .collect()
}

/// Announces to the server that this tool is about to read the log at
/// `base` up to the head of size `tree_size` (`purpose`: `verify` or
/// `export`): the server records a `log.exported` event in that log, after
/// that head, so it is not part of what this run checks or writes. A
/// refusal is an error (exit 2): the log is not read unannounced.
pub(super) async fn announce(
    session: &Session,
    base: &str,
    purpose: &str,
    head: &Value,
) -> Result<()> {
    let tree_size = head["size"]
        .as_u64()
        .context("the server sent a head without a size")?;
    session
        .post(
            &format!("{base}/exports"),
            &json!({"purpose": purpose, "tree_size": tree_size}),
        )
        .await
        .with_context(|| {
            format!(
                "the server did not record this {purpose} of the log (POST {base}/exports); \
                 stopped before reading its entries"
            )
        })?;
    Ok(())
}

/// What an online `verify` or `export` starts from.
pub(super) struct ServedLog {
    pub(super) session: Session,
    /// The log's API path.
    pub(super) base: String,
    /// The log key the server serves (checked against the pinned one later).
    pub(super) vkey: String,
    /// The log's head, as `GET {base}` answers.
    pub(super) head: Value,
    pub(super) log_id: String,
}

/// Signs in from the saved credentials and reads the log key and the
/// head. Reading the head makes the server sign one covering the whole log.
pub(super) async fn served_log(choice: &LogChoice) -> Result<ServedLog> {
    let session = Session::load()?;
    let base = log_path(choice)?;
    let key = session.get("/api/v1/log/key").await?;
    let vkey = key["vkey"]
        .as_str()
        .context("the server sent no log key")?
        .to_owned();
    let head = session.get(&base).await?;
    let log_id = head["log_id"]
        .as_str()
        .context("the server sent no log id")?
        .to_owned();
    Ok(ServedLog {
        session,
        base,
        vkey,
        head,
        log_id,
    })
}

pub(super) fn log_path(choice: &LogChoice) -> Result<String> {
    match (&choice.tenant, choice.msp) {
        (Some(tenant), false) => Ok(format!("/api/v1/tenants/{}/log", path_segment(tenant)?)),
        (None, true) => Ok("/api/v1/msp/log".to_owned()),
        _ => bail!("name the log: --tenant NAME or --msp"),
    }
}

/// The log key to trust: `--log-key`, else the key pinned for this server
/// (pinned now on first use). A served key that differs is an error.
pub(super) fn trusted_key(
    served: &str,
    given: Option<&str>,
    server: Option<&str>,
    quiet: bool,
) -> Result<(NoteVerifier, String)> {
    let served = served.trim();
    if let Some(given) = given {
        let given = given.trim();
        ensure!(
            given == served,
            "the log key served ({served}) is not the one given with --log-key ({given})"
        );
        let verifier =
            NoteVerifier::from_vkey(given).map_err(|e| anyhow!("--log-key is unusable: {e}"))?;
        return Ok((verifier, "given with --log-key".to_owned()));
    }
    let verifier = NoteVerifier::from_vkey(served)
        .map_err(|e| anyhow!("the server's log key is unusable: {e}"))?;
    let Some(server) = server else {
        if !quiet {
            eprintln!(
                "warning: trusting the log key in the export ({served}); compare it out of band \
                 or pass --log-key"
            );
        }
        return Ok((verifier, "taken from the export (not pinned)".to_owned()));
    };
    match crate::pins::check_log_key(server, served)? {
        (path, None) => Ok((verifier, format!("pinned in {path}"))),
        (path, Some(_)) => {
            if !quiet {
                eprintln!(
                    "First use: pinned the log key {served}\n  in {path}. Compare it with the MSP out of band."
                );
            }
            Ok((verifier, format!("pinned now in {path} (first use)")))
        }
    }
}

pub(super) fn progress(total: u64, what: &'static str) -> indicatif::ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Every stored checkpoint of the log, smallest first.
pub(super) async fn fetch_checkpoints(session: &Session, base: &str) -> Result<Vec<(u64, String)>> {
    let mut out: Vec<(u64, String)> = Vec::new();
    let mut from = 0u64;
    loop {
        let page = session
            .get(&format!("{base}/checkpoints?from_size={from}&limit={PAGE}"))
            .await?;
        let list = page["checkpoints"]
            .as_array()
            .ok_or_else(|| anyhow!("the server's checkpoint list is malformed"))?;
        for c in list {
            let size = c["size"]
                .as_u64()
                .ok_or_else(|| anyhow!("a checkpoint without a size"))?;
            let note = c["note"]
                .as_str()
                .ok_or_else(|| anyhow!("a checkpoint without a note"))?;
            out.push((size, note.to_owned()));
            from = size + 1;
        }
        if (list.len() as u64) < PAGE {
            return Ok(out);
        }
    }
}

pub(super) async fn fetch_entries(
    session: &Session,
    base: &str,
    start: u64,
) -> Result<Vec<(u64, Vec<u8>)>> {
    let page = session
        .get(&format!("{base}/entries?start={start}&limit={PAGE}"))
        .await?;
    page["entries"]
        .as_array()
        .ok_or_else(|| anyhow!("the server's entry list is malformed"))?
        .iter()
        .map(decode_leaf)
        .collect()
}
