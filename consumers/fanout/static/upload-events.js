// What the server says about the user's uploads, applied to the rows: the REST
// list (GET /v1/uploads) when the page opens, while the feed is down and when the
// feed asks for a resync, and every live-feed message after that.
"use strict";

import { refreshQuota } from "./quota.js";
import { api } from "./session.js";
import { forgetUpload, rememberedUploads } from "./tus.js";
import { applyResult, FINISHED, place, rowFor, updateCount, updateRow, uploads } from "./upload-rows.js";

export async function loadSessions() {
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
export function adoptRemembered(user) {
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

function first(data, ...names) {
  for (const name of names) if (data[name] !== undefined && data[name] !== null) return data[name];
  return undefined;
}

export function onFeedMessage(message) {
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
