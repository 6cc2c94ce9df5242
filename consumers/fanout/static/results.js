// One video's page: the upload's facts, the stream's metadata and the detection
// outcome, updated live when the detection service reports.
//
// The results come from GET /v1/videos/{video_id}/results; the page shows what
// the answer holds and says plainly what it does not: analysis pending, not
// requested, failed (with its code), a file that is no usable video, and that
// no model ran when none did (the service never calls a video real or fake).
// Where the results route has nothing for the video (no detection has
// recorded it yet, or none runs), the upload's facts come from the user's
// session list instead. `processing_*`
// messages on the live feed reload the results; while the analysis is pending
// and the feed is down, the page polls.
"use strict";

import { expiredMessage, showFeedState, showSignIn, showUser } from "./chrome.js";
import { LiveFeed } from "./feed.js";
import { bytes, duration, el, moment } from "./format.js";
import { api, onTokenChange, takeTokenFromUrl, token } from "./session.js";

const POLL_MS = 5000;
const WAITING = new Set(["pending", "no_results"]);
const videoId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[2] || "");
let feedState = "stopped";
let current = null;

takeTokenFromUrl();
onTokenChange(() => location.reload());
document.addEventListener("DOMContentLoaded", start);

async function start() {
  const main = document.getElementById("main");
  if (!token()) {
    showSignIn(main, null, "this video's results");
    return;
  }
  let quota;
  try {
    quota = await api("GET", "/v1/quota");
  } catch (error) {
    if (error.status === 401) {
      showSignIn(main, expiredMessage() || `The server refused the token: ${error.message}`, "this video's results");
      return;
    }
  }
  if (quota) showUser(quota.user_id);
  document.getElementById("app").hidden = false;
  await load();
  const feed = new LiveFeed({
    token,
    onMessage,
    onState: (state, detail) => {
      feedState = state;
      showFeedState(state, detail);
    },
  });
  document.getElementById("feed-state").hidden = false;
  feed.start();
  setInterval(() => {
    if (feedState !== "live" && (!current || WAITING.has(current.status))) load();
  }, POLL_MS);
}

function onMessage(message) {
  const data = message.data || {};
  const ours = data.video_id === videoId || (current && message.session_id && message.session_id === current.upload_id);
  if (message.event_type === "resync" || (ours && message.event_type.startsWith("processing_"))) load();
  if (ours && message.event_type === "upload_complete") load();
}

async function load() {
  try {
    current = await api("GET", `/v1/videos/${encodeURIComponent(videoId)}/results`);
    render(current);
    return;
  } catch (error) {
    if (error.status === 401) {
      showSignIn(document.getElementById("main"), expiredMessage() || error.message, "this video's results");
      return;
    }
    if (error.status !== 404) {
      showProblem(`The results could not be loaded: ${error.message}`);
      return;
    }
  }
  // Not found there: either not this user's video, or a service without the results route.
  const session = await findSession().catch(() => null);
  if (!session) {
    showProblem(`None of your uploads has the video id ${videoId}.`, "Not found");
    return;
  }
  const r = session.result;
  current = {
    video_id: r.video_id,
    upload_id: session.session_id,
    analysis_id: r.analysis_id,
    filename: r.filename,
    size: r.file_size,
    sha256: r.file_hash,
    format: r.format,
    uploaded_at: r.uploaded_at,
    duplicate_of: r.duplicate_of,
    status: "no_results",
  };
  render(current);
}

async function findSession() {
  const listed = await api("GET", "/v1/uploads");
  return (listed.sessions || []).find((s) => s.result && s.result.video_id === videoId) || null;
}

function showProblem(text, title) {
  if (title) document.getElementById("title").textContent = title;
  const pill = document.getElementById("analysis-state");
  pill.className = "pill bad";
  pill.textContent = "Unavailable";
  document.getElementById("analysis").replaceChildren(el("p", { className: "notice bad", id: "problem" }, text));
  document.getElementById("video-card").hidden = true;
}

function pick(object, ...names) {
  for (const name of names) {
    if (object && object[name] !== undefined && object[name] !== null) return object[name];
  }
  return undefined;
}

function render(result) {
  document.getElementById("title").textContent = result.filename || `Video ${result.video_id || videoId}`;
  document.title = `${result.filename || "Video"} · Video ingest`;
  renderFacts(result);
  const detection = result.detection || {};
  const status = result.status || (result.detection ? "completed" : "pending");
  const pill = document.getElementById("analysis-state");
  const analysis = document.getElementById("analysis");
  const videoCard = document.getElementById("video-card");
  videoCard.hidden = true;

  if (status === "pending") {
    pill.className = "pill pending";
    pill.textContent = "Analysis pending";
    analysis.replaceChildren(
      el("p", { id: "analysis-pending" }, el("span", { className: "spinner" }), " The detection service has not reported on this video yet. This page updates by itself when it does."),
    );
    return;
  }
  if (status === "not_requested" || status === "not requested") {
    pill.className = "pill";
    pill.textContent = "Analysis not requested";
    analysis.replaceChildren(el("p", { className: "muted", id: "analysis-not-requested" }, "This upload asked for no analysis (auto_analyze was off), so the video was stored but not examined."));
    return;
  }
  if (status === "no_results") {
    pill.className = "pill";
    pill.textContent = "No results yet";
    analysis.replaceChildren(
      el("p", { className: "muted", id: "analysis-none" }, "No detection result has been recorded for this video yet. The upload itself is stored; results appear here when the detection service reports them."),
    );
    return;
  }
  if (status === "failed" || detection.error_code && detection.is_valid_video === undefined) {
    pill.className = "pill bad";
    pill.textContent = "Analysis failed";
    analysis.replaceChildren(
      el("p", { className: "notice bad", id: "analysis-failed" }, `${detection.error_code || "FAILED"}: ${detection.error_message || "the analysis could not be done"}`),
      detection.retriable ? el("p", { className: "muted small" }, "The service will try again.") : null,
    );
    return;
  }
  renderOutcome(result, detection, pill, analysis);
  renderVideo(detection.video || result.video || result.metadata);
}

function renderOutcome(result, detection, pill, analysis) {
  const parts = [];
  if (detection.is_valid_video === false) {
    pill.className = "pill bad";
    pill.textContent = "Not a usable video";
    parts.push(el("p", { className: "notice bad", id: "invalid-video" }, `${detection.invalid_code || "INVALID"}: the file was stored but is not a video the service could decode.`));
  } else {
    pill.className = "pill completed";
    pill.textContent = "Analysed";
  }
  const m = detection.measurements || {};
  const stats = el("div", { className: "stats", id: "detection-stats" });
  const stat = (label, value) => {
    if (value !== undefined && value !== null) stats.append(el("div", { className: "stat" }, el("div", { className: "label" }, label), el("div", { className: "value" }, value)));
  };
  stat("Frames sampled", pick(detection, "frames_sampled") ?? m.frames_sampled);
  stat("Faces found", pick(detection, "faces_detected"));
  stat("Frames with faces", m.frames_with_faces);
  if (m.faces_per_frame_max !== undefined) stat("Most faces in a frame", m.faces_per_frame_max);
  if (m.largest_face_width) stat("Largest face", `${m.largest_face_width}×${m.largest_face_height} px`);
  if (m.sharpness_mean !== undefined && m.sharpness_mean !== null) stat("Sharpness (mean)", Math.round(m.sharpness_mean));
  if (stats.childElementCount) parts.push(stats);

  const model = pick(detection, "model");
  const score = pick(detection, "model_score", "model_score_max");
  if (model) {
    parts.push(
      el("p", { id: "model-result" }, "Model ", el("code", {}, model), score !== undefined ? ` scored ${Number(score).toFixed(3)}` : " gave no score",
        detection.model_faces_scored ? ` over ${detection.model_faces_scored} face crop${detection.model_faces_scored === 1 ? "" : "s"}.` : "."),
    );
    if (detection.model_note) parts.push(el("p", { className: "muted small" }, detection.model_note));
  } else {
    parts.push(el("p", { className: "muted", id: "no-model" }, "No model ran: these are measurements, not a verdict on whether the video is real."));
  }
  const findings = pick(detection, "findings") || [];
  if (findings.length) parts.push(el("ul", { id: "findings" }, findings.map((f) => el("li", {}, f))));
  if (detection.reused_from) parts.push(el("p", { className: "muted small" }, `Reused the analysis ${detection.reused_from} of an identical file.`));
  if (result.updated_at) parts.push(el("p", { className: "muted small" }, `Reported ${moment(result.updated_at)}`));
  analysis.replaceChildren(...parts);
}

function renderVideo(video) {
  const card = document.getElementById("video-card");
  if (!video) return;
  card.hidden = false;
  const stats = document.getElementById("video-stats");
  stats.replaceChildren();
  const stat = (label, value) => {
    if (value !== undefined && value !== null && value !== "") {
      stats.append(el("div", { className: "stat" }, el("div", { className: "label" }, label), el("div", { className: "value" }, value)));
    }
  };
  stat("Container", video.container && String(video.container).toUpperCase());
  stat("Codec", video.codec);
  if (video.width && video.height) stat("Resolution", `${video.width}×${video.height}`);
  if (video.fps) stat("Frame rate", `${Number(video.fps).toFixed(Number.isInteger(video.fps) ? 0 : 2)} fps`);
  const seconds = video.duration_seconds;
  if (seconds !== undefined && seconds !== null) stat("Duration", seconds < 60 ? `${Number(seconds).toFixed(1)} s` : duration(seconds));
  stat("Frames (header)", video.frame_count);
  stat("Frames decoded", video.frames_decoded);
  if (video.rotation_degrees) stat("Rotation", `${video.rotation_degrees}°`);
  const flags = document.getElementById("video-flags");
  flags.replaceChildren(...(video.flags || []).map((flag) => el("span", { className: "pill warn" }, flag.replace(/_/g, " ").toLowerCase())));
}

function renderFacts(result) {
  const facts = document.getElementById("facts");
  facts.replaceChildren();
  const fact = (label, value, mono = false) => {
    if (value === undefined || value === null || value === "") return;
    facts.append(el("dt", {}, label), el("dd", { className: mono ? "mono" : "" }, value));
  };
  fact("File", result.filename);
  fact("Size", result.size !== undefined ? `${bytes(result.size)} (${Number(result.size).toLocaleString()} bytes)` : null);
  fact("Format", result.format && String(result.format).toUpperCase());
  fact("Uploaded", result.uploaded_at && moment(result.uploaded_at));
  fact("Video id", result.video_id, true);
  fact("Analysis id", result.analysis_id, true);
  fact("Upload id", result.upload_id, true);
  fact("SHA-256", result.sha256, true);
  fact("Duplicate of", result.duplicate_of, true);
}
