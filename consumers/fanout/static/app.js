// The dashboard talks only to the public API: sessions, uploads and quota.
"use strict";

const tokenInput = document.getElementById("token");
const params = new URLSearchParams(location.search);
tokenInput.value = params.get("token") || localStorage.getItem("ingest-token") || "";
if (params.get("token")) history.replaceState(null, "", location.pathname);
tokenInput.addEventListener("change", () => { localStorage.setItem("ingest-token", tokenInput.value.trim()); refresh(); });
localStorage.setItem("ingest-token", tokenInput.value.trim());

function authHeaders() { return { Authorization: "Bearer " + tokenInput.value.trim() }; }

async function api(method, path, body) {
  const response = await fetch(path, {
    method, headers: { ...authHeaders(), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error_message || response.statusText);
  return data;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function cell(row, content) {
  const td = row.insertCell();
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  return td;
}

async function refresh() {
  const who = document.getElementById("who");
  try {
    const quota = await api("GET", "/v1/dashboard/upload/quota");
    who.textContent = "Signed in as " + quota.user_id;
    document.getElementById("quota-bar").style.width = Math.min(100, quota.usage_percentage) + "%";
    document.getElementById("quota-text").textContent =
      `${bytes(quota.quota_used)} of ${bytes(quota.quota_limit)} used, ` +
      `${quota.uploads_used} of ${quota.uploads_limit} uploads; resets ${quota.reset_date}`;
    const listed = await api("GET", "/v1/dashboard/upload/sessions");
    const body = document.querySelector("#sessions tbody");
    body.replaceChildren();
    for (const s of listed.sessions) {
      const row = body.insertRow();
      cell(row, new Date(s.created_at).toLocaleString());
      cell(row, s.filename || "–");
      cell(row, s.status).className = "status-" + s.status;
      cell(row, bytes(s.result ? s.result.file_size : s.expected_file_size));
      const hash = document.createElement("code");
      hash.textContent = s.result ? s.result.file_hash.slice(0, 16) + "…" : "–";
      cell(row, hash);
      if (s.result) {
        const link = document.createElement("a");
        link.href = s.result.redirect_url; link.textContent = s.result.video_id.slice(0, 8);
        cell(row, link);
      } else cell(row, s.error_code || "–");
    }
  } catch (error) {
    who.textContent = tokenInput.value ? "Token refused: " + error.message : "Paste a token to start.";
    who.className = "error";
    return;
  }
  who.className = "muted";
}

function upload(file) {
  const row = document.querySelector("#transfers tbody").insertRow();
  cell(row, file.name);
  const bar = document.createElement("div"); bar.className = "bar";
  const fill = document.createElement("div"); bar.appendChild(fill);
  cell(row, bar);
  const speed = cell(row, "–");
  const result = cell(row, "starting…");
  api("POST", "/v1/dashboard/upload/initiate", { filename: file.name, expected_file_size: file.size })
    .then((session) => new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      const started = performance.now();
      xhr.open("PUT", session.upload_url);
      for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
      xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
      xhr.upload.onprogress = (e) => {
        fill.style.width = (100 * e.loaded / file.size).toFixed(1) + "%";
        const seconds = (performance.now() - started) / 1000;
        speed.textContent = bytes(e.loaded / Math.max(seconds, 0.001)) + "/s";
        result.textContent = "uploading";
      };
      xhr.onload = () => {
        const data = JSON.parse(xhr.responseText || "{}");
        xhr.status === 201 ? resolve(data) : reject(new Error(data.error_message || xhr.statusText));
      };
      xhr.onerror = () => reject(new Error("the connection failed"));
      xhr.send(file);
    }))
    .then((data) => {
      fill.style.width = "100%";
      const link = document.createElement("a");
      link.href = data.redirect_url;
      link.textContent = data.duplicate_of ? "duplicate of " + data.duplicate_of.slice(0, 8) : "stored";
      result.replaceChildren(link);
      refresh();
    })
    .catch((error) => { result.textContent = error.message; result.className = "error"; refresh(); });
}

document.getElementById("send").addEventListener("click", () => {
  for (const file of document.getElementById("files").files) upload(file);
});

refresh();
setInterval(refresh, 3000);
