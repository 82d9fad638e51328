// The audit-log page: "Verify" checks one entry in this browser against the
// log's signed tree head, using nothing but the auditor's JSON API (RFD
// 0003) and WebCrypto. Served from /assets (the Content-Security-Policy
// forbids inline script); the session cookie authenticates the GETs.
//
// 1. GET <log>            the signed checkpoint note (origin, size, root)
// 2. GET /api/v1/log/key  the log key, <name>+<hex key id>+<base64(0x01 || key)>
// 3. GET <log>/entries?start=I&limit=1          the exact leaf bytes
// 4. GET <log>/proof/inclusion?index=I&tree_size=S
// 5. leaf hash SHA-256(0x00 || leaf), the RFC 9162 §2.1.3.2 path to the
//    root (a port of crates/translog/src/proof.rs verify_inclusion), equal
//    to the note's root; and the note's Ed25519 signature by the log key
//    over the note text up to and including the newline before the blank line.
"use strict";

(function () {
  const encoder = new TextEncoder();

  class VerifyFailure extends Error {}

  function fail(message) {
    throw new VerifyFailure(message);
  }

  function b64ToBytes(text, what) {
    let binary;
    try {
      binary = atob(text);
    } catch {
      fail(what + " is not base64");
    }
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const length = parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(length);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function same(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  async function getJson(url, what) {
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch {
      fail("could not reach the server for " + what);
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!response.ok) {
      const message = data && data.error && data.error.message;
      fail("the server refused " + what + " (HTTP " + response.status + (message ? ": " + message : "") + ")");
    }
    if (data === null) fail("the server sent no JSON for " + what);
    return data;
  }

  // RFC 9162 §2.1.3.2, step for step as verify_inclusion in
  // crates/translog/src/proof.rs (BigInt: indexes may exceed 2^53).
  async function rootFromInclusion(leafHash, index, size, proof) {
    // 1. If leaf_index >= tree_size, fail.
    if (index >= size) fail("entry " + index + " is not in a tree of " + size + " entries");
    // 2. fn = leaf_index, sn = tree_size - 1. 3. r = hash.
    let fn = index;
    let sn = size - 1n;
    let r = leafHash;
    // 4. For each value p in the inclusion path:
    for (const p of proof) {
      // 4a. If sn is 0, stop and fail.
      if (sn === 0n) fail("the inclusion proof has too many hashes");
      // 4b. If LSB(fn) is set, or fn equals sn:
      if ((fn & 1n) === 1n || fn === sn) {
        // 4b.i. r = HASH(0x01 || p || r)
        r = await sha256(concat([1], p, r));
        // 4b.ii. If LSB(fn) is not set, right-shift fn and sn until LSB(fn) is set or fn is 0.
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        // Otherwise r = HASH(0x01 || r || p).
        r = await sha256(concat([1], r, p));
      }
      // 4c. Right-shift fn and sn once.
      fn >>= 1n;
      sn >>= 1n;
    }
    // 5. sn must be 0 (the caller compares r with the root).
    if (sn !== 0n) fail("the inclusion proof has too few hashes");
    return r;
  }

  // A C2SP checkpoint in a signed note: the signed text (with its final
  // newline), origin, size, root, and the signature lines.
  function parseNote(note) {
    const split = note.lastIndexOf("\n\n");
    if (split < 0) fail("the tree head has no signature block");
    const text = note.slice(0, split + 1);
    const signatures = note.slice(split + 2);
    if (!signatures.endsWith("\n")) fail("the tree head's signature block is malformed");
    const lines = text.split("\n");
    if (lines.length < 4) fail("the tree head's body is not origin, size and root");
    if (!/^[0-9]+$/.test(lines[1])) fail("the tree head's size is not a number");
    const root = b64ToBytes(lines[2], "the tree head's root");
    if (root.length !== 32) fail("the tree head's root is not 32 bytes");
    return {
      text,
      origin: lines[0],
      size: BigInt(lines[1]),
      root,
      signatureLines: signatures.slice(0, -1).split("\n"),
    };
  }

  // Go's verifier key text; checks the key id against the key.
  async function parseVkey(vkey) {
    // <name>+<key id>+<key>: split at the first two '+' (base64 may hold more).
    const text = String(vkey);
    const first = text.indexOf("+");
    const second = first < 0 ? -1 : text.indexOf("+", first + 1);
    if (second < 0) fail("the log key is malformed");
    const parts = [text.slice(0, first), text.slice(first + 1, second), text.slice(second + 1)];
    if (!/^[0-9a-f]{8}$/i.test(parts[1])) fail("the log key is malformed");
    const raw = b64ToBytes(parts[2], "the log key");
    if (raw.length !== 33 || raw[0] !== 1) fail("the log key is not an Ed25519 key");
    const key = { name: parts[0], id: parts[1].toLowerCase(), raw: raw.slice(1) };
    const digest = await sha256(concat(encoder.encode(key.name), [0x0a, 0x01], key.raw));
    if (toHex(digest.slice(0, 4)) !== key.id) fail("the log key's id does not match the key");
    return key;
  }

  // "ok", or "unchecked" when this browser has no WebCrypto Ed25519.
  // The log key signs each log's heads under the origin as key name (as
  // C2SP asks); heads signed before that carry the key's own name.
  async function checkSignature(note, key) {
    const originDigest = await sha256(concat(encoder.encode(note.origin), [0x0a, 0x01], key.raw));
    const names = [
      { name: note.origin, id: toHex(originDigest.slice(0, 4)) },
      { name: key.name, id: key.id },
    ];
    let signature = null;
    for (const { name, id } of names) {
      const prefix = "\u2014 " + name + " ";
      for (const line of note.signatureLines) {
        if (signature !== null || !line.startsWith(prefix)) continue;
        const blob = b64ToBytes(line.slice(prefix.length), "a signature");
        if (blob.length === 68 && toHex(blob.slice(0, 4)) === id) signature = blob.slice(4);
      }
    }
    if (signature === null) fail("the tree head carries no signature by the log key " + key.name);
    let publicKey;
    try {
      publicKey = await crypto.subtle.importKey("raw", key.raw, { name: "Ed25519" }, false, ["verify"]);
    } catch {
      return "unchecked";
    }
    let valid;
    try {
      valid = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, signature, encoder.encode(note.text));
    } catch {
      return "unchecked";
    }
    if (!valid) fail("the tree head's signature does not verify with the log key " + key.name);
    return "ok";
  }

  async function verifyEntry(table, row) {
    if (!window.crypto || !crypto.subtle) fail("this browser offers no WebCrypto on this page (it needs https or localhost)");
    const api = table.dataset.api;
    const index = Number(row.dataset.index);
    const [head, logKey, page] = await Promise.all([
      getJson(api, "the tree head"),
      getJson("/api/v1/log/key", "the log key"),
      getJson(api + "/entries?start=" + index + "&limit=1", "the entry"),
    ]);
    if (!head.checkpoint) fail("the log has no signed tree head yet");
    const note = parseNote(head.checkpoint.note);
    const key = await parseVkey(logKey.vkey);
    if (note.origin !== table.dataset.origin) fail("the tree head is of another log (" + note.origin + ")");
    if (!note.origin.startsWith(key.name + "/")) fail("the tree head's origin is not of the log key " + key.name);
    const size = note.size;
    if (BigInt(index) >= size) fail("entry " + index + " is not under the signed tree head of " + size + " entries yet");

    const entry = page.entries && page.entries[0];
    if (!entry || entry.index !== index) fail("the log has no entry " + index);
    const leaf = b64ToBytes(entry.leaf, "the leaf");
    const leafHash = await sha256(concat([0], leaf));
    if (row.dataset.leafHash && toHex(leafHash) !== row.dataset.leafHash) {
      fail("the log's entry " + index + " is not the one shown (reload the page)");
    }
    const proof = await getJson(api + "/proof/inclusion?index=" + index + "&tree_size=" + size, "the inclusion proof");
    const hashes = (proof.hashes || []).map((h) => {
      const bytes = b64ToBytes(h, "a proof hash");
      if (bytes.length !== 32) fail("a proof hash is not 32 bytes");
      return bytes;
    });
    const root = await rootFromInclusion(leafHash, BigInt(index), size, hashes);
    if (!same(root, note.root)) {
      fail("not included: this entry's leaf hash does not lead to the signed root (the entry or the log was changed)");
    }
    const signature = await checkSignature(note, key);
    return { size, signature };
  }

  function show(result, cls, text) {
    result.className = "verify-result " + cls;
    result.textContent = text;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const table = document.getElementById("audit");
    if (!table) return;
    table.addEventListener("click", async (event) => {
      const button = event.target.closest("button.verify");
      if (!button) return;
      const row = button.closest("tr");
      const result = row.querySelector(".verify-result");
      button.disabled = true;
      show(result, "muted", "checking…");
      try {
        const done = await verifyEntry(table, row);
        if (done.signature === "ok") {
          show(result, "verify-ok", "\u2713 included in the signed tree head of " + done.size + " entries");
        } else {
          show(result, "verify-warn", "included in the tree head of " + done.size + " entries; signature not checked by this browser");
        }
      } catch (error) {
        const message = error instanceof VerifyFailure ? error.message : "verification failed: " + error;
        show(result, "verify-bad", "\u2717 " + message);
      } finally {
        button.disabled = false;
      }
    });
  });
})();
