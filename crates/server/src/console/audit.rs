//! The audit-log pages (RFD 0003, "Console"): a tenant's transparency log
//! at `/tenants/{tenant}/audit` and the MSP-wide log at `/audit/msp`,
//! shown to exactly who may read them through the auditor's API
//! ([`Action::ViewTenantLog`] on the tenant, [`Action::ViewMspLog`]).
//!
//! Rows come from the log itself: the exact leaf bytes
//! (`Store::log_entries`), decoded with `AuditLeaf::decode`; a leaf that does
//! not decode, names another log, or an index missing between two stored
//! entries is shown in red whatever the filters. Filters scan the log from
//! the newest entry down in batches, at most [`SCAN_CAP`] entries per page
//! load, and the page says when that cap cut the search short. Each row's
//! "Verify" button (`assets/audit.js`) checks the entry in the browser
//! against the signed tree head, with nothing but the JSON API.

use askama::Template;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use bulwark_store::{AuditLeaf, LogEntry, MSP_LOG};
use bulwark_translog::{Limits, leaf_hash, verify_log_note};
use serde::Deserialize;

use super::{UserBar, error_page, render};
use crate::api::error::ApiError;
use crate::api::log::tenant_log;
use crate::auth::session::CookieCaller;
use crate::auth::{Action, Caller};
use crate::now_millis;
use crate::state::AppState;

/// Rows on one page.
pub const PAGE_ROWS: usize = 100;
/// Most entries one page load reads while filtering (and for the chart).
pub const SCAN_CAP: u64 = 50_000;
/// Entries read per query while scanning.
const BATCH: u64 = 1000;
/// Days in the chart.
const CHART_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants/{tenant}/audit", get(tenant_audit_page))
        .route("/audit/msp", get(msp_audit_page))
        .route(
            "/assets/audit.js",
            get(|| {
                super::asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../assets/audit.js"),
                )
            }),
        )
}

/// The page's query: `before` (an index: show older entries) and the
/// filters; empty fields (as a GET form sends them) mean "any".
#[derive(Deserialize)]
pub(super) struct AuditQuery {
    before: Option<String>,
    who: Option<String>,
    what: Option<String>,
    from: Option<String>,
    to: Option<String>,
    device: Option<String>,
}

fn field(value: &Option<String>) -> String {
    value.as_deref().unwrap_or("").trim().to_owned()
}

/// A date `YYYY-MM-DD` (what `<input type="date">` sends) as the unix
/// milliseconds of its midnight, UTC.
fn parse_date(name: &str, text: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "{name}: expected a date as YYYY-MM-DD, not {text:?}"
        ))
    };
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u8 = m.parse().map_err(|_| bad())?;
    let day: u8 = d.parse().map_err(|_| bad())?;
    let month = time::Month::try_from(month).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// The filters, parsed.
#[derive(Default)]
struct Filter {
    /// Lower-cased; the actor contains it.
    who: String,
    /// Lower-cased; the action starts with it.
    what: String,
    /// `[from, to)` in unix milliseconds (the leaf's time).
    from: Option<i64>,
    to: Option<i64>,
    /// Lower-cased; the target or detail contains it, or one of `device_ids`.
    device: String,
    /// Devices of the tenant whose hostname is `device` (any case).
    device_ids: Vec<String>,
}

impl Filter {
    fn active(&self) -> bool {
        !self.who.is_empty()
            || !self.what.is_empty()
            || self.from.is_some()
            || self.to.is_some()
            || !self.device.is_empty()
    }

    fn matches(&self, leaf: &AuditLeaf) -> bool {
        if !self.who.is_empty() && !leaf.actor.to_lowercase().contains(&self.who) {
            return false;
        }
        if !self.what.is_empty() && !leaf.action.to_lowercase().starts_with(&self.what) {
            return false;
        }
        if self.from.is_some_and(|from| leaf.at < from) || self.to.is_some_and(|to| leaf.at >= to) {
            return false;
        }
        if !self.device.is_empty() {
            let target = leaf.target.to_lowercase();
            let detail = leaf.detail.to_lowercase();
            let named = |needle: &str| target.contains(needle) || detail.contains(needle);
            if !named(&self.device) && !self.device_ids.iter().any(|id| named(id)) {
                return false;
            }
        }
        true
    }
}

/// One row of the table.
pub(super) struct Row {
    index: u64,
    /// When it happened (the leaf's time; the append time for a leaf that
    /// does not decode), UTC.
    time: String,
    /// The decoded event; `None` for a leaf that does not decode or a gap.
    event: Option<AuditLeaf>,
    alert: bool,
    /// What is wrong with this entry, shown in red.
    problem: Option<String>,
    /// Hex of the RFC 6962 leaf hash of the bytes shown (the browser checks
    /// that the leaf it verifies is this one); empty for a gap.
    leaf_hash: String,
}

/// The signed tree head shown in the header.
pub(super) struct HeadView {
    size: u64,
    root_hex: String,
    root_short: String,
    signed_at: String,
    origin: String,
    key_name: String,
    /// The note did not open with the log key (it never should).
    problem: Option<String>,
}

/// One day's bar in the chart, in SVG user units.
pub(super) struct Bar {
    x: u32,
    width: u32,
    /// Top and height of the whole bar and of its `alert.*` part (at the bottom).
    y: u32,
    height: u32,
    alert_y: u32,
    alert_height: u32,
    label: String,
}

pub(super) struct Chart {
    bars: Vec<Bar>,
    max: u64,
    total: u64,
    alerts: u64,
    first_day: String,
    last_day: String,
    /// The chart's scan stopped at [`SCAN_CAP`] entries before reaching 30 days back.
    capped: bool,
}

const CHART_WIDTH: u32 = 600;
const CHART_HEIGHT: u32 = 100;

#[derive(Template)]
#[template(path = "audit.html")]
pub(super) struct AuditPage {
    user: Option<UserBar>,
    version: &'static str,
    /// The tenant's name, or `None` for the MSP log.
    tenant: Option<String>,
    /// The JSON API base of this log, for audit.js.
    api_base: String,
    /// `<key name>/<log id>`: what the checkpoint's origin must be.
    origin: String,
    head: Option<HeadView>,
    chart: Chart,
    rows: Vec<Row>,
    /// The filter fields as typed, to fill the form again.
    who: String,
    what: String,
    from: String,
    to: String,
    device: String,
    filtered: bool,
    /// Link to the next (older) page, if there may be one.
    older: Option<String>,
    /// Link to the newest page, when this is not it.
    newest: Option<String>,
    /// The search stopped at [`SCAN_CAP`] entries: where it stopped.
    capped_at: Option<u64>,
    scan_cap: u64,
    /// Entries below this index were archived past the retention period
    /// and left the database (RFD 0003, "Retention and archives").
    archived_below: u64,
}

fn utc(millis: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("{millis} ms"))
}

fn day_text(day: i64) -> String {
    utc(day * DAY_MS).chars().take(10).collect()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(super) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn row_of(entry: &LogEntry, log_id: &str) -> Row {
    let leaf_hash = hex::encode(leaf_hash(&entry.leaf).0);
    match AuditLeaf::decode(&entry.leaf) {
        Ok(event) => {
            let problem = (event.log_id() != log_id).then(|| {
                format!(
                    "this leaf names the log {:?}, not this one: it was copied here",
                    event.log_id()
                )
            });
            Row {
                index: entry.idx,
                time: utc(event.at),
                alert: event.action.starts_with("alert."),
                event: Some(event),
                problem,
                leaf_hash,
            }
        }
        Err(error) => Row {
            index: entry.idx,
            time: utc(entry.at),
            event: None,
            alert: false,
            problem: Some(format!(
                "this leaf ({} bytes) does not decode as an audit event: {error}",
                entry.leaf.len()
            )),
            leaf_hash,
        },
    }
}

fn gap_row(high: u64, low: u64) -> Row {
    let what = if high == low {
        format!("entry {low} is missing from the database")
    } else {
        format!("entries {low} to {high} are missing from the database")
    };
    Row {
        index: high,
        time: String::new(),
        event: None,
        alert: false,
        problem: Some(what),
        leaf_hash: String::new(),
    }
}

struct Scan {
    rows: Vec<Row>,
    /// Where an older page starts (`before`), if there may be one.
    older: Option<u64>,
    capped_at: Option<u64>,
}

/// Reads `log_id` from index `top - 1` down to `floor` (the first entry
/// not archived), keeping entries that match `filter` (and every entry that
/// does not decode, and every gap), until a page is full, the floor, or
/// [`SCAN_CAP`] entries.
async fn scan(
    state: &AppState,
    log_id: &str,
    (floor, top): (u64, u64),
    filter: &Filter,
) -> Result<Scan, ApiError> {
    let mut rows = Vec::new();
    let mut next = top;
    // The index the next entry down should have.
    let mut expected = top;
    let mut scanned = 0u64;
    while next > floor {
        if scanned >= SCAN_CAP {
            return Ok(Scan {
                rows,
                older: Some(next),
                capped_at: Some(next),
            });
        }
        let n = BATCH.min(next - floor).min(SCAN_CAP - scanned);
        let from = next - n;
        let batch = state
            .store
            .log_entries(log_id, from, u32::try_from(n).unwrap_or(u32::MAX))
            .await?;
        scanned += n;
        for entry in batch.iter().rev() {
            // A hole between stored entries (not the archived prefix below
            // the first stored entry).
            if entry.idx + 1 < expected {
                rows.push(gap_row(expected - 1, entry.idx + 1));
            }
            expected = entry.idx;
            let row = row_of(entry, log_id);
            let keep = match &row.event {
                Some(event) if row.problem.is_none() => filter.matches(event),
                _ => true,
            };
            if keep {
                rows.push(row);
            }
            if rows.len() >= PAGE_ROWS {
                return Ok(Scan {
                    older: (entry.idx > floor).then_some(entry.idx),
                    rows,
                    capped_at: None,
                });
            }
        }
        next = from;
    }
    // Entries missing just above the floor.
    if expected > floor && top > floor {
        rows.push(gap_row(expected - 1, floor));
    }
    Ok(Scan {
        rows,
        older: None,
        capped_at: None,
    })
}

/// Entries per day over the last [`CHART_DAYS`] days (UTC), `alert.*` apart.
async fn chart(
    state: &AppState,
    log_id: &str,
    (floor, size): (u64, u64),
    now: i64,
) -> Result<Chart, ApiError> {
    let today = now.div_euclid(DAY_MS);
    let first = today - (CHART_DAYS - 1);
    let since = first * DAY_MS;
    let days = usize::try_from(CHART_DAYS).unwrap_or(30);
    let mut counts = vec![(0u64, 0u64); days];
    let mut next = size;
    let mut scanned = 0u64;
    let mut capped = false;
    'scan: while next > floor {
        if scanned >= SCAN_CAP {
            capped = true;
            break;
        }
        let n = BATCH.min(next - floor).min(SCAN_CAP - scanned);
        let from = next - n;
        let batch = state
            .store
            .log_entries(log_id, from, u32::try_from(n).unwrap_or(u32::MAX))
            .await?;
        scanned += n;
        for entry in batch.iter().rev() {
            // Appends come in time order: older than the window, done.
            if entry.at < since {
                break 'scan;
            }
            let (at, alert) = match AuditLeaf::decode(&entry.leaf) {
                Ok(event) => (event.at, event.action.starts_with("alert.")),
                Err(_) => (entry.at, false),
            };
            let day = at.div_euclid(DAY_MS) - first;
            if let Some(slot) = usize::try_from(day).ok().and_then(|d| counts.get_mut(d)) {
                slot.0 += 1;
                slot.1 += u64::from(alert);
            }
        }
        next = from;
    }
    let max = counts.iter().map(|c| c.0).max().unwrap_or(0);
    let slot = CHART_WIDTH / u32::try_from(days).unwrap_or(30);
    let scale = |count: u64| -> u32 {
        if count == 0 || max == 0 {
            return 0;
        }
        // At least 2 units, so a single entry is visible.
        let h = count.saturating_mul(u64::from(CHART_HEIGHT)) / max;
        u32::try_from(h)
            .unwrap_or(CHART_HEIGHT)
            .clamp(2, CHART_HEIGHT)
    };
    let bars = counts
        .iter()
        .zip(0u32..)
        .map(|(&(total, alerts), i)| {
            let height = scale(total);
            let alert_height = scale(alerts).min(height);
            let day = first + i64::from(i);
            Bar {
                x: i * slot + 1,
                width: slot - 2,
                y: CHART_HEIGHT - height,
                height,
                alert_y: CHART_HEIGHT - alert_height,
                alert_height,
                label: format!(
                    "{}: {total} entr{}, {alerts} alert{}",
                    day_text(day),
                    if total == 1 { "y" } else { "ies" },
                    if alerts == 1 { "" } else { "s" }
                ),
            }
        })
        .collect();
    Ok(Chart {
        bars,
        max,
        total: counts.iter().map(|c| c.0).sum(),
        alerts: counts.iter().map(|c| c.1).sum(),
        first_day: day_text(first),
        last_day: day_text(today),
        capped,
    })
}

async fn head_view(
    state: &AppState,
    log_id: &str,
    size: u64,
) -> Result<Option<HeadView>, ApiError> {
    if size == 0 {
        return Ok(None);
    }
    let checkpoint = state
        .log
        .checkpoint_covering(&state.store, log_id, size, now_millis())
        .await?;
    let verifier = state.log.verifier();
    let key_name = verifier.name().to_owned();
    let signed_at = utc(checkpoint.at);
    Ok(Some(
        match verify_log_note(&checkpoint.note, &verifier, &Limits::default()) {
            Ok(opened) => {
                let root_hex = hex::encode(opened.root().0);
                HeadView {
                    size: opened.size(),
                    root_short: format!("{}…", &root_hex[..16]),
                    root_hex,
                    signed_at,
                    origin: opened.origin().to_owned(),
                    key_name,
                    problem: None,
                }
            }
            Err(error) => HeadView {
                size: checkpoint.size,
                root_hex: String::new(),
                root_short: String::new(),
                signed_at,
                origin: state.log.origin(log_id),
                key_name,
                problem: Some(format!(
                    "the stored tree head does not open with the log key: {error}"
                )),
            },
        },
    ))
}

async fn page(
    state: &AppState,
    caller: &Caller,
    log_id: &str,
    tenant: Option<String>,
    q: AuditQuery,
) -> Result<Response, ApiError> {
    let (who, what, from, to, device) = (
        field(&q.who),
        field(&q.what),
        field(&q.from),
        field(&q.to),
        field(&q.device),
    );
    let before = match field(&q.before) {
        text if text.is_empty() => None,
        text => Some(
            text.parse::<u64>()
                .map_err(|_| ApiError::bad_request("before: expected an entry index"))?,
        ),
    };
    let mut filter = Filter {
        who: who.to_lowercase(),
        what: what.to_lowercase(),
        from: (!from.is_empty())
            .then(|| parse_date("from", &from))
            .transpose()?,
        to: (!to.is_empty())
            .then(|| parse_date("to", &to).map(|t| t + DAY_MS))
            .transpose()?,
        device: device.to_lowercase(),
        device_ids: Vec::new(),
    };
    if !filter.device.is_empty() && log_id != MSP_LOG {
        filter.device_ids = state
            .store
            .list_devices(&caller.scope(), log_id)
            .await?
            .into_iter()
            .filter(|d| d.hostname.to_lowercase() == filter.device)
            .map(|d| d.id.to_lowercase())
            .collect();
    }

    let (size, archived_below) = state
        .store
        .log_head(log_id)
        .await?
        .map_or((0, 0), |h| (h.size, h.archived_below));
    let head = head_view(state, log_id, size).await?;
    let top = before.map_or(size, |b| b.min(size));
    let found = scan(state, log_id, (archived_below, top), &filter).await?;
    let chart = chart(state, log_id, (archived_below, size), now_millis()).await?;

    let path = match &tenant {
        Some(name) => format!("/tenants/{}/audit", encode(name)),
        None => "/audit/msp".to_owned(),
    };
    let mut query = String::new();
    for (name, value) in [
        ("who", &who),
        ("what", &what),
        ("from", &from),
        ("to", &to),
        ("device", &device),
    ] {
        if !value.is_empty() {
            query.push_str(&format!("&{name}={}", encode(value)));
        }
    }
    let link = |before: Option<u64>| {
        let mut q = before.map(|b| format!("&before={b}")).unwrap_or_default();
        q.push_str(&query);
        match q.strip_prefix('&') {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        }
    };
    let api_base = match &tenant {
        Some(_) => format!("/api/v1/tenants/{}/log", encode(log_id)),
        None => "/api/v1/msp/log".to_owned(),
    };
    Ok(render(AuditPage {
        user: UserBar::of(caller),
        version: crate::VERSION,
        origin: state.log.origin(log_id),
        tenant,
        api_base,
        head,
        chart,
        rows: found.rows,
        filtered: filter.active(),
        who,
        what,
        from,
        to,
        device,
        older: found.older.map(|b| link(Some(b))),
        newest: before.is_some().then(|| link(None)),
        capped_at: found.capped_at,
        scan_cap: SCAN_CAP,
        archived_below,
    }))
}

fn query(q: Result<Query<AuditQuery>, QueryRejection>) -> Result<AuditQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|rejection| ApiError::bad_request(format!("bad query: {}", rejection.body_text())))
}

async fn tenant_audit_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let shown = match (tenant_log(&state, &caller, &tenant).await, query(q)) {
        (Ok((id, name)), Ok(q)) => page(&state, &caller, &id, Some(name), q).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    shown.unwrap_or_else(|e| error_page(e, UserBar::of(&caller)))
}

async fn msp_audit_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let shown = match (caller.require(Action::ViewMspLog), query(q)) {
        (Ok(()), Ok(q)) => page(&state, &caller, MSP_LOG, None, q).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    shown.unwrap_or_else(|e| error_page(e, UserBar::of(&caller)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_encoding() {
        assert_eq!(parse_date("from", "1970-01-02").ok(), Some(DAY_MS));
        assert!(parse_date("from", "1970-13-01").is_err());
        assert!(parse_date("from", "1970-1-01").is_err());
        assert!(parse_date("from", "x").is_err());
        assert_eq!(encode("job. <a>&b"), "job.%20%3Ca%3E%26b");
        assert_eq!(utc(0), "1970-01-01 00:00:00");
    }

    #[test]
    fn filters() {
        let leaf = AuditLeaf::new(
            DAY_MS + 5,
            Some("t".into()),
            "Alice",
            "job.approved",
            "dev-1234",
            "on host-a",
        );
        let f = |who: &str, what: &str, device: &str| Filter {
            who: who.into(),
            what: what.into(),
            device: device.into(),
            ..Filter::default()
        };
        assert!(f("ali", "job.", "").matches(&leaf));
        assert!(!f("bob", "", "").matches(&leaf));
        assert!(!f("", "alert.", "").matches(&leaf));
        assert!(f("", "", "host-a").matches(&leaf));
        assert!(!f("", "", "host-b").matches(&leaf));
        let by_name = Filter {
            device: "laptop".into(),
            device_ids: vec!["dev-1234".into()],
            ..Filter::default()
        };
        assert!(by_name.matches(&leaf));
        let dated = Filter {
            from: Some(DAY_MS),
            to: Some(2 * DAY_MS),
            ..Filter::default()
        };
        assert!(dated.matches(&leaf));
        let later = Filter {
            from: Some(2 * DAY_MS),
            ..Filter::default()
        };
        assert!(!later.matches(&leaf));
    }
}
