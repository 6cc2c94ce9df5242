// The quota card: bytes and uploads used in the period, and when it resets.
// Refreshed on demand (an upload ended, the feed said the quota moved), several
// reasons within a moment making one request.
"use strict";

import { bytes, percent, setBar } from "./format.js";
import { api } from "./session.js";

let quotaTimer = null;

export function showQuota(q) {
  const used = q.quota_used ?? 0;
  const limit = q.quota_limit ?? 0;
  const share = limit ? percent(used, limit) : 100;
  document.getElementById("quota-used").textContent = bytes(used);
  document.getElementById("quota-of").textContent = `of ${bytes(limit)} · ${bytes(q.quota_remaining ?? Math.max(0, limit - used))} left`;
  document.getElementById("quota-percent").textContent = `${share.toFixed(share < 10 && share > 0 ? 1 : 0)} %`;
  setBar(document.getElementById("quota-bar"), share, share >= 90 ? "failed" : "");
  const count = q.uploads_used ?? 0;
  const countLimit = q.uploads_limit ?? 0;
  document.getElementById("quota-uploads").textContent = `${count} of ${countLimit}`;
  setBar(document.getElementById("quota-uploads-bar"), countLimit ? percent(count, countLimit) : 100, "");
  document.getElementById("quota-reset").textContent = q.reset_date
    ? `Resets ${new Date(q.reset_date).toLocaleDateString(undefined, { dateStyle: "long" })}`
    : "";
}

/** Fetches the quota soon; several reasons within a moment make one request. */
export function refreshQuota() {
  clearTimeout(quotaTimer);
  quotaTimer = setTimeout(async () => {
    try {
      showQuota(await api("GET", "/v1/quota"));
    } catch {
      // shown again on the next update
    }
  }, 200);
}
