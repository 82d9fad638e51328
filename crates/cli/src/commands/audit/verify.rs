//! `bulwark audit verify`: the checks, in order (pinpointing a changed
//! entry online is [`super::pinpoint`]).

use super::*;

/// Opens every checkpoint with the key; the log id from their origin.
pub(super) fn open_checkpoints(
    notes: &[(u64, String)],
    key: &NoteVerifier,
    log_id: &str,
) -> Result<Vec<Checkpoint>, Bad> {
    let limits = Limits::default();
    let origin = format!("{}/{log_id}", key.name());
    notes
        .iter()
        .map(|(size, note)| {
            let head = verify_log_note(note, key, &limits).map_err(|e| {
                Bad::head(
                    *size,
                    "bad_signature",
                    format!("the tree head of size {size} is not signed by the log key: {e}"),
                )
            })?;
            if head.size() != *size {
                return Err(Bad::head(
                    *size,
                    "bad_checkpoint",
                    format!("the tree head listed as size {size} says {}", head.size()),
                ));
            }
            if head.origin() != origin {
                return Err(Bad::head(
                    *size,
                    "origin_mismatch",
                    format!(
                        "the tree head of size {size} is of log {:?}, not {origin:?}",
                        head.origin()
                    ),
                ));
            }
            Ok(head)
        })
        .collect()
}

pub(super) struct Verified {
    pub(super) summary: AuditSummary,
    pub(super) latest_note: Option<String>,
    /// Offline, a directory holding only entries `[first, below)` of a log
    /// whose latest head in it has size `latest` (an archive).
    pub(super) partial: Option<(u64, u64, u64)>,
    /// The log's meaning was replayed: the released jobs checked.
    pub(super) replayed: Option<u64>,
    /// Offline, what the directory is (what it had to hold).
    pub(super) directory: Option<DirKind>,
    /// The newest head the entries are tied to: the latest head checked,
    /// or, for an archive, the newest head its consistency proofs reach
    /// from there. Witnesses must have cosigned it.
    pub(super) witnessed_size: u64,
    /// The version of the tenant's policy in force at the end of the
    /// replayed log, and its witnesses if it names any.
    pub(super) policy: Option<u64>,
    pub(super) policy_witnesses: Option<Witnesses>,
    /// The log's own records of archiving its absent prefix, if it has one
    /// (checked: a prefix removed without them fails as missing).
    pub(super) archiving: Option<Archiving>,
    /// The agents' alarms (`--alarms`), held against every entry checked.
    pub(super) alarms: Option<bulwark_protocol::alarm_record::AlarmCheck>,
}

pub(super) async fn verify(args: VerifyArgs) -> Result<i32> {
    let started = Instant::now();
    let quiet = args.json;
    // Witnesses given on the command line: a usage error stops here.
    let flag_witnesses = witnesses_from_flags(&args.witness, args.witnesses_required)?;
    // 1. The key, the log id and the checkpoints.
    let (source, served_key, log_id, notes, server, head) = match &args.from {
        Some(dir) => {
            let vkey = std::fs::read_to_string(dir.join("log.vkey"))
                .with_context(|| format!("reading {}", dir.join("log.vkey").display()))?;
            let lines = read_ndjson(&dir.join("checkpoints.ndjson"))?;
            let mut notes = lines
                .iter()
                .map(|c| {
                    Ok((
                        c["size"].as_u64().context("a checkpoint without a size")?,
                        c["note"]
                            .as_str()
                            .context("a checkpoint without a note")?
                            .to_owned(),
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let listed: Vec<(u64, bool)> = notes
                .iter()
                .zip(&lines)
                .map(|((size, _), line)| (*size, line.get("frontier").is_some()))
                .collect();
            let frontiers: Vec<u64> = listed
                .iter()
                .filter_map(|&(size, frontier)| frontier.then_some(size))
                .collect();
            // The head the export recorded is one more signed head it must
            // reach (checked with the others: signature, log, size).
            let recorded = read_recorded_head(dir)?;
            if let Some(recorded) = &recorded {
                notes.push((recorded.size, recorded.note.clone()));
                notes.sort_by_key(|(size, _)| *size);
            }
            let key = NoteVerifier::from_vkey(vkey.trim())
                .map_err(|e| anyhow!("log.vkey is unusable: {e}"))?;
            // The log id is what the checkpoints' origin names after the key name.
            let log_id = notes
                .first()
                .and_then(|(_, note)| note.lines().next())
                .and_then(|origin| origin.strip_prefix(&format!("{}/", key.name())))
                .map(str::to_owned)
                .context("the export holds no checkpoint of this key's logs")?;
            let mut entries = EntryFile::scan(dir)?;
            let readme = std::fs::read_to_string(dir.join("README.txt")).ok();
            let kind = dir_kind(&DirFacts {
                readme_title: readme.as_deref().and_then(|text| text.lines().next()),
                export_files: recorded.is_some() || dir.join(STATEMENTS).exists(),
                entries: (entries.below > entries.first).then_some((entries.first, entries.below)),
                heads: &listed,
            });
            if entries.below == entries.first {
                // None: they would start at the largest compact range given
                // (an export of a wholly archived log holds no entries).
                let newest = notes.iter().map(|(size, _)| *size).max().unwrap_or(0);
                let at = frontiers
                    .iter()
                    .copied()
                    .filter(|&size| size <= newest)
                    .max()
                    .unwrap_or(0);
                (entries.first, entries.below) = (at, at);
            }
            // Without a compact range at the first entry, nothing to replay
            // from: `check` names the entries missing before it.
            let start = if entries.first > 0 {
                frontier_of(dir, entries.first)?
            } else {
                None
            };
            (
                Source::Offline {
                    dir: dir.clone(),
                    entries,
                    start,
                    kind,
                    frontiers,
                    recorded_start: recorded.map(|r| r.archived_below),
                    listed_newest: listed.iter().map(|&(size, _)| size).max().unwrap_or(0),
                },
                vkey,
                log_id,
                notes,
                None,
                None,
            )
        }
        None => {
            let ServedLog {
                session,
                base,
                vkey,
                head,
                log_id,
            } = served_log(&args.log).await?;
            let mut notes = fetch_checkpoints(&session, &base).await?;
            // The head the server handed out is checked with the others
            // (signature, log, size): it may carry witness cosignatures
            // the stored copy lacks.
            if let Some(served) = &head.checkpoint
                && !notes.iter().any(|(_, note)| *note == served.note)
            {
                notes.push((served.size, served.note.clone()));
                notes.sort_by_key(|(size, _)| *size);
            }
            let server = session.server().to_owned();
            let archived_below = head.archived_below;
            let archived_frontier = if archived_below > 0 {
                decode_hashes(&head.archived_frontier)?
            } else {
                Vec::new()
            };
            let archives = archive_chain(&args.archive, &vkey, archived_below)?;
            (
                Source::Online {
                    session,
                    base,
                    archived_below,
                    archived_frontier,
                    archives,
                },
                vkey,
                log_id,
                notes,
                Some(server),
                Some(head),
            )
        }
    };
    let (key, key_status) = trusted_key(
        &served_key,
        args.log_key.as_deref(),
        server.as_deref(),
        quiet,
    )?;
    let saved = match &args.head {
        Some(path) => Some(read_saved_head(path, &key)?),
        None => None,
    };
    let alarms = read_alarms(&args.alarms, &log_id)?;
    let foreign_alarms = alarms.as_ref().map_or(0, |(_, foreign)| *foreign);
    // Announced once the local checks passed, before any entry is read.
    if let (Source::Online { session, base, .. }, Some(head)) = (&source, &head) {
        announce(session, base, ExportPurpose::Verify, head).await?;
    }

    let alarms = alarms.map(|(alarms, _)| alarms);
    let outcome = check(&source, &key, &log_id, &notes, saved, alarms, quiet).await?;
    // 6. The witnesses' cosignatures, once the log verified against its
    // heads: the flags, else the policy in force at the end of the log.
    let outcome = outcome.and_then(|verified| {
        let witnesses = flag_witnesses.or_else(|| verified.policy_witnesses.clone());
        let report = witnesses
            .map(|w| check_cosignatures(&notes, &w, verified.witnessed_size))
            .transpose()?;
        Ok((verified, report))
    });
    let elapsed = started.elapsed();
    match outcome {
        Ok((verified, Some(report))) if !report.ok() => {
            // Not witnessed: no head is saved for a later --head.
            let bad = report.shortfall();
            if args.json {
                let mut out = failure_json(&log_id, &bad);
                out["size"] = json!(verified.summary.size);
                out["witnesses"] = report.to_json();
                println!("{out}");
            } else {
                println!("Log {log_id}: NOT WITNESSED");
                println!("  tree head size:  {}", report.head_size);
                println!(
                    "  log:             entries {} to {} verified against heads signed by the \
                     log key alone",
                    verified.summary.start,
                    verified.summary.size.saturating_sub(1)
                );
                println!("  witnesses:       {}", report.summary());
                for line in report.lines() {
                    println!("                     {line}");
                }
                println!("  problem:         {} ({})", bad.message, bad.code);
            }
            Ok(EXIT_NOT_WITNESSED)
        }
        Ok((verified, report)) => {
            if let (Some(path), Some(note)) = (&args.save_head, &verified.latest_note) {
                std::fs::write(path, note)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let s = &verified.summary;
            let checked = s.size - s.start;
            let rate = checked as f64 / elapsed.as_secs_f64().max(1e-9);
            // Online without the archive: entries [0, start) were not checked.
            let unchecked = (s.start > 0 && verified.partial.is_none()).then_some(s.start);
            let alarm_report = verified.alarms.as_ref().map(|check| {
                AlarmReport::new(
                    check,
                    foreign_alarms,
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    args.alarm_grace.saturating_mul(60_000),
                    (s.start > 0).then_some(s.start),
                )
            });
            let archive = verified
                .partial
                .map(|(first, below, latest)| json!({"first": first, "below": below, "latest_head": latest}));
            if args.json {
                println!(
                    "{}",
                    json!({
                        "ok": true,
                        "log_id": log_id,
                        "size": s.size,
                        "first_checked": s.start,
                        "entries_checked": checked,
                        "archived_unchecked_below": unchecked,
                        "archiving": verified.archiving.as_ref().map(Archiving::to_json),
                        "archive": archive,
                        "directory": verified.directory.map(DirKind::as_str),
                        "root": B64.encode(s.root.0),
                        "heads_checked": s.heads_checked,
                        "heads_skipped": s.heads_skipped,
                        "saved_head_checked": s.saved_head_checked,
                        "meaning_replayed": verified.replayed.is_some(),
                        "released_jobs_checked": verified.replayed,
                        "log_key": served_key.trim(),
                        "witnesses": witness_json(report.as_ref(), &verified),
                        "alarms": alarm_report.as_ref().map(AlarmReport::to_json),
                        "seconds": elapsed.as_secs_f64(),
                        "entries_per_second": rate,
                    })
                );
            } else {
                match (unchecked, verified.partial) {
                    (Some(n), _) => println!(
                        "Log {log_id}: OK from entry {n} on; entries 0 to {} are ARCHIVED and \
                         were NOT checked",
                        n - 1
                    ),
                    (None, Some((first, below, latest))) if below < latest => println!(
                        "Log {log_id}: archive of entries {first} to {} OK (the log had {latest} \
                         entries when it was written)",
                        below.saturating_sub(1)
                    ),
                    (None, Some((first, below, _))) if below == first => println!(
                        "Log {log_id}: OK; entries 0 to {} are not in this directory (archived), \
                         and it holds no later ones",
                        first.saturating_sub(1)
                    ),
                    (None, Some((first, below, _))) => println!(
                        "Log {log_id}: entries {first} to {} OK; entries 0 to {} are not in this \
                         directory (archived)",
                        below.saturating_sub(1),
                        first.saturating_sub(1)
                    ),
                    (None, None) => println!("Log {log_id}: OK"),
                }
                println!("  log key:       {} ({key_status})", served_key.trim());
                println!(
                    "  entries:       {checked} checked, {} to {}",
                    s.start,
                    s.size.saturating_sub(1)
                );
                if let Some(n) = unchecked {
                    println!(
                        "  archived:      entries 0 to {} left the server (past the retention \
                         period); the server's subtree hashes of them give the signed head of size \
                         {n}, and earlier heads are consistent with it, but their contents were \
                         not checked: pass --archive DIR (the server's data_dir/archive/{log_id}/...)",
                        n - 1
                    );
                }
                if let Some((first, below, latest)) = verified.partial {
                    if first > 0 {
                        println!(
                            "  start:         from the compact range of entries 0 to {} given \
                             with the signed head of size {first}",
                            first - 1
                        );
                    }
                    if latest > below {
                        println!(
                            "  not here:      entries {below} to {} (checked only that the signed \
                             head of size {latest} extends the one of size {below})",
                            latest - 1
                        );
                    }
                }
                if let Some(archiving) = &verified.archiving {
                    println!("  archiving:     {}", archiving.summary());
                }
                println!(
                    "  root:          {} (size {})",
                    B64.encode(s.root.0),
                    s.size
                );
                println!("  signed heads:  {} checked", s.heads_checked);
                match verified.replayed {
                    Some(jobs) => println!(
                        "  meaning:       trust history and {jobs} released job(s) replayed with the agents' rules"
                    ),
                    None => println!(
                        "  meaning:       NOT replayed (the MSP log, a log read from an archived start, or an export without {STATEMENTS})"
                    ),
                }
                match &report {
                    Some(report) => {
                        println!("  witnesses:     {}", report.summary());
                        for line in report.lines() {
                            println!("                   {line}");
                        }
                    }
                    None => println!(
                        "  witnesses:     NOT checked ({}): a history rewritten and re-signed \
                         with the log key would pass; pass --witness VKEY",
                        unchecked_reason(verified.policy, verified.replayed.is_some())
                    ),
                }
                if s.heads_skipped > 0 {
                    println!(
                        "  earlier heads: {} below entry {}, checked only by consistency proofs",
                        s.heads_skipped, s.start
                    );
                }
                if s.saved_head_checked {
                    println!("  saved head:    the log extends it");
                } else if args.head.is_some() {
                    println!("  saved head:    NOT checked (it is within the archived entries)");
                }
                if let Some(path) = &args.save_head {
                    println!("  head saved to: {}", path.display());
                }
                if let Some(alarms) = &alarm_report {
                    println!("  agents' alarms: {}", alarms.summary());
                    for line in alarms.lines() {
                        println!(
                            "                   MISSING {}",
                            crate::output::terminal_text(line)
                        );
                    }
                }
                println!("  time:          {elapsed:.2?} ({rate:.0} entries/s)");
            }
            Ok(
                if let Some(code) = alarm_report.as_ref().and_then(AlarmReport::exit_code) {
                    code
                } else if unchecked.is_some() {
                    EXIT_ARCHIVED_UNCHECKED
                } else {
                    0
                },
            )
        }
        Err(bad) => {
            if args.json {
                println!("{}", failure_json(&log_id, &bad));
            } else {
                println!("Log {log_id}: FAILED");
                if let Some(index) = bad.index {
                    println!("  first bad index: {index}");
                }
                if let Some(size) = bad.head_size {
                    println!("  tree head size:  {size}");
                }
                println!("  problem:         {} ({})", bad.message, bad.code);
            }
            Ok(EXIT_BAD_LOG)
        }
    }
}

/// The `--json` of a log that failed: where, and why.
fn failure_json(log_id: &str, bad: &Bad) -> Value {
    json!({
        "ok": false,
        "log_id": log_id,
        "index": bad.index,
        "head_size": bad.head_size,
        "problem": bad.code,
        "message": bad.message,
    })
}

/// The `"witnesses"` of a verified log's JSON: the report, or why none.
fn witness_json(report: Option<&WitnessReport>, verified: &Verified) -> Value {
    match report {
        Some(report) => report.to_json(),
        None => json!({
            "checked": false,
            "reason": unchecked_reason(verified.policy, verified.replayed.is_some()),
        }),
    }
}

/// Steps 2 to 5. `Err`: could not check (exit 2); `Ok(Err)`: a bad log
/// (exit 1): every failure of the log itself must come back this way.
pub(super) async fn check(
    source: &Source,
    key: &NoteVerifier,
    log_id: &str,
    notes: &[(u64, String)],
    saved: Option<Result<Checkpoint, Bad>>,
    alarms: Option<bulwark_protocol::alarm_record::AlarmCheck>,
    quiet: bool,
) -> Result<Result<Verified, Bad>> {
    let heads = match open_checkpoints(notes, key, log_id) {
        Ok(heads) => heads,
        Err(bad) => return Ok(Err(bad)),
    };
    let saved = match saved.transpose() {
        Ok(saved) => saved,
        Err(bad) => return Ok(Err(bad)),
    };
    // Where replay starts and which heads it can check.
    let (auditor, partial) = match source {
        Source::Online {
            session,
            base,
            archived_below,
            archived_frontier,
            archives,
        } if *archived_below > 0 && archives.is_empty() => {
            // The archived prefix is not here: start from the server's
            // compact range of it, which must give the signed root at its
            // size, and check the heads below it by consistency proofs.
            let n = *archived_below;
            let Some(at_n) = heads.iter().find(|h| h.size() == n) else {
                bail!(
                    "entries 0 to {} are archived and the server holds no signed head of size \
                     {n}: the rest cannot be checked without the archive (pass --archive DIR)",
                    n - 1
                );
            };
            for head in heads.iter().filter(|h| h.size() > 0 && h.size() < n) {
                let proof = consistency_proof(session, base, head.size(), n).await?;
                if let Err(e) = check_extension(head, at_n, &decode_hashes(&proof.hashes)?) {
                    return Ok(Err(Bad::head(
                        n,
                        "inconsistent_heads",
                        format!(
                            "the tree head of size {n} does not extend the one of size {}: {e}",
                            head.size()
                        ),
                    )));
                }
            }
            let start = Frontier::from_parts(n, archived_frontier.clone())
                .map_err(|e| anyhow!("the server's compact range of the archived entries: {e}"))?;
            match LogAuditor::resume(&heads, saved.as_ref(), start) {
                Ok(auditor) => (auditor, None),
                Err(problem) => {
                    let mut bad = Bad::from_problem(&problem);
                    bad.message = format!(
                        "the server's compact range of the archived entries 0 to {} does not \
                         give the signed root at size {n}: {problem}",
                        n - 1
                    );
                    return Ok(Err(bad));
                }
            }
        }
        Source::Offline {
            dir,
            entries,
            start,
            kind: DirKind::Archive,
            ..
        } => {
            // An archive holds a range of the log, checked against the
            // signed heads up to its end; later heads only by the
            // consistency proofs below.
            let latest = heads.iter().map(Checkpoint::size).max().unwrap_or(0);
            let partial = (entries.first > 0 || entries.below < latest).then_some((
                entries.first,
                entries.below,
                latest,
            ));
            let covered: Vec<Checkpoint> = heads
                .iter()
                .filter(|h| h.size() <= entries.below)
                .cloned()
                .collect();
            if let Some(saved) = &saved
                && saved.size() > entries.below
            {
                bail!(
                    "the saved head (size {}) is beyond the entries of this archive (up to {}): \
                     an archive holds a range of the log, so check the saved head against the \
                     whole log (--tenant or --msp, with --archive {})",
                    saved.size(),
                    entries.below.saturating_sub(1),
                    dir.display()
                );
            }
            let made = match start {
                Some(start) => LogAuditor::resume(&covered, saved.as_ref(), start.clone()),
                None => LogAuditor::new(&covered, saved.as_ref()),
            };
            match made {
                Ok(auditor) => (auditor, partial),
                Err(problem) => return Ok(Err(Bad::from_problem(&problem))),
            }
        }
        Source::Offline {
            dir,
            entries,
            start,
            kind: DirKind::Export,
            frontiers,
            recorded_start,
            ..
        } => {
            // An export holds every entry from its start (0, or after an
            // archived prefix given by its compact range) up to its newest
            // signed head: checked against every head, and, once replayed,
            // for entries missing at its end.
            if let Some(bad) = missing_at_start(entries.first, frontiers, *recorded_start) {
                return Ok(Err(bad));
            }
            let latest = heads.iter().map(Checkpoint::size).max().unwrap_or(0);
            let partial = (entries.first > 0).then_some((entries.first, entries.below, latest));
            let made = match start {
                Some(start) => LogAuditor::resume(&heads, saved.as_ref(), start.clone()),
                None if entries.first == 0 => LogAuditor::new(&heads, saved.as_ref()),
                None => bail!(
                    "the entries of {} start at {} and checkpoints.ndjson gives no compact \
                     range (\"frontier\") of the entries before them",
                    dir.display(),
                    entries.first
                ),
            };
            match made {
                Ok(auditor) => (auditor, partial),
                Err(problem) => return Ok(Err(Bad::from_problem(&problem))),
            }
        }
        Source::Online { .. } => match LogAuditor::new(&heads, saved.as_ref()) {
            Ok(auditor) => (auditor, None),
            Err(problem) => return Ok(Err(Bad::from_problem(&problem))),
        },
    };
    let expected = auditor.expected_size().unwrap_or(0);
    // The meaning of a tenant's log is replayed online, from entry 0.
    let tenant_log = log_id != bulwark_protocol::audit_leaf::MSP_LOG;
    let replay = match source {
        Source::Online { session, base, .. } if tenant_log && auditor.size() == 0 => {
            Some(replay_for(session, base, log_id, quiet).await?)
        }
        Source::Offline { dir, .. }
            if tenant_log && auditor.size() == 0 && dir.join(STATEMENTS).exists() =>
        {
            let path = dir.join(STATEMENTS);
            let reply: Value = serde_json::from_str(
                &std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("{} is not JSON", path.display()))?;
            // What `export` saved of `GET …/log/statements`.
            let reply: LogStatementsView = serde_json::from_value(reply).with_context(|| {
                format!("{} does not hold the log's statements", path.display())
            })?;
            let pin = crate::pins::pin_by_tenant_id_anywhere(log_id)?.map(|p| p.root);
            Some(replay_from(&reply, log_id, pin, quiet)?)
        }
        _ => None,
    };
    let mut checker = Checker {
        auditor,
        tenant: (log_id != bulwark_protocol::audit_leaf::MSP_LOG).then(|| log_id.to_owned()),
        log_id: log_id.to_owned(),
        replay,
        archive_records: Vec::new(),
        alarms,
    };
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        progress(expected, "verifying entries")
    };
    let fed = match source {
        Source::Online {
            session,
            base,
            archives,
            ..
        } => {
            let mut result = Ok(());
            for archive in archives {
                result = archive.feed(&mut checker, &bar)?;
                if result.is_err() {
                    break;
                }
            }
            let mut next = checker.auditor.size();
            'pages: while result.is_ok() && next < expected {
                let page = fetch_entries(session, base, next).await?;
                if page.is_empty() {
                    break;
                }
                for (index, leaf) in page {
                    // Entries appended after the latest head: not ours to check.
                    if index >= expected {
                        break 'pages;
                    }
                    if let Err(bad) = checker.feed(index, &leaf) {
                        result = Err(bad);
                        break 'pages;
                    }
                    next = index + 1;
                }
                bar.set_position(next);
            }
            result
        }
        Source::Offline { entries, .. } => entries.feed(&mut checker, &bar)?,
    };
    bar.finish_and_clear();
    if let Err(mut bad) = fed {
        // A range that does not give its signed root: find the entry.
        if let Some(AuditProblem::RootMismatch { from, size }) = checker.auditor.problem() {
            let head = heads
                .iter()
                .find(|h| h.size() == *size)
                .expect("the auditor names a head it was given");
            match source {
                Source::Online {
                    session,
                    base,
                    archives,
                    ..
                } => {
                    if size - from <= MAX_PINPOINT {
                        bad = pinpoint_online(session, base, archives, head, *from).await?;
                    }
                }
                Source::Offline { entries, start, .. } => {
                    let start = start.clone().unwrap_or_else(Frontier::new);
                    if let Pinpoint::Entry(index) = entries.pinpoint(head, start)? {
                        bad = Bad::changed_entry(index, *size);
                    }
                }
            }
        }
        return Ok(Err(bad));
    }
    // An export must reach its newest signed head, and the saved head.
    if let Source::Offline {
        kind: DirKind::Export,
        entries,
        listed_newest,
        ..
    } = source
    {
        let below = checker.auditor.size();
        let newest = checker.auditor.expected_size().unwrap_or(0);
        let recorded_only = newest > *listed_newest;
        let short = missing_at_end(entries.first, below, newest, recorded_only).or_else(|| {
            saved
                .as_ref()
                .and_then(|saved| short_of_saved_head(below, newest, saved.size()))
        });
        if let Some(bad) = short {
            return Ok(Err(bad));
        }
    }
    let summary = match checker.auditor.finish() {
        Ok(summary) => summary,
        Err(problem) => return Ok(Err(Bad::from_problem(&problem))),
    };
    // The tree holds; does what it records hold too?
    if let Some(Replay {
        problem: Some(problem),
        ..
    }) = &checker.replay
    {
        return Ok(Err(Bad::entry(
            problem.index,
            problem.code,
            problem.message.clone(),
        )));
    }
    let replayed = checker.replay.as_ref().map(|r| r.replay.released);
    // Offline: the consistency proofs of the export must hold too (they
    // are what a verifier without the entries would check).
    let mut proven: Vec<(u64, u64)> = Vec::new();
    if let Source::Offline { dir, .. } = source {
        let path = dir.join("proofs.ndjson");
        if path.exists() {
            for proof in read_ndjson(&path)? {
                let from = proof["from"].as_u64().context("a proof without from")?;
                let to = proof["to"].as_u64().context("a proof without to")?;
                let (Some(old), Some(new)) = (
                    heads.iter().find(|h| h.size() == from),
                    heads.iter().find(|h| h.size() == to),
                ) else {
                    let size = if heads.iter().any(|h| h.size() == from) {
                        to
                    } else {
                        from
                    };
                    return Ok(Err(Bad::head(
                        size,
                        "missing_head",
                        format!(
                            "proofs.ndjson holds a consistency proof from size {from} to size \
                             {to}, but checkpoints.ndjson holds no signed tree head of size \
                             {size}: a head was removed from the directory"
                        ),
                    )));
                };
                if let Err(e) = check_extension(old, new, &decode_hash_list(&proof["hashes"])?) {
                    return Ok(Err(Bad::head(
                        to,
                        "inconsistent_heads",
                        format!(
                            "the tree head of size {to} does not extend the one of size {from}: {e}"
                        ),
                    )));
                }
                proven.push((from, to));
            }
        }
    }
    let latest_note = notes
        .iter()
        .find(|(size, _)| *size == summary.size)
        .map(|(_, note)| note.clone());
    let directory = match source {
        Source::Offline { kind, .. } => Some(*kind),
        Source::Online { .. } => None,
    };
    // Entries the log (online without --archive, or an export) no longer
    // holds, `[0, start)`: its own log.archived records must account for
    // them, else they are missing. (An archive holds a range by design.)
    let archiving = if summary.start > 0 && directory != Some(DirKind::Archive) {
        let checked = match source {
            // Online, every head was tied to the entries checked: those
            // below the start by consistency proofs to the head at it.
            Source::Online { .. } => check_archiving(
                log_id,
                summary.start,
                &checker.archive_records,
                &heads,
                |_| true,
            ),
            // An export's heads below its start: by its proofs.
            Source::Offline { .. } => check_archiving(
                log_id,
                summary.start,
                &checker.archive_records,
                &heads,
                |size| proven_to(size, summary.start, &proven),
            ),
        };
        match checked {
            Ok(archiving) => Some(archiving),
            Err(bad) => return Ok(Err(bad)),
        }
    } else {
        None
    };
    // The head witnesses must have cosigned: the newest one the entries
    // gave (an export or the server: the newest of all), or, for an
    // archive, the newest its consistency proofs tie to its end (the
    // head at exactly its end was signed after the fact, and witnesses
    // never cosign a smaller tree than they already did).
    let witnessed_size = match directory {
        Some(DirKind::Archive) => proven_reach(summary.size, &proven),
        _ => summary.size,
    };
    let (policy, policy_witnesses) = match &checker.replay {
        Some(replay) => (replay.policy, replay.witnesses()?),
        None => (None, None),
    };
    Ok(Ok(Verified {
        summary,
        latest_note,
        partial,
        replayed,
        directory,
        witnessed_size,
        policy,
        policy_witnesses,
        archiving,
        alarms: checker.alarms,
    }))
}
