//! `bulwark script …`: the MSP's script library (RFD 0013), from the
//! operator's own machine.
//!
//! The server keeps scripts, versions and reviews; nothing it says about
//! them is believed here. A version is used only after this machine checked
//! that its content hashes to what its author signed, and a review counts
//! only when its signature verifies under an operator key of the tenant's
//! policy as this machine verified it from its pinned root
//! (`trust::fetch_trust`), made by another operator than the author.
//! Authors and reviewers sign a `bulwark_scripts::VersionStatement` with
//! the same local keys and scheme as jobs (its own payload type, so a
//! review can never count as a job signature).

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::scripts::{
    ScriptCreateRequest, ScriptInterpreter, ScriptReviewRequest, ScriptSummaryView,
    ScriptVersionRequest, ScriptVersionView, ScriptView,
};
use bulwark_policy::{Interpreter, KeyId, Limits as PolicyLimits, Policy, PublicKey, Signed};
use bulwark_scripts::{
    Limits, ParamSpec, SignerRole, VersionFacts, content_hash, hash_hex, open_statement,
    parse_params, signer_among,
};

use crate::client::{Session, path_segment};
use crate::commands::keys::KeyStore;
use crate::output::{Cell, print_json, render_table, use_colour};

#[derive(Debug, clap::Subcommand)]
pub enum ScriptCommand {
    /// Add a script to the library as version 1, signed as its author.
    Add {
        /// 1 to 64 of a-z, 0-9, '.', '_', '-'.
        name: String,
        #[arg(long, value_name = "FILE")]
        file: std::path::PathBuf,
        /// sh, bash or python3.
        #[arg(long)]
        interpreter: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A typed parameter: name:string, name:int, name:bool or
        /// name:choice=a|b (repeat for several).
        #[arg(long = "param", value_name = "NAME:TYPE")]
        params: Vec<String>,
        /// The local signing key to sign as author with.
        #[arg(long, default_value = "operator")]
        key: String,
    },
    /// Add the next version of a script, signed as its author.
    NewVersion {
        name: String,
        #[arg(long, value_name = "FILE")]
        file: std::path::PathBuf,
        /// Default: the previous version's.
        #[arg(long)]
        interpreter: Option<String>,
        /// Typed parameters (default: the previous version's).
        #[arg(long = "param", value_name = "NAME:TYPE")]
        params: Vec<String>,
        /// This version takes no parameters.
        #[arg(long, conflicts_with = "params")]
        no_params: bool,
        #[arg(long, default_value = "operator")]
        key: String,
    },
    /// The library.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A version (NAME@V, or the newest): content, hash, author and reviews,
    /// with every signature checked here against TENANT's verified policy.
    Show {
        #[arg(value_name = "NAME[@V]")]
        script: String,
        /// The tenant whose policy's operator keys the signatures are checked
        /// against; without it nothing is verifiable.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Review a version: shows its content (checked against its hash) and
    /// signs a review statement with a local key.
    Review {
        #[arg(value_name = "NAME@V")]
        script: String,
        #[arg(long, default_value = "operator")]
        key: String,
        /// Do not ask for confirmation after showing the script.
        #[arg(long)]
        yes: bool,
    },
    /// Propose adding a reviewed version's hash to TENANT's allow-list (a
    /// new policy version, signed by the root holders).
    Allow {
        #[arg(value_name = "NAME@V")]
        script: String,
        #[arg(long)]
        tenant: String,
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
}

pub async fn run(cmd: ScriptCommand) -> Result<()> {
    match cmd {
        ScriptCommand::Add {
            name,
            file,
            interpreter,
            description,
            params,
            key,
        } => {
            let session = Session::load()?;
            let content = read_script(&file)?;
            let interpreter = parse_interpreter(&interpreter)?;
            let specs = parse_params(&params, &Limits::default())?;
            bulwark_scripts::check_name(&name, &Limits::default())?;
            let envelope = sign_statement(
                &session,
                &key,
                &VersionFacts {
                    name: &name,
                    version: 1,
                    content: &content,
                    interpreter: interpreter_of(interpreter),
                    params: &specs,
                },
                SignerRole::Author,
            )
            .await?;
            let request = ScriptCreateRequest {
                name: name.clone(),
                description,
                interpreter,
                params: specs.iter().map(ParamSpec::to_text).collect(),
                content: content.clone(),
                author_envelope: envelope,
            };
            let view: ScriptVersionView = session.post("/api/v1/scripts", &request).await?;
            println!(
                "Added {name}@{} (sha256 {}). Another operator reviews it with `bulwark script review {name}@{}`.",
                view.version,
                hash_hex(&content_hash(&content)),
                view.version
            );
            Ok(())
        }
        ScriptCommand::NewVersion {
            name,
            file,
            interpreter,
            params,
            no_params,
            key,
        } => {
            let session = Session::load()?;
            let content = read_script(&file)?;
            let script: ScriptView = session.get(&script_path(&name)?).await?;
            let latest = script.versions.first();
            let interpreter = match (&interpreter, latest) {
                (Some(text), _) => parse_interpreter(text)?,
                (None, Some(v)) => v.interpreter,
                (None, None) => bail!("give --interpreter"),
            };
            let params = match (no_params, params.is_empty(), latest) {
                (true, _, _) => Vec::new(),
                (false, true, Some(v)) => v.params.clone(),
                (false, _, _) => params,
            };
            let specs = parse_params(&params, &Limits::default())?;
            let version = latest.map_or(1, |v| v.version + 1);
            let envelope = sign_statement(
                &session,
                &key,
                &VersionFacts {
                    name: &name,
                    version,
                    content: &content,
                    interpreter: interpreter_of(interpreter),
                    params: &specs,
                },
                SignerRole::Author,
            )
            .await?;
            let request = ScriptVersionRequest {
                version,
                interpreter,
                params: specs.iter().map(ParamSpec::to_text).collect(),
                content: content.clone(),
                author_envelope: envelope,
            };
            let view: ScriptVersionView = session
                .post(&format!("{}/versions", script_path(&name)?), &request)
                .await?;
            println!(
                "Added {name}@{} (sha256 {}).",
                view.version,
                hash_hex(&content_hash(&content))
            );
            Ok(())
        }
        ScriptCommand::List { json } => {
            let session = Session::load()?;
            let scripts: Vec<ScriptSummaryView> = session.get("/api/v1/scripts").await?;
            if json {
                return print_json(&scripts);
            }
            let rows: Vec<Vec<Cell>> = scripts
                .iter()
                .map(|s| {
                    vec![
                        Cell::from(s.name.as_str()),
                        Cell::from(s.latest_version.to_string()),
                        Cell::from(s.latest_reviews.to_string()),
                        Cell::from(s.description.as_str()),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(
                    &["NAME", "VERSION", "REVIEWS (UNVERIFIED)", "DESCRIPTION"],
                    &rows,
                    use_colour()
                )
            );
            Ok(())
        }
        ScriptCommand::Show {
            script,
            tenant,
            json,
        } => {
            let session = Session::load()?;
            let (name, version) = parse_ref(&script)?;
            let fetched = fetch_version(&session, &name, version).await?;
            if json {
                return print_json(&fetched.view);
            }
            let policy = match &tenant {
                Some(tenant) => Some(
                    crate::commands::trust::fetch_trust(&session, tenant)
                        .await?
                        .policy
                        .with_context(|| format!("tenant {tenant} has no policy yet"))?,
                ),
                None => None,
            };
            print_version(&fetched, policy.as_ref(), tenant.as_deref());
            Ok(())
        }
        ScriptCommand::Review { script, key, yes } => {
            let session = Session::load()?;
            let (name, version) = parse_ref(&script)?;
            let version = version.context("name the version you read: NAME@V")?;
            let fetched = fetch_version(&session, &name, Some(version)).await?;
            print_version(&fetched, None, None);
            println!(
                "\n--- script (sha256 {} checked here) ---\n{}\n--- end of script ---",
                hash_hex(&content_hash(&fetched.content)),
                visible(&fetched.content)
            );
            if !yes {
                let answer = crate::output::prompt_line(
                    "\nSign a review of exactly this script, interpreter and parameters? Type yes: ",
                )?;
                ensure!(answer.trim() == "yes", "not reviewed");
            }
            let store = KeyStore::open_default()?;
            let signing_key =
                store.load_signing_key(&key, &crate::commands::keys::passphrase(false)?)?;
            let own = PublicKey::Ed25519(signing_key.verifying_key().to_bytes());
            ensure!(
                own.id() != fetched.author_key,
                "you signed this version as its author: another operator must review it"
            );
            let envelope =
                sign_statement(&session, &key, &fetched.facts(), SignerRole::Reviewer).await?;
            let _: ScriptVersionView = session
                .post(
                    &format!("{}/versions/{version}/reviews", script_path(&name)?),
                    &ScriptReviewRequest { envelope },
                )
                .await?;
            println!("Reviewed {name}@{version}.");
            Ok(())
        }
        ScriptCommand::Allow {
            script,
            tenant,
            otp,
        } => {
            let session = Session::load()?;
            let (name, version) = parse_ref(&script)?;
            let version = version.context("name the version to allow: NAME@V")?;
            let fetched = fetch_version(&session, &name, Some(version)).await?;
            let trust = crate::commands::trust::fetch_trust(&session, &tenant).await?;
            let policy = trust
                .policy
                .as_ref()
                .with_context(|| format!("tenant {tenant} has no policy yet"))?;
            let check = verify_signers(&fetched, policy);
            check.require_reviewed(&tenant)?;
            ensure!(
                fetched.specs.is_empty(),
                "{name}@{version} takes parameters: a run with parameters signs a different script \
                 (the prelude is part of it), so its hash would never match the allow-list (RFD 0013)"
            );
            crate::commands::trust::allow_script_hash(
                &session,
                &tenant,
                &trust,
                content_hash(&fetched.content),
                &format!("{name}@{version}"),
                otp.as_deref(),
            )
            .await
        }
    }
}

fn read_script(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes).context("the script is not UTF-8 text")?;
    bulwark_scripts::check_content(&text, &Limits::default())?;
    Ok(text)
}

fn parse_interpreter(text: &str) -> Result<ScriptInterpreter> {
    match text {
        "sh" => Ok(ScriptInterpreter::Sh),
        "bash" => Ok(ScriptInterpreter::Bash),
        "python3" => Ok(ScriptInterpreter::Python3),
        other => bail!("unknown interpreter {other:?}: sh, bash or python3"),
    }
}

pub(crate) fn interpreter_of(api: ScriptInterpreter) -> Interpreter {
    match api {
        ScriptInterpreter::Sh => Interpreter::Sh,
        ScriptInterpreter::Bash => Interpreter::Bash,
        ScriptInterpreter::Python3 => Interpreter::Python3,
    }
}

/// `NAME` or `NAME@V`.
pub(crate) fn parse_ref(text: &str) -> Result<(String, Option<u32>)> {
    let (name, version) = match text.split_once('@') {
        Some((name, v)) => (
            name,
            Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|v| *v >= 1)
                    .with_context(|| format!("{text:?}: the version after @ is a number"))?,
            ),
        ),
        None => (text, None),
    };
    bulwark_scripts::check_name(name, &Limits::default())?;
    Ok((name.to_owned(), version))
}

fn script_path(name: &str) -> Result<String> {
    Ok(format!("/api/v1/scripts/{}", path_segment(name)?))
}

/// Control characters but newline and tab shown as `\u{..}`: a script
/// cannot rewrite the reviewer's terminal to hide a line.
pub(crate) fn visible(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                format!("\\u{{{:x}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A version as fetched and checked here: the content hashes to what its
/// author's statement signed, for this name and number.
pub(crate) struct Fetched {
    pub view: ScriptVersionView,
    pub content: String,
    pub interpreter: Interpreter,
    pub specs: Vec<ParamSpec>,
    /// The key the author's statement is signed with (verified or not).
    pub author_key: KeyId,
    author: Signed,
}

impl Fetched {
    pub fn facts(&self) -> VersionFacts<'_> {
        VersionFacts {
            name: &self.view.name,
            version: self.view.version,
            content: &self.content,
            interpreter: self.interpreter,
            params: &self.specs,
        }
    }
}

pub(crate) async fn fetch_version(
    session: &Session,
    name: &str,
    version: Option<u32>,
) -> Result<Fetched> {
    let version = match version {
        Some(v) => v,
        None => {
            let script: ScriptView = session.get(&script_path(name)?).await?;
            script
                .versions
                .first()
                .map(|v| v.version)
                .with_context(|| format!("{name} has no version"))?
        }
    };
    let view: ScriptVersionView = session
        .get(&format!("{}/versions/{version}", script_path(name)?))
        .await?;
    ensure!(
        view.name == name && view.version == version,
        "asked for {name}@{version}, the server answered {}@{}: refusing",
        view.name,
        view.version
    );
    let content = view
        .content
        .clone()
        .context("the server sent the version without its content")?;
    let hash = hash_hex(&content_hash(&content));
    ensure!(
        hash == view.sha256,
        "hash mismatch: {name}@{version}'s content hashes to {hash} here, the server says {}: \
         the content was changed on the server; refusing to use it",
        view.sha256
    );
    let specs = parse_params(&view.params, &Limits::default())?;
    let author = decode_envelope(&view.author_envelope)?;
    let mut fetched = Fetched {
        interpreter: interpreter_of(view.interpreter),
        view,
        content,
        specs,
        author_key: KeyId([0; 32]),
        author,
    };
    fetched.author_key = open_statement(&fetched.author, &fetched.facts(), SignerRole::Author)
        .map_err(|e| {
            anyhow::anyhow!(
                "hash mismatch: {name}@{version} is not what its author signed ({e}); refusing to use it"
            )
        })?;
    Ok(fetched)
}

fn decode_envelope(text: &str) -> Result<Signed> {
    let bytes = B64.decode(text).context("an envelope is not base64")?;
    Signed::from_bytes(&bytes, &PolicyLimits::default())
        .map_err(|e| anyhow::anyhow!("an envelope is not valid: {e}"))
}

/// Who signed a version, as this machine verified it under one policy.
pub(crate) struct SignerCheck {
    /// The author's policy name, if the author's signature verifies.
    pub author: Option<String>,
    /// Reviewers whose signature verifies, by policy name; never the author.
    pub reviewers: Vec<String>,
    /// Reviews that do not count: who the server says, and why.
    pub unverifiable: Vec<(String, String)>,
}

impl SignerCheck {
    pub fn require_reviewed(&self, tenant: &str) -> Result<()> {
        ensure!(
            self.author.is_some(),
            "the version's author is not an operator of tenant {tenant}'s verified policy: \
             its review cannot show that two people read it; refusing"
        );
        ensure!(
            !self.reviewers.is_empty(),
            "no review of this version verifies under tenant {tenant}'s policy (another operator \
             reviews with `bulwark script review NAME@V`); refusing"
        );
        Ok(())
    }
}

pub(crate) fn verify_signers(fetched: &Fetched, policy: &Policy) -> SignerCheck {
    let keys: Vec<(String, PublicKey)> = policy
        .operators
        .iter()
        .map(|o| (o.name.clone(), o.key.clone()))
        .collect();
    let author = signer_among(&fetched.author, &keys).cloned();
    let mut check = SignerCheck {
        author,
        reviewers: Vec::new(),
        unverifiable: Vec::new(),
    };
    for review in &fetched.view.reviews {
        let outcome = decode_envelope(&review.envelope).and_then(|signed| {
            let key = open_statement(&signed, &fetched.facts(), SignerRole::Reviewer)?;
            ensure!(key != fetched.author_key, "signed by the author's key");
            let name = signer_among(&signed, &keys)
                .cloned()
                .context("no operator key of the policy made this signature")?;
            ensure!(
                check.author.as_ref() != Some(&name),
                "signed by the author ({name})"
            );
            Ok(name)
        });
        match outcome {
            Ok(name) if !check.reviewers.contains(&name) => check.reviewers.push(name),
            Ok(_) => {}
            Err(e) => check
                .unverifiable
                .push((review.reviewer.clone(), e.to_string())),
        }
    }
    check
}

fn print_version(fetched: &Fetched, policy: Option<&Policy>, tenant: Option<&str>) {
    let view = &fetched.view;
    println!("Script      {}@{}", view.name, view.version);
    println!("Interpreter {}", view.interpreter.name());
    println!(
        "Parameters  {}",
        if fetched.specs.is_empty() {
            "none".to_owned()
        } else {
            fetched
                .specs
                .iter()
                .map(ParamSpec::to_text)
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!(
        "SHA-256     {} (checked here against the content and its author's statement)",
        hash_hex(&content_hash(&fetched.content))
    );
    let printable = |s: &str| visible(s).replace('\n', " ");
    match (policy, tenant) {
        (Some(policy), Some(tenant)) => {
            let check = verify_signers(fetched, policy);
            match &check.author {
                Some(name) => println!(
                    "Author      {} (signature verified under tenant {tenant}'s policy)",
                    printable(name)
                ),
                None => println!(
                    "Author      {} as the server says: signature not verifiable under tenant {tenant}'s policy",
                    printable(&view.author)
                ),
            }
            for name in &check.reviewers {
                println!("Reviewed by {} (signature verified)", printable(name));
            }
            for (who, why) in &check.unverifiable {
                println!(
                    "Review by   {} as the server says: review not verifiable ({})",
                    printable(who),
                    printable(why)
                );
            }
            if check.reviewers.is_empty() {
                println!("Status      not reviewed (no review verifies)");
            }
            if policy
                .allowed_scripts
                .contains(&content_hash(&fetched.content))
            {
                println!("Allow-list  on tenant {tenant}'s allow-list (verified policy)");
            }
        }
        _ => {
            println!(
                "Author      {} as the server says (give --tenant to verify)",
                printable(&view.author)
            );
            for review in &view.reviews {
                println!(
                    "Review by   {} as the server says: review not verifiable without --tenant",
                    printable(&review.reviewer)
                );
            }
        }
    }
}

/// Signs a version statement with a local key (registering its public
/// half with the caller's account first, as jobs do); base64 of the envelope.
async fn sign_statement(
    session: &Session,
    key: &str,
    facts: &VersionFacts<'_>,
    role: SignerRole,
) -> Result<String> {
    let store = KeyStore::open_default()?;
    let signing_key = store.load_signing_key(key, &crate::commands::keys::passphrase(false)?)?;
    crate::commands::jobs::ensure_registered(session, key, &signing_key).await?;
    let mut signed = Signed::new(&facts.statement(role));
    signed.sign(&signing_key);
    Ok(B64.encode(signed.to_bytes()))
}

/// What `job run --library NAME[@V] --param k=v …` signs: the version
/// fetched and checked, reviewed under the tenant's verified policy, its
/// parameters rendered into the script. Returns the script and interpreter.
pub(crate) async fn library_script(
    session: &Session,
    tenant: &str,
    policy: Option<&Policy>,
    reference: &str,
    params: &[String],
) -> Result<(String, Interpreter)> {
    let (name, version) = parse_ref(reference)?;
    let values = params
        .iter()
        .map(|p| bulwark_scripts::parse_assignment(p))
        .collect::<Result<Vec<_>, _>>()?;
    let fetched = fetch_version(session, &name, version).await?;
    let policy = policy.with_context(|| format!("tenant {tenant} has no policy yet"))?;
    let check = verify_signers(&fetched, policy);
    check.require_reviewed(tenant)?;
    let body = bulwark_scripts::script_with_params(
        fetched.interpreter,
        &fetched.specs,
        &values,
        &fetched.content,
        &Limits::default(),
    )?;
    eprintln!(
        "{name}@{} by {} (verified), reviewed by {} (verified); sha256 of the content {}.",
        fetched.view.version,
        visible(check.author.as_deref().unwrap_or_default()),
        visible(&check.reviewers.join(", ")),
        hash_hex(&content_hash(&fetched.content))
    );
    Ok((body, fetched.interpreter))
}
