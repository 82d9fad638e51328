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
      const now = job.state + "|" + job.targets.map((t) => t.state).join(",");
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

document.addEventListener("DOMContentLoaded", () => {
  watchJob();
});
