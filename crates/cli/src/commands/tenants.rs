//! `bulwark tenant …`: listing and creating tenants, enrolment tokens for their devices
//! (carrying this machine's pins to the agent), and the trust commands
//! (`tenant init`, `freeze`, … in [`super::trust`]).

use anyhow::{Context, Result, ensure};
use bulwark_api::log::LogKeyView;
use bulwark_api::tenants::{
    CreateTenantRequest, EnrollmentTokenRequest, EnrollmentTokenView, TenantView,
};
use bulwark_protocol::token::fingerprint_text;

use crate::client::*;
use crate::output::*;

/// `bulwark tenant …`.
pub async fn run(command: TenantCommand) -> Result<()> {
    match command {
        TenantCommand::List { json } => {
            let tenants: Vec<TenantView> = Session::load()?.get("/api/v1/tenants").await?;
            if json {
                print_json(&tenants)
            } else {
                print_tenants(&tenants)
            }
        }
        TenantCommand::Create { name, json } => {
            let body = CreateTenantRequest { name };
            let tenant: TenantView = Session::load()?.post("/api/v1/tenants", &body).await?;
            if json {
                print_json(&tenant)
            } else {
                println!("Created tenant {} (id {}).", tenant.name, tenant.id);
                println!(
                    "Next: its trust root, signed on this machine with the customer's key:\n  bulwark tenant init --tenant {} --customer-key HEX",
                    tenant.name
                );
                Ok(())
            }
        }
        TenantCommand::EnrollToken {
            tenant,
            ttl_minutes,
            json,
        } => {
            let body = EnrollmentTokenRequest { ttl_minutes };
            let path = format!(
                "/api/v1/tenants/{}/enrollment-tokens",
                path_segment(&tenant)?
            );
            let session = Session::load()?;
            let mut reply: EnrollmentTokenView = session.post(&path, &body).await?;
            let pinned = pinned_enrolment(&session, &tenant, &reply).await?;
            if json {
                reply.root_fingerprint = fingerprint_text(&pinned.root);
                let install_command = pinned.install_command(&reply);
                print_json(&EnrollTokenOutput {
                    token: reply,
                    log_key: pinned.log_key,
                    install_command,
                })
            } else {
                print_enroll_token(&reply, &pinned)
            }
        }
        TenantCommand::Vulns { tenant, json } => {
            let path = format!("/api/v1/tenants/{}/vulnerabilities", path_segment(&tenant)?);
            let view: bulwark_api::vulndb::TenantVulnerabilitiesView =
                Session::load()?.get(&path).await?;
            if json {
                print_json(&view)
            } else {
                print!("{}", super::vulns::render_tenant(&view));
                Ok(())
            }
        }
        TenantCommand::Trust(command) => super::trust::run_tenant(command).await,
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// List the tenants with their device counts.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create a tenant (a customer): 2 to 63 lower-case letters, digits or '-'.
    Create {
        name: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Issue a one-time enrolment token for a new agent.
    EnrollToken {
        #[arg(long)]
        tenant: String,
        /// How long the token stays valid (the server's default when omitted).
        #[arg(long, value_name = "MINUTES")]
        ttl_minutes: Option<u32>,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// What to patch first: the open vulnerabilities across a tenant's
    /// devices, by score then how many devices.
    Vulns {
        #[arg(long)]
        tenant: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Trust(crate::commands::trust::TenantTrustCommand),
}

fn print_tenants(tenants: &[TenantView]) -> Result<()> {
    if tenants.is_empty() {
        println!("No tenants.");
        return Ok(());
    }
    let rows: Vec<Vec<Cell>> = tenants
        .iter()
        .map(|t| {
            vec![
                t.name.as_str().into(),
                t.device_count.to_string().into(),
                t.online_count.to_string().into(),
                t.id.as_str().into(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(&["NAME", "DEVICES", "ONLINE", "ID"], &rows, use_colour())
    );
    Ok(())
}

/// `tenant enroll-token --json`: the server's reply (its root fingerprint
/// replaced by the pinned one) with the pins the install command carries.
#[derive(serde::Serialize)]
struct EnrollTokenOutput {
    #[serde(flatten)]
    token: EnrollmentTokenView,
    log_key: String,
    install_command: String,
}

/// The trust anchors an enrolment carries, from this machine's pins.
struct PinnedEnrolment {
    root: [u8; 32],
    log_key: String,
}

impl PinnedEnrolment {
    fn install_command(&self, reply: &EnrollmentTokenView) -> String {
        format!(
            "sudo bulwark-agent install --server https://GATEWAY:PORT --token {} --root {} --log-key {}",
            reply.token,
            hex::encode(self.root),
            self.log_key
        )
    }
}

/// The token's root must be the root this machine pinned for the tenant,
/// and the server's log key the one pinned for the server: the install
/// command then carries the pins, and the agent refuses a token or a
/// server that disagrees with them.
async fn pinned_enrolment(
    session: &Session,
    tenant: &str,
    reply: &EnrollmentTokenView,
) -> Result<PinnedEnrolment> {
    let token = bulwark_protocol::token::EnrollToken::parse(&reply.token)
        .context("the server's token is malformed")?;
    let trust = crate::commands::trust::fetch_trust(session, tenant).await?;
    let root = trust
        .fingerprint
        .with_context(|| format!("tenant {tenant} has no trust root yet"))?;
    ensure!(
        token.root_fingerprint == root,
        "STOP: the server issued a token that pins trust root {}, but tenant {tenant}'s root is {} \
         (pinned on this machine). An agent enrolled with it would obey another root: do not use it",
        fingerprint_text(&token.root_fingerprint),
        fingerprint_text(&root)
    );
    let served: LogKeyView = session.get("/api/v1/log/key").await?;
    let served = served.vkey.trim().to_owned();
    if let (path, Some(_)) = crate::pins::check_log_key(session.server(), &served)? {
        eprintln!(
            "First use: pinned the log key {served}\n  in {path}. Compare it with the MSP out of band."
        );
    }
    Ok(PinnedEnrolment {
        root,
        log_key: served,
    })
}

fn print_enroll_token(reply: &EnrollmentTokenView, pinned: &PinnedEnrolment) -> Result<()> {
    println!(
        "Enrolment token for tenant {} (one use, expires {}):",
        reply.tenant, reply.expires_at
    );
    println!();
    println!("  {}", reply.token);
    println!();
    println!("Server CA fingerprint:   {}", reply.ca_fingerprint);
    println!(
        "Tenant root (pinned):    {}",
        fingerprint_text(&pinned.root)
    );
    println!("Log key (pinned):        {}", pinned.log_key);
    println!("On the device, run:");
    println!("  {}", pinned.install_command(reply));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enroll_token_json_adds_the_pins() {
        let token = EnrollmentTokenView {
            token: "bwe1.x".into(),
            tenant: "demo".into(),
            expires_at: "2030-01-01T00:00:00Z".into(),
            ca_fingerprint: "ca".into(),
            root_fingerprint: "root".into(),
        };
        let value = serde_json::to_value(EnrollTokenOutput {
            token,
            log_key: "log+1+key".into(),
            install_command: "bulwark-agent enroll".into(),
        })
        .expect("serializes");
        assert_eq!(value["token"], "bwe1.x");
        assert_eq!(value["tenant"], "demo");
        assert_eq!(value["root_fingerprint"], "root");
        assert_eq!(value["log_key"], "log+1+key");
        assert_eq!(value["install_command"], "bulwark-agent enroll");
    }
}
