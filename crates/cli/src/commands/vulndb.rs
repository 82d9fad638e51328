//! `bulwark vulndb …`: the offline vulnerability database.
//!
//! `import PATH` reads OSV records on this machine (a folder of `*.json`
//! files, or a `.zip` as OSV publishes `all.zip` per ecosystem), checks
//! every one with the parser the server runs again, and refuses to upload
//! anything if one file is malformed (naming it). Then it uploads the kept
//! records in batches into a new generation and switches it in: readers on
//! the server see the old set until that moment. Two passes over the input,
//! so memory stays one record, not one archive.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bulwark_api::vulndb::{
    VulnDbBatch, VulnDbBatchResult, VulnDbCheckView, VulnDbImportStarted, VulnDbStatusView,
    VulnDbSwitched,
};
use bulwark_vulndb::osv::{Limits, Parsed, parse_record};

use crate::client::*;
use crate::output::*;

#[derive(Debug, clap::Subcommand)]
pub enum VulnDbCommand {
    /// Import OSV records (owners): a folder of *.json files or OSV's all.zip. Replaces the
    /// current set atomically; the previous one is kept until the next import.
    Import {
        /// A folder of OSV *.json files, or a .zip of them.
        path: PathBuf,
        /// TOTP code for the fresh MFA check starting an import needs.
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
        /// Records per upload (at most 1000).
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// The database's generation, record count, import time and counts per ecosystem.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The advisories affecting one source package version, highest severity first.
    Check {
        /// `Debian:12`, `Ubuntu:24.04:LTS`, ...
        #[arg(long)]
        ecosystem: String,
        /// The source package name.
        #[arg(long)]
        package: String,
        /// The installed (source) version.
        #[arg(long)]
        version: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: VulnDbCommand) -> Result<()> {
    match command {
        VulnDbCommand::Import { path, otp, batch } => import(&path, otp.as_deref(), batch).await,
        VulnDbCommand::Status { json } => {
            let status: VulnDbStatusView = Session::load()?.get("/api/v1/vulndb").await?;
            if json {
                print_json(&status)
            } else {
                print!("{}", render_status(&status));
                Ok(())
            }
        }
        VulnDbCommand::Check {
            ecosystem,
            package,
            version,
            json,
        } => {
            let path = format!(
                "/api/v1/vulndb/check?ecosystem={}&package={}&version={}",
                path_segment(&ecosystem)?,
                path_segment(&package)?,
                path_segment(&version)?
            );
            let check: VulnDbCheckView = Session::load()?.get(&path).await?;
            if json {
                print_json(&check)
            } else {
                print!("{}", render_check(&check));
                Ok(())
            }
        }
    }
}

/// The files of an import: a folder's `*.json` or a zip's `*.json` entries.
enum Source {
    Folder(Vec<PathBuf>),
    Zip(PathBuf),
}

impl Source {
    fn open(path: &Path) -> Result<Source> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
            {
                let p = entry?.path();
                if p.extension().is_some_and(|e| e == "json") && p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
            Ok(Source::Folder(files))
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
        {
            Ok(Source::Zip(path.to_owned()))
        } else {
            bail!(
                "{}: give a folder of OSV *.json files or a .zip",
                path.display()
            )
        }
    }

    /// Calls `each(name, bytes)` for every record file, in order; a file
    /// over `limits.max_record_bytes` gets `None` (never read whole).
    fn for_each(
        &self,
        limits: &Limits,
        mut each: impl FnMut(&str, Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let cap = limits.max_record_bytes as u64;
        let mut count = 0usize;
        let counted = |count: &mut usize| -> Result<()> {
            *count += 1;
            if *count > limits.max_records {
                bail!("more than {} records in one import", limits.max_records);
            }
            Ok(())
        };
        match self {
            Source::Folder(files) => {
                for file in files {
                    counted(&mut count)?;
                    let name = file.display().to_string();
                    let mut bytes = Vec::new();
                    std::fs::File::open(file)
                        .with_context(|| format!("cannot read {name}"))?
                        .take(cap + 1)
                        .read_to_end(&mut bytes)
                        .with_context(|| format!("cannot read {name}"))?;
                    each(&name, (bytes.len() as u64 <= cap).then_some(&bytes[..]))?;
                }
            }
            Source::Zip(path) => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
                    .with_context(|| format!("{} is not a zip archive", path.display()))?;
                for i in 0..archive.len() {
                    let mut entry = archive
                        .by_index(i)
                        .with_context(|| format!("{}: entry {i} does not open", path.display()))?;
                    let entry_name = entry.name().to_owned();
                    if !entry.is_file() || !entry_name.ends_with(".json") {
                        continue;
                    }
                    counted(&mut count)?;
                    let name = format!("{}:{entry_name}", path.display());
                    // The declared size may lie: read at most one byte past the cap.
                    let mut bytes = Vec::new();
                    (&mut entry)
                        .take(cap + 1)
                        .read_to_end(&mut bytes)
                        .with_context(|| format!("{name} does not decompress"))?;
                    each(&name, (bytes.len() as u64 <= cap).then_some(&bytes[..]))?;
                }
            }
        }
        Ok(())
    }
}

/// What the first pass found.
#[derive(Default)]
struct Survey {
    read: u64,
    kept: u64,
    skipped: BTreeMap<&'static str, u64>,
    parts_skipped: BTreeMap<&'static str, u64>,
    malformed: Vec<String>,
}

fn survey(source: &Source, limits: &Limits, kept_ids: &mut HashSet<String>) -> Result<Survey> {
    let mut s = Survey::default();
    source.for_each(limits, |name, bytes| {
        s.read += 1;
        let Some(bytes) = bytes else {
            s.malformed.push(format!(
                "{name}: larger than {} bytes",
                limits.max_record_bytes
            ));
            return Ok(());
        };
        match parse_record(bytes, limits) {
            Err(e) => s.malformed.push(format!("{name}: {e}")),
            Ok(Parsed::Skipped(reason)) => *s.skipped.entry(reason.as_str()).or_default() += 1,
            Ok(Parsed::Advisory(a, parts)) => {
                for p in parts {
                    *s.parts_skipped.entry(p.as_str()).or_default() += 1;
                }
                if kept_ids.insert(a.id) {
                    s.kept += 1;
                } else {
                    *s.skipped.entry("duplicate id").or_default() += 1;
                }
            }
        }
        Ok(())
    })?;
    Ok(s)
}

async fn import(path: &Path, otp: Option<&str>, batch: usize) -> Result<()> {
    let batch = batch.clamp(1, bulwark_api::vulndb::MAX_BATCH_RECORDS);
    let limits = Limits::default();
    let source = Source::open(path)?;
    let started = Instant::now();
    let mut ids = HashSet::new();
    let found = survey(&source, &limits, &mut ids)?;
    if !found.malformed.is_empty() {
        for line in &found.malformed {
            eprintln!("malformed: {line}");
        }
        bail!(
            "{} of {} files are not usable OSV records; nothing was imported",
            found.malformed.len(),
            found.read
        );
    }
    if found.kept == 0 {
        bail!(
            "no Debian or Ubuntu advisory among {} files; nothing was imported",
            found.read
        );
    }
    let session = Session::load()?;
    let start: VulnDbImportStarted = session
        .post_privileged("/api/v1/vulndb/imports", &serde_json::json!({}), otp)
        .await?;
    let records_path = format!("/api/v1/vulndb/imports/{}/records", start.generation);
    let bar = progress(found.kept);
    // Second pass: upload what the first kept, batch by batch, each well
    // under the server's body cap. The reader is synchronous (zip), so each
    // full batch is sent from inside it, blocking this worker thread.
    let budget = 4usize << 20;
    let runtime = tokio::runtime::Handle::current();
    let mut pending: Vec<serde_json::Value> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut uploaded = 0u64;
    let mut sent = HashSet::new();
    let mut upload = |records: Vec<serde_json::Value>| -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let n = records.len() as u64;
        tokio::task::block_in_place(|| {
            runtime.block_on(
                session.post::<_, VulnDbBatchResult>(&records_path, &VulnDbBatch { records }),
            )
        })
        .context("uploading a batch failed; the database is unchanged")?;
        uploaded += n;
        bar.set_position(uploaded);
        Ok(())
    };
    source.for_each(&limits, |_, bytes| {
        let Some(bytes) = bytes else { return Ok(()) };
        if let Ok(Parsed::Advisory(a, _)) = parse_record(bytes, &limits)
            && sent.insert(a.id)
        {
            if pending.len() == batch || pending_bytes + bytes.len() > budget {
                upload(std::mem::take(&mut pending))?;
                pending_bytes = 0;
            }
            pending.push(serde_json::from_slice(bytes)?);
            pending_bytes += bytes.len();
        }
        Ok(())
    })?;
    upload(std::mem::take(&mut pending))?;
    let switched: VulnDbSwitched = session
        .post(
            &format!("/api/v1/vulndb/imports/{}/switch", start.generation),
            &serde_json::json!({}),
        )
        .await
        .context("switching the import in failed; the database is unchanged")?;
    bar.finish_and_clear();
    let took = started.elapsed();
    print!("{}", render_summary(&found, &switched, took));
    Ok(())
}

fn progress(total: u64) -> indicatif::ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} uploading [{bar:30}] {pos}/{len} ({per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn render_summary(s: &Survey, switched: &VulnDbSwitched, took: Duration) -> String {
    let mut out = String::new();
    let secs = took.as_secs_f64().max(0.001);
    let _ = writeln!(out, "Records read:     {}", s.read);
    let _ = writeln!(
        out,
        "Imported:         {} (generation {})",
        switched.records, switched.generation
    );
    let skipped: u64 = s.skipped.values().sum();
    let _ = writeln!(out, "Skipped:          {skipped}");
    for (reason, n) in &s.skipped {
        let _ = writeln!(out, "  {reason}: {n}");
    }
    if !s.parts_skipped.is_empty() {
        let _ = writeln!(out, "Parts left out of imported records:");
        for (reason, n) in &s.parts_skipped {
            let _ = writeln!(out, "  {reason}: {n}");
        }
    }
    let _ = writeln!(
        out,
        "Took:             {:.1} s ({:.0} records/s)",
        secs,
        s.read as f64 / secs
    );
    out
}

fn render_status(s: &VulnDbStatusView) -> String {
    let mut out = String::new();
    let Some(current) = &s.current else {
        return "No vulnerability data imported yet: bulwark vulndb import PATH\n".to_owned();
    };
    let _ = writeln!(out, "Generation:  {}", current.generation);
    let _ = writeln!(out, "Records:     {}", current.records);
    let _ = writeln!(
        out,
        "Imported at: {} by {}",
        or_dash(current.imported_at.as_deref()),
        current.imported_by
    );
    if let Some(p) = &s.previous {
        let _ = writeln!(
            out,
            "Previous:    generation {} ({} records)",
            p.generation, p.records
        );
    }
    let rows: Vec<Vec<Cell>> = s
        .ecosystems
        .iter()
        .map(|e| {
            vec![
                e.ecosystem.as_str().into(),
                e.advisories.to_string().into(),
                e.packages.to_string().into(),
            ]
        })
        .collect();
    out.push_str(&render_table(
        &["ECOSYSTEM", "ADVISORIES", "PACKAGES"],
        &rows,
        false,
    ));
    out
}

fn render_check(c: &VulnDbCheckView) -> String {
    let mut out = String::new();
    if c.generation.is_none() {
        return "No vulnerability data imported yet: bulwark vulndb import PATH\n".to_owned();
    }
    if c.findings.is_empty() {
        let _ = writeln!(
            out,
            "{} {} in {}: no known advisory.",
            c.package, c.version, c.ecosystem
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{} {} in {}: {} advisories",
        c.package,
        c.version,
        c.ecosystem,
        c.findings.len()
    );
    let rows: Vec<Vec<Cell>> = c
        .findings
        .iter()
        .map(|f| {
            let severity = f.severity.as_ref().map(|s| match (s.score, &s.rating) {
                (Some(score), Some(r)) => format!("{score:.1} {r}"),
                (None, Some(r)) => r.clone(),
                _ => s.kind.clone(),
            });
            vec![
                f.advisory.as_str().into(),
                or_dash(severity).into(),
                or_dash(f.fixed_version.as_deref()).into(),
                f.aliases.join(" ").into(),
                f.summary.chars().take(60).collect::<String>().into(),
            ]
        })
        .collect();
    out.push_str(&render_table(
        &["ADVISORY", "SEVERITY", "FIXED IN", "ALIASES", "SUMMARY"],
        &rows,
        false,
    ));
    out
}
