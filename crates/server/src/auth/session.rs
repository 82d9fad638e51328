//! Sessions: a random token held by the browser (HttpOnly cookie) or the CLI
//! (bearer token); the server stores only its SHA-256.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_store::{Operator, TenantScope};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::Auth;
use super::policy::{
    Action, Credential, Decision, Role, SessionState, Standing, TenantRole, authorize_in, decide,
    session_state,
};
use crate::api::error::ApiError;
use crate::now_millis;

pub const COOKIE_NAME: &str = "bulwark_session";
/// Header a cookie-authenticated API call must echo the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A new random token and the hash the store keeps.
pub fn new_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    (token, hash)
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The `Set-Cookie` value for a new browser session.
pub fn session_cookie(token: &str, max_age_secs: i64) -> String {
    format!(
        "{COOKIE_NAME}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_secs}"
    )
}

pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
}

/// An authenticated operator, extracted from the session cookie or bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub operator: Operator,
    /// Owner, or the roles held per tenant.
    pub standing: Standing,
    pub session_hash: [u8; 32],
    /// The session's (or API token's) non-secret id.
    pub session_id: String,
    /// A person's session and when it last passed MFA, or an API token.
    pub credential: Credential,
    pub csrf_token: String,
    pub via: Via,
}

impl Caller {
    /// The tenants this caller's queries may touch.
    pub fn scope(&self) -> TenantScope {
        match (self.credential, &self.standing) {
            (Credential::ApiToken, _) => TenantScope::ApiToken(self.session_id.clone()),
            (_, Standing::Owner) => TenantScope::All,
            (_, Standing::Granted(_)) => TenantScope::Operator(self.operator.id.clone()),
        }
    }

    pub fn is_owner(&self) -> bool {
        self.standing == Standing::Owner
    }

    /// The one authorisation check, for an action on no particular tenant:
    /// every handler calls it (or [`Caller::require_in`]) before acting.
    /// A tenant action ([`Action::on_tenant`]) is refused here to non-owners:
    /// those routes find the tenant in scope first (404 if it is foreign)
    /// and then call [`Caller::require_in`].
    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        self.decide(action, None)
    }

    /// The same check for an action on `tenant_id`, a tenant already found
    /// inside [`Caller::scope`]: the role held on that tenant decides (403).
    pub fn require_in(&self, action: Action, tenant_id: &str) -> Result<(), ApiError> {
        self.decide(action, Some(tenant_id))
    }

    /// [`Caller::require_in`] as a yes/no, for showing or hiding a button
    /// (the role only: a stale MFA check still shows it, and the action
    /// then asks for a step-up).
    pub fn allows_in(&self, action: Action, tenant_id: &str) -> bool {
        authorize_in(&self.standing, action, Some(tenant_id))
    }

    /// [`Caller::require`] as a yes/no for showing a button (role only).
    pub fn allows(&self, action: Action) -> bool {
        authorize_in(&self.standing, action, None)
    }

    /// The pure [`decide`], with MFA freshness: a privileged action on a
    /// session whose MFA check is older than the step-up window is a 403
    /// `step_up_required`, so no route can forget it.
    fn decide(&self, action: Action, tenant_id: Option<&str>) -> Result<(), ApiError> {
        match decide(
            &self.standing,
            action,
            tenant_id,
            self.credential,
            now_millis(),
        ) {
            Decision::Allow => Ok(()),
            Decision::Forbidden => Err(ApiError::forbidden()),
            Decision::StepUpRequired => Err(ApiError::step_up_required()),
            Decision::PasskeyRequired => Err(super::passkey::passkey_required()),
        }
    }

    /// What the page header shows: "owner" or "operator".
    pub fn account_label(&self) -> &'static str {
        match self.standing {
            Standing::Owner => Role::Owner.as_str(),
            Standing::Granted(_) => bulwark_store::ACCOUNT_OPERATOR,
        }
    }

    /// Checks a console form's CSRF field.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), ApiError> {
        if constant_time_eq(submitted.as_bytes(), self.csrf_token.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::csrf())
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|header| {
            header.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then_some(v)
            })
        })
}

/// Finds and checks the caller's session. `None` when there is no valid one.
async fn authenticate(parts: &Parts, state: &Auth) -> Result<Option<Caller>, ApiError> {
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let (token, via) = match (bearer, cookie_value(parts, COOKIE_NAME)) {
        (Some(t), _) => (t, Via::Bearer),
        (None, Some(t)) => (t, Via::Cookie),
        (None, None) => return Ok(None),
    };
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    if via == Via::Bearer
        && let Some(secret) = token.strip_prefix(API_TOKEN_PREFIX)
    {
        return authenticate_api_token(state, secret).await;
    }
    let hash = hash_token(token);
    let Some((session, operator)) = state.store.session(hash).await? else {
        return Ok(None);
    };
    let now = now_millis();
    if session_state(
        &state.session_policy,
        session.last_seen_at,
        session.expires_at,
        session.revoked_at,
        now,
    ) != SessionState::Valid
        || operator.disabled_at.is_some()
    {
        return Ok(None);
    }
    // Touch at most every 30 s: idle expiry needs no finer grain.
    if now - session.last_seen_at > 30_000 {
        state.store.touch_session(hash, now).await?;
    }
    let standing = match operator.role.as_str() {
        bulwark_store::ACCOUNT_OWNER => Standing::Owner,
        bulwark_store::ACCOUNT_OPERATOR => Standing::Granted(
            state
                .store
                .operator_grants(&operator.id)
                .await?
                .into_iter()
                // A role this build does not know grants nothing (fail closed).
                .filter_map(|g| {
                    Some(TenantRole {
                        role: Role::parse_grant(&g.role)?,
                        tenant_id: g.tenant_id,
                        tenant_name: g.tenant_name,
                    })
                })
                .collect(),
        ),
        _ => return Ok(None),
    };
    // The owner's passkey policy may restrict this session (decided in
    // `policy::decide`, like everything else).
    let credential =
        super::passkey::session_credential(state, &standing, hash, session.mfa_at).await?;
    Ok(Some(Caller {
        operator,
        standing,
        session_hash: hash,
        session_id: session.public_id,
        credential,
        csrf_token: session.csrf_token,
        via,
    }))
}

impl Caller {
    /// Is the credential this caller came with still good? Long-lived
    /// responses (the event stream) ask this periodically, so revoking a
    /// session or token, or disabling its operator, ends them too.
    pub async fn still_valid(&self, state: &Auth) -> Result<bool, ApiError> {
        let now = now_millis();
        if self.credential == Credential::ApiToken {
            return Ok(match state.store.api_token(self.session_hash).await? {
                Some((token, operator)) => {
                    token.revoked_at.is_none()
                        && now < token.expires_at
                        && operator.disabled_at.is_none()
                }
                None => false,
            });
        }
        Ok(match state.store.session(self.session_hash).await? {
            Some((session, operator)) => {
                session_state(
                    &state.session_policy,
                    session.last_seen_at,
                    session.expires_at,
                    session.revoked_at,
                    now,
                ) == SessionState::Valid
                    && operator.disabled_at.is_none()
            }
            None => false,
        })
    }
}

/// API tokens start with this, so they are told from session tokens at a glance.
pub const API_TOKEN_PREFIX: &str = "bwk_";

/// An integration's API token: valid while unrevoked, unexpired and its
/// operator enabled. Its standing is its role on its tenants, cut to the
/// tenants where its operator still holds that very role (or all of them
/// for an owner's token): a demotion shrinks the token with it.
async fn authenticate_api_token(state: &Auth, secret: &str) -> Result<Option<Caller>, ApiError> {
    let hash = hash_token(secret);
    let Some((token, operator)) = state.store.api_token(hash).await? else {
        return Ok(None);
    };
    let now = now_millis();
    if token.revoked_at.is_some() || now >= token.expires_at || operator.disabled_at.is_some() {
        return Ok(None);
    }
    let Some(role) = Role::parse_grant(&token.role) else {
        return Ok(None); // a role this build does not know grants nothing
    };
    let held = match operator.role.as_str() {
        bulwark_store::ACCOUNT_OWNER => None,
        bulwark_store::ACCOUNT_OPERATOR => Some(state.store.operator_grants(&operator.id).await?),
        _ => return Ok(None),
    };
    let grants = token
        .grants
        .into_iter()
        .filter(|g| {
            held.as_ref().is_none_or(|held| {
                held.iter()
                    .any(|h| h.tenant_id == g.tenant_id && h.role == token.role)
            })
        })
        .map(|g| TenantRole {
            role,
            tenant_id: g.tenant_id,
            tenant_name: g.tenant_name,
        })
        .collect();
    if token.last_used_at.is_none_or(|at| now - at > 30_000) {
        state.store.touch_api_token(&token.id, now).await?;
    }
    Ok(Some(Caller {
        operator,
        standing: Standing::Granted(grants),
        session_hash: hash,
        session_id: token.id,
        credential: Credential::ApiToken,
        csrf_token: String::new(),
        via: Via::Bearer,
    }))
}

fn unsafe_method(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A write a page of another site made the browser send: an unsafe method
/// from a foreign origin. Refused everywhere a browser's request acts: by
/// [`Caller`] for a cookie session, by [`CookieCaller`], and by the
/// console's router for every form, those of people not signed in yet too
/// (login, first-owner setup, invitation redemption: a foreign page posting
/// valid credentials there would sign the browser in as the attacker's
/// account, a login CSRF).
pub fn cross_origin_write(method: &Method, headers: &HeaderMap) -> bool {
    unsafe_method(method) && foreign_origin(headers)
}

/// Does the request come from another origin than this server's? The one
/// origin decision; SameSite=Strict already keeps the cookie off a
/// cross-site request, this is the second lock, and the only one for a
/// form that needs no session.
///
/// `Origin` names another host than `Host`: foreign. So is `Origin: null`
/// (an opaque origin: a sandboxed frame, a `no-referrer` page; the
/// console's own pages say `Referrer-Policy: same-origin` so that browsers
/// send their real origin with a form post, see `runtime.rs`) and an
/// `Origin` that is not text. Without `Origin`, `Sec-Fetch-Site` decides:
/// `cross-site` or `same-site` (a sibling host: another origin too) is
/// foreign. A request with neither header (a non-browser client, a browser
/// too old to send them) is not: there is no browser page to forge it.
fn foreign_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return headers
            .get(SEC_FETCH_SITE)
            .is_some_and(|site| site == "cross-site" || site == "same-site");
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    host.is_empty() || !origin_host.eq_ignore_ascii_case(host)
}

/// Fetch Metadata: where the browser says the request was started.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

impl<S: AsRef<Auth> + Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state.as_ref())
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        if caller.via == Via::Cookie && unsafe_method(&parts.method) {
            let header = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if foreign_origin(&parts.headers) {
                return Err(ApiError::csrf());
            }
            caller.check_csrf(header)?;
        }
        Ok(caller)
    }
}

/// A console page's caller: without a session the browser goes to the login
/// page. Form handlers check the CSRF field themselves.
pub struct CookieCaller(pub Caller);

pub enum ConsoleRejection {
    Login,
    Error(ApiError),
}

impl IntoResponse for ConsoleRejection {
    fn into_response(self) -> Response {
        match self {
            ConsoleRejection::Login => Redirect::to("/login").into_response(),
            ConsoleRejection::Error(e) => e.into_response(),
        }
    }
}

impl<S: AsRef<Auth> + Send + Sync> axum::extract::OptionalFromRequestParts<S> for CookieCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(match authenticate(parts, state.as_ref()).await {
            Ok(Some(caller)) if caller.via == Via::Cookie => Some(CookieCaller(caller)),
            _ => None,
        })
    }
}

impl<S: AsRef<Auth> + Send + Sync> FromRequestParts<S> for CookieCaller {
    type Rejection = ConsoleRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if cross_origin_write(&parts.method, &parts.headers) {
            return Err(ConsoleRejection::Error(ApiError::cross_origin()));
        }
        match authenticate(parts, state.as_ref()).await {
            Ok(Some(caller)) if caller.via == Via::Cookie => Ok(CookieCaller(caller)),
            Ok(_) => Err(ConsoleRejection::Login),
            Err(e) => Err(ConsoleRejection::Error(e)),
        }
    }
}
