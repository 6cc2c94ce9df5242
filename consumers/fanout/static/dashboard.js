// The upload page: signs in, lists the user's uploads live, sends files through tus,
// and shows the quota moving.
//
// State comes from three places that agree on the session id: the REST list
// (GET /v1/uploads) when the page opens or the feed asks for a resync, the
// live feed for everything that happens after (uploads from any client, the
// CLI included), and this page's own tus transfers, whose byte counts are
// fresher than any event while they run. While the feed is down the page
// polls the list, so it never shows stale state for long.
"use strict";

import { expiredMessage, showFeedState, showSignIn, showUser } from "./chrome.js";
import { LiveFeed } from "./feed.js";
import { ago, bytes, duration, el, percent, speed } from "./format.js";
import { api, onTokenChange, takeTokenFromUrl, token } from "./session.js";
import { forgetUpload, rememberedUploads, TusUpload } from "./tus.js";

const POLL_MS = 5000;
const STATUS_LABELS = {
  starting: "Starting",
  active: "Waiting for data",
  uploading: "Uploading",
  retrying: "Reconnecting",
  paused: "Interrupted",
  finishing: "Finishing",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
  expired: "Expired",
};
const FINISHED = new Set(["completed", "failed", "cancelled", "expired"]);

const uploads = new Map(); // session id (or a temporary id before creation) -> row
let user = null;
let feed = null;
let feedState = "stopped";
let quotaTimer = null;
let localIds = 0;

takeTokenFromUrl();
onTokenChange(() => location.reload());
document.addEventListener("DOMContentLoaded", start);

async function start() {
  const main = document.getElementById("main");
  if (!token()) {
    showSignIn(main);
    return;
  }
  let quota;
  try {
    quota = await api("GET", "/v1/quota");
  } catch (error) {
    if (error.status === 401) {
      showSignIn(main, expiredMessage() || `The server refused the token: ${error.message}`);
    } else {
      main.prepend(el("p", { className: "notice bad" }, `The service did not answer: ${error.message}. Retrying…`));
      setTimeout(() => location.reload(), POLL_MS);
    }
    return;
  }
  user = quota.user_id;
  showUser(user);
  showQuota(quota);
  document.getElementById("app").hidden = false;
  wireDropZone();
  await loadSessions();
  adoptRemembered();
  feed = new LiveFeed({ token, onMessage: onFeedMessage, onState: onFeedState });
  window.ingestFeed = feed; // for a look from the browser's console (and the browser tests)
  document.getElementById("feed-state").hidden = false;
  feed.start();
  setInterval(() => {
    if (feedState !== "live") {
      loadSessions().catch(() => {});
      refreshQuota();
    }
    for (const row of uploads.values()) if (row.createdAt) updateRow(row); // "2 min ago"
  }, POLL_MS);
  addEventListener("offline", () => showFeedState(feedState));
  addEventListener("online", () => showFeedState(feedState));
}

// ---- quota ----------------------------------------------------------------

function showQuota(q) {
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
function refreshQuota() {
  clearTimeout(quotaTimer);
  quotaTimer = setTimeout(async () => {
    try {
      showQuota(await api("GET", "/v1/quota"));
    } catch {
      // shown again on the next update
    }
  }, 200);
}

function setBar(bar, share, kind) {
  bar.firstElementChild.style.width = `${share}%`;
  bar.setAttribute("aria-valuenow", String(Math.round(share)));
  bar.className = bar.className.replace(/ ?(completed|failed|paused|retrying)/g, "") + (kind ? ` ${kind}` : "");
}

// ---- rows -------------------------------------------------------------------

function rowFor(id, fields = {}) {
  let row = uploads.get(id);
  if (!row) {
    row = { id, filename: null, total: null, sent: 0, status: "active", createdAt: null, ...fields };
    uploads.set(id, row);
    row.el = buildRow(row);
    place(row);
  }
  return row;
}

/** Newest first: puts the row before the first one created before it. */
function place(row) {
  const created = new Date(row.createdAt || Date.now()).getTime();
  row.el.dataset.created = String(created);
  const list = document.getElementById("uploads");
  const older = [...list.children].find((node) => node !== row.el && Number(node.dataset.created) < created);
  if (older) {
    if (row.el.nextElementSibling !== older) list.insertBefore(row.el, older);
  } else if (list.lastElementChild !== row.el) {
    list.append(row.el);
  }
}

function rekey(row, sessionId) {
  const existing = uploads.get(sessionId);
  uploads.delete(row.id);
  if (existing && existing !== row) {
    // The feed announced the session before the creation answer arrived: keep one row.
    for (const [name, value] of Object.entries(existing)) {
      if (row[name] === null || row[name] === undefined) row[name] = value;
    }
    existing.el.replaceWith(row.el);
  }
  row.id = sessionId;
  row.el.dataset.sessionId = sessionId;
  uploads.set(sessionId, row);
}

function buildRow(row) {
  const name = el("span", { className: "filename" });
  const pill = el("span", { className: "pill" });
  const actions = el("span", { className: "upload-actions" });
  const bar = el("div", { className: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, el("span"));
  const meta = el("div", { className: "upload-meta" });
  const node = el(
    "li",
    { className: "upload", dataset: { sessionId: row.id } },
    el("div", { className: "upload-head" }, name, pill, el("span", { className: "spacer" }), actions),
    bar,
    meta,
  );
  row.parts = { name, pill, actions, bar, meta };
  return node;
}

function updateRow(row) {
  const { name, pill, actions, bar, meta } = row.parts;
  name.textContent = row.filename || "Untitled upload";
  name.title = row.filename || "";
  pill.className = `pill ${row.status}`;
  pill.textContent = STATUS_LABELS[row.status] || row.status;
  const total = row.total;
  const sent = row.status === "completed" ? total ?? row.sent : row.sent;
  const share = row.status === "completed" ? 100 : percent(sent, total);
  setBar(bar, share, ["completed", "failed", "paused", "retrying"].includes(row.status) ? row.status : "");
  bar.dataset.percent = share.toFixed(1);

  const facts = [];
  facts.push(el("span", { className: "amount" }, total ? `${bytes(sent)} of ${bytes(total)} · ${Math.floor(share)} %` : bytes(sent)));
  if (row.status === "uploading" && row.speed > 0) {
    facts.push(el("span", { className: "speed" }, speed(row.speed)));
    if (row.eta !== null && row.eta !== undefined) facts.push(el("span", { className: "eta" }, `${duration(row.eta)} left`));
  }
  if (row.note) facts.push(el("span", { className: "note" }, row.note));
  if (row.duplicateOf) {
    facts.push(el("span", { className: "duplicate" }, "Already uploaded: kept as a duplicate of ", el("code", {}, row.duplicateOf.slice(0, 8))));
  }
  if (row.error) facts.push(el("span", { className: "problem" }, row.errorCode ? `${row.errorCode}: ${row.error}` : row.error));
  if (row.detection) facts.push(el("span", { className: `detection ${row.detection.kind}` }, row.detection.text));
  if (row.createdAt) facts.push(el("span", { className: "when", title: new Date(row.createdAt).toLocaleString() }, ago(row.createdAt)));
  meta.replaceChildren(...facts);

  actions.replaceChildren();
  if (row.status === "paused") {
    actions.append(el("button", { className: "link", type: "button", onclick: () => document.getElementById("file-input").click() }, "Choose the file to resume"));
  }
  if (!FINISHED.has(row.status) && row.status !== "starting") {
    actions.append(el("button", { className: "link danger", type: "button", onclick: () => cancel(row) }, "Cancel"));
  }
  if (row.redirectUrl) {
    actions.append(el("a", { className: "results-link", href: row.redirectUrl }, "Results →"));
  }
  updateCount();
}

function updateCount() {
  const n = uploads.size;
  document.getElementById("upload-count").textContent = n ? `· ${n}` : "";
  document.getElementById("no-uploads").hidden = n > 0;
}

function applyResult(row, result) {
  row.videoId = result.video_id;
  row.analysisId = result.analysis_id;
  row.redirectUrl = result.redirect_url || (result.video_id ? `/dashboard/videos/${result.video_id}/results` : null);
  row.total = result.file_size ?? result.size_bytes ?? row.total;
  if (result.duplicate_of) row.duplicateOf = result.duplicate_of;
  if (result.filename) row.filename = result.filename;
}

// ---- the REST list ---------------------------------------------------------------

async function loadSessions() {
  const listed = await api("GET", "/v1/uploads");
  for (const s of listed.sessions || []) {
    const row = rowFor(s.session_id, { createdAt: s.created_at });
    if (row.createdAt !== s.created_at) {
      row.createdAt = s.created_at;
      place(row);
    }
    row.filename = s.filename || row.filename;
    row.total = s.expected_file_size ?? row.total;
    if (!row.transfer) {
      row.sent = s.bytes_received ?? row.sent;
      if (!(row.status === "paused" && !FINISHED.has(s.status))) row.status = s.status;
    } else if (FINISHED.has(s.status)) {
      row.status = s.status;
    }
    if (s.result) applyResult(row, s.result);
    if (s.status === "failed" || s.status === "expired") {
      row.errorCode = s.error_code || null;
      row.error = s.message || null;
    }
    updateRow(row);
  }
  updateCount();
}

/** Marks uploads a previous page left unfinished, so the user knows to pick the file again. */
function adoptRemembered() {
  for (const entry of rememberedUploads(user)) {
    const row = uploads.get(entry.sessionId);
    if (!row || FINISHED.has(row.status)) {
      forgetUpload(entry.fingerprint);
      continue;
    }
    if (row.transfer) continue;
    row.status = "paused";
    row.note = "Choose the same file again to send the rest";
    row.filename = row.filename || entry.name;
    row.total = row.total ?? entry.size;
    updateRow(row);
  }
}

// ---- the live feed --------------------------------------------------------------

function onFeedState(state, detail) {
  feedState = state;
  showFeedState(state, detail);
  // A token refused at the upgrade only shows as a failed connection: ask over HTTP.
  if (state === "refused" || (state === "waiting" && detail.attempt === 3)) {
    api("GET", "/v1/quota").catch((error) => {
      if (error.status === 401) showSignIn(document.getElementById("main"), expiredMessage() || error.message);
    });
  }
}

function first(data, ...names) {
  for (const name of names) if (data[name] !== undefined && data[name] !== null) return data[name];
  return undefined;
}

function onFeedMessage(message) {
  const data = message.data || {};
  const type = message.event_type;
  if (type === "resync") {
    loadSessions().catch(() => {});
    refreshQuota();
    return;
  }
  if (type === "quota_updated") {
    refreshQuota();
    return;
  }
  const sessionId = message.session_id || data.session_id || data.upload_id;
  if (!sessionId) return;
  if (type === "processing_completed" || type === "processing_failed") {
    const row = uploads.get(sessionId) || [...uploads.values()].find((r) => r.videoId && r.videoId === data.video_id);
    if (row) {
      row.detection = describeDetection(type, data);
      updateRow(row);
    }
    return;
  }
  const row = rowFor(sessionId, { createdAt: message.timestamp || new Date().toISOString() });
  row.filename = first(data, "filename") || row.filename;
  const total = first(data, "size_bytes", "total_bytes", "file_size");
  if (total !== undefined) row.total = total;
  switch (type) {
    case "upload_started":
      if (!row.transfer && !FINISHED.has(row.status)) row.status = "uploading";
      break;
    case "upload_progress":
      if (!row.transfer) {
        row.sent = first(data, "bytes_received", "bytes_uploaded") ?? row.sent;
        row.speed = first(data, "speed_bps", "upload_speed") ?? 0;
        row.eta = etaOf(data);
        if (!FINISHED.has(row.status)) row.status = "uploading";
      }
      break;
    case "upload_complete":
    case "duplicate_detected": // a completion whose file this user had already stored
      row.status = "completed";
      row.sent = row.total ?? row.sent;
      row.note = null;
      applyResult(row, data);
      refreshQuota();
      break;
    case "upload_error":
      row.status = "failed";
      row.errorCode = first(data, "error_code") || null;
      row.error = first(data, "error_message", "message") || "the upload failed";
      refreshQuota();
      break;
    case "upload_cancelled":
      row.status = "cancelled";
      row.note = null;
      refreshQuota();
      break;
    default:
      return; // a type this page does not know yet
  }
  updateRow(row);
}

function etaOf(data) {
  const seconds = first(data, "eta_seconds");
  if (seconds !== undefined) return seconds;
  const when = first(data, "estimated_completion");
  return when ? Math.max(0, (new Date(when).getTime() - Date.now()) / 1000) : null;
}

function describeDetection(type, data) {
  if (type === "processing_failed") {
    return { kind: "problem", text: `Analysis failed${data.error_code ? `: ${data.error_code}` : ""}` };
  }
  if (data.is_valid_video === false) {
    return { kind: "problem", text: `Not a usable video${data.invalid_code ? ` (${data.invalid_code})` : ""}` };
  }
  const video = data.video || {};
  const parts = ["Analysed"];
  if (video.width && video.height) parts.push(`${video.width}×${video.height}`);
  if (data.faces_detected !== undefined) parts.push(`${data.faces_detected} face${data.faces_detected === 1 ? "" : "s"} found`);
  return { kind: "ok", text: parts.join(" · ") };
}

// ---- sending files ---------------------------------------------------------------

/**
 * Bytes per PATCH: 32 MiB unless `localStorage["ingest.chunkSize"]` says otherwise (at
 * least 1 MiB), for proxies that cap request bodies, as `ingest upload --chunk-size` does.
 */
function chunkSize() {
  const chosen = Number(localStorage.getItem("ingest.chunkSize"));
  return Number.isSafeInteger(chosen) && chosen >= 1024 * 1024 ? chosen : 32 * 1024 * 1024;
}

function wireDropZone() {
  const drop = document.getElementById("drop");
  const input = document.getElementById("file-input");
  input.addEventListener("change", () => {
    for (const file of input.files) send(file);
    input.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    for (const file of event.dataTransfer.files) send(file);
  });
}

function send(file) {
  const transfer = new TusUpload(file, { user, token, chunkSize: chunkSize() });
  const kept = rememberedUploads(user).find((entry) => entry.fingerprint === transfer.key);
  const row = kept && uploads.has(kept.sessionId)
    ? uploads.get(kept.sessionId)
    : rowFor(`local-${(localIds += 1)}`, { createdAt: new Date().toISOString() });
  row.transfer = transfer;
  row.filename = file.name;
  row.total = file.size;
  row.status = kept ? "uploading" : "starting";
  row.note = kept ? "Resuming…" : null;
  row.error = null;
  row.errorCode = null;
  updateRow(row);
  transfer.onStatus = (state, detail) => {
    if (state === "created") rekey(row, detail.sessionId);
    if (state === "retrying") {
      row.status = "retrying";
      row.note = detail.offline
        ? "Offline: waiting for the network"
        : `Connection lost; retrying in ${Math.round(detail.retryIn / 1000) || 1} s`;
      row.speed = 0;
    }
    if (state === "uploading") {
      row.status = "uploading";
      row.note = null;
    }
    updateRow(row);
  };
  transfer.onProgress = ({ sent, total, speed: rate, eta }) => {
    row.sent = sent;
    row.total = total;
    row.speed = rate;
    row.eta = eta;
    if (row.status === "starting") row.status = "uploading";
    if (transfer.resumedFrom > 0 && row.note === "Resuming…") {
      row.note = `Resumed at ${bytes(transfer.resumedFrom)}`;
    }
    updateRow(row);
  };
  transfer
    .run()
    .then(async ({ sessionId }) => {
      if (row.id !== sessionId) rekey(row, sessionId);
      row.transfer = null;
      row.speed = 0;
      if (!FINISHED.has(row.status)) row.status = "finishing";
      updateRow(row);
      const session = await untilAnswered(() => api("GET", `/v1/uploads/${encodeURIComponent(sessionId)}`));
      if (session.result) {
        row.status = "completed";
        row.note = transfer.resumedFrom > 0 ? `Resumed at ${bytes(transfer.resumedFrom)}` : null;
        applyResult(row, session.result);
      } else {
        row.status = session.status;
      }
      updateRow(row);
      refreshQuota();
    })
    .catch((error) => {
      row.transfer = null;
      row.speed = 0;
      if (error.code === "STOPPED") return;
      row.sent = transfer.confirmed; // what the server holds, not what left this page
      row.status = "failed";
      row.errorCode = error.code || null;
      row.error = error.message;
      row.note = null;
      updateRow(row);
      refreshQuota();
    });
}

/** Calls `step` until it answers: every byte is stored, only the network is missing. */
async function untilAnswered(step) {
  for (let wait = 500; ; wait = Math.min(wait * 2, 15000)) {
    try {
      return await step();
    } catch (error) {
      if (error.status && error.status < 500) throw error;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

async function cancel(row) {
  row.note = "Cancelling…";
  updateRow(row);
  try {
    if (row.transfer) await row.transfer.terminate();
    else await api("DELETE", `/v1/uploads/${encodeURIComponent(row.id)}`);
    for (const entry of rememberedUploads(user)) {
      if (entry.sessionId === row.id) forgetUpload(entry.fingerprint);
    }
    row.status = "cancelled";
    row.note = null;
  } catch (error) {
    row.note = `Could not cancel: ${error.message}`;
  }
  updateRow(row);
  refreshQuota();
}
