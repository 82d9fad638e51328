// Live status for the console: presence events over server-sent events.
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

function watchPresence() {
  const watched = document.querySelectorAll("[data-device-id]");
  if (watched.length === 0) return;
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
}

document.addEventListener("DOMContentLoaded", () => {
  formatTimes(document);
  watchPresence();
});
