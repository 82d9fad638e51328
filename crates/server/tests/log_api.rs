//! The auditor's log API over real HTTP against a real server (in process):
//! events made through the API land in their logs, and everything the API
//! serves (entries, signed heads, inclusion and consistency proofs) is
//! checked with `bulwark_translog` alone against the log key it serves,
//! as an outside verifier would.

#![allow(clippy::unwrap_used)]

#[path = "support/soft_passkey.rs"]
mod soft_passkey;

#[path = "support/live_server.rs"]
mod live_server;

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_protocol::audit_leaf::AuditLeaf;
use bulwark_server::now_millis;
use bulwark_store::NewAuditEvent;
use bulwark_translog::{
    Checkpoint, Frontier, Hash, Limits, LogAuditor, NoteVerifier, check_extension, leaf_hash,
    verify_consistency, verify_inclusion, verify_log_note,
};
use live_server::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn hash(value: &Value) -> Hash {
    let bytes = B64.decode(value.as_str().unwrap()).unwrap();
    Hash::try_from(bytes.as_slice()).unwrap()
}

fn hashes(value: &Value) -> Vec<Hash> {
    value.as_array().unwrap().iter().map(hash).collect()
}

/// Everything of one log, checked: returns its entries' leaves.
async fn verify_log(
    s: &Server,
    token: &str,
    base: &str,
    key: &NoteVerifier,
    tenant: Option<&str>,
) -> Vec<Vec<u8>> {
    let limits = Limits::default();
    let head = s.ok(Method::GET, base, Some(token), None).await;
    let log_id = head["log_id"].as_str().unwrap().to_owned();
    assert_eq!(log_id, tenant.unwrap_or("msp"));
    let origin = format!("{}/{log_id}", key.name());
    assert_eq!(head["origin"], origin.as_str());
    let size = head["size"].as_u64().unwrap();
    assert!(size > 0);
    // The head's checkpoint: signed by the log key, of this log, covering it.
    let signed =
        verify_log_note(head["checkpoint"]["note"].as_str().unwrap(), key, &limits).unwrap();
    assert_eq!(signed.origin(), origin);
    assert_eq!(signed.size(), head["checkpoint"]["size"].as_u64().unwrap());
    assert!(signed.size() >= size);

    // Every entry, in pages of 7.
    let mut leaves = Vec::new();
    loop {
        let page = s
            .ok(
                Method::GET,
                &format!("{base}/entries?start={}&limit=7", leaves.len()),
                Some(token),
                None,
            )
            .await;
        let entries = page["entries"].as_array().unwrap();
        for entry in entries {
            assert_eq!(entry["index"].as_u64().unwrap(), leaves.len() as u64);
            let leaf = B64.decode(entry["leaf"].as_str().unwrap()).unwrap();
            let event = AuditLeaf::decode(&leaf).unwrap();
            assert_eq!(event.tenant.as_deref(), tenant, "{event:?}");
            assert!(entry["at"].as_i64().unwrap() > 0);
            leaves.push(leaf);
        }
        if entries.len() < 7 {
            break;
        }
    }
    assert!(leaves.len() as u64 >= signed.size());
    leaves.truncate(signed.size() as usize);

    // The root of the entries is the signed root; each entry's inclusion
    // proof leads to it.
    let mut frontier = Frontier::new();
    for leaf in &leaves {
        frontier.append(leaf_hash(leaf)).unwrap();
    }
    assert_eq!(frontier.root(), *signed.root());
    for (index, leaf) in leaves.iter().enumerate() {
        let proof = s
            .ok(
                Method::GET,
                &format!(
                    "{base}/proof/inclusion?index={index}&tree_size={}",
                    signed.size()
                ),
                Some(token),
                None,
            )
            .await;
        assert_eq!(proof["index"], index);
        assert_eq!(proof["tree_size"], signed.size());
        verify_inclusion(
            &leaf_hash(leaf),
            index as u64,
            signed.size(),
            &hashes(&proof["hashes"]),
            signed.root(),
        )
        .unwrap();
    }

    // Every stored head: signed, smallest first, each extending the one
    // before (consistency proofs), and all of them the auditor's input.
    let listed = s
        .ok(
            Method::GET,
            &format!("{base}/checkpoints?from_size=0"),
            Some(token),
            None,
        )
        .await;
    let heads: Vec<Checkpoint> = listed["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let head = verify_log_note(c["note"].as_str().unwrap(), key, &limits).unwrap();
            assert_eq!(head.size(), c["size"].as_u64().unwrap());
            assert!(c["signed_at"].as_i64().unwrap() > 0);
            head
        })
        .collect();
    assert!(heads.windows(2).all(|w| w[0].size() < w[1].size()));
    assert_eq!(heads.last().unwrap(), &signed);
    for pair in heads.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        if old.size() == 0 {
            continue;
        }
        let proof = s
            .ok(
                Method::GET,
                &format!(
                    "{base}/proof/consistency?from={}&to={}",
                    old.size(),
                    new.size()
                ),
                Some(token),
                None,
            )
            .await;
        assert_eq!(proof["from"], old.size());
        assert_eq!(proof["to"], new.size());
        check_extension(old, new, &hashes(&proof["hashes"])).unwrap();
    }
    let mut auditor = LogAuditor::new(&heads, None).unwrap();
    for (index, leaf) in leaves.iter().enumerate() {
        auditor.push(index as u64, leaf).unwrap();
    }
    let summary = auditor.finish().unwrap();
    assert_eq!(summary.size, signed.size());
    assert_eq!(summary.heads_checked, heads.len());
    leaves
}

/// Creates tenant `name` as `owner`; returns its log's head.
async fn new_tenant_log(s: &Server, owner: &str, name: &str) -> Value {
    s.ok(
        Method::POST,
        "/api/v1/tenants",
        Some(owner),
        Some(json!({"name": name})),
    )
    .await;
    s.ok(
        Method::GET,
        &format!("/api/v1/tenants/{name}/log"),
        Some(owner),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_verifies_every_log_over_the_api() {
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    // Events in tenant acme's log: its creation, then 15 events recorded
    // the way every store change records them.
    let acme_id = new_tenant_log(&s, &owner, "acme").await["log_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for round in 0..3 {
        for n in 0..5 {
            s.server
                .store
                .append_audit(NewAuditEvent {
                    at: now_millis(),
                    tenant_id: Some(acme_id.clone()),
                    actor: "olivia".into(),
                    action: bulwark_store::AuditAction::JobResult,
                    target: format!("round {round}"),
                    detail: format!("event {n}"),
                })
                .await
                .unwrap();
        }
        // A signed head between rounds, as the server's timer would make.
        let head = s
            .ok(Method::GET, "/api/v1/tenants/acme/log", Some(&owner), None)
            .await;
        assert_eq!(
            head["checkpoint"]["size"], head["size"],
            "round {round}: a signed head of the whole log"
        );
    }

    let key = s
        .ok(Method::GET, "/api/v1/log/key", Some(&owner), None)
        .await;
    let verifier = NoteVerifier::from_vkey(key["vkey"].as_str().unwrap()).unwrap();
    assert_eq!(verifier.name(), key["key_name"].as_str().unwrap());

    let acme = s
        .ok(Method::GET, "/api/v1/tenants/acme/log", Some(&owner), None)
        .await;
    let leaves = verify_log(
        &s,
        &owner,
        "/api/v1/tenants/acme/log",
        &verifier,
        Some(&acme_id),
    )
    .await;
    assert!(leaves.len() >= 15, "{}", leaves.len());
    let actions: Vec<String> = leaves
        .iter()
        .map(|l| AuditLeaf::decode(l).unwrap().action)
        .collect();
    assert!(
        actions.iter().filter(|a| *a == "job.result").count() == 15
            && actions[0] == "tenant.created",
        "{actions:?}"
    );
    // The tenant by id answers the same log.
    let by_id = s
        .ok(
            Method::GET,
            &format!("/api/v1/tenants/{acme_id}/log"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(by_id["log_id"], acme_id.as_str());
    // The MSP log: the owner's setup, logins, the tenant's creation...
    verify_log(&s, &owner, "/api/v1/msp/log", &verifier, None).await;

    // Bad parameters: a clear 400, whatever the order of checks.
    let size = acme["size"].as_u64().unwrap();
    for (query, needle) in [
        ("entries?limit=0", "limit"),
        ("entries?limit=1001", "limit"),
        ("entries?start=minus", "start"),
        ("entries?begin=3", "begin"),
        ("checkpoints?limit=5000", "limit"),
        ("proof/inclusion?index=3&tree_size=3", "index"),
        ("proof/inclusion?index=0", "tree_size"),
        (
            &format!("proof/inclusion?index=0&tree_size={}", size + 1),
            "beyond",
        ),
        ("proof/consistency?from=0&to=2", "from"),
        ("proof/consistency?from=3&to=2", "larger"),
        (
            &format!("proof/consistency?from=1&to={}", size + 1),
            "beyond",
        ),
    ] {
        let reply = s
            .send(
                Method::GET,
                &format!("/api/v1/tenants/acme/log/{query}"),
                Some(&owner),
                None,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            reply.body
        );
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{query}: {message}");
    }
    // Past the end: no entries, not an error.
    let past = s
        .ok(
            Method::GET,
            &format!("/api/v1/tenants/acme/log/entries?start={}", size + 10),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(past, json!({"entries": []}));

    // A tenant auditor of another tenant: that tenant's log, not acme's
    // (404, as if it did not exist), not the MSP log (403).
    let mut totp = s
        .operator(&owner, "audrey", "tenant_auditor", "globex")
        .await;
    let audrey = s.login_totp("audrey", &mut totp).await;
    let globex = s
        .ok(
            Method::GET,
            "/api/v1/tenants/globex/log",
            Some(&audrey),
            None,
        )
        .await;
    let globex_id = globex["log_id"].as_str().unwrap().to_owned();
    verify_log(
        &s,
        &audrey,
        "/api/v1/tenants/globex/log",
        &verifier,
        Some(&globex_id),
    )
    .await;
    for path in [
        "/api/v1/tenants/acme/log".to_owned(),
        format!("/api/v1/tenants/{acme_id}/log"),
        format!("/api/v1/tenants/{acme_id}/log/entries"),
        "/api/v1/tenants/acme/log/proof/inclusion?index=0&tree_size=1".to_owned(),
    ] {
        let reply = s.send(Method::GET, &path, Some(&audrey), None).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
    }
    let reply = s
        .send(Method::GET, "/api/v1/msp/log", Some(&audrey), None)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // The OpenAPI document says what the bytes are.
    let doc = s
        .ok(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .to_string();
    for needle in [
        "SHA-256(0x00 || leaf)",
        "base64",
        "C2SP checkpoint",
        "verbatim",
    ] {
        assert!(doc.contains(needle), "{needle}");
    }
}

/// How fast an auditor downloads and checks a larger log over the API
/// (figures in the output; synthetic audit events appended in the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_larger_log_streams_through_the_auditor() {
    const N: usize = 20_000;
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    let id = new_tenant_log(&s, &owner, "big").await["log_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = now_millis();
    let batch: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            AuditLeaf::new(
                now,
                Some(id.clone()),
                "olivia",
                "test.event",
                format!("target-{i}"),
                "",
            )
            .encode()
        })
        .collect();
    s.server
        .store
        .append_log_entries(&id, &batch, now)
        .await
        .unwrap();
    let key = s
        .ok(Method::GET, "/api/v1/log/key", Some(&owner), None)
        .await;
    let verifier = NoteVerifier::from_vkey(key["vkey"].as_str().unwrap()).unwrap();

    let started = Instant::now();
    let head = s
        .ok(Method::GET, "/api/v1/tenants/big/log", Some(&owner), None)
        .await;
    let signed = verify_log_note(
        head["checkpoint"]["note"].as_str().unwrap(),
        &verifier,
        &Limits::default(),
    )
    .unwrap();
    let mut auditor = LogAuditor::new(std::slice::from_ref(&signed), None).unwrap();
    let mut next = 0u64;
    while next < signed.size() {
        let page = s
            .ok(
                Method::GET,
                &format!("/api/v1/tenants/big/log/entries?start={next}"),
                Some(&owner),
                None,
            )
            .await;
        let entries = page["entries"].as_array().unwrap();
        assert!(!entries.is_empty());
        for entry in entries {
            let leaf = B64.decode(entry["leaf"].as_str().unwrap()).unwrap();
            AuditLeaf::decode(&leaf).unwrap();
            auditor
                .push(entry["index"].as_u64().unwrap(), &leaf)
                .unwrap();
            next += 1;
        }
    }
    let summary = auditor.finish().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(summary.size, N as u64 + 1);
    // A consistency proof from the first entry to the whole log.
    let first = s.server.store.log_root_at(&id, 1).await.unwrap();
    let proof = s
        .ok(
            Method::GET,
            &format!(
                "/api/v1/tenants/big/log/proof/consistency?from=1&to={}",
                signed.size()
            ),
            Some(&owner),
            None,
        )
        .await;
    verify_consistency(
        1,
        signed.size(),
        &Hash(first),
        signed.root(),
        &hashes(&proof["hashes"]),
    )
    .unwrap();
    eprintln!(
        "audited {} entries over HTTP in {:.2?}: {:.0} entries/s",
        summary.size,
        elapsed,
        summary.size as f64 / elapsed.as_secs_f64()
    );
}

/// The actions of every leaf of a log, read through the store.
async fn leaves_of(s: &Server, log_id: &str) -> Vec<AuditLeaf> {
    let size = s.server.store.log_head(log_id).await.unwrap().unwrap().size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let page = s
            .server
            .store
            .log_entries(log_id, out.len() as u64, 1000)
            .await
            .unwrap();
        assert!(!page.is_empty());
        out.extend(page.iter().map(|e| AuditLeaf::decode(&e.leaf).unwrap()));
    }
    out
}

async fn log_size(s: &Server, log_id: &str) -> u64 {
    s.server.store.log_head(log_id).await.unwrap().unwrap().size
}

/// Announcing an export (`POST …/log/exports`) appends exactly one
/// `log.exported` event to the log read, after the announced head, so a
/// whole-log verify still passes; a bad announcement records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_export_is_recorded_in_the_log_read() {
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    let head = new_tenant_log(&s, &owner, "acme").await;
    let acme_id = head["log_id"].as_str().unwrap().to_owned();
    let size = head["size"].as_u64().unwrap();
    let msp_size = log_size(&s, "msp").await;

    // Bad announcements: 400, and neither log changes.
    for (body, needle) in [
        (json!({"purpose": "steal", "tree_size": 1}), "purpose"),
        (
            json!({"purpose": "verify", "tree_size": 1, "reason": "x"}),
            "reason",
        ),
        (json!({"purpose": "verify"}), "tree_size"),
        (json!({"tree_size": 1}), "purpose"),
        (json!({"purpose": "verify", "tree_size": -1}), "tree_size"),
        (json!("verify"), ""),
        (
            json!({"purpose": "verify", "tree_size": size + 1}),
            "beyond",
        ),
        (
            json!({"purpose": "export", "tree_size": u64::MAX}),
            "beyond",
        ),
    ] {
        let reply = s
            .post(
                "/api/v1/tenants/acme/log/exports",
                Some(&owner),
                body.clone(),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let reply = s
        .post(
            "/api/v1/msp/log/exports",
            Some(&owner),
            json!({"purpose": "export", "tree_size": msp_size + 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    // Not JSON at all.
    let reply = s
        .http
        .post(s.url("/api/v1/tenants/acme/log/exports"))
        .bearer_auth(&owner)
        .header("content-type", "application/json")
        .body("{\"purpose\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    assert_eq!(log_size(&s, &acme_id).await, size);
    assert_eq!(log_size(&s, "msp").await, msp_size);
    assert!(
        !s.audit().await.iter().any(|(a, _)| a == "log.exported"),
        "{:?}",
        s.audit().await
    );

    // A good one: 201, one event at index `size` of acme's log.
    let reply = s
        .post(
            "/api/v1/tenants/acme/log/exports",
            Some(&owner),
            json!({"purpose": "verify", "tree_size": size}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({"action": "log.exported", "tree_size": size})
    );
    let leaves = leaves_of(&s, &acme_id).await;
    assert_eq!(leaves.len() as u64, size + 1);
    let exported: Vec<&AuditLeaf> = leaves
        .iter()
        .filter(|l| l.action == "log.exported")
        .collect();
    assert_eq!(exported.len(), 1, "{leaves:?}");
    let event = exported[0];
    assert_eq!(event, &leaves[size as usize]);
    assert_eq!(event.actor, "olivia");
    assert_eq!(event.tenant.as_deref(), Some(acme_id.as_str()));
    assert_eq!(event.target, acme_id);
    assert_eq!(event.detail, format!("verify up to size {size} (session)"));
    // Nothing in the MSP log.
    assert_eq!(log_size(&s, "msp").await, msp_size);

    // The MSP log: its own event, without a tenant.
    let reply = s
        .post(
            "/api/v1/msp/log/exports",
            Some(&owner),
            json!({"purpose": "export", "tree_size": msp_size}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let msp = leaves_of(&s, "msp").await;
    assert_eq!(msp.len() as u64, msp_size + 1);
    let last = msp.last().unwrap();
    assert_eq!(
        (
            last.action.as_str(),
            last.actor.as_str(),
            last.target.as_str(),
            last.tenant.as_deref(),
            last.detail.as_str()
        ),
        (
            "log.exported",
            "olivia",
            "msp",
            None,
            format!("export up to size {msp_size} (session)").as_str()
        )
    );
    assert_eq!(log_size(&s, &acme_id).await, size + 1);

    // A browser session must carry its CSRF token like every other write.
    let cookie = s.session_with_mfa_at("olivia", now_millis()).await;
    let send = |csrf: Option<&str>| {
        let mut request = s
            .http
            .post(s.url("/api/v1/tenants/acme/log/exports"))
            .header("cookie", format!("bulwark_session={cookie}"))
            .json(&json!({"purpose": "export", "tree_size": 1}));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    let refused = send(None).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "csrf", "{body}");
    assert_eq!(log_size(&s, &acme_id).await, size + 1);
    let accepted = send(Some("unused")).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::CREATED);
    assert_eq!(log_size(&s, &acme_id).await, size + 2);

    // An API token says so in the detail.
    let token = s
        .ok(
            Method::POST,
            "/api/v1/api-tokens",
            Some(&owner),
            Some(json!({"name": "siem", "role": "tenant_auditor", "tenants": ["acme"]})),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = s
        .post(
            "/api/v1/tenants/acme/log/exports",
            Some(&token),
            json!({"purpose": "export", "tree_size": 3}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let last = leaves_of(&s, &acme_id).await.pop().unwrap();
    assert_eq!(last.detail, "export up to size 3 (api token)");

    // Another tenant's auditor: acme's log is a 404 (nothing recorded),
    // the MSP log a 403; its own tenant's log records it.
    let mut totp = s
        .operator(&owner, "audrey", "tenant_auditor", "globex")
        .await;
    let audrey = s.login_totp("audrey", &mut totp).await;
    let acme_size = log_size(&s, &acme_id).await;
    let msp_size = log_size(&s, "msp").await;
    for path in [
        "/api/v1/tenants/acme/log/exports".to_owned(),
        format!("/api/v1/tenants/{acme_id}/log/exports"),
    ] {
        let reply = s
            .post(
                &path,
                Some(&audrey),
                json!({"purpose": "export", "tree_size": 1}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
        // A bad body does not tell a foreign tenant apart either.
        let reply = s
            .post(&path, Some(&audrey), json!({"purpose": "steal"}))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
    }
    let reply = s
        .post(
            "/api/v1/msp/log/exports",
            Some(&audrey),
            json!({"purpose": "export", "tree_size": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(log_size(&s, &acme_id).await, acme_size);
    assert_eq!(log_size(&s, "msp").await, msp_size);
    let globex = s
        .ok(
            Method::GET,
            "/api/v1/tenants/globex/log",
            Some(&audrey),
            None,
        )
        .await;
    let globex_id = globex["log_id"].as_str().unwrap().to_owned();
    let reply = s
        .post(
            "/api/v1/tenants/globex/log/exports",
            Some(&audrey),
            json!({"purpose": "verify", "tree_size": globex["size"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let last = leaves_of(&s, &globex_id).await.pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.actor.as_str()),
        ("log.exported", "audrey")
    );

    // The whole logs, export events included, still verify.
    let key = s
        .ok(Method::GET, "/api/v1/log/key", Some(&owner), None)
        .await;
    let verifier = NoteVerifier::from_vkey(key["vkey"].as_str().unwrap()).unwrap();
    let leaves = verify_log(
        &s,
        &owner,
        "/api/v1/tenants/acme/log",
        &verifier,
        Some(&acme_id),
    )
    .await;
    assert_eq!(
        leaves
            .iter()
            .filter(|l| AuditLeaf::decode(l).unwrap().action == "log.exported")
            .count(),
        3
    );
    verify_log(&s, &owner, "/api/v1/msp/log", &verifier, None).await;
}
