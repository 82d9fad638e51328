//! The freeze given to the tenant's witnesses as well as to the server
//! (RFD 0006, "The kill switch the server cannot withhold"): each witness
//! with an address in the verified policy gets `POST <url>/bulwark/v1/freeze`
//! with the root chain and the signed statement, checks it from the
//! tenant's pinned first root and, from its grace on, cosigns nothing more
//! of the tenant's log. Agents want fresh cosignatures for every job, so a
//! freeze held by `n - k + 1` honest witnesses stops them whatever the
//! server does.

use std::time::Duration;

use bulwark_translog::cosignature::CosignatureVerifier;
use bulwark_witness::freeze::{PATH, request_body};

use super::*;

/// How long one witness may take to answer.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(20);
/// How much of a witness's answer is shown.
const MAX_ANSWER_CHARS: usize = 400;

/// The root chain from version 1 that witnesses replay the freeze from: the
/// server's copy, replayed here from the tenant's pinned first root, and
/// leading to the root `trust` verified (the one that signs the freeze).
pub(crate) async fn root_chain(
    session: &Session,
    tenant: &str,
    trust: &Trust,
) -> Result<Vec<Signed>> {
    let limits = Limits::default();
    let pinned = trust
        .fingerprint
        .with_context(|| format!("tenant {tenant} has no trust root"))?;
    let reply: TrustView = session.get(&trust_path(tenant, "")?).await?;
    let roots = reply
        .roots
        .iter()
        .enumerate()
        .map(|(i, r)| decode_envelope(r, &format!("root {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    let (history, refused) =
        TrustHistory::replay(&trust.tenant_id, Some(pinned), &roots, None, None, &limits);
    ensure!(
        refused.is_empty() && history.root().is_some() && history.root() == trust.root.as_ref(),
        "the server's root chain does not lead from the pinned root to the root verified before"
    );
    Ok(roots)
}

/// What became of the freeze at one witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Given {
    /// 200: the witness holds it (its answer says from when it stops cosigning).
    Accepted(String),
    /// Another status, with the witness's reason.
    Refused(u16, String),
    /// No answer.
    Unreachable(String),
    /// The policy gives no address for it.
    NoUrl,
}

/// A witness's text as one printable line of bounded length: what a
/// witness answers is its own, not something to put on a terminal as is.
fn one_line(text: &str) -> String {
    let line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ANSWER_CHARS)
        .collect();
    if text.trim().chars().count() > MAX_ANSWER_CHARS {
        format!("{line}…")
    } else {
        line
    }
}

async fn give(client: reqwest::Client, url: String, body: String) -> Given {
    let url = format!("{}{PATH}", url.trim_end_matches('/'));
    let reply = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .timeout(WITNESS_TIMEOUT)
        .body(body)
        .send()
        .await;
    match reply {
        Err(error) => Given::Unreachable(one_line(&format!("{url}: {:#}", anyhow!(error)))),
        Ok(reply) => {
            let status = reply.status();
            let text = reply.text().await.unwrap_or_default();
            if status == reqwest::StatusCode::OK {
                Given::Accepted(one_line(&text))
            } else {
                Given::Refused(status.as_u16(), one_line(&text))
            }
        }
    }
}

/// What the final line says: how many witnesses hold the statement and how
/// many it takes.
pub(super) fn summary(witnessing: &Witnessing, held: usize, frozen: bool) -> String {
    let n = witnessing.witnesses.len();
    let k = usize::try_from(witnessing.threshold).unwrap_or(usize::MAX);
    if frozen {
        let needed = n.saturating_sub(k).saturating_add(1);
        let verdict = if held >= needed {
            format!(
                "agents stop within the witnesses' freeze grace + {} s, whatever the server does",
                witnessing.freshness_secs
            )
        } else {
            "NOT enough: the server can still withhold the freeze from agents; give it to more \
             witnesses (run this command again when they are reachable)"
                .to_owned()
        };
        format!(
            "{held} of the policy's {n} witnesses hold the freeze; {needed} (n - k + 1, with \
             k = {k}) are needed for the guarantee: {verdict}."
        )
    } else {
        format!(
            "{held} of the policy's {n} witnesses hold the unfreeze; agents run jobs again once \
             {k} of them cosign the tenant's log."
        )
    }
}

/// Gives `signed` (a freeze, or an unfreeze when `!frozen`) with the root
/// chain to every witness of the tenant's verified policy, and prints what
/// each did and how many hold it. A chain that could not be read is
/// reported and the statement given alone: a witness that learnt the roots
/// with an earlier freeze still takes it.
pub(crate) async fn give_to_witnesses(
    tenant: &str,
    trust: &Trust,
    chain: Result<Vec<Signed>>,
    signed: &Signed,
    frozen: bool,
) {
    let Some(witnessing) = trust.policy.as_ref().and_then(|p| p.witnessing.as_ref()) else {
        if frozen {
            println!(
                "Note: tenant {tenant}'s policy names no witnesses, so this freeze reaches agents \
                 only through the server (RFD 0006)."
            );
        }
        return;
    };
    let roots = chain.unwrap_or_else(|error| {
        eprintln!(
            "warning: cannot give the witnesses the root chain ({error:#}); giving them the \
             statement alone"
        );
        Vec::new()
    });
    let body = request_body(&roots, signed);
    let client = match crate::client::http_client(None) {
        Ok(client) => Some(client),
        Err(error) => {
            eprintln!("warning: {error:#}");
            None
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, witness) in witnessing.witnesses.iter().enumerate() {
        if let (Some(url), Some(client)) = (&witness.url, &client) {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tasks.spawn(async move { (i, give(client, url, body).await) });
        }
    }
    let mut given = vec![Given::NoUrl; witnessing.witnesses.len()];
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, outcome)) => given[i] = outcome,
            Err(error) => eprintln!("warning: {error}"),
        }
    }
    if client.is_none() {
        for g in &mut given {
            *g = Given::Unreachable("no HTTP client".into());
        }
    }
    let what = if frozen { "freeze" } else { "unfreeze" };
    println!("The {what} given to tenant {tenant}'s witnesses (RFD 0006):");
    for (witness, outcome) in witnessing.witnesses.iter().zip(&given) {
        let name = CosignatureVerifier::from_vkey(&witness.vkey)
            .map_or_else(|_| witness.vkey.clone(), |v| v.name().to_owned());
        let line = match outcome {
            Given::Accepted(text) => format!("accepted: {text}"),
            Given::Refused(status, text) => format!("refused (HTTP {status}): {text}"),
            Given::Unreachable(error) => format!("unreachable: {error}"),
            Given::NoUrl => {
                format!("not given: the policy has no address for it; give it the {what} by hand")
            }
        };
        println!("  {name}  {line}");
    }
    let held = given
        .iter()
        .filter(|g| matches!(g, Given::Accepted(_)))
        .count();
    println!("{}", summary(witnessing, held, frozen));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn witnessing(n: usize, k: u32) -> Witnessing {
        Witnessing {
            witnesses: (0..n)
                .map(|i| WitnessKey {
                    vkey: format!("w{i}"),
                    url: None,
                })
                .collect(),
            threshold: k,
            freshness_secs: 600,
        }
    }

    #[test]
    fn the_summary_counts_against_n_minus_k_plus_one() {
        let three_of_five = witnessing(5, 3);
        let short = summary(&three_of_five, 2, true);
        assert!(short.starts_with("2 of the policy's 5 witnesses hold the freeze; 3 (n - k + 1"));
        assert!(short.contains("NOT enough"), "{short}");
        let enough = summary(&three_of_five, 3, true);
        assert!(enough.contains("agents stop within the witnesses' freeze grace + 600 s"));
        let unfreeze = summary(&three_of_five, 2, false);
        assert!(unfreeze.contains("once 3 of them cosign"), "{unfreeze}");
        // k = n: one witness holding it is enough.
        assert!(!summary(&witnessing(2, 2), 1, true).contains("NOT"));
    }

    #[test]
    fn a_witness_answer_is_shown_on_one_bounded_line() {
        assert_eq!(one_line("  ok\nsecond\x1b[31m  "), "ok second [31m");
        let long = "x".repeat(MAX_ANSWER_CHARS + 10);
        assert_eq!(one_line(&long).chars().count(), MAX_ANSWER_CHARS + 1);
    }
}
