// Keeps the "in 7 h 59 min" countdowns of expiry times current. The page is complete
// without it: the server renders the same text.
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

document.addEventListener("DOMContentLoaded", function () {
  tick();
  setInterval(tick, 30000);
});
