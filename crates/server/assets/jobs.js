// Jobs in the console: approving a job with a passkey, and watching a job
// until its endpoints answer. Served from /assets (the Content-Security-
// Policy forbids inline script). Uses the helpers of passkeys.js, which
// base.html loads first.
"use strict";

function hexToBytes(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.substr(i * 2, 2), 16);
  return bytes.buffer;
}

async function getJob(id) {
  const response = await fetch("/api/v1/jobs/" + encodeURIComponent(id), { credentials: "same-origin" });
  if (!response.ok) throw new ApiFailure("http_" + response.status, "could not read the job (HTTP " + response.status + ")");
  return response.json();
}

// The passkey signs the job's challenge: SHA-256 of the envelope's signing
// bytes. The agent checks the assertion against the credential its policy
// lists; the server only relays it.
function setupApprove() {
  const box = document.getElementById("approve");
  const button = document.getElementById("approve-passkey");
  if (!box || !button) return;
  const errorBox = document.getElementById("approve-error");
  if (!window.PublicKeyCredential) {
    button.disabled = true;
    show(errorBox, "This browser has no WebAuthn support: approve with `bulwark job approve` instead.");
    return;
  }
  button.addEventListener("click", async () => {
    const jobId = box.dataset.jobId;
    const csrf = box.dataset.csrf;
    const keys = Array.from(box.querySelectorAll("[data-credential-id]"));
    button.disabled = true;
    try {
      // The challenge as the server holds the job now (it never changes
      // with signatures: they are not part of the signing bytes).
      const job = await getJob(jobId);
      if (job.state !== "pending") throw new ApiFailure("conflict", "the job is " + job.state + " now: reload the page");
      if (!job.challenge) throw new ApiFailure("no_challenge", "the server sent no challenge for this job");
      const credential = await navigator.credentials.get({
        publicKey: {
          challenge: hexToBytes(job.challenge),
          rpId: box.dataset.rpId,
          allowCredentials: keys.map((el) => ({ type: "public-key", id: b64urlToBytes(el.dataset.credentialId) })),
          userVerification: "required",
          timeout: 120000,
        },
      });
      const used = bytesToB64url(credential.rawId);
      const key = keys.find((el) => el.dataset.credentialId === used);
      if (!key) throw new ApiFailure("unknown_passkey", "the browser used a passkey that is not yours on this console");
      await postJson("/api/v1/jobs/" + encodeURIComponent(jobId) + "/approvals", {
        key_id: key.dataset.keyId,
        webauthn: {
          authenticator_data: bytesToB64url(credential.response.authenticatorData),
          client_data_json: bytesToB64url(credential.response.clientDataJSON),
          signature: bytesToB64url(credential.response.signature),
        },
      }, csrf);
      window.location.assign("/jobs/" + encodeURIComponent(jobId) + "?approved=1");
    } catch (error) {
      if (error instanceof ApiFailure && error.code === "step_up_required") {
        const stepUp = document.getElementById("approve-step-up");
        if (stepUp) stepUp.hidden = false;
      }
      show(errorBox, explain(error));
      button.disabled = false;
    }
  });
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
  setupApprove();
  watchJob();
});
