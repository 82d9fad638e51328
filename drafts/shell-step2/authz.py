p='crates/server/tests/authz_matrix.rs'; s=open(p).read()
old="""    // The transparency logs (read-only): the key is for everyone with a"""
new="""    // Remote shells (RFD 0015). The grant made at start-up in each tenant
    // was requested by the read-only operator: nobody else may connect
    // under it (403 for every role, before the upgrade), a key that is
    // not the approver's is a 400 after the role and MFA checks, and an
    // empty revoke reason a 400 (the grant stays for the next caller).
    (
        "GET",
        "/api/v1/tenants/{tenant}/shell-grants",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/shell-grants",
        Tenant(&[Owner, SecurityOfficer, Technician], 400),
    ),
    ("GET", "/api/v1/shell-grants/{id}", Tenant(EVERY_ROLE, 200)),
    (
        "POST",
        "/api/v1/shell-grants/{id}/approvals",
        Tenant(&[Owner, SecurityOfficer, Technician, TenantAuditor], 400),
    ),
    (
        "POST",
        "/api/v1/shell-grants/{id}/revoke",
        Tenant(&[Owner, SecurityOfficer, Technician, TenantAuditor], 400),
    ),
    ("GET", "/api/v1/shell-grants/{id}/connect", Tenant(&[], 403)),
    (
        "GET",
        "/api/v1/devices/{id}/shell-sessions",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/shell-sessions",
        Tenant(EVERY_ROLE, 200),
    ),
    // The start-up session is still open: no recording yet (409), after
    // the role check; recordings are for owners, security officers and
    // the customer's auditor.
    (
        "GET",
        "/api/v1/shell-sessions/{id}/recording",
        Tenant(&[Owner, SecurityOfficer, TenantAuditor], 409),
    ),
    // The transparency logs (read-only): the key is for everyone with a"""
assert old in s; s=s.replace(old,new,1)
old="""    ("POST", "/api/v1/jobs/{id}/cancel"),
"""
new="""    ("POST", "/api/v1/jobs/{id}/cancel"),
    ("POST", "/api/v1/shell-grants/{id}/approvals"),
"""
assert old in s; s=s.replace(old,new,1)
old="""    jobs: BTreeMap<&'static str, String>,
    /// An open"""
new="""    jobs: BTreeMap<&'static str, String>,
    /// A shell grant (asked for by the read-only operator) and an open
    /// session under it, per tenant.
    shell_grants: BTreeMap<&'static str, String>,
    shell_sessions: BTreeMap<&'static str, String>,
    /// An open"""
assert old in s; s=s.replace(old,new,1)
old="""        jobs: BTreeMap::new(),
        proposals: BTreeMap::new(),"""
new="""        jobs: BTreeMap::new(),
        shell_grants: BTreeMap::new(),
        shell_sessions: BTreeMap::new(),
        proposals: BTreeMap::new(),"""
assert old in s; s=s.replace(old,new,1)
old="""    // A session ended through the API, and one past its absolute lifetime.
    let now = now_millis();"""
new="""    // A shell grant and an open session per tenant, stored directly.
    for tenant in [OWN, FOREIGN] {
        let (grant_id, session_id) = h.shell_grant(tenant).await;
        h.shell_grants.insert(tenant, grant_id);
        h.shell_sessions.insert(tenant, session_id);
    }

    // A session ended through the API, and one past its absolute lifetime.
    let now = now_millis();"""
assert old in s; s=s.replace(old,new,1)
old="""    async fn request_for("""
new="""    /// A grant for `tenant`'s device, requested by the read-only operator
    /// (unsigned: the routes under test never send it to an agent), and a
    /// session opened under it.
    async fn shell_grant(&self, tenant: &'static str) -> (String, String) {
        let now = now_secs();
        let grant_id: [u8; 16] = rand::random();
        let statement = bulwark_policy::shell::ShellGrant {
            tenant: self.tenant_ids[tenant].clone(),
            tenant_name: tenant.to_owned(),
            grant_id,
            device: bulwark_policy::JobTarget {
                device_id: self.devices[tenant].clone(),
                hostname: "matrix".to_owned(),
                device_key: None,
            },
            grantee: bulwark_policy::KeyId([0; 32]),
            account: bulwark_policy::shell::ShellAccount::Unprivileged,
            reason: "matrix".to_owned(),
            not_before: now - 60,
            expires_at: now + 3600,
            nonce: rand::random(),
        };
        let id = hex::encode(grant_id);
        self.server
            .store
            .create_shell_grant(
                &bulwark_store::NewShellGrant {
                    id: id.clone(),
                    tenant_id: self.tenant_ids[tenant].clone(),
                    device_id: self.devices[tenant].clone(),
                    requested_by: self.operator_ids[&ReadOnly].clone(),
                    grantee_key: "00".repeat(32),
                    account: "unprivileged".to_owned(),
                    reason: "matrix".to_owned(),
                    not_before: i64::try_from(now - 60).expect("time"),
                    expires_at: i64::try_from(now + 3600).expect("time"),
                    envelope: Signed::new(&statement).to_bytes(),
                },
                now_millis(),
                &[],
            )
            .await
            .expect("grant stored");
        let session = hex::encode(rand::random::<[u8; 16]>());
        self.server
            .store
            .open_shell_session(
                &session,
                &id,
                &self.operator_ids[&ReadOnly],
                now_millis(),
                &[],
            )
            .await
            .expect("session stored");
        (id, session)
    }

    async fn request_for("""
assert old in s; s=s.replace(old,new,1)
old="""                | "/api/v1/devices/{id}/vulnerabilities",
            ) => (path.replace("{id}", &self.devices[tenant]), None),"""
new="""                | "/api/v1/devices/{id}/vulnerabilities"
                | "/api/v1/devices/{id}/shell-sessions",
            ) => (path.replace("{id}", &self.devices[tenant]), None),
            ("GET", "/api/v1/shell-grants/{id}" | "/api/v1/shell-grants/{id}/connect") => {
                (path.replace("{id}", &self.shell_grants[tenant]), None)
            }
            ("POST", "/api/v1/shell-grants/{id}/approvals") => (
                path.replace("{id}", &self.shell_grants[tenant]),
                Some(json!({"key_id": "00".repeat(32), "signature": "AAAA"})),
            ),
            ("POST", "/api/v1/shell-grants/{id}/revoke") => (
                path.replace("{id}", &self.shell_grants[tenant]),
                Some(json!({"reason": ""})),
            ),
            ("POST", "/api/v1/tenants/{tenant}/shell-grants") => {
                (path, Some(json!({"envelope": "AAAA"})))
            }
            ("GET", "/api/v1/shell-sessions/{id}/recording") => {
                (path.replace("{id}", &self.shell_sessions[tenant]), None)
            }"""
assert old in s; s=s.replace(old,new,1)
open(p,'w').write(s)
