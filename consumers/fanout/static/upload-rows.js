// The list of uploads on the page: one row per session, newest first, drawn from
// what the row holds. Rows are created and changed by the REST list, the live
// feed and this page's own transfers (upload-events.js, upload-sending.js); the
// row's Cancel button calls what the page set with `onCancel`.
"use strict";

import { ago, bytes, duration, el, percent, setBar, speed } from "./format.js";

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
export const FINISHED = new Set(["completed", "failed", "cancelled", "expired"]);

export const uploads = new Map(); // session id (or a temporary id before creation) -> row
let cancelRow = () => {};

/** What the Cancel button of a row does. */
export function onCancel(handler) {
  cancelRow = handler;
}

export function rowFor(id, fields = {}) {
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
export function place(row) {
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

export function rekey(row, sessionId) {
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

export function updateRow(row) {
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
    actions.append(el("button", { className: "link danger", type: "button", onclick: () => cancelRow(row) }, "Cancel"));
  }
  if (row.redirectUrl) {
    actions.append(el("a", { className: "results-link", href: row.redirectUrl }, "Results →"));
  }
  updateCount();
}

export function updateCount() {
  const n = uploads.size;
  document.getElementById("upload-count").textContent = n ? `· ${n}` : "";
  document.getElementById("no-uploads").hidden = n > 0;
}

export function applyResult(row, result) {
  row.videoId = result.video_id;
  row.analysisId = result.analysis_id;
  row.redirectUrl = result.redirect_url || (result.video_id ? `/dashboard/videos/${result.video_id}/results` : null);
  row.total = result.file_size ?? result.size_bytes ?? row.total;
  if (result.duplicate_of) row.duplicateOf = result.duplicate_of;
  if (result.filename) row.filename = result.filename;
}
