//! `bulwark witness`: run a transparency-log witness (RFD 0006) for the
//! tenants whose policies name it. `init` makes its key and prints the vkey
//! to put in a tenant's policy; `add-log` follows one log (its origin and
//! the log key's vkey, both from `GET /api/v1/tenants/{t}/log` and
//! `GET /api/v1/log/key`, compared out of band, and the tenant's root
//! fingerprint, so that the tenant's customer can freeze it); `serve`
//! answers C2SP `add-checkpoint` requests and takes freezes (RFD 0006).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use bulwark_protocol::token::{fingerprint_text, parse_fingerprint};
use bulwark_witness::freeze::{DEFAULT_GRACE_SECS, MAX_GRACE_SECS};
use bulwark_witness::state::WitnessDir;

#[derive(Debug, clap::Subcommand)]
pub enum WitnessCommand {
    /// Make a witness: its key (kept in DIR/witness.skey), named NAME.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// A schema-less URL naming this witness, e.g. witness.example.com/acme.
        #[arg(long)]
        name: String,
    },
    /// Follow a log: cosign its checkpoints from now on.
    AddLog {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The log's checkpoint origin, e.g. `bulwark.example.com/<tenant id>`.
        #[arg(long)]
        origin: String,
        /// The log key's vkey (`<name>+<key id>+<key>`).
        #[arg(long)]
        vkey: String,
        /// The fingerprint of the tenant's first trust root, as `bulwark
        /// policy show` prints it (compare it with the customer's copy):
        /// the tenant's customer can then freeze the log here (RFD 0006).
        /// The origin must be `<log key name>/<tenant id>`.
        #[arg(long, value_name = "HEX")]
        root_fingerprint: Option<String>,
    },
    /// Answer `POST /add-checkpoint` and `POST /bulwark/v1/freeze` on ADDR until stopped.
    Serve {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7380")]
        listen: SocketAddr,
        /// Seconds from taking a tenant's freeze to refusing to cosign its
        /// log: the server's time to publish the freeze itself. Agents stop
        /// by the freeze's time + this + the policy's witness freshness.
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_GRACE_SECS)]
        freeze_grace_secs: u64,
    },
}

pub async fn run(command: WitnessCommand) -> Result<()> {
    match command {
        WitnessCommand::Init { dir, name } => {
            let cosigner = WitnessDir::init(&dir, &name)?;
            println!("Witness key: {}", dir.join("witness.skey").display());
            println!(
                "Name this witness in a tenant's policy by its vkey:\n{}",
                cosigner.verifier().to_vkey()
            );
            Ok(())
        }
        WitnessCommand::AddLog {
            dir,
            origin,
            vkey,
            root_fingerprint,
        } => {
            let pinned = root_fingerprint
                .as_deref()
                .map(|text| parse_fingerprint(text).context("--root-fingerprint"))
                .transpose()?;
            let (witness, _) = WitnessDir::open(&dir)?;
            let tenant = witness.add_log(&origin, &vkey, pinned)?;
            println!("Following {origin}. Restart `bulwark witness serve` to take it on.");
            if let (Some(tenant), Some(pinned)) = (tenant, pinned) {
                println!(
                    "Tenant {tenant}'s customer can freeze it here: freezes are checked from \
                     trust root {}.",
                    fingerprint_text(&pinned)
                );
            }
            Ok(())
        }
        WitnessCommand::Serve {
            dir,
            listen,
            freeze_grace_secs,
        } => {
            ensure!(
                freeze_grace_secs <= MAX_GRACE_SECS,
                "--freeze-grace-secs is at most {MAX_GRACE_SECS}"
            );
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            println!("Witness listening on http://{}", listener.local_addr()?);
            bulwark_witness::serve::serve(
                &dir,
                listener,
                bulwark_witness::serve::Options { freeze_grace_secs },
            )
            .await
        }
    }
}
