//! One device's page (`/devices/{id}`): the device (key fingerprint, agent,
//! last seen) and its latest inventory (system, CPU, memory, disks,
//! network, logged-in users, listening ports, local administrators,
//! services, the process snapshot, open vulnerabilities ranked by score,
//! installed software with a name search), in the
//! units people read. Disk use is df's (used / (used + available)). Every
//! text an agent reported is untrusted and goes through askama's escaping.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use bulwark_api::devices::{DevicePackagesView, DeviceView, InventoryView, PackagesQuery};
use bulwark_api::vulndb::DeviceVulnerabilitiesView;

use super::{UserBar, error_page, human_bytes, human_duration, pct_step, render};
use crate::api::device_vulns::device_vulnerabilities_view;
use crate::api::devices::{device_view, packages_view};
use crate::auth::session::CookieCaller;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/devices/{id}", get(device_page))
}

struct DiskRow {
    mount: String,
    name: String,
    fs: String,
    size: String,
    used: String,
    free: String,
    used_pct: u64,
    used_pct_step: u64,
}

struct NetRow {
    name: String,
    mac: String,
    addresses: String,
}

struct UserRow {
    name: String,
    terminal: String,
    host: String,
}

/// Most vulnerability rows on the page (ranked: the rest score lower).
const VULN_ROWS_SHOWN: usize = 200;

struct VulnRow {
    rating: String,
    /// A class of the stylesheet's, chosen here from a fixed set.
    badge: &'static str,
    score: String,
    advisory: String,
    cves: String,
    package: String,
    installed: String,
    fixed: String,
    /// The pending update's version, and whether it fixes the advisory.
    pending: String,
    pending_fixes: bool,
}

struct VulnCard {
    /// `Debian:12`; none: the release is not known, nothing matched.
    ecosystem: Option<String>,
    imported: bool,
    total: u64,
    /// (rating, count, badge class), most severe first.
    counts: Vec<(String, u64, &'static str)>,
    rows: Vec<VulnRow>,
    more: bool,
}

fn badge(rating: &str) -> &'static str {
    match rating {
        "critical" => "critical",
        "high" | "medium" => "warning",
        _ => "info",
    }
}

fn vuln_card(view: &DeviceVulnerabilitiesView) -> VulnCard {
    const ORDER: [&str; 6] = ["critical", "high", "medium", "low", "none", "unrated"];
    let mut counts: Vec<(String, u64, &'static str)> = ORDER
        .iter()
        .map(|r| ((*r).to_owned(), 0, badge(r)))
        .collect();
    let mut rows = Vec::new();
    for v in &view.vulnerabilities {
        let rating = v
            .rating
            .as_deref()
            .map_or("unrated", |r| r)
            .to_ascii_lowercase();
        match counts.iter_mut().find(|(r, _, _)| *r == rating) {
            Some((_, n, _)) => *n += 1,
            None => counts.push((rating.clone(), 1, badge(&rating))),
        }
        for p in &v.packages {
            if rows.len() < VULN_ROWS_SHOWN {
                rows.push(VulnRow {
                    badge: badge(&rating),
                    rating: rating.clone(),
                    score: v
                        .score
                        .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}")),
                    advisory: v.advisory.clone(),
                    cves: v.aliases.join(", "),
                    package: p.package.clone(),
                    installed: p.installed.clone(),
                    fixed: p.fixed.clone().unwrap_or_else(|| "no fix yet".to_owned()),
                    pending: p.pending.clone().unwrap_or_else(|| "-".to_owned()),
                    pending_fixes: v.fixed_by_pending_update,
                });
            }
        }
    }
    counts.retain(|(_, n, _)| *n > 0);
    let listed: usize = view.vulnerabilities.iter().map(|v| v.packages.len()).sum();
    VulnCard {
        ecosystem: view.ecosystem.clone(),
        imported: view.generation.is_some(),
        total: view.total,
        counts,
        more: listed > rows.len() || (view.vulnerabilities.len() as u64) < view.total,
        rows,
    }
}

struct PortRow {
    protocol: String,
    /// `0.0.0.0:22`, `[::]:22`.
    endpoint: String,
    process: String,
}

struct AdminRow {
    name: String,
    how: String,
}

struct ServiceRow {
    name: String,
    load: String,
    active: String,
    sub: String,
    enabled: String,
}

struct ProcessRow {
    name: String,
    count: u32,
    memory: String,
    pid: u32,
    user: String,
    command_line: String,
}

/// Listening ports, administrators, services and processes; each `None`
/// until the agent reports it (older agents never do).
struct SecurityCards {
    ports: Option<Vec<PortRow>>,
    admins: Option<Vec<AdminRow>>,
    /// Whether systemd runs, and the units.
    services: Option<(bool, Vec<ServiceRow>)>,
    processes: Option<Vec<ProcessRow>>,
    /// How many pending updates are security updates, and the updates,
    /// security ones first (the API's order).
    updates: Option<(usize, Vec<bulwark_api::devices::PendingUpdateView>)>,
}

fn security_cards(inv: &InventoryView) -> SecurityCards {
    SecurityCards {
        ports: inv.listening_ports.as_ref().map(|ports| {
            ports
                .iter()
                .map(|p| PortRow {
                    protocol: p.protocol.clone(),
                    endpoint: if p.address.contains(':') {
                        format!("[{}]:{}", p.address, p.port)
                    } else {
                        format!("{}:{}", p.address, p.port)
                    },
                    process: match (&p.process, p.pid) {
                        (Some(name), Some(pid)) => format!("{name} ({pid})"),
                        (Some(name), None) => name.clone(),
                        (None, _) => "-".to_owned(),
                    },
                })
                .collect()
        }),
        admins: inv.local_admins.as_ref().map(|admins| {
            admins
                .iter()
                .map(|a| AdminRow {
                    name: a.name.clone(),
                    how: a
                        .grants
                        .iter()
                        .map(|g| match g.kind.as_str() {
                            "uid0" => "uid 0".to_owned(),
                            "gid0" => "primary group root".to_owned(),
                            "group" => format!("member of {}", g.via),
                            "sudoers" => format!("sudoers {}", g.via),
                            other => format!("{other} {}", g.via),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                })
                .collect()
        }),
        services: inv.services.as_ref().map(|s| {
            let units = s
                .units
                .iter()
                .map(|u| ServiceRow {
                    name: u.name.clone(),
                    load: u.load_state.clone(),
                    active: u.active_state.clone(),
                    sub: u.sub_state.clone(),
                    enabled: u.enabled_state.clone(),
                })
                .collect();
            (s.systemd_running, units)
        }),
        processes: inv.processes.as_ref().map(|ps| {
            ps.iter()
                .map(|p| ProcessRow {
                    name: p.name.clone(),
                    count: p.count,
                    memory: human_bytes(p.memory_bytes),
                    pid: p.pid,
                    user: p.user.clone(),
                    command_line: p.command_line.clone(),
                })
                .collect()
        }),
        updates: inv
            .pending_updates
            .as_ref()
            .map(|us| (us.iter().filter(|u| u.security).count(), us.clone())),
    }
}

struct InventoryPage {
    os: String,
    kernel: String,
    arch: String,
    uptime: String,
    cpu: String,
    memory: String,
    memory_pct_step: u64,
    swap: String,
    disks: Vec<DiskRow>,
    network: Vec<NetRow>,
    users: Vec<UserRow>,
    security: SecurityCards,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    user: Option<UserBar>,
    version: &'static str,
    d: DeviceView,
    inv: Option<InventoryPage>,
    packages: Option<DevicePackagesView>,
    vulns: VulnCard,
    checks: Vec<CheckRow>,
    /// The policy's device groups that list this device (RFD 0022).
    check_groups: String,
    charts: super::metrics::DeviceChartsCard,
    q: String,
    run: Option<super::scripts::RunPanel>,
    /// The Shell panel and the device's sessions, for who sees shells.
    shell: Option<super::shells::ShellPanel>,
    /// The CSRF token for the tag and group forms, for those who may set them.
    label_csrf: Option<String>,
}

/// One check on the device page: what the server says the agent reported,
/// or a check the policy puts on the device with no report.
struct CheckRow {
    name: String,
    state: &'static str,
    summary: String,
    since: String,
    /// "every device", or the groups of the policy it runs on (RFD 0022).
    applies_to: String,
}

fn check_rows(view: &bulwark_api::checks::DeviceChecksView) -> Vec<CheckRow> {
    use bulwark_api::checks::CheckStateView;
    let mut rows: Vec<CheckRow> = view
        .checks
        .iter()
        .map(|c| CheckRow {
            name: c.name.clone(),
            // Fixed strings: also the badge's CSS class.
            state: match c.state {
                CheckStateView::Ok => "ok",
                CheckStateView::Unknown => "unknown",
                CheckStateView::Warning => "warning",
                CheckStateView::Critical => "critical",
            },
            summary: c.summary.clone(),
            since: c.since.clone(),
            applies_to: applies_to(view, &c.name),
        })
        .collect();
    // What the policy puts on this device and its agent has not reported.
    for e in &view.expected {
        if !rows.iter().any(|r| r.name == e.name) {
            rows.push(CheckRow {
                name: e.name.clone(),
                state: "not-reported",
                summary: format!("{} check, no report yet", e.kind),
                since: String::new(),
                applies_to: applies_to(view, &e.name),
            });
        }
    }
    // Worst first, then by name.
    let rank = |s: &str| match s {
        "critical" | "not-reported" => 0,
        "warning" => 1,
        "unknown" => 2,
        _ => 3,
    };
    rows.sort_by(|a, b| rank(a.state).cmp(&rank(b.state)).then(a.name.cmp(&b.name)));
    rows
}

fn applies_to(view: &bulwark_api::checks::DeviceChecksView, name: &str) -> String {
    match view.expected.iter().find(|e| e.name == name) {
        Some(e) if e.groups.is_empty() => "every device".to_owned(),
        Some(e) => format!("group {}", e.groups.join(", ")),
        None => "not this device's in the stored policy".to_owned(),
    }
}

fn inventory_page(inv: &InventoryView, now_secs: u64) -> InventoryPage {
    let not_reported = || "not reported".to_owned();
    let system = inv.system.as_ref();
    let (memory, memory_pct_step, swap) = match &inv.memory {
        Some(m) => {
            let used = m.total_bytes.saturating_sub(m.available_bytes);
            (
                format!(
                    "{} used of {}",
                    human_bytes(used),
                    human_bytes(m.total_bytes)
                ),
                pct_step(used, m.total_bytes),
                format!(
                    "{} free of {}",
                    human_bytes(m.swap_free_bytes),
                    human_bytes(m.swap_total_bytes)
                ),
            )
        }
        None => (not_reported(), 0, not_reported()),
    };
    InventoryPage {
        security: security_cards(inv),
        os: system.map_or_else(not_reported, |s| format!("{} {}", s.os_name, s.os_version)),
        kernel: system.map_or_else(not_reported, |s| s.kernel_version.clone()),
        arch: system.map_or_else(not_reported, |s| s.architecture.clone()),
        uptime: system.map_or_else(not_reported, |s| {
            human_duration(now_secs.saturating_sub(s.boot_time))
        }),
        cpu: inv
            .cpu
            .as_ref()
            .map_or_else(not_reported, |c| match c.physical_cores {
                Some(p) => format!("{} · {} cores ({} physical)", c.model, c.logical_cores, p),
                None => format!("{} · {} cores", c.model, c.logical_cores),
            }),
        memory,
        memory_pct_step,
        swap,
        disks: inv
            .disks
            .iter()
            .flatten()
            .map(|d| {
                // df's figures when the agent sent them; older agents: size - free.
                let (used, whole) = match d.used_bytes {
                    Some(used) => (used, used.saturating_add(d.available_bytes)),
                    None => (
                        d.total_bytes.saturating_sub(d.available_bytes),
                        d.total_bytes,
                    ),
                };
                DiskRow {
                    mount: d.mount_point.clone(),
                    name: d.name.clone(),
                    fs: d.file_system.clone(),
                    size: human_bytes(d.total_bytes),
                    used: human_bytes(used),
                    free: human_bytes(d.available_bytes),
                    used_pct: d.use_percent().unwrap_or_else(|| {
                        used.saturating_mul(100).checked_div(whole).unwrap_or(0)
                    }),
                    used_pct_step: pct_step(used, whole),
                }
            })
            .collect(),
        network: inv
            .network
            .iter()
            .flatten()
            .map(|n| NetRow {
                name: n.name.clone(),
                mac: n.mac.clone(),
                addresses: n.addresses.join(", "),
            })
            .collect(),
        users: inv
            .users
            .iter()
            .flatten()
            .map(|u| UserRow {
                name: u.name.clone(),
                terminal: u.terminal.clone(),
                host: u.host.clone(),
            })
            .collect(),
    }
}

async fn device_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    // A malformed query shows the whole list rather than an error page;
    // `range=` picks the charts' range (and is no package search).
    let range = super::metrics::ChartRange::from_query(raw.as_deref());
    let packages_query = raw
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.starts_with("range="))
        .collect::<Vec<_>>()
        .join("&");
    let q = Query::<PackagesQuery>::try_from_uri(
        &format!("/?{packages_query}")
            .parse()
            .unwrap_or_else(|_| axum::http::Uri::from_static("/")),
    )
    .ok()
    .and_then(|Query(q)| q.q)
    .unwrap_or_default();
    let page = async {
        let mut d = device_view(&state, &caller, &id).await?;
        let packages = packages_view(&state, &caller, &id, &q).await?;
        let vulns = device_vulnerabilities_view(&state, &caller, &id).await?;
        let checks = crate::api::device_checks::device_checks_view(&state, &caller, &id).await?;
        let charts = super::metrics::device_charts_card(&state, &caller, &id, range).await?;
        let device = crate::api::devices::visible_device(&state, &caller, &id).await?;
        let shell = super::shells::shell_panel(&state, &caller, &device).await?;
        Ok::<_, crate::api::error::ApiError>((
            device.tenant_id,
            shell,
            d.inventory.take(),
            d,
            packages,
            vulns,
            checks,
            charts,
        ))
    };
    match page.await {
        Ok((tenant_id, shell, inventory, d, packages, vulns, checks, charts)) => {
            let now_secs = u64::try_from(crate::now_millis() / 1000).unwrap_or_default();
            let inv = inventory.map(|i| inventory_page(&i, now_secs));
            let run = super::scripts::run_panel(&state, &caller, &d.tenant, &d.hostname).await;
            let label_csrf = caller
                .require_in(crate::auth::Action::LabelDevices, &tenant_id)
                .is_ok()
                .then(|| caller.csrf_token.clone());
            render(DevicePage {
                label_csrf,
                run,
                shell,
                user: UserBar::of(&caller),
                version: crate::VERSION,
                packages: (d.package_count.unwrap_or(0) > 0).then_some(packages),
                vulns: vuln_card(&vulns),
                check_groups: checks.groups.join(", "),
                checks: check_rows(&checks),
                charts,
                d,
                inv,
                q,
            })
        }
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_cards_read_like_people_say_them() {
        let inv: InventoryView = serde_json::from_value(serde_json::json!({
            "system": null, "cpu": null, "memory": null, "disks": null, "network": null, "users": null,
            "listening_ports": [
                {"protocol": "tcp", "address": "::", "port": 22, "process": "sshd", "pid": 612},
                {"protocol": "udp", "address": "0.0.0.0", "port": 53, "process": null, "pid": null}
            ],
            "local_admins": [{"name": "<b>eve</b>", "grants": [
                {"kind": "sudoers", "via": "/etc/sudoers.d/x:1"}, {"kind": "uid0", "via": ""}]}],
            "services": {"systemd_running": false, "units": []}
        }))
        .expect("as the API serves it");
        let cards = security_cards(&inv);
        let ports: Vec<(String, String)> = cards
            .ports
            .expect("reported")
            .into_iter()
            .map(|p| (p.endpoint, p.process))
            .collect();
        assert_eq!(
            ports,
            [
                ("[::]:22".to_owned(), "sshd (612)".to_owned()),
                ("0.0.0.0:53".to_owned(), "-".to_owned())
            ]
        );
        let admins = cards.admins.expect("reported");
        assert_eq!(admins[0].how, "sudoers /etc/sudoers.d/x:1, uid 0");
        assert_eq!(cards.services.map(|(running, _)| running), Some(false));
        assert!(cards.processes.is_none(), "not reported is not empty");
    }

    #[test]
    fn vulnerabilities_are_counted_by_rating_and_badges_are_fixed_classes() {
        let view: DeviceVulnerabilitiesView = serde_json::from_value(serde_json::json!({
            "device_id": "d", "hostname": "h", "ecosystem": "Debian:12", "generation": 1,
            "total": 3, "truncated": false,
            "vulnerabilities": [
                {"advisory": "A", "aliases": ["CVE-1"], "summary": "", "score": 9.8,
                 "rating": "critical", "vector": null,
                 "packages": [{"package": "openssl", "installed": "1", "fixed": "2"}]},
                {"advisory": "B", "aliases": [], "summary": "", "score": 7.5,
                 "rating": "\"><script>", "vector": null,
                 "packages": [{"package": "zlib", "installed": "1", "fixed": null}]},
                {"advisory": "C", "aliases": [], "summary": "", "score": null,
                 "rating": null, "vector": null,
                 "packages": [{"package": "bash", "installed": "1", "fixed": null}]}
            ]
        }))
        .expect("as the API serves it");
        let card = vuln_card(&view);
        let counts: Vec<(&str, u64)> = card
            .counts
            .iter()
            .map(|(r, n, _)| (r.as_str(), *n))
            .collect();
        assert_eq!(
            counts,
            [("critical", 1), ("unrated", 1), ("\"><script>", 1)]
        );
        assert_eq!(card.rows[0].badge, "critical");
        assert_eq!(card.rows[1].badge, "info");
        assert_eq!(card.rows[1].fixed, "no fix yet");
        assert!(!card.more);
    }
}
