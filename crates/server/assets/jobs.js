// Jobs in the console: watching a job until its endpoints answer. Served
// from /assets (the Content-Security-Policy forbids inline script). Jobs are
// approved on the approver's own machine (`bulwark job approve`), never
// here: a page the server serves cannot make an approval (RFD 0005).
"use strict";

async function getJob(id) {
  const response = await fetch("/api/v1/jobs/" + encodeURIComponent(id), { credentials: "same-origin" });
  if (!response.ok) throw new ApiFailure("http_" + response.status, "could not read the job (HTTP " + response.status + ")");
  return response.json();
}

// While a job is pending or running, look every few seconds whether its
// state or a target's changed, and reload the page when one did.
function watchJob() {
  const head = document.getElementById("job");
  if (!head || head.dataset.live !== "1") return;
  const id = head.dataset.jobId;
  const seen = head.dataset.progress;
  let delay = 2000;
  const tick = async () => {
    if (document.hidden) { setTimeout(tick, delay); return; }
    try {
      const job = await getJob(id);
      const now = job.status + "|" + job.targets.map((t) => t.status).join(",");
      if (now !== seen) {
        // Not while someone is typing a rejection reason.
        const typing = document.activeElement && document.activeElement.name === "reason";
        if (!typing) { window.location.reload(); return; }
      }
      delay = Math.min(delay + 1000, 10000);
    } catch {
      delay = 15000;
    }
    setTimeout(tick, delay);
  };
  setTimeout(tick, delay);
}

const FINAL = ["succeeded", "failed", "timed_out", "refused", "cancelled", "expired"];

// A job's live output on one device (RFD 0012): pieces after the last one
// seen, appended as text (never as HTML: the agent wrote it), every second
// until the device is done with the job.
function streamOutput(jobId, pre) {
  const device = pre.dataset.device;
  const marker = pre.parentElement.querySelector(".truncated");
  let after = null;
  const tick = async () => {
    let url = "/api/v1/jobs/" + encodeURIComponent(jobId) + "/output?device=" + encodeURIComponent(device);
    if (after !== null) url += "&after=" + after;
    let out;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      out = await response.json();
    } catch {
      setTimeout(tick, 5000);
      return;
    }
    for (const piece of out.chunks) {
      if (piece.skipped > 0) {
        const gap = document.createElement("span");
        gap.className = "gap";
        gap.textContent = "[... " + piece.skipped + " bytes not received ...]\n";
        pre.appendChild(gap);
      }
      const span = document.createElement("span");
      span.className = piece.stream;
      span.textContent = piece.text;
      pre.appendChild(span);
    }
    after = out.next;
    if (marker && out.truncated_bytes > 0) {
      marker.textContent = "[... " + out.truncated_bytes + " bytes truncated ...]";
      marker.hidden = false;
    }
    if (out.chunks.length >= 256) { tick(); return; }
    if (!FINAL.includes(out.status)) setTimeout(tick, 1000);
  };
  tick();
}

function streamOutputs() {
  const head = document.getElementById("job");
  if (!head) return;
  for (const pre of document.querySelectorAll("pre.live-output")) streamOutput(head.dataset.jobId, pre);
}

document.addEventListener("DOMContentLoaded", () => {
  watchJob();
  streamOutputs();
});
