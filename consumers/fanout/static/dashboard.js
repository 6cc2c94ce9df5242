// The upload page: signs in, lists the user's uploads live, sends files through tus,
// and shows the quota moving.
//
// State comes from three places that agree on the session id: the REST list
// (GET /v1/uploads) when the page opens or the feed asks for a resync, the
// live feed for everything that happens after (uploads from any client, the
// CLI included), and this page's own tus transfers, whose byte counts are
// fresher than any event while they run. While the feed is down the page
// polls the list, so it never shows stale state for long.
//
// This module starts the page and watches the feed's state; the quota card is
// quota.js, the rows upload-rows.js, what the server says about them
// upload-events.js, and the transfers upload-sending.js.
"use strict";

import { expiredMessage, showFeedState, showSignIn, showUser } from "./chrome.js";
import { LiveFeed } from "./feed.js";
import { el } from "./format.js";
import { refreshQuota, showQuota } from "./quota.js";
import { api, onTokenChange, takeTokenFromUrl, token } from "./session.js";
import { adoptRemembered, loadSessions, onFeedMessage } from "./upload-events.js";
import { onCancel, updateRow, uploads } from "./upload-rows.js";
import { cancel, wireDropZone } from "./upload-sending.js";

const POLL_MS = 5000;

let user = null;
let feed = null;
let feedState = "stopped";

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
  onCancel((row) => cancel(row, user));
  wireDropZone(user);
  await loadSessions();
  adoptRemembered(user);
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
