// Passkeys in the console: registration on the account page, passkey
// login, and step-up with a passkey. Served from /assets (the
// Content-Security-Policy forbids inline script). The server sends WebAuthn
// options as JSON with binary values in base64url; this turns them into the
// ArrayBuffers navigator.credentials wants, and the answers back.
"use strict";

function b64urlToBytes(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

function bytesToB64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function descriptors(list) {
  return (list || []).map((d) => ({ type: d.type, id: b64urlToBytes(d.id) }));
}

function creationOptions(json) {
  return {
    ...json,
    challenge: b64urlToBytes(json.challenge),
    user: { ...json.user, id: b64urlToBytes(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

function requestOptions(json) {
  return {
    ...json,
    challenge: b64urlToBytes(json.challenge),
    allowCredentials: descriptors(json.allowCredentials),
  };
}

class ApiFailure extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// POSTs JSON (with the session's CSRF token when there is a session) and
// returns the parsed answer, or throws the API's error message.
async function postJson(url, body, csrf) {
  const headers = { "Content-Type": "application/json" };
  if (csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(url, {
    method: "POST",
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiFailure(error.code || "http_" + response.status, error.message || "the server refused (HTTP " + response.status + ")");
  }
  return data;
}

// What to tell a person when the browser or the server says no.
function explain(error) {
  if (error instanceof ApiFailure) {
    if (error.code === "step_up_required") {
      return "Confirm it is you first (with a one-time code or a passkey, below), then try again.";
    }
    return error.message;
  }
  if (error && error.name === "NotAllowedError") {
    return "The browser did not use a passkey (cancelled, timed out, or none of this account's passkeys is on this device).";
  }
  if (error && error.name === "InvalidStateError") {
    return "This authenticator already holds a passkey for your account.";
  }
  return "The passkey did not work: " + (error && error.message ? error.message : String(error));
}

function show(el, message) {
  if (!el) return;
  el.textContent = message;
  el.hidden = false;
}

function assertionFields(credential) {
  return {
    credentialId: bytesToB64url(credential.rawId),
    authenticatorData: bytesToB64url(credential.response.authenticatorData),
    clientDataJSON: bytesToB64url(credential.response.clientDataJSON),
    signature: bytesToB64url(credential.response.signature),
  };
}

function setupRegistration() {
  const form = document.getElementById("passkey-add-form");
  if (!form) return;
  const errorBox = document.getElementById("passkey-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("passkey-add");
    const name = form.elements["passkey_name"].value.trim();
    const csrf = form.elements["csrf"].value;
    if (!name) { form.reportValidity(); return; }
    if (button) button.disabled = true;
    try {
      const started = await postJson("/api/v1/passkeys/registration/options", undefined, csrf);
      const credential = await navigator.credentials.create({ publicKey: creationOptions(started.publicKey) });
      await postJson("/api/v1/passkeys/registration", {
        ceremony: started.ceremony,
        name,
        attestationObject: bytesToB64url(credential.response.attestationObject),
        clientDataJSON: bytesToB64url(credential.response.clientDataJSON),
      }, csrf);
      window.location.assign("/account?passkey_added=1");
    } catch (error) {
      show(errorBox, explain(error));
      if (button) button.disabled = false;
    }
  });
}

function setupLogin() {
  const form = document.getElementById("login-form");
  const button = document.getElementById("login-passkey");
  if (!form || !button) return;
  if (!window.PublicKeyCredential) return; // no WebAuthn here: codes only
  button.hidden = false;
  const errorBox = document.getElementById("passkey-error");
  button.addEventListener("click", async () => {
    const username = form.elements["username"];
    const password = form.elements["password"];
    if (!username.reportValidity() || !password.reportValidity()) return;
    button.disabled = true;
    try {
      const started = await postJson("/api/v1/auth/passkey/options", { username: username.value });
      const credential = await navigator.credentials.get({ publicKey: requestOptions(started.publicKey) });
      const fields = assertionFields(credential);
      form.elements["ceremony"].value = started.ceremony;
      form.elements["credential_id"].value = fields.credentialId;
      form.elements["authenticator_data"].value = fields.authenticatorData;
      form.elements["client_data_json"].value = fields.clientDataJSON;
      form.elements["signature"].value = fields.signature;
      const otp = form.elements["otp"];
      otp.required = false;
      otp.value = "";
      form.submit(); // password and passkey go together, in one step
    } catch (error) {
      show(errorBox, explain(error));
      button.disabled = false;
    }
  });
}

function setupStepUp() {
  const form = document.getElementById("step-up-form");
  const button = document.getElementById("step-up-passkey");
  if (!form || !button) return;
  if (!window.PublicKeyCredential) return;
  button.hidden = false;
  const errorBox = document.getElementById("step-up-passkey-error");
  button.addEventListener("click", async () => {
    const csrf = form.elements["csrf"].value;
    const next = form.elements["next"].value;
    button.disabled = true;
    try {
      const started = await postJson("/api/v1/auth/step-up/passkey/options", undefined, csrf);
      const credential = await navigator.credentials.get({ publicKey: requestOptions(started.publicKey) });
      await postJson("/api/v1/auth/step-up/passkey", { ceremony: started.ceremony, ...assertionFields(credential) }, csrf);
      // Only a path on this console (the server renders `next` that way too).
      window.location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/account");
    } catch (error) {
      show(errorBox, explain(error));
      button.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupRegistration();
  setupLogin();
  setupStepUp();
});
