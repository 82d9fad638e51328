//! `bulwark device vulns` and `bulwark tenant vulns`: open advisories as
//! tables ranked by what to patch first. Every text is the server's (and
//! the agent's): [`Cell`] defuses control characters.

use std::fmt::Write as _;

use bulwark_api::vulndb::{DeviceVulnerabilitiesView, TenantVulnerabilitiesView};

use crate::output::*;

fn score(score: Option<f64>) -> String {
    score.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}"))
}

/// The advisory and its CVE ids, on one line.
fn advisory(id: &str, aliases: &[String]) -> String {
    if aliases.is_empty() {
        id.to_owned()
    } else {
        format!("{id} ({})", aliases.join(", "))
    }
}

fn incomplete(out: &mut String, listed: usize, total: u64, truncated: bool) {
    if (listed as u64) < total {
        let _ = writeln!(out, "(first {listed} of {total} shown)");
    }
    if truncated {
        let _ = writeln!(out, "(too many candidates: the list may be incomplete)");
    }
}

pub(crate) fn render_device(view: &DeviceVulnerabilitiesView) -> String {
    let mut out = String::new();
    let host = Cell::from(view.hostname.as_str()).text;
    let Some(ecosystem) = &view.ecosystem else {
        let _ = writeln!(
            out,
            "{host}: not matched: its operating system is not a Debian or Ubuntu release the vulnerability database names"
        );
        return out;
    };
    if view.generation.is_none() {
        let _ = writeln!(
            out,
            "{host}: no vulnerability database imported (bulwark vulndb import)"
        );
        return out;
    }
    let ecosystem = Cell::from(ecosystem.as_str()).text;
    let _ = writeln!(out, "{host} ({ecosystem}): {} open advisories", view.total);
    let mut rows = Vec::new();
    for v in &view.vulnerabilities {
        for p in &v.packages {
            rows.push(vec![
                v.rating.as_deref().unwrap_or("-").into(),
                score(v.score).into(),
                advisory(&v.advisory, &v.aliases).into(),
                p.package.as_str().into(),
                p.installed.as_str().into(),
                p.fixed.as_deref().unwrap_or("(no fix yet)").into(),
                match (&p.pending, v.fixed_by_pending_update) {
                    (Some(pending), true) => format!("{pending} (fixes it)"),
                    (Some(pending), false) => pending.clone(),
                    (None, _) => "-".to_owned(),
                }
                .into(),
            ]);
        }
    }
    if !rows.is_empty() {
        out.push_str(&render_table(
            &[
                "SEVERITY",
                "SCORE",
                "ADVISORY",
                "PACKAGE",
                "INSTALLED",
                "FIXED",
                "PENDING UPDATE",
            ],
            &rows,
            false,
        ));
    }
    incomplete(
        &mut out,
        view.vulnerabilities.len(),
        view.total,
        view.truncated,
    );
    out
}

pub(crate) fn render_tenant(view: &TenantVulnerabilitiesView) -> String {
    let mut out = String::new();
    let tenant = Cell::from(view.tenant.as_str()).text;
    if view.generation.is_none() {
        let _ = writeln!(
            out,
            "{tenant}: no vulnerability database imported (bulwark vulndb import)"
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{tenant}: {} open advisories on {} devices",
        view.total, view.devices
    );
    let rows: Vec<Vec<Cell>> = view
        .vulnerabilities
        .iter()
        .map(|v| {
            vec![
                v.rating.as_deref().unwrap_or("-").into(),
                score(v.score).into(),
                v.devices.to_string().into(),
                advisory(&v.advisory, &v.aliases).into(),
                v.packages.join(", ").into(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&render_table(
            &["SEVERITY", "SCORE", "DEVICES", "ADVISORY", "PACKAGES"],
            &rows,
            false,
        ));
    }
    incomplete(
        &mut out,
        view.vulnerabilities.len(),
        view.total,
        view.truncated,
    );
    if !view.unmatched_devices.is_empty() {
        let hosts: Vec<String> = view
            .unmatched_devices
            .iter()
            .map(|h| Cell::from(h.as_str()).text)
            .collect();
        let _ = writeln!(out, "not matched (release unknown): {}", hosts.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_table_and_unknown_release() {
        let view: DeviceVulnerabilitiesView = serde_json::from_value(serde_json::json!({
            "device_id": "d", "hostname": "web-1\u{1b}[2J", "ecosystem": "Debian:12",
            "generation": 1, "total": 1, "truncated": false,
            "vulnerabilities": [{"advisory": "DSA-5764-1", "aliases": ["CVE-2024-5535"],
                "summary": "", "score": 7.5, "rating": "high", "vector": null,
                "packages": [{"package": "openssl", "installed": "3.0.11-1~deb12u2",
                    "fixed": "3.0.15-1~deb12u1"}]}]
        }))
        .expect("as the API serves it");
        let out = render_device(&view);
        assert!(out.contains("DSA-5764-1 (CVE-2024-5535)"), "{out}");
        assert!(
            out.contains("7.5") && out.contains("3.0.15-1~deb12u1"),
            "{out}"
        );
        assert!(!out.contains('\u{1b}'), "{out}");
        let unknown = DeviceVulnerabilitiesView {
            ecosystem: None,
            ..view
        };
        assert!(render_device(&unknown).contains("not matched"));
    }
}
