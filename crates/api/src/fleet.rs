//! Finding devices (RFD 0016): tags and groups, the search query of
//! `GET /api/v1/devices` and its answer.
//!
//! A tag is a free label on a device (many per device); a group is the one
//! place a device belongs within its tenant (at most one). Both are the
//! server's word: whatever a job is aimed at by tag or group is resolved
//! into explicit devices that the operator's `bulwark` shows before it
//! signs, so a lie here can only add a device the operator sees listed.
//!
//! The name rules live here, once, for the server (which refuses a bad
//! name with 400), the CLI (which refuses it before asking) and the fuzz
//! target.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::devices::DeviceView;

/// The longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 32;
/// The longest group name, in bytes.
pub const MAX_GROUP_LEN: usize = 64;
/// The most tags one device carries.
pub const MAX_TAGS_PER_DEVICE: usize = 32;
/// The most tags one change adds or removes, and one search requires.
pub const MAX_TAGS_PER_REQUEST: usize = 32;
/// The longest search text, in bytes.
pub const MAX_SEARCH_LEN: usize = 128;
/// Devices per page when the query names no limit, and at most.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;

/// A tag as stored: 1 to [`MAX_TAG_LEN`] ASCII letters, digits, `-`, `_`
/// or `.`, starting with a letter or digit, folded to lower case (so
/// `Server` and `server` are one tag). No commas or spaces: the CLI and the
/// query take comma-separated lists.
pub fn parse_tag(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a tag may not be empty".to_owned());
    }
    if text.len() > MAX_TAG_LEN {
        return Err(format!(
            "tag {:?}… is longer than {MAX_TAG_LEN} characters",
            text.chars().take(40).collect::<String>()
        ));
    }
    if !text.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!("tag {text:?} must start with a letter or a digit"));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "tag {text:?} holds {bad:?}: tags are letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// A group name as stored: 1 to [`MAX_GROUP_LEN`] ASCII letters, digits,
/// spaces and `-_.&'()`, starting with a letter or digit, no space at
/// either end or twice in a row (`HQ`, `Branch Leeds`). Case is kept for
/// showing; [`group_key`] compares.
pub fn parse_group(text: &str) -> Result<String, String> {
    if text.is_empty() || text.trim().is_empty() {
        return Err("a group name may not be empty".to_owned());
    }
    if text.len() > MAX_GROUP_LEN {
        return Err(format!(
            "group name {:?}… is longer than {MAX_GROUP_LEN} characters",
            text.chars().take(40).collect::<String>()
        ));
    }
    if !text.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!(
            "group name {text:?} must start with a letter or a digit"
        ));
    }
    if text.ends_with(' ') || text.contains("  ") {
        return Err(format!(
            "group name {text:?} may not end with a space or hold two in a row"
        ));
    }
    if let Some(bad) = text.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '&' | '\'' | '(' | ')'))
    }) {
        return Err(format!(
            "group name {text:?} holds {bad:?}: group names are letters, digits, spaces and -_.&'()"
        ));
    }
    Ok(text.to_owned())
}

/// What two group names are compared by: `HQ` and `hq` are one group.
pub fn group_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// `POST /api/v1/devices/{id}/tags`: tags to add and to remove, in one
/// change (a tag in both is refused).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceTagsRequest {
    #[serde(default)]
    #[schema(max_items = 32)]
    pub add: Vec<String>,
    #[serde(default)]
    #[schema(max_items = 32)]
    pub remove: Vec<String>,
}

/// `PUT /api/v1/devices/{id}/group`: the device's group, or null for none.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceGroupRequest {
    pub group: Option<String>,
}

/// A device's tags and group after a change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceLabelsView {
    pub device_id: String,
    pub tenant: String,
    pub hostname: String,
    /// Sorted, lower case.
    pub tags: Vec<String>,
    pub group: Option<String>,
}

/// Online or offline, as presence says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    Online,
    Offline,
}

/// The query of `GET /api/v1/devices` (for the OpenAPI document; the
/// handler reads the pairs with [`DeviceSearch::from_pairs`], since `tag`
/// repeats).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceSearchQuery {
    /// Text found in the host name, the OS or an IP address, or the start
    /// of the device id (any case).
    #[param(max_length = 128)]
    pub q: Option<String>,
    /// Only this tenant's devices (default: every tenant the caller may see).
    pub tenant: Option<String>,
    /// Devices carrying every one of these tags (repeat the parameter or
    /// separate with commas).
    #[param(explode = true)]
    pub tag: Option<Vec<String>>,
    /// Only devices of this group (any case).
    pub group: Option<String>,
    /// `online` or `offline`, as presence says now.
    #[param(inline)]
    pub status: Option<DeviceStatus>,
    /// Text found in the OS name and version (any case).
    #[param(max_length = 128)]
    pub os: Option<String>,
    /// Devices per page (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// A parsed, checked [`DeviceSearchQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceSearch {
    /// Lower case.
    pub text: Option<String>,
    pub tenant: Option<String>,
    /// Sorted, deduplicated, each a valid tag.
    pub tags: Vec<String>,
    /// A valid group name.
    pub group: Option<String>,
    pub status: Option<DeviceStatus>,
    /// Lower case.
    pub os: Option<String>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// Where a page starts: after the device with this sort key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub hostname: String,
    pub id: String,
}

impl Cursor {
    /// Opaque to callers: hex of `hostname NUL id`.
    pub fn encode(&self) -> String {
        let mut bytes = self.hostname.as_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(self.id.as_bytes());
        hex::encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Cursor, String> {
        let bad = || "cursor: not one this server gave".to_owned();
        if text.len() > 2 * (256 + 1 + 36) {
            return Err(bad());
        }
        let bytes = hex::decode(text).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (hostname, id) = text.split_once('\0').ok_or_else(bad)?;
        Ok(Cursor {
            hostname: hostname.to_owned(),
            id: id.to_owned(),
        })
    }
}

fn bounded_text(name: &str, value: &str) -> Result<Option<String>, String> {
    if value.len() > MAX_SEARCH_LEN {
        return Err(format!("{name}: at most {MAX_SEARCH_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{name}: control characters are not searched for"));
    }
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_lowercase()))
}

impl DeviceSearch {
    /// The search the query pairs ask for, or what is wrong with them (a
    /// 400). An empty value is the same as an absent parameter; every
    /// parameter but `tag` may appear once.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<DeviceSearch, String> {
        let mut search = DeviceSearch {
            limit: DEFAULT_PAGE,
            ..DeviceSearch::default()
        };
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in pairs {
            if key != "tag" {
                if seen.contains(&key.as_str()) {
                    return Err(format!("{key}: given more than once"));
                }
                seen.push(key);
            }
            match key.as_str() {
                "q" => search.text = bounded_text("q", value)?,
                "os" => search.os = bounded_text("os", value)?,
                "tenant" => {
                    if value.len() > 256 {
                        return Err("tenant: at most 256 bytes".to_owned());
                    }
                    search.tenant = (!value.is_empty()).then(|| value.clone());
                }
                "tag" => {
                    for tag in value.split(',').filter(|t| !t.trim().is_empty()) {
                        search
                            .tags
                            .push(parse_tag(tag).map_err(|e| format!("tag: {e}"))?);
                        if search.tags.len() > MAX_TAGS_PER_REQUEST {
                            return Err(format!("tag: at most {MAX_TAGS_PER_REQUEST} tags"));
                        }
                    }
                }
                "group" if value.is_empty() => {}
                "group" => {
                    search.group = Some(parse_group(value).map_err(|e| format!("group: {e}"))?)
                }
                "status" => {
                    search.status = match value.as_str() {
                        "" => None,
                        "online" => Some(DeviceStatus::Online),
                        "offline" => Some(DeviceStatus::Offline),
                        _ => return Err("status: online or offline".to_owned()),
                    }
                }
                "limit" if value.is_empty() => {}
                "limit" => {
                    search.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| format!("limit: a number from 1 to {MAX_PAGE}"))?
                }
                "cursor" if value.is_empty() => {}
                "cursor" => search.cursor = Some(Cursor::decode(value)?),
                other => {
                    return Err(format!(
                        "unknown parameter {:?}: q, tenant, tag, group, status, os, limit, cursor",
                        other.chars().take(40).collect::<String>()
                    ));
                }
            }
        }
        search.tags.sort();
        search.tags.dedup();
        Ok(search)
    }
}

/// What `GET /api/v1/devices` answers: one page, the number of matches,
/// and where the next page starts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceSearchView {
    /// How many devices match, over every page.
    pub total: u64,
    /// This page, by host name then id, each with its tags and group.
    pub devices: Vec<DeviceView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tags_are_short_plain_and_lower_case() {
        assert_eq!(parse_tag("Server").as_deref(), Ok("server"));
        assert_eq!(parse_tag(" kiosk-2.b_c ").as_deref(), Ok("kiosk-2.b_c"));
        for bad in ["", " ", "-x", "a b", "a,b", "<b>", "ünï", &"x".repeat(33)] {
            assert!(parse_tag(bad).is_err(), "{bad:?}");
        }
        assert!(parse_tag(&"x".repeat(32)).is_ok());
        assert!(
            parse_tag("a;b")
                .expect_err("refused")
                .contains("letters, digits, '-', '_' and '.'")
        );
    }

    #[test]
    fn groups_keep_their_case_and_compare_without_it() {
        assert_eq!(parse_group("Branch Leeds").as_deref(), Ok("Branch Leeds"));
        assert_eq!(parse_group("R&D (2)").as_deref(), Ok("R&D (2)"));
        for bad in [
            "",
            " HQ",
            "HQ ",
            "a  b",
            "<script>",
            "a\tb",
            &"g".repeat(65),
        ] {
            assert!(parse_group(bad).is_err(), "{bad:?}");
        }
        assert_eq!(group_key("HQ"), group_key("hq"));
    }

    #[test]
    fn the_query_is_checked_and_tags_gather() {
        let search = DeviceSearch::from_pairs(&pairs(&[
            ("q", " WEB "),
            ("tag", "server,Finance"),
            ("tag", "server"),
            ("group", "HQ"),
            ("status", "online"),
            ("limit", "10"),
        ]))
        .expect("accepted");
        assert_eq!(search.text.as_deref(), Some("web"));
        assert_eq!(search.tags, ["finance", "server"]);
        assert_eq!(search.group.as_deref(), Some("HQ"));
        assert_eq!(search.status, Some(DeviceStatus::Online));
        assert_eq!(search.limit, 10);
        assert_eq!(
            DeviceSearch::from_pairs(&[]).expect("accepted").limit,
            DEFAULT_PAGE
        );
        for (bad, says) in [
            (&[("limit", "0")][..], "limit"),
            (&[("limit", "501")], "limit"),
            (&[("status", "up")], "status"),
            (&[("tag", "a b")], "tag"),
            (&[("group", " x")], "group"),
            (&[("cursor", "zz")], "cursor"),
            (&[("colour", "red")], "unknown parameter"),
            (&[("q", "a"), ("q", "b")], "more than once"),
        ] {
            let error = DeviceSearch::from_pairs(&pairs(bad)).expect_err("refused");
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        let long = "x".repeat(129);
        assert!(DeviceSearch::from_pairs(&pairs(&[("q", &long)])).is_err());
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor {
            hostname: "web-1".into(),
            id: "0f7c2a8e-1b2c-4d3e-8f9a-0b1c2d3e4f5a".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        assert!(Cursor::decode("00").is_ok());
        assert!(Cursor::decode("41").is_err());
    }
}

/// The fuzz target's entry (`fuzz/fuzz_targets/device_search.rs`): any
/// query string and any name parse without panicking, and what parses
/// keeps the rules.
#[cfg(fuzzing)]
pub fn fuzz_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (pair.to_owned(), String::new()),
        })
        .collect();
    if let Ok(search) = DeviceSearch::from_pairs(&pairs) {
        assert!((1..=MAX_PAGE).contains(&search.limit));
        for tag in &search.tags {
            assert_eq!(parse_tag(tag).as_ref(), Ok(tag));
        }
        if let Some(cursor) = &search.cursor {
            assert_eq!(Cursor::decode(&cursor.encode()).as_ref(), Ok(cursor));
        }
    }
    if let Ok(tag) = parse_tag(&text) {
        assert!(tag.len() <= MAX_TAG_LEN && !tag.contains(','));
    }
    if let Ok(group) = parse_group(&text) {
        assert!(group.len() <= MAX_GROUP_LEN && group == text);
    }
}
