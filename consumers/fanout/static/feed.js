// The live feed: one WebSocket to /ws/upload-progress that reconnects on its own.
//
// Every message carries a cursor; after a drop the feed reconnects with
// `?since=<last cursor>` so the service replays what was missed before going
// live again, and the page never has to guess. The delay between attempts
// doubles from half a second up to 30 s (with jitter, so a restarted service
// is not hit by every browser at once) and starts again from the bottom once
// a connection has delivered something. The browser's `online` event and a
// page coming back to the foreground retry at once. A socket silent for longer
// than three heartbeat intervals (as observed; 15 s until one is) is treated as
// dead: proxies and sleeping laptops leave sockets that are open on one side only. A `resync` (the cursor is older than
// what the topics keep) is handed to the page, which reloads its state.
"use strict";

const SILENT_HEARTBEATS = 3;
const MAX_DELAY_MS = 30_000;
const QUIET = new Set(["heartbeat", "pong", "stats"]); // about the connection, not the uploads

export class LiveFeed {
  /**
   * @param {object} options
   * @param {() => string} options.token the bearer token to connect with
   * @param {(message: object) => void} options.onMessage every message but heartbeats
   * @param {(state: string, detail: object) => void} options.onState
   *   "connecting" | "live" | "waiting" (detail.retryIn ms) | "refused" | "stopped"
   * @param {string} [options.path]
   */
  constructor({ token, onMessage, onState, path = "/ws/upload-progress" }) {
    this.token = token;
    this.onMessage = onMessage;
    this.onState = onState || (() => {});
    this.path = path;
    this.cursor = null;
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.watchdog = null;
    this.stopped = true;
    this.failedOpens = 0;
    this.lostCursor = false;
    this.heartbeatMs = 15_000;
    this.lastHeartbeat = null;
    this._retryNow = () => {
      if (!this.stopped && !this.socket) this._connectSoon(0);
    };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    addEventListener("online", this._retryNow);
    document.addEventListener("visibilitychange", this._retryNow);
    this._connect();
  }

  stop() {
    this.stopped = true;
    removeEventListener("online", this._retryNow);
    document.removeEventListener("visibilitychange", this._retryNow);
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    if (this.socket) this.socket.close(1000, "page closed the feed");
    this.socket = null;
    this.onState("stopped", {});
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  _url() {
    const url = new URL(this.path, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", this.token());
    if (this.cursor !== null) url.searchParams.set("since", this.cursor);
    return url.toString();
  }

  _connect() {
    clearTimeout(this.timer);
    if (this.stopped || this.socket) return;
    this.onState("connecting", { attempt: this.attempt });
    let socket;
    try {
      socket = new WebSocket(this._url());
    } catch {
      this._connectSoon();
      return;
    }
    this.socket = socket;
    let delivered = false;
    socket.onopen = () => {
      this.failedOpens = 0;
      this.lastHeartbeat = null;
      this.onState("live", { replaying: this.cursor !== null });
      if (this.lostCursor) {
        // Connected without the cursor we had: what happened in between is unknown.
        this.lostCursor = false;
        this.onMessage({ event_type: "resync", data: { reason: "cursor_dropped" } });
      }
      this._feedWatchdog();
    };
    socket.onmessage = (event) => {
      this._feedWatchdog();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!delivered) {
        delivered = true;
        this.attempt = 0;
      }
      if (message.cursor !== undefined && message.cursor !== null) this.cursor = message.cursor;
      if (message.event_type === "heartbeat") this._heartbeat();
      if (QUIET.has(message.event_type)) return;
      if (message.event_type === "resync") this.cursor = message.cursor ?? null;
      this.onMessage(message);
    };
    socket.onclose = (event) => {
      clearTimeout(this.watchdog);
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      // A cursor the service refuses (400 before the upgrade) looks like any failed
      // connection; after a few in a row, go on without it and reload the state.
      if (event.code === 1006 && !delivered) {
        this.failedOpens += 1;
        if (this.failedOpens >= 4 && this.cursor !== null) {
          this.cursor = null;
          this.lostCursor = true;
        }
      }
      // 4401: the token expired while connected; the page asks for a new one.
      // Anything else (1001 going away, 1006 lost, 4408 too slow, 4429/4503 full)
      // is retried. A token refused before the upgrade also looks like 1006 here:
      // the page checks the token over HTTP when retries pile up.
      if (event.code === 4401) {
        this.stopped = true;
        this.onState("refused", { reason: event.reason || "the feed refused the token" });
        return;
      }
      this._connectSoon();
    };
    socket.onerror = () => {}; // onclose follows and schedules the retry
  }

  _connectSoon(delay) {
    clearTimeout(this.timer);
    if (delay === undefined) {
      const ceiling = Math.min(MAX_DELAY_MS, 500 * 2 ** this.attempt);
      delay = ceiling / 2 + Math.random() * (ceiling / 2);
      this.attempt += 1;
    }
    this.onState("waiting", { retryIn: delay, attempt: this.attempt });
    this.timer = setTimeout(() => this._connect(), delay);
  }

  _heartbeat() {
    const now = Date.now();
    if (this.lastHeartbeat !== null) {
      // Longest interval seen, within reason: a laptop asleep says nothing about the service.
      this.heartbeatMs = Math.min(300_000, Math.max(this.heartbeatMs, now - this.lastHeartbeat));
    }
    this.lastHeartbeat = now;
  }

  _feedWatchdog() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      // Give up on this socket now: its close handshake may never come back.
      const silent = this.socket;
      if (!silent) return;
      this.socket = null;
      silent.close(4000, "no heartbeat");
      this._connectSoon();
    }, SILENT_HEARTBEATS * this.heartbeatMs);
  }
}
