// Two jobs: keeps the "in 7 h 59 min" countdowns of expiry times current (the page is
// complete without it: the server renders the same text), and on "New device" makes the
// WireGuard key pair in this browser, so the private key never leaves it.
"use strict";

function countdown(left) {
  if (left <= 0) return "now";
  const days = Math.floor(left / 86400);
  const hours = Math.floor((left % 86400) / 3600);
  const mins = Math.floor((left % 3600) / 60);
  if (days > 0) return "in " + days + " d " + hours + " h";
  if (hours > 0) return "in " + hours + " h " + mins + " min";
  if (mins > 0) return "in " + mins + " min";
  return "in under a minute";
}

function tick() {
  const now = Math.floor(Date.now() / 1000);
  for (const el of document.querySelectorAll("[data-expires]")) {
    const at = Number(el.getAttribute("data-expires"));
    if (Number.isFinite(at)) el.textContent = countdown(at - now);
  }
}

// ---- New device -------------------------------------------------------------------------
// With WebCrypto X25519 the page asks the broker for a lease on the public key alone
// (POST /devices), adds the private key to the profile it gets back, and draws that as a QR
// code (qr.js) and a download. Without it the form posts as it is and the broker makes the key.

function toBase64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64Url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
}

// A key pair in the form `wg genkey | wg pubkey` gives: base64 of 32 bytes each, the private
// key clamped (X25519 clamps it anyway, so the public key is the same either way).
async function makeKeyPair() {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const priv = fromBase64Url((await crypto.subtle.exportKey("jwk", pair.privateKey)).d);
  if (pub.length !== 32 || priv.length !== 32) throw new Error("unexpected X25519 key size");
  priv[0] &= 248;
  priv[31] = (priv[31] & 127) | 64;
  return { publicKey: toBase64(pub), privateKey: toBase64(priv) };
}

let lastDownload = null;

function showProfile(data, conf) {
  const qr = window.QrCode.encode(conf, "M");
  window.QrCode.draw(document.getElementById("profile-qr"), qr, { scale: 4, margin: 4 });
  if (lastDownload) URL.revokeObjectURL(lastDownload);
  lastDownload = URL.createObjectURL(new Blob([conf], { type: "application/octet-stream" }));
  const link = document.getElementById("conf-download");
  link.href = lastDownload;
  link.download = data.file_name;
  const result = document.getElementById("device-result");
  // The facts the page names by field: the URL on the tunnel, pin, expiry.
  for (const el of result.querySelectorAll("[data-fill]")) {
    el.textContent = String(data[el.getAttribute("data-fill")]);
  }
  const left = document.getElementById("device-countdown");
  left.setAttribute("data-expires", String(data.expires_at));
  left.textContent = countdown(data.expires_at - Math.floor(Date.now() / 1000));
  document.getElementById("device-error").hidden = true;
  result.hidden = false;
  result.setAttribute("data-lease-id", data.lease_id);
  link.focus();
}

function showError(message) {
  const el = document.getElementById("device-error");
  el.textContent = message;
  el.hidden = false;
}

async function newDevice(form) {
  const keys = await makeKeyPair();
  const body = new URLSearchParams({
    csrf: form.elements.csrf.value,
    edge: form.elements.edge.value,
    public_key: keys.publicKey,
  });
  const resp = await fetch("/devices", {
    method: "POST",
    body: body,
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  const type = resp.headers.get("content-type") || "";
  if (!type.startsWith("application/json")) throw new Error("Not done: reload the page.");
  const data = await resp.json();
  // Without a session the broker answers as for any unknown path, so the words are ours.
  if (resp.status === 401) throw new Error("Your session has ended. Sign in again.");
  if (!resp.ok) throw new Error((data.error && data.error.message) || "Not done.");
  const conf = data.conf_without_key.replace(
    "[Interface]\n", "[Interface]\nPrivateKey = " + keys.privateKey + "\n");
  if (!conf.includes("PrivateKey = ")) throw new Error("The profile has no [Interface] section.");
  showProfile(data, conf);
}

function setUpNewDevice() {
  const form = document.getElementById("new-device");
  if (!form) return;
  form.addEventListener("submit", function (event) {
    if (form.getAttribute("data-keys") !== "browser") return; // the broker makes the key
    event.preventDefault();
    const button = document.getElementById("make-device");
    button.disabled = true;
    newDevice(form)
      .catch(function (e) { showError(e.message || String(e)); })
      .finally(function () { button.disabled = false; });
  });
  // A throw-away pair tells whether this browser can make one.
  if (!(window.crypto && crypto.subtle && window.QrCode)) return;
  makeKeyPair().then(function () {
    form.setAttribute("data-keys", "browser");
    document.getElementById("key-origin").textContent =
      "The key is made in this browser and never leaves it.";
  }, function () { /* no X25519 here: the form posts and the broker makes the key */ });
}

document.addEventListener("DOMContentLoaded", function () {
  tick();
  setInterval(tick, 30000);
  setUpNewDevice();
});
