//! `bulwark release …`: the agent release mirror (RFD 0017), and the
//! release check behind `bulwark job run --update-agent`.
//!
//! `import DIR` uploads a TUF repository as python-tuf or `tuf` tooling
//! writes it (`metadata/*.json`, `targets/…`): targets first, then roots
//! in version order, targets and snapshot metadata, the timestamp last, so
//! that an agent refreshing mid-import never finds a timestamp naming
//! files the mirror does not have yet. With `--release-root` it first
//! verifies the repository with the same TUF client agents run, so a
//! broken release is named now, not by every agent later.
//!
//! [`verified_release`] is what an operator's update job is made from:
//! the mirror's metadata, fetched through the API and verified here from
//! the release root the operator holds; the SHA-256 signed into the job
//! comes from those verified targets, never from the server's word.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::releases::{
    MAX_METADATA_BYTES, MAX_TARGET_BYTES, ReleaseFileStored, ReleaseFileUpload,
    ReleaseMetadataView, is_metadata_name, is_target_path,
};
use bulwark_releases::{Limits, RoleName, TargetFile, TrustedSet};

use crate::client::*;
use crate::output::*;

#[derive(Debug, clap::Subcommand)]
pub enum ReleaseCommand {
    /// Import a TUF repository of agent releases into the server's mirror
    /// (owners): DIR/metadata/*.json and DIR/targets/**.
    Import {
        dir: PathBuf,
        /// Verify the repository from this release root first (the TUF
        /// `root.json` the agents pinned); nothing is uploaded if it fails.
        #[arg(long, value_name = "FILE")]
        release_root: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Verify the mirror's metadata from a release root and show the
    /// signed target of a version: its SHA-256 and length.
    Show {
        /// The release version, e.g. 0.2.0.
        version: String,
        /// The release root (TUF `root.json`) to verify from.
        #[arg(long, value_name = "FILE")]
        release_root: PathBuf,
        /// The platform (target triple) of the agents.
        #[arg(long, default_value = "x86_64-unknown-linux-gnu")]
        platform: String,
    },
}

pub async fn run(command: ReleaseCommand) -> Result<()> {
    match command {
        ReleaseCommand::Import {
            dir,
            release_root,
            json,
        } => import(&dir, release_root.as_deref(), json).await,
        ReleaseCommand::Show {
            version,
            release_root,
            platform,
        } => {
            let session = Session::load()?;
            let root = std::fs::read(&release_root)
                .with_context(|| format!("cannot read {}", release_root.display()))?;
            let (name, file) = verified_release(&session, &root, &version, &platform).await?;
            println!("{name}");
            println!(
                "  sha256  {}",
                file.hashes.get("sha256").map_or("-", String::as_str)
            );
            println!("  length  {}", file.length);
            Ok(())
        }
    }
}

/// Upload order: targets, then metadata with the timestamp last.
fn metadata_rank(name: &str) -> (u8, u64) {
    let (version, role) = match name.split_once('.') {
        Some((v, rest)) if v.bytes().all(|b| b.is_ascii_digit()) => {
            (v.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (u64::MAX, name),
    };
    let rank = match role {
        "root.json" => 0,
        "targets.json" => 1,
        "snapshot.json" => 2,
        _ => 3,
    };
    (rank, version)
}

fn files_under(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if entry.file_type()?.is_dir() {
            files_under(&path, &rel, out)?;
        } else {
            out.push((rel, path));
        }
    }
    Ok(())
}

/// A repository directory as the TUF client's source (verification on import).
struct DirRepository(PathBuf);

impl bulwark_releases::Repository for DirRepository {
    fn fetch(
        &mut self,
        path: &str,
        max_len: u64,
    ) -> Result<Option<Vec<u8>>, bulwark_releases::Error> {
        match std::fs::read(self.0.join(path)) {
            Ok(bytes) if bytes.len() as u64 > max_len => Err(bulwark_releases::Error::TooLarge {
                what: "a metadata file",
                limit: max_len,
            }),
            Ok(bytes) => Ok(Some(bytes)),
            Err(_) => Ok(None),
        }
    }
    fn stored(&mut self, _role: RoleName) -> Option<Vec<u8>> {
        None
    }
    fn store(&mut self, _role: RoleName, _bytes: &[u8]) -> Result<(), bulwark_releases::Error> {
        Ok(())
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn import(dir: &Path, release_root: Option<&Path>, json: bool) -> Result<()> {
    let metadata_dir = dir.join("metadata");
    let targets_dir = dir.join("targets");
    let mut metadata = Vec::new();
    files_under(&metadata_dir, "", &mut metadata)?;
    let mut targets = Vec::new();
    if targets_dir.exists() {
        files_under(&targets_dir, "", &mut targets)?;
    }
    for (name, _) in &metadata {
        ensure!(
            is_metadata_name(name),
            "metadata/{name} is not a TUF metadata name (root.json, 2.root.json, timestamp.json, ...)"
        );
    }
    for (path, _) in &targets {
        ensure!(
            is_target_path(path),
            "targets/{path}: a target path is `/`-separated parts of letters, digits, `.`, `_`, `-`"
        );
    }
    if let Some(root_file) = release_root {
        let root = std::fs::read(root_file)
            .with_context(|| format!("cannot read {}", root_file.display()))?;
        let mut repo = DirRepository(metadata_dir.clone());
        let set = bulwark_releases::refresh(&root, &mut repo, Limits::default(), unix_now())
            .map_err(|e| {
                anyhow::anyhow!(
                    "the repository does not verify from {}: {e}",
                    root_file.display()
                )
            })?;
        for (name, file) in set
            .targets()
            .map(|t| t.doc.signed.targets.clone())
            .unwrap_or_default()
        {
            let path = bulwark_releases::target_path(&set, &name, &file);
            let bytes = std::fs::read(targets_dir.join(&path))
                .with_context(|| format!("the signed target {name} is not at targets/{path}"))?;
            bulwark_releases::check_target(&name, &file, &bytes)
                .map_err(|e| anyhow::anyhow!("targets/{path}: {e}"))?;
        }
        eprintln!("The repository verifies from {}.", root_file.display());
    }
    metadata.sort_by_key(|(name, _)| metadata_rank(name));
    let session = Session::load()?;
    let mut stored = Vec::new();
    let uploads = targets
        .into_iter()
        .map(|(p, f)| ("target", p, f, MAX_TARGET_BYTES))
        .chain(
            metadata
                .into_iter()
                .map(|(p, f)| ("metadata", p, f, MAX_METADATA_BYTES)),
        );
    for (kind, path, file, max) in uploads {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        ensure!(
            bytes.len() <= max,
            "{} is larger than {max} bytes",
            file.display()
        );
        let upload = ReleaseFileUpload {
            kind: kind.to_owned(),
            path: path.clone(),
            content: B64.encode(&bytes),
        };
        let done: ReleaseFileStored = session
            .post("/api/v1/releases/files", &upload)
            .await
            .with_context(|| format!("uploading {kind} {path}"))?;
        if !json {
            println!(
                "{:<8} {} ({} bytes, sha256 {})",
                done.kind, done.path, done.bytes, done.sha256
            );
        }
        stored.push(done);
    }
    if json {
        return print_json(&stored);
    }
    Ok(())
}

/// The mirror's metadata through the API, for the TUF client.
struct ApiRepository<'a> {
    session: &'a Session,
}

impl bulwark_releases::Repository for ApiRepository<'_> {
    fn fetch(
        &mut self,
        path: &str,
        max_len: u64,
    ) -> Result<Option<Vec<u8>>, bulwark_releases::Error> {
        let fetch = async {
            let url = format!("/api/v1/releases/metadata/{}", path_segment(path)?);
            match self.session.get::<ReleaseMetadataView>(&url).await {
                Ok(view) => Ok(Some(B64.decode(view.content)?)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let got: Result<Option<Vec<u8>>> =
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fetch));
        match got {
            Ok(Some(bytes)) if bytes.len() as u64 > max_len => {
                Err(bulwark_releases::Error::TooLarge {
                    what: "a metadata document",
                    limit: max_len,
                })
            }
            Ok(got) => Ok(got),
            Err(e) => Err(bulwark_releases::Error::Fetch(format!("{e:#}"))),
        }
    }
    fn stored(&mut self, _role: RoleName) -> Option<Vec<u8>> {
        None
    }
    fn store(&mut self, _role: RoleName, _bytes: &[u8]) -> Result<(), bulwark_releases::Error> {
        Ok(())
    }
}

fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ApiError>()
        .is_some_and(|e| e.status == reqwest::StatusCode::NOT_FOUND)
}

/// The signed target of agent `version` for `platform`, verified from
/// `root` over the mirror's metadata.
pub async fn verified_release(
    session: &Session,
    root: &[u8],
    version: &str,
    platform: &str,
) -> Result<(String, TargetFile)> {
    let mut repo = ApiRepository { session };
    let set: TrustedSet = bulwark_releases::refresh(root, &mut repo, Limits::default(), unix_now())
        .map_err(|e| {
            anyhow::anyhow!(
                "the mirror's release metadata does not verify from your release root: {e}"
            )
        })?;
    let name = format!("bulwark-agent/{version}/{platform}");
    let Some(file) = set.target(&name) else {
        bail!("the release keys' targets do not list {name}");
    };
    ensure!(
        file.hashes.get("sha256").is_some_and(|h| h.len() == 64),
        "{name} is signed without a SHA-256"
    );
    Ok((name, file.clone()))
}

/// `bulwark agent …`: the agents themselves.
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Update agents to a signed release (RFD 0017): the same signed job as
    /// `bulwark job run --update-agent`, the SHA-256 taken from the release
    /// metadata verified here from --release-root, the tenant's update-agent
    /// quorum applying. Rings are not built yet: target a tag or a group.
    Update {
        #[arg(long)]
        tenant: String,
        /// The release version, e.g. 0.2.0.
        #[arg(long)]
        version: String,
        /// The release root (TUF root.json) the agents pinned.
        #[arg(long, value_name = "FILE")]
        release_root: PathBuf,
        /// The agents' platform (target triple).
        #[arg(long, default_value = "x86_64-unknown-linux-gnu")]
        platform: String,
        /// Device ids or hostnames, comma separated.
        #[arg(long, value_delimiter = ',', required_unless_present_any = ["all", "tags", "group"])]
        targets: Vec<String>,
        /// Every device of the tenant.
        #[arg(long, conflicts_with_all = ["targets", "tags", "group"])]
        all: bool,
        /// The tenant's devices carrying this tag.
        #[arg(long = "tag", value_name = "TAG", conflicts_with = "targets")]
        tags: Vec<String>,
        /// The tenant's devices in this group.
        #[arg(long, conflicts_with = "targets")]
        group: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, default_value = "operator")]
        key: String,
        #[arg(long, value_name = "MINUTES", default_value_t = 60)]
        valid_for: u32,
        #[arg(long)]
        no_wait: bool,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run_agent(command: AgentCommand) -> Result<()> {
    let AgentCommand::Update {
        tenant,
        version,
        release_root,
        platform,
        targets,
        all,
        tags,
        group,
        reason,
        key,
        valid_for,
        no_wait,
        yes,
        json,
    } = command;
    crate::commands::jobs::run(crate::commands::jobs::JobCommand::Run {
        tenant,
        targets,
        all,
        tags,
        group,
        script: None,
        command: None,
        library: None,
        params: Vec::new(),
        inventory_refresh: false,
        install_patches: false,
        packages: Vec::new(),
        update_agent: Some(version),
        release_root: Some(release_root),
        platform,
        interpreter: None,
        reason,
        key,
        timeout: 300,
        valid_for,
        no_wait,
        yes,
        json,
    })
    .await
}
