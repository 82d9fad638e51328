//! Finding devices (RFD 0016): `bulwark device list` with search and
//! filters across tenants, `bulwark device tag` and `bulwark device group`.

use anyhow::{Result, bail, ensure};
use bulwark_api::devices::DeviceView;
use bulwark_api::fleet::{
    DeviceGroupRequest, DeviceLabelsView, DeviceSearchView, DeviceTagsRequest, MAX_PAGE,
    parse_group, parse_tag,
};

use crate::client::{Session, path_segment};
use crate::output::{Cell, GREEN, RED, or_dash, print_json, render_table, use_colour};

/// What `bulwark device list` (and a job aimed by tag or group) asks for.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub tenant: Option<String>,
    pub text: Option<String>,
    pub tags: Vec<String>,
    pub group: Option<String>,
    /// `Some(true)`: online only; `Some(false)`: offline only.
    pub online: Option<bool>,
}

/// `text` percent-encoded for a query string value.
pub(crate) fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Search {
    /// The query of `GET /api/v1/devices` (without `cursor`); names are
    /// checked here first, so a typo is refused before anything is asked.
    pub fn query(&self) -> Result<String> {
        let mut parts = vec![format!("limit={MAX_PAGE}")];
        if let Some(tenant) = &self.tenant {
            parts.push(format!("tenant={}", query_value(tenant)));
        }
        if let Some(text) = &self.text {
            parts.push(format!("q={}", query_value(text)));
        }
        for tag in &self.tags {
            for one in tag.split(',').filter(|t| !t.trim().is_empty()) {
                let tag = parse_tag(one).map_err(anyhow::Error::msg)?;
                parts.push(format!("tag={}", query_value(&tag)));
            }
        }
        if let Some(group) = &self.group {
            let group = parse_group(group).map_err(anyhow::Error::msg)?;
            parts.push(format!("group={}", query_value(&group)));
        }
        match self.online {
            Some(true) => parts.push("status=online".to_owned()),
            Some(false) => parts.push("status=offline".to_owned()),
            None => {}
        }
        Ok(parts.join("&"))
    }
}

/// Every device the search finds (all pages), and the total the server
/// gave; a server whose pages do not add up to its total is refused.
pub async fn find(session: &Session, search: &Search) -> Result<Vec<DeviceView>> {
    let query = search.query()?;
    let mut devices: Vec<DeviceView> = Vec::new();
    let mut cursor: Option<String> = None;
    // A bound, so a server that never ends its pages cannot keep us here.
    for _ in 0..1_000 {
        let mut path = format!("/api/v1/devices?{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", query_value(c)));
        }
        let page: DeviceSearchView = session.get(&path).await?;
        devices.extend(page.devices);
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            Some(_) => bail!("the server gave the same page twice"),
            None => {
                ensure!(
                    devices.len() as u64 == page.total,
                    "the server said {} devices match but listed {}",
                    page.total,
                    devices.len()
                );
                return Ok(devices);
            }
        }
    }
    bail!("the server's answer has more than 1,000 pages")
}

fn status_cell(online: bool) -> Cell {
    let (text, colour) = if online {
        ("online", GREEN)
    } else {
        ("offline", RED)
    };
    Cell {
        text: text.to_owned(),
        colour: Some(colour),
    }
}

/// The device table of `bulwark device list`: every text through
/// [`Cell`], which shows control characters as U+FFFD.
pub fn render(devices: &[DeviceView], colour: bool) -> String {
    let rows: Vec<Vec<Cell>> = devices
        .iter()
        .map(|d| {
            vec![
                d.id.as_str().into(),
                d.tenant.as_str().into(),
                d.hostname.as_str().into(),
                status_cell(d.online),
                or_dash(d.os.as_deref()).into(),
                or_dash(d.group.as_deref()).into(),
                if d.tags.is_empty() {
                    "-".into()
                } else {
                    d.tags.join(",").into()
                },
                or_dash(d.last_seen_at.as_deref()).into(),
            ]
        })
        .collect();
    let mut out = render_table(
        &[
            "ID",
            "TENANT",
            "HOSTNAME",
            "STATUS",
            "OS",
            "GROUP",
            "TAGS",
            "LAST SEEN",
        ],
        &rows,
        colour,
    );
    out.push_str(&format!(
        "{} device{}\n",
        devices.len(),
        if devices.len() == 1 { "" } else { "s" }
    ));
    out
}

/// `bulwark device list`.
pub async fn list(search: Search, json: bool) -> Result<()> {
    let session = Session::load()?;
    let devices = find(&session, &search).await?;
    if json {
        return print_json(&devices);
    }
    if devices.is_empty() {
        println!("No devices match. Enrol one with `bulwark tenant enroll-token --tenant NAME`.");
        return Ok(());
    }
    print!("{}", render(&devices, use_colour()));
    Ok(())
}

fn print_labels(view: &DeviceLabelsView) {
    let tags = if view.tags.is_empty() {
        "-".to_owned()
    } else {
        view.tags.join(",")
    };
    println!(
        "{} (tenant {}): group {}, tags {}",
        Cell::from(view.hostname.as_str()).text,
        Cell::from(view.tenant.as_str()).text,
        Cell::from(or_dash(view.group.as_deref())).text,
        Cell::from(tags).text
    );
}

/// `bulwark device tag DEVICE --add T --remove T`.
pub async fn tag(
    device: String,
    tenant: Option<String>,
    add: Vec<String>,
    remove: Vec<String>,
    json: bool,
) -> Result<()> {
    ensure!(
        !add.is_empty() || !remove.is_empty(),
        "name a tag to --add or --remove"
    );
    let split = |list: Vec<String>| -> Result<Vec<String>> {
        list.iter()
            .flat_map(|t| t.split(','))
            .filter(|t| !t.trim().is_empty())
            .map(|t| parse_tag(t).map_err(anyhow::Error::msg))
            .collect()
    };
    let request = DeviceTagsRequest {
        add: split(add)?,
        remove: split(remove)?,
    };
    let session = Session::load()?;
    let id = super::devices::device_id(&session, device, tenant.as_deref()).await?;
    let view: DeviceLabelsView = session
        .post(
            &format!("/api/v1/devices/{}/tags", path_segment(&id)?),
            &request,
        )
        .await?;
    if json {
        return print_json(&view);
    }
    print_labels(&view);
    Ok(())
}

/// `bulwark device group DEVICE GROUP|--none`.
pub async fn group(
    device: String,
    tenant: Option<String>,
    group: Option<String>,
    json: bool,
) -> Result<()> {
    let group = group
        .map(|g| parse_group(&g).map_err(anyhow::Error::msg))
        .transpose()?;
    let session = Session::load()?;
    let id = super::devices::device_id(&session, device, tenant.as_deref()).await?;
    let view: DeviceLabelsView = session
        .put(
            &format!("/api/v1/devices/{}/group", path_segment(&id)?),
            &DeviceGroupRequest { group },
        )
        .await?;
    if json {
        return print_json(&view);
    }
    print_labels(&view);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_every_filter_and_refuses_bad_names() {
        let search = Search {
            tenant: Some("acme corp".into()),
            text: Some("10.0.0".into()),
            tags: vec!["Server,finance".into()],
            group: Some("Branch Leeds".into()),
            online: Some(false),
        };
        assert_eq!(
            search.query().expect("a valid search"),
            "limit=500&tenant=acme%20corp&q=10.0.0&tag=server&tag=finance&group=Branch%20Leeds&status=offline"
        );
        let bad = Search {
            tags: vec!["a b".into()],
            ..Search::default()
        };
        assert!(bad.query().is_err());
    }

    #[test]
    fn the_table_shows_labels_and_defuses_hostile_text() {
        let device: DeviceView = serde_json::from_value(serde_json::json!({
            "id": "d1", "tenant": "acme", "hostname": "web\u{1b}[2J", "key_fingerprint": "",
            "agent_version": "0.1.0", "online": true, "last_seen_at": null,
            "enrolled_at": "2026-12-06T00:00:00Z", "os": "Debian GNU/Linux 12",
            "tags": ["finance", "server"], "group": "HQ"
        }))
        .expect("a device view");
        let out = render(&[device], false);
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(
            out.contains("finance,server") && out.contains("HQ"),
            "{out}"
        );
        assert!(out.ends_with("1 device\n"), "{out}");
    }
}
