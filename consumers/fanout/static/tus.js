// A small tus 1.0.0 client for the browser: creation, HEAD to resume, PATCH in chunks.
//
// Why our own and not a vendored tus-js-client: the dashboard needs a few
// hundred lines of it (no Node.js streams, no React Native, no parallel
// uploads), it must send the current bearer token on every request, and a
// readable module next to the pages is easier to trust than a minified bundle.
//
// Resuming works as tus clients do it: the upload's URL is kept in
// localStorage under a fingerprint of the file (user, name, size, type, last
// modified), so choosing the same file again after a page reload or a crash
// asks the server for its offset (HEAD) and sends only the rest. A network
// drop is retried with growing delays (the browser's `online` event retries at
// once), and every retry starts from the offset the server reports, never from
// what this page believes it sent. A request that moves no byte for 30 s is
// abandoned and retried: an emulated or half-dead network may never fail it.
// Refusals the server means (403, 404/410 expired, 413, 415, 429 quota) end
// the upload with the server's own message.
"use strict";

const STORE_PREFIX = "ingest.tus:";
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 15000, 30000];
const MAX_FAILURES_WITHOUT_PROGRESS = 12;
const STALL_MS = 30_000;
const RETRIABLE = new Set([0, 409, 423, 500, 502, 503, 504]);

export class UploadError extends Error {
  constructor(message, { status = 0, code = null, retriable = false } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retriable = retriable;
  }
}

export function fingerprint(file, user) {
  return STORE_PREFIX + JSON.stringify([user, file.name, file.size, file.type, file.lastModified]);
}

/** Uploads of this user that a previous page started and did not finish. */
export function rememberedUploads(user) {
  const found = [];
  for (let i = 0; i < localStorage.length; i += 1) {
    const key = localStorage.key(i);
    if (!key || !key.startsWith(STORE_PREFIX)) continue;
    try {
      const entry = JSON.parse(localStorage.getItem(key));
      if (entry.user === user) found.push({ ...entry, fingerprint: key });
    } catch {
      localStorage.removeItem(key);
    }
  }
  return found;
}

export function forgetUpload(key) {
  localStorage.removeItem(key);
}

function encodeMetadata(metadata) {
  return Object.entries(metadata)
    .filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([key, value]) => {
      const utf8 = new TextEncoder().encode(String(value));
      return `${key} ${btoa(String.fromCharCode(...utf8))}`;
    })
    .join(",");
}

async function refusal(response) {
  const body = await response.json().catch(() => null);
  return new UploadError((body && body.error_message) || `HTTP ${response.status}`, {
    status: response.status,
    code: body && body.error_code,
    retriable: RETRIABLE.has(response.status),
  });
}

export class TusUpload {
  /**
   * @param {File} file
   * @param {object} options user (id, for the fingerprint), token (() => string),
   *   endpoint, chunkSize, metadata, onProgress({sent,total,speed,eta}), onStatus(state, detail)
   */
  constructor(file, options) {
    this.file = file;
    this.user = options.user;
    this.token = options.token;
    this.endpoint = options.endpoint || "/v1/tus/";
    this.chunkSize = options.chunkSize || 32 * 1024 * 1024;
    this.metadata = options.metadata || {};
    this.onProgress = options.onProgress || (() => {});
    this.onStatus = options.onStatus || (() => {});
    this.key = fingerprint(file, this.user);
    this.url = null;
    this.sessionId = null;
    this.resumedFrom = 0;
    this.confirmed = 0; // the last offset the server reported
    this.retrying = false;
    this.stopped = false;
    this.xhr = null;
    this.samples = [];
    this._wake = null;
  }

  /** Sends the whole file; resolves with {sessionId, url} once the server holds every byte. */
  async run() {
    let offset = await this._retrying("resuming", () => this._resumeOrCreate());
    this.resumedFrom = offset;
    this.confirmed = offset;
    this._report(offset);
    let failures = 0;
    while (offset < this.file.size) {
      this._checkStopped();
      try {
        const before = offset;
        offset = await this._patch(offset);
        if (offset > before) failures = 0;
      } catch (error) {
        if (!error.retriable || this.stopped) throw error;
        failures += 1;
        if (failures > MAX_FAILURES_WITHOUT_PROGRESS) throw error;
        await this._pause(failures, error);
        offset = await this._retrying("resuming", () => this._head());
      }
      this.confirmed = offset;
      this._report(offset);
    }
    forgetUpload(this.key);
    this.onStatus("sent", {});
    return { sessionId: this.sessionId, url: this.url };
  }

  /** Stops sending; the server keeps what it has, and the same file resumes later. */
  stop() {
    this.stopped = true;
    if (this.xhr) this.xhr.abort();
    if (this._wake) this._wake();
  }

  /** Stops and deletes the upload on the server (tus termination). */
  async terminate() {
    this.stop();
    forgetUpload(this.key);
    if (!this.url) return;
    const response = await fetch(this.url, { method: "DELETE", headers: this._headers() });
    if (!response.ok && response.status !== 404 && response.status !== 410) {
      throw await refusal(response);
    }
  }

  _headers(extra = {}) {
    return { Authorization: `Bearer ${this.token()}`, "Tus-Resumable": "1.0.0", ...extra };
  }

  async _resumeOrCreate() {
    const kept = localStorage.getItem(this.key);
    if (kept) {
      try {
        this._adopt(JSON.parse(kept).url);
        return await this._head();
      } catch (error) {
        if (error.retriable) throw error;
        forgetUpload(this.key); // expired, terminated or not ours: start afresh
      }
    }
    return this._create();
  }

  async _create() {
    const response = await fetch(this.endpoint, {
      method: "POST",
      headers: this._headers({
        "Upload-Length": String(this.file.size),
        "Upload-Metadata": encodeMetadata({
          filename: this.file.name,
          filetype: this.file.type,
          ...this.metadata,
        }),
      }),
    });
    if (response.status !== 201) throw await refusal(response);
    this._adopt(new URL(response.headers.get("Location"), location.href).toString());
    localStorage.setItem(
      this.key,
      JSON.stringify({
        url: this.url,
        sessionId: this.sessionId,
        user: this.user,
        name: this.file.name,
        size: this.file.size,
        startedAt: new Date().toISOString(),
      }),
    );
    this.onStatus("created", { sessionId: this.sessionId });
    return 0;
  }

  _adopt(url) {
    this.url = url;
    this.sessionId = new URL(url, location.href).pathname.split("/").filter(Boolean).pop();
  }

  async _head() {
    let response;
    try {
      response = await fetch(this.url, { method: "HEAD", headers: this._headers(), cache: "no-store" });
    } catch {
      throw new UploadError("the network is unreachable", { retriable: true });
    }
    if (response.status !== 200) {
      // A HEAD answer has no body: name the usual causes ourselves.
      const message =
        response.status === 404 || response.status === 410
          ? "the server no longer holds this upload (it expired or was cancelled)"
          : `the server answered ${response.status}`;
      throw new UploadError(message, { status: response.status, retriable: RETRIABLE.has(response.status) && response.status !== 409 });
    }
    const offset = Number(response.headers.get("Upload-Offset"));
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.file.size) {
      throw new UploadError("the server reported an impossible offset");
    }
    return offset;
  }

  _patch(offset) {
    return new Promise((resolve, reject) => {
      const end = Math.min(this.file.size, offset + this.chunkSize);
      const xhr = new XMLHttpRequest();
      this.xhr = xhr;
      let stall = null;
      const watch = () => {
        clearTimeout(stall);
        stall = setTimeout(() => xhr.abort(), STALL_MS);
      };
      const fail = (error) => {
        clearTimeout(stall);
        this.xhr = null;
        reject(error);
      };
      xhr.open("PATCH", this.url);
      for (const [name, value] of Object.entries(
        this._headers({
          "Upload-Offset": String(offset),
          "Content-Type": "application/offset+octet-stream",
        }),
      )) {
        xhr.setRequestHeader(name, value);
      }
      xhr.upload.onprogress = (event) => {
        watch();
        this._report(offset + event.loaded);
      };
      xhr.onload = () => {
        clearTimeout(stall);
        this.xhr = null;
        if (xhr.status === 204) {
          resolve(Number(xhr.getResponseHeader("Upload-Offset")));
          return;
        }
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
        reject(
          new UploadError((body && body.error_message) || `HTTP ${xhr.status}`, {
            status: xhr.status,
            code: body && body.error_code,
            retriable: RETRIABLE.has(xhr.status),
          }),
        );
      };
      xhr.onerror = () => fail(new UploadError("the connection was lost", { retriable: true }));
      xhr.onabort = () =>
        fail(
          this.stopped
            ? new UploadError("stopped", { code: "STOPPED" })
            : new UploadError("the connection stalled", { retriable: true }),
        );
      watch();
      xhr.send(this.file.slice(offset, end));
    });
  }

  async _retrying(what, step) {
    for (let failures = 1; ; failures += 1) {
      this._checkStopped();
      try {
        return await step();
      } catch (error) {
        if (!error.retriable || failures > MAX_FAILURES_WITHOUT_PROGRESS) throw error;
        await this._pause(failures, error);
      }
    }
  }

  /** Waits before a retry; coming back online cuts the wait short. */
  async _pause(failures, error) {
    const delay = RETRY_DELAYS_MS[Math.min(failures - 1, RETRY_DELAYS_MS.length - 1)];
    this.samples = [];
    this.onStatus("retrying", { retryIn: delay, reason: error.message, offline: !navigator.onLine });
    await new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        removeEventListener("online", done);
        this._wake = null;
        resolve();
      };
      const timer = setTimeout(done, delay);
      addEventListener("online", done);
      this._wake = done;
    });
    this._checkStopped();
    this.retrying = true; // until the server answers again (see _report)
  }

  _checkStopped() {
    if (this.stopped) throw new UploadError("stopped", { code: "STOPPED" });
  }

  /** Speed over the last few seconds, so a stall shows at once and a burst does not linger. */
  _report(sent) {
    if (this.retrying) {
      this.retrying = false;
      this.onStatus("uploading", {});
    }
    const now = performance.now();
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 4000) this.samples.shift();
    const [t0, s0] = this.samples[0];
    const rate = now - t0 > 250 ? ((sent - s0) * 1000) / (now - t0) : 0;
    const total = this.file.size;
    this.onProgress({
      sent,
      total,
      speed: rate,
      eta: rate > 0 ? (total - sent) / rate : null,
    });
  }
}
