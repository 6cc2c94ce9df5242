// Sending files: the drop zone and file picker start a tus transfer per file
// (resuming one a previous page left unfinished), whose progress and outcome
// update its row; Cancel terminates the transfer or deletes the session.
"use strict";

import { bytes } from "./format.js";
import { refreshQuota } from "./quota.js";
import { api, token } from "./session.js";
import { forgetUpload, rememberedUploads, TusUpload } from "./tus.js";
import { applyResult, FINISHED, rekey, rowFor, updateRow, uploads } from "./upload-rows.js";

let localIds = 0;

/**
 * Bytes per PATCH: 32 MiB unless `localStorage["ingest.chunkSize"]` says otherwise (at
 * least 1 MiB), for proxies that cap request bodies, as `ingest upload --chunk-size` does.
 */
function chunkSize() {
  const chosen = Number(localStorage.getItem("ingest.chunkSize"));
  return Number.isSafeInteger(chosen) && chosen >= 1024 * 1024 ? chosen : 32 * 1024 * 1024;
}

export function wireDropZone(user) {
  const drop = document.getElementById("drop");
  const input = document.getElementById("file-input");
  input.addEventListener("change", () => {
    for (const file of input.files) send(file, user);
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
    for (const file of event.dataTransfer.files) send(file, user);
  });
}

function send(file, user) {
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

export async function cancel(row, user) {
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
