//! Finding devices (RFD 0016): `GET /api/v1/devices` (search and filters
//! across every tenant the caller may see, paged) and a device's tags and
//! group (`POST /api/v1/devices/{id}/tags`, `PUT /api/v1/devices/{id}/group`).
//!
//! Tags and group are filtered in SQL (indexed, migration 0029); the text
//! search (host name, id prefix, OS, IP address) and online/offline are
//! decided here by [`matches`], pure, over what the store and presence say.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use bulwark_api::devices::DeviceView;
use bulwark_api::error::ErrorBody;
use bulwark_api::fleet::{
    Cursor, DeviceGroupRequest, DeviceLabelsView, DeviceSearch, DeviceSearchQuery,
    DeviceSearchView, DeviceStatus, DeviceTagsRequest, MAX_TAGS_PER_REQUEST, parse_group,
    parse_tag,
};
use bulwark_store::{DeviceLabels, LabelFilter};

use super::error::ApiError;
use super::{ApiJson, ApiPath};
use crate::auth::{Action, Caller};
use crate::now_millis;
use crate::state::AppState;

/// Does `device` (its view, and the addresses its agent reported) answer
/// the text, OS and status parts of `search`? Text is compared in lower
/// case: a host name or an OS containing it, an id starting with it, or an
/// address containing it.
pub fn matches(device: &DeviceView, addresses: &[String], search: &DeviceSearch) -> bool {
    let os = device.os.as_deref().unwrap_or_default().to_lowercase();
    if let Some(want) = &search.os
        && !os.contains(want.as_str())
    {
        return false;
    }
    if let Some(status) = search.status
        && (status == DeviceStatus::Online) != device.online
    {
        return false;
    }
    let Some(text) = &search.text else {
        return true;
    };
    device.hostname.to_lowercase().contains(text.as_str())
        || device.id.starts_with(text.as_str())
        || os.contains(text.as_str())
        || addresses
            .iter()
            .any(|a| a.to_lowercase().contains(text.as_str()))
}

/// The page of `found` (sorted by host name then id) after `cursor`, at
/// most `limit` long, and the cursor of the next page if there is one.
pub fn page<T>(
    found: Vec<T>,
    key: impl Fn(&T) -> Cursor,
    cursor: Option<&Cursor>,
    limit: usize,
) -> (Vec<T>, Option<Cursor>) {
    let limit = limit.max(1);
    let mut rest: Vec<T> = found
        .into_iter()
        .filter(|d| cursor.is_none_or(|c| key(d) > *c))
        .collect();
    let next = (rest.len() > limit).then(|| key(&rest[limit - 1]));
    rest.truncate(limit);
    (rest, next)
}

/// A device's view with its tags and group.
pub fn with_labels(mut view: DeviceView, labels: Option<&DeviceLabels>) -> DeviceView {
    if let Some(labels) = labels {
        view.tags = labels.tags.clone();
        view.group = labels.group.clone();
    }
    view
}

/// The search of `GET /api/v1/devices`, for the API and the console.
pub async fn search_view(
    state: &AppState,
    caller: &Caller,
    search: &DeviceSearch,
) -> Result<DeviceSearchView, ApiError> {
    caller.require(Action::ListTenants)?;
    let scope = caller.scope();
    let tenant_id = match &search.tenant {
        Some(name) => Some(
            super::tenants::tenant_for(state, caller, name, Action::ViewDevices)
                .await?
                .id,
        ),
        None => None,
    };
    let filter = LabelFilter {
        tenant_id: tenant_id.clone(),
        tags: search.tags.clone(),
        group_key: search.group.as_deref().map(bulwark_api::fleet::group_key),
    };
    let devices = state.store.search_devices(&scope, &filter).await?;
    let labels = state
        .store
        .device_labels(&scope, tenant_id.as_deref())
        .await?;
    let found: Vec<DeviceView> = devices
        .iter()
        .filter(|d| caller.require_in(Action::ViewDevices, &d.tenant_id).is_ok())
        .filter_map(|d| {
            let view = crate::api::views::device(d, state.presence.protocol_version(&d.id), false);
            let addresses: Vec<String> = d
                .inventory
                .as_ref()
                .and_then(|i| i.network.as_ref())
                .map(|n| n.iter().flat_map(|i| i.addresses.iter().cloned()).collect())
                .unwrap_or_default();
            matches(&view, &addresses, search).then(|| with_labels(view, labels.get(&d.id)))
        })
        .collect();
    let total = found.len() as u64;
    let key = |d: &DeviceView| Cursor {
        hostname: d.hostname.clone(),
        id: d.id.clone(),
    };
    let (devices, next) = page(found, key, search.cursor.as_ref(), search.limit);
    Ok(DeviceSearchView {
        total,
        devices,
        next_cursor: next.map(|c| c.encode()),
    })
}

/// Devices across every tenant the caller may see (or one, with `tenant`),
/// found by text, tags, group, status and OS, by host name, a page at a
/// time. Tags and groups are labels people set: a job aimed by them is
/// resolved into the devices listed here, which `bulwark job run` shows
/// before it signs.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    params(DeviceSearchQuery),
    responses((status = 200, body = DeviceSearchView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn search_devices(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<DeviceSearchView>, ApiError> {
    let Query(pairs) = query.map_err(|rejection| {
        ApiError::bad_request(format!("bad query: {}", rejection.body_text()))
    })?;
    let search = DeviceSearch::from_pairs(&pairs).map_err(ApiError::bad_request)?;
    Ok(Json(search_view(&state, &caller, &search).await?))
}

fn labels_view(device: &bulwark_store::Device, labels: DeviceLabels) -> DeviceLabelsView {
    DeviceLabelsView {
        device_id: device.id.clone(),
        tenant: device.tenant_name.clone(),
        hostname: device.hostname.clone(),
        tags: labels.tags,
        group: labels.group,
    }
}

/// Checked tag names, or the 400 that says which is wrong.
fn tag_list(what: &str, tags: &[String]) -> Result<Vec<String>, ApiError> {
    if tags.len() > MAX_TAGS_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "{what}: at most {MAX_TAGS_PER_REQUEST} tags"
        )));
    }
    let mut checked = tags
        .iter()
        .map(|t| parse_tag(t).map_err(|e| ApiError::bad_request(format!("{what}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    checked.sort();
    checked.dedup();
    Ok(checked)
}

/// Adds and removes tags of a device (technicians and up). Every change
/// is a `device.tags_changed` event in the tenant's log.
pub async fn change_tags(
    state: &AppState,
    caller: &Caller,
    id: &str,
    request: &DeviceTagsRequest,
) -> Result<DeviceLabelsView, ApiError> {
    let device = super::devices::visible_device(state, caller, id).await?;
    caller.require_in(Action::LabelDevices, &device.tenant_id)?;
    let add = tag_list("add", &request.add)?;
    let remove = tag_list("remove", &request.remove)?;
    if let Some(both) = add.iter().find(|t| remove.contains(t)) {
        return Err(ApiError::bad_request(format!(
            "tag {both:?} is both added and removed"
        )));
    }
    let labels = state
        .store
        .change_device_tags(
            &caller.scope(),
            &device.id,
            &add,
            &remove,
            &caller.operator.username,
            now_millis(),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(labels_view(&device, labels))
}

/// Puts a device into a group of its tenant, or takes it out (`null`).
pub async fn set_group(
    state: &AppState,
    caller: &Caller,
    id: &str,
    group: Option<&str>,
) -> Result<DeviceLabelsView, ApiError> {
    let device = super::devices::visible_device(state, caller, id).await?;
    caller.require_in(Action::LabelDevices, &device.tenant_id)?;
    let group = group
        .map(|g| parse_group(g).map_err(ApiError::bad_request))
        .transpose()?;
    let labels = state
        .store
        .set_device_group(
            &caller.scope(),
            &device.id,
            group.as_deref(),
            &caller.operator.username,
            now_millis(),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(labels_view(&device, labels))
}

/// Adds and removes a device's tags (lower-case letters, digits, `-_.`;
/// at most 32 a device). Technicians, security officers and owners.
#[utoipa::path(post, path = "/api/v1/devices/{id}/tags", tag = "devices",
    params(("id" = String, Path, description = "Device id (UUID)")),
    request_body = DeviceTagsRequest,
    responses((status = 200, body = DeviceLabelsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn device_tags(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<DeviceTagsRequest>,
) -> Result<Json<DeviceLabelsView>, ApiError> {
    Ok(Json(change_tags(&state, &caller, &id, &request).await?))
}

/// Sets a device's group within its tenant (`null`: none). Technicians,
/// security officers and owners.
#[utoipa::path(put, path = "/api/v1/devices/{id}/group", tag = "devices",
    params(("id" = String, Path, description = "Device id (UUID)")),
    request_body = DeviceGroupRequest,
    responses((status = 200, body = DeviceLabelsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn device_group(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<DeviceGroupRequest>,
) -> Result<Json<DeviceLabelsView>, ApiError> {
    Ok(Json(
        set_group(&state, &caller, &id, request.group.as_deref()).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, hostname: &str, os: Option<&str>, online: bool) -> DeviceView {
        DeviceView {
            id: id.to_owned(),
            tenant: "acme".to_owned(),
            hostname: hostname.to_owned(),
            key_fingerprint: String::new(),
            agent_version: "0.1.0".to_owned(),
            agent_sha256: None,
            online,
            protocol_version: None,
            last_seen_at: None,
            enrolled_at: String::new(),
            os: os.map(str::to_owned),
            inventory: None,
            trust: None,
            package_count: None,
            tags: Vec::new(),
            group: None,
        }
    }

    fn check(query: &[(&str, &str)], device: &DeviceView, addresses: &[&str], expect: bool) {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let search = DeviceSearch::from_pairs(&pairs).expect("a valid query");
        let addresses: Vec<String> = addresses.iter().map(|a| (*a).to_owned()).collect();
        assert_eq!(matches(device, &addresses, &search), expect, "{query:?}");
    }

    #[test]
    fn text_finds_host_names_ids_os_and_addresses() {
        let d = device(
            "0f7c2a8e-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
            "Web-Leeds-01",
            Some("Debian GNU/Linux 12"),
            true,
        );
        let ips = ["192.0.2.7/24", "fe80::1/64"];
        check(&[], &d, &ips, true);
        check(&[("q", "leeds")], &d, &ips, true);
        check(&[("q", "0F7C2A")], &d, &ips, true);
        check(&[("q", "2a8e")], &d, &ips, false); // an id matches by its start
        check(&[("q", "debian")], &d, &ips, true);
        check(&[("q", "192.0.2")], &d, &ips, true);
        check(&[("q", "FE80::")], &d, &ips, true);
        check(&[("q", "10.0.0")], &d, &ips, false);
        check(&[("os", "gnu/linux 12")], &d, &ips, true);
        check(&[("os", "ubuntu")], &d, &ips, false);
        check(&[("status", "online")], &d, &ips, true);
        check(&[("status", "offline")], &d, &ips, false);
        let bare = device("x", "kiosk", None, false);
        check(&[("os", "debian")], &bare, &[], false);
        check(&[("status", "offline"), ("q", "KIOSK")], &bare, &[], true);
    }

    #[test]
    fn pages_follow_the_cursor() {
        let key = |n: &u32| Cursor {
            hostname: format!("h{n:02}"),
            id: String::new(),
        };
        let all: Vec<u32> = (0..5).collect();
        let (first, next) = page(all.clone(), key, None, 2);
        assert_eq!(first, [0, 1]);
        let (second, next) = page(all.clone(), key, next.as_ref(), 2);
        assert_eq!(second, [2, 3]);
        let (last, next) = page(all.clone(), key, next.as_ref(), 2);
        assert_eq!((last, next), (vec![4], None));
        let (exact, next) = page(vec![0, 1], key, None, 2);
        assert_eq!((exact, next), (vec![0, 1], None));
    }
}
