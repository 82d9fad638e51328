// The /device page: approve a `bulwark login --device` sign-in with a fresh
// passkey assertion. Uses the helpers of passkeys.js (loaded before this).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("device-form");
  const button = document.getElementById("device-approve");
  if (!form || !button) return;
  const errorBox = document.getElementById("device-passkey-error");
  if (!window.PublicKeyCredential) {
    show(errorBox, "This browser cannot use passkeys: approving a sign-in needs one.");
    button.disabled = true;
    return;
  }
  button.addEventListener("click", async () => {
    const csrf = form.elements["csrf"].value;
    const userCode = form.dataset.userCode;
    button.disabled = true;
    try {
      const started = await postJson("/api/v1/auth/device/approve/options", { user_code: userCode }, csrf);
      const credential = await navigator.credentials.get({ publicKey: requestOptions(started.publicKey) });
      await postJson("/api/v1/auth/device/approve", { user_code: userCode, ceremony: started.ceremony, ...assertionFields(credential) }, csrf);
      window.location.assign("/device?approved=" + encodeURIComponent(userCode));
    } catch (error) {
      show(errorBox, explain(error));
      button.disabled = false;
    }
  });
});
