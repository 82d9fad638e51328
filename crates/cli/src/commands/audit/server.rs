//! What `audit` reads from the server: the pinned log key, signed heads and
//! entries, and the announcement of every read (`log.exported`).

use super::*;

/// The bytes of entry `index`'s leaf (standard base64, as served and
/// exported).
pub(super) fn leaf_bytes(index: u64, leaf: &str) -> Result<Vec<u8>> {
    B64.decode(leaf)
        .with_context(|| format!("entry {index}'s leaf is not base64"))
}

/// One hash of a proof or a compact range (standard base64 of 32 bytes).
pub(super) fn decode_hash(text: &str) -> Result<Hash> {
    let bytes = B64.decode(text).context("a proof hash is not base64")?;
    Hash::try_from(bytes.as_slice()).map_err(|_| anyhow!("a proof hash is not 32 bytes"))
}

pub(super) fn decode_hashes<S: AsRef<str>>(hashes: &[S]) -> Result<Vec<Hash>> {
    hashes.iter().map(|h| decode_hash(h.as_ref())).collect()
}

/// `GET path?query`, the query typed as the route takes it
/// (`bulwark_api::log::*Query`), the reply as the route answers.
pub(super) async fn get_query<Q: Serialize, T: DeserializeOwned>(
    session: &Session,
    path: &str,
    query: &Q,
) -> Result<T> {
    let request = session.request(reqwest::Method::GET, path).query(query);
    // Errors name the route with its query, as the URL sent.
    let what = request
        .try_clone()
        .and_then(|request| request.build().ok())
        .and_then(|request| request.url().query().map(|q| format!("{path}?{q}")))
        .unwrap_or_else(|| path.to_owned());
    session.authed(send(request, &what).await)
}

/// Announces to the server that this tool is about to read the log at
/// `base` up to `head` (`purpose`: `verify` or `export`): the server
/// records a `log.exported` event in that log, after that head, so it is
/// not part of what this run checks or writes. A refusal is an error
/// (exit 2): the log is not read unannounced.
pub(super) async fn announce(
    session: &Session,
    base: &str,
    purpose: ExportPurpose,
    head: &LogHeadView,
) -> Result<()> {
    let request = ExportRequest {
        purpose,
        tree_size: head.size,
    };
    session
        .post::<_, ExportRecorded>(&format!("{base}/exports"), &request)
        .await
        .with_context(|| {
            format!(
                "the server did not record this {} of the log (POST {base}/exports); \
                 stopped before reading its entries",
                purpose.as_str()
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
    pub(super) head: LogHeadView,
    pub(super) log_id: String,
}

/// Signs in from the saved credentials and reads the log key and the
/// head. Reading the head makes the server sign one covering the whole log.
pub(super) async fn served_log(choice: &LogChoice) -> Result<ServedLog> {
    let session = Session::load()?;
    let base = log_path(choice)?;
    let key: LogKeyView = session.get("/api/v1/log/key").await?;
    let vkey = key.vkey;
    let head: LogHeadView = session.get(&base).await?;
    let log_id = head.log_id.clone();
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
        let query = CheckpointsQuery {
            from_size: Some(from),
            limit: Some(PAGE),
        };
        let page: LogCheckpointsView =
            get_query(session, &format!("{base}/checkpoints"), &query).await?;
        let count = page.checkpoints.len() as u64;
        for checkpoint in page.checkpoints {
            from = checkpoint.size + 1;
            out.push((checkpoint.size, checkpoint.note));
        }
        if count < u64::from(PAGE) {
            return Ok(out);
        }
    }
}

/// A page of entries from `start` (up to [`PAGE`]), as served.
pub(super) async fn entry_page(
    session: &Session,
    base: &str,
    start: u64,
) -> Result<Vec<LogEntryView>> {
    let query = EntriesQuery {
        start: Some(start),
        limit: Some(PAGE),
    };
    let page: LogEntriesView = get_query(session, &format!("{base}/entries"), &query).await?;
    Ok(page.entries)
}

/// A page of entries from `start`, their leaves decoded.
pub(super) async fn fetch_entries(
    session: &Session,
    base: &str,
    start: u64,
) -> Result<Vec<(u64, Vec<u8>)>> {
    entry_page(session, base, start)
        .await?
        .iter()
        .map(|entry| Ok((entry.index, leaf_bytes(entry.index, &entry.leaf)?)))
        .collect()
}

/// The inclusion proof of entry `index` in the tree of size `tree_size`.
pub(super) async fn inclusion_proof(
    session: &Session,
    base: &str,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>> {
    let query = InclusionQuery { index, tree_size };
    let proof: InclusionProofView =
        get_query(session, &format!("{base}/proof/inclusion"), &query).await?;
    decode_hashes(&proof.hashes)
}

/// The consistency proof from size `from` to size `to`, as served.
pub(super) async fn consistency_proof(
    session: &Session,
    base: &str,
    from: u64,
    to: u64,
) -> Result<ConsistencyProofView> {
    let query = ConsistencyQuery { from, to };
    get_query(session, &format!("{base}/proof/consistency"), &query).await
}
