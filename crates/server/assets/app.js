// Live status for the console: presence and alert counts over server-sent events.
// Served from /assets (the Content-Security-Policy forbids inline script).
"use strict";

function formatTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when)) {
      el.textContent = when.toLocaleString();
      el.title = el.getAttribute("datetime");
    }
  }
}

function setStatus(container, online) {
  const badge = container.querySelector(".status");
  if (!badge) return;
  badge.textContent = online ? "online" : "offline";
  badge.classList.toggle("status-online", online);
  badge.classList.toggle("status-offline", !online);
}

function setLastSeen(container, iso) {
  const cell = container.querySelector(".last-seen");
  if (!cell || !iso) return;
  const time = document.createElement("time");
  time.setAttribute("datetime", iso);
  time.textContent = iso;
  cell.replaceChildren(time);
  formatTimes(cell);
}

function recount() {
  const counter = document.getElementById("online-count");
  if (counter) counter.textContent = String(document.querySelectorAll("#devices .status-online").length);
}

// The Alerts link's badge (unresolved, red when any is critical) and, on
// the alerts page, a notice when the alerts changed after it was loaded.
function showAlerts(pulse) {
  const badge = document.getElementById("alert-badge");
  if (badge) {
    const unresolved = (pulse.open || 0) + (pulse.acknowledged || 0);
    badge.hidden = unresolved === 0;
    badge.textContent = String(unresolved);
    badge.classList.toggle("nav-badge-critical", (pulse.critical || 0) > 0);
    badge.title = unresolved + " unresolved, " + (pulse.critical || 0) + " critical";
  }
  const notice = document.getElementById("alerts-changed");
  if (notice && (pulse.changed_at || "") !== notice.getAttribute("data-changed-at")) {
    const counts = notice.querySelector(".live-counts");
    if (counts) counts.textContent = pulse.open + " open, " + pulse.acknowledged + " acknowledged, " + pulse.critical + " critical";
    notice.hidden = false;
  }
}

function watchLive() {
  const devices = document.querySelectorAll("[data-device-id]").length > 0;
  const alerts = document.getElementById("alert-badge") !== null;
  if (!devices && !alerts) return;
  const source = new EventSource("/api/v1/events");
  source.addEventListener("presence", (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    for (const el of document.querySelectorAll("[data-device-id]")) {
      if (el.getAttribute("data-device-id") !== event.device_id) continue;
      setStatus(el, event.online === true);
      setLastSeen(el, event.last_seen_at);
    }
    recount();
  });
  source.addEventListener("alerts", (message) => {
    let pulse;
    try { pulse = JSON.parse(message.data); } catch { return; }
    showAlerts(pulse);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  formatTimes(document);
  watchLive();
});
