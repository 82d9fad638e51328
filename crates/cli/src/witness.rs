//! `bulwark witness`: run a transparency-log witness (RFD 0006) for the
//! tenants whose policies name it. `init` makes its key and prints the vkey
//! to put in a tenant's policy; `add-log` follows one log (its origin and
//! the log key's vkey, both from `GET /api/v1/tenants/{t}/log` and
//! `GET /api/v1/log/key`, compared out of band); `serve` answers C2SP
//! `add-checkpoint` requests.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
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
    },
    /// Answer `POST /add-checkpoint` on ADDR until stopped.
    Serve {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7380")]
        listen: SocketAddr,
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
        WitnessCommand::AddLog { dir, origin, vkey } => {
            let (witness, _) = WitnessDir::open(&dir)?;
            witness.add_log(&origin, &vkey)?;
            println!("Following {origin}. Restart `bulwark witness serve` to take it on.");
            Ok(())
        }
        WitnessCommand::Serve { dir, listen } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            println!("Witness listening on http://{}", listener.local_addr()?);
            bulwark_witness::serve::serve(&dir, listener).await
        }
    }
}
