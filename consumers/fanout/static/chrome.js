// What both pages share around their content: the top bar (who is signed in,
// whether the live feed is connected, sign out) and the sign-in card shown
// when nobody is signed in or the token was refused.
"use strict";

import { el } from "./format.js";
import { claims, signIn, signOut, token } from "./session.js";

const FEED_LABELS = {
  connecting: "Connecting…",
  live: "Live",
  waiting: "Reconnecting…",
  refused: "Feed refused the token",
  offline: "Offline",
  stopped: "Not connected",
};

/** Shows the live feed's state in the top bar. */
export function showFeedState(state, detail = {}) {
  const badge = document.getElementById("feed-state");
  if (!badge) return;
  let label = FEED_LABELS[state] || state;
  if (state === "waiting" && detail.retryIn !== undefined) {
    label = `Reconnecting in ${Math.max(1, Math.round(detail.retryIn / 1000))} s`;
  }
  if (state !== "refused" && !navigator.onLine) {
    state = "offline";
    label = "Offline";
  }
  badge.dataset.state = state;
  badge.textContent = label;
  badge.title = state === "live" ? "Updates arrive as they happen" : label;
}

/** Fills the top bar's user area: the signed-in user and a sign-out button, or nothing. */
export function showUser(userId) {
  const area = document.getElementById("user");
  area.replaceChildren();
  if (!userId) return;
  const who = claims() || {};
  const roles = Array.isArray(who.roles) && who.roles.includes("admin") ? " (admin)" : "";
  area.append(
    el("span", { className: "avatar", title: `Signed in as ${userId}${roles}` }, userId.slice(0, 1)),
    el("span", { id: "signed-in-as", title: `Signed in as ${userId}${roles}` }, userId + roles),
    el(
      "button",
      {
        className: "secondary",
        id: "sign-out",
        type: "button",
        onclick: () => {
          signOut();
          location.reload();
        },
      },
      "Sign out",
    ),
  );
}

/**
 * Replaces `container`'s content with the sign-in card.
 * @param {string} [problem] why the user sees it again (a refused or expired token)
 * @param {string} [what] what signing in will show
 */
export function showSignIn(container, problem, what = "your uploads") {
  const input = el("textarea", {
    id: "token-input",
    rows: 4,
    placeholder: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…",
    spellcheck: false,
    autocomplete: "off",
    "aria-label": "Access token",
  });
  const form = el(
    "form",
    {
      id: "sign-in-form",
      onsubmit: (event) => {
        event.preventDefault();
        if (!input.value.trim()) {
          input.focus();
          return;
        }
        signIn(input.value);
        location.reload();
      },
    },
    input,
    el("div", {}, el("button", { type: "submit", id: "sign-in" }, "Sign in")),
  );
  container.replaceChildren(
    el(
      "section",
      { className: "card signin", id: "signed-out" },
      el("h1", {}, "Nobody is signed in"),
      el("p", { className: "muted" }, `Sign in with an access token to see ${what}.`),
      problem ? el("p", { className: "notice bad", id: "sign-in-problem" }, problem) : null,
      el(
        "ol",
        {},
        el("li", {}, "Open the dashboard link that ", el("code", {}, "ingest dev"), " prints (it signs you in), or"),
        el("li", {}, "paste a token from ", el("code", {}, "ingest token --user NAME"), " below."),
      ),
      form,
      el("p", { className: "muted small" }, "The token stays in this browser (localStorage) until you sign out."),
    ),
  );
  input.focus();
}

/** The user a token names, when it can be read; the server has the last word. */
export function tokenUser() {
  const who = token() ? claims() : null;
  return who && typeof who.sub === "string" ? who.sub : null;
}

/** A message for a token the server refused, or null when the token has not expired. */
export function expiredMessage() {
  const who = claims();
  if (who && typeof who.exp === "number" && who.exp * 1000 < Date.now()) {
    return `Your token expired on ${new Date(who.exp * 1000).toLocaleString()}. Sign in with a new one.`;
  }
  return null;
}
