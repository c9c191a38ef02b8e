// The buyer page: log in, count down on the server's clock, keep a ranked
// shortlist, grab at launch, and poll the availability snapshot.
// Every text from the server or the buyer is shown with textContent; the
// only HTML inserted is the "my result" fragment the server renders escaped.
"use strict";

(() => {
  const body = document.body;
  const saleId = body.dataset.sale;
  const api = `/api/sales/${saleId}`;
  const maxShortlist = Number(body.dataset.maxShortlist);
  const officeAddress = body.dataset.office;
  const shortlistKey = `parking-shortlist-${saleId}`;

  const POLL_MS = 2000; // availability, when all is well
  const POLL_MAX_MS = 30000; // availability, after repeated errors
  const POLL_HIDDEN_MS = 10000; // availability, while the tab is hidden
  // Sale record and clock offset. Pauses and closing arrive sooner, with
  // the availability snapshot, which carries the sale's state in Redis.
  const SALE_INFO_MS = 300000;
  const MINE_MS = 20000; // "my result"
  const GRAB_RETRIES = 3; // resends of one grab after a network error

  const byId = (id) => document.getElementById(id);
  const spaceButtons = Array.from(document.querySelectorAll("button.space"));
  const byLabel = new Map(spaceButtons.map((button) => [button.dataset.label, button]));

  const state = {
    phase: body.dataset.phase,
    opensAtMs: Number(body.dataset.opensAtMs),
    closesAtMs: Number(body.dataset.closesAtMs),
    offsetMs: 0,
    rttMs: null,
    loggedIn: body.dataset.loggedIn === "true",
    shortlist: [],
    taken: new Set(),
    grabInFlight: false,
    // Kept after a network error or a 5xx/429 response, so that a retry
    // repeats the same request and the server applies it only once.
    pendingKey: null,
    pendingBody: null,
  };

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const serverNow = () => Date.now() + state.offsetMs;
  const yuan = (fen) =>
    `¥${(fen / 100).toLocaleString("en-US", { maximumFractionDigits: 2 })}`;
  const localTime = (value) =>
    new Date(value).toLocaleString(undefined, {
      dateStyle: "medium",
      timeStyle: "medium",
    });

  function newIdempotencyKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function localiseTimes(root) {
    for (const element of root.querySelectorAll("time[data-local]")) {
      element.textContent = localTime(element.getAttribute("datetime"));
    }
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return {};
    }
  }

  // ---- Server clock and sale state -------------------------------------

  function applySaleInfo(info) {
    state.phase = info.state;
    state.opensAtMs = Date.parse(info.opens_at);
    state.closesAtMs = Date.parse(info.closes_at);
  }

  // The offset comes from the round trip with the least delay: its
  // server time is the most precise, since the reply spent at most half of
  // that round trip on the way back.
  // A later, single sample replaces the offset only if its round trip was
  // no slower than the best one so far.
  async function measureClock(samples, keepBetter = false) {
    let best = null;
    for (let i = 0; i < samples; i += 1) {
      const sent = performance.now();
      let response;
      try {
        response = await fetch(api, { cache: "no-store" });
      } catch {
        continue;
      }
      const received = performance.now();
      const wallClock = Date.now();
      if (!response.ok) continue;
      const info = await readJson(response);
      if (typeof info.server_time_ms !== "number") continue;
      applySaleInfo(info);
      const rtt = received - sent;
      if (best === null || rtt < best.rtt) {
        best = { rtt, offset: info.server_time_ms + rtt / 2 - wallClock };
      }
    }
    if (best === null) {
      byId("clock").textContent =
        "The server's clock could not be read; the countdown uses this device's clock.";
      return;
    }
    if (keepBetter && state.rttMs !== null && best.rtt > state.rttMs) return;
    state.offsetMs = best.offset;
    state.rttMs = best.rtt;
    const sign = best.offset >= 0 ? "behind" : "ahead of";
    byId("clock").textContent =
      `Countdown on the server's clock: this device is ${Math.abs(Math.round(best.offset))} ms ` +
      `${sign} it (measured within ±${Math.ceil(best.rtt / 2)} ms).`;
  }

  function formatRemaining(ms) {
    const total = Math.ceil(ms / 1000);
    const days = Math.floor(total / 86400);
    const hours = Math.floor((total % 86400) / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const seconds = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    const clock = `${pad(hours)}:${pad(minutes)}:${pad(seconds)}`;
    return days > 0 ? `${days} d ${clock}` : clock;
  }

  function saleIsOpen() {
    const now = serverNow();
    const ready = state.phase === "open" || state.phase === "scheduled";
    return ready && now >= state.opensAtMs && now < state.closesAtMs;
  }

  function tick() {
    const now = serverNow();
    const countdown = byId("countdown");
    const message = byId("phase-message");
    if (state.phase === "closed" || now >= state.closesAtMs) {
      countdown.textContent = "This sale is over.";
      if (!message.querySelector("a")) {
        message.textContent = "No more spaces can be grabbed. ";
        const link = document.createElement("a");
        link.href = `/sales/${saleId}/results`;
        link.textContent = "See the results";
        message.append(link, ".");
      }
    } else if (state.phase === "paused") {
      countdown.textContent = "The sale is paused by the sales office.";
      message.textContent = "Stay on this page: grabbing resumes when the office resumes the sale.";
    } else if (state.phase === "preparing") {
      countdown.textContent = "The sale is being prepared.";
      message.textContent = "Come back before the launch time.";
    } else if (now < state.opensAtMs) {
      countdown.textContent = `Opens in ${formatRemaining(state.opensAtMs - now)}`;
      message.textContent = "The Grab button turns on by itself at the launch.";
    } else {
      countdown.textContent = "The sale is open.";
      message.textContent = "";
    }
    if (state.loggedIn) {
      const welcome = byId("welcome");
      const text = welcomeText();
      if (welcome.textContent !== text) welcome.textContent = text;
    }
    updateGrabButton();
  }

  // ---- Shortlist -------------------------------------------------------

  function saveShortlist() {
    try {
      sessionStorage.setItem(shortlistKey, JSON.stringify(state.shortlist));
    } catch {
      // Storage can be full or disabled; the shortlist then lasts until a reload.
    }
  }

  function loadShortlist() {
    let saved = [];
    try {
      saved = JSON.parse(sessionStorage.getItem(shortlistKey) || "[]");
    } catch {
      saved = [];
    }
    if (!Array.isArray(saved)) return;
    state.shortlist = saved.filter((label) => byLabel.has(label)).slice(0, maxShortlist);
  }

  function describeSpace(label) {
    const button = byLabel.get(label);
    const price = yuan(Number(button.dataset.priceFen));
    return `${label}, zone ${button.dataset.zone}, level ${button.dataset.level}, ${price}`;
  }

  function shortlistButton(text, title, action) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.setAttribute("aria-label", title);
    button.addEventListener("click", action);
    return button;
  }

  function moveInShortlist(index, step) {
    const target = index + step;
    if (target < 0 || target >= state.shortlist.length) return;
    const list = state.shortlist;
    [list[index], list[target]] = [list[target], list[index]];
    renderShortlist(target);
  }

  function renderShortlist(focusIndex) {
    const list = byId("shortlist");
    list.replaceChildren();
    state.shortlist.forEach((label, index) => {
      const item = document.createElement("li");
      item.dataset.label = label;
      const taken = state.taken.has(label);
      item.classList.toggle("taken", taken);
      const what = document.createElement("span");
      what.className = "what";
      // The items are flex boxes, which drop the list's own numbers.
      what.textContent =
        `${index + 1}. ${describeSpace(label)}` + (taken ? " (taken)" : "");
      item.append(
        what,
        shortlistButton("↑", `Move ${label} up`, () => moveInShortlist(index, -1)),
        shortlistButton("↓", `Move ${label} down`, () => moveInShortlist(index, 1)),
        shortlistButton("Remove", `Remove ${label}`, () => toggleShortlist(label)),
      );
      list.append(item);
    });
    byId("shortlist-empty").hidden = state.shortlist.length > 0;
    for (const button of spaceButtons) {
      const chosen = state.shortlist.includes(button.dataset.label);
      button.setAttribute("aria-pressed", String(chosen));
    }
    if (focusIndex !== undefined) {
      const item = list.children[focusIndex];
      if (item) item.querySelector("button").focus();
    }
    saveShortlist();
    updateGrabButton();
  }

  function toggleShortlist(label) {
    const index = state.shortlist.indexOf(label);
    if (index >= 0) {
      state.shortlist.splice(index, 1);
    } else if (state.shortlist.length >= maxShortlist) {
      showHint(`Your shortlist is full at ${maxShortlist} spaces: remove one first.`);
      return;
    } else {
      state.shortlist.push(label);
    }
    showHint("");
    renderShortlist();
  }

  function showHint(text) {
    byId("grab-hint").textContent = text;
  }

  // ---- Availability ----------------------------------------------------

  const poll = { etag: null, failures: 0, bitmap: null };

  function isTaken(bytes, position) {
    const byte = bytes[position >> 3] || 0;
    return ((byte >> (7 - (position & 7))) & 1) === 1;
  }

  function markTaken(button, taken) {
    const label = button.dataset.label;
    if (taken) state.taken.add(label);
    else state.taken.delete(label);
    if (!taken) button.classList.remove("mine");
    if (button.classList.contains("mine")) return;
    button.classList.toggle("taken", taken);
    button.disabled = taken;
    button.querySelector(".state").textContent = taken ? "taken" : "";
  }

  function applySnapshotState(redisState) {
    if (redisState === "paused" || redisState === "closed") {
      state.phase = redisState;
    } else if (redisState === "armed" && ["paused", "preparing"].includes(state.phase)) {
      // The countdown then decides between "scheduled" and open by time.
      state.phase = "scheduled";
    }
  }

  function applyAvailability(snapshot) {
    applySnapshotState(snapshot.state);
    const raw = atob(snapshot.bitmap);
    const bytes = Uint8Array.from(raw, (char) => char.charCodeAt(0));
    let changed = false;
    for (const button of spaceButtons) {
      const taken = isTaken(bytes, Number(button.dataset.position));
      if (taken !== state.taken.has(button.dataset.label)) {
        markTaken(button, taken);
        changed = true;
      }
    }
    byId("free-count").textContent = `${snapshot.free} of ${snapshot.spaces} spaces free.`;
    if (changed) renderShortlist();
  }

  // Waits after errors grow exponentially up to POLL_MAX_MS, and never less
  // than the server's Retry-After; the jitter keeps many pages from
  // polling in step.
  function nextPollDelay(response) {
    if (poll.failures === 0) {
      const base = document.hidden ? POLL_HIDDEN_MS : POLL_MS;
      return base + Math.random() * 1000;
    }
    const backoff = Math.min(POLL_MAX_MS, POLL_MS * 2 ** poll.failures);
    const retryAfter = Number(response?.headers.get("Retry-After")) || 0;
    return Math.max(backoff, retryAfter * 1000) * (0.75 + Math.random() / 2);
  }

  async function pollAvailability() {
    let response = null;
    try {
      const headers = poll.etag ? { "If-None-Match": poll.etag } : {};
      response = await fetch(`${api}/availability`, { headers, cache: "no-store" });
      if (response.status === 304) {
        poll.failures = 0;
      } else if (response.ok) {
        applyAvailability(await response.json());
        poll.etag = response.headers.get("ETag");
        poll.failures = 0;
      } else {
        poll.failures += 1;
      }
    } catch {
      poll.failures += 1;
    }
    setTimeout(pollAvailability, nextPollDelay(response));
  }

  // ---- Grab ------------------------------------------------------------

  function updateGrabButton() {
    const button = byId("grab");
    const ready = state.loggedIn && state.shortlist.length > 0 && saleIsOpen();
    button.disabled = !ready || state.grabInFlight;
    const count = state.shortlist.length;
    button.textContent = state.grabInFlight
      ? "Sending…"
      : count > 1
        ? `Grab (first free of ${count})`
        : "Grab";
  }

  function showResult(isError, heading, lines) {
    const box = byId("grab-result");
    box.classList.toggle("error", isError);
    box.replaceChildren();
    const title = document.createElement("h3");
    title.textContent = heading;
    box.append(title);
    for (const line of lines) {
      const paragraph = document.createElement("p");
      paragraph.textContent = line;
      box.append(paragraph);
    }
    box.focus();
  }

  function freeSpacesLine() {
    const free = spaceButtons
      .filter((button) => !state.taken.has(button.dataset.label))
      .map((button) => button.dataset.label);
    if (free.length === 0) return "No space is free any more.";
    const shown = free.slice(0, 10).join(", ");
    const more = free.length > 10 ? ` and ${free.length - 10} more` : "";
    return `Still free: ${shown}${more}. Pick again on the plan below.`;
  }

  function markMine(label) {
    const button = byLabel.get(label);
    if (!button) return;
    markTaken(button, true);
    button.classList.add("mine");
    button.querySelector(".state").textContent = "yours";
  }

  // Spaces of the buyer's live holds, as listed in the "my result" part.
  function markMineFromResult() {
    const live = ["held", "paid", "signed"];
    for (const item of byId("mine").querySelectorAll("li[data-space]")) {
      if (live.includes(item.dataset.status)) markMine(item.dataset.space);
    }
  }

  function showWon(hold) {
    const lines = [];
    if (hold.amount_fen !== undefined) lines.push(`Amount: ${yuan(hold.amount_fen)}.`);
    lines.push(`Pay by ${localTime(hold.deadline)} at: ${officeAddress}.`);
    if (hold.status === "pending") {
      lines.push("The space is yours and is being recorded; it appears under My result shortly.");
    }
    showResult(false, `You won ${hold.space}!`, lines);
    markMine(hold.space);
    state.shortlist = [];
    renderShortlist();
    refreshMine();
  }

  function showLoss(status, answer, labels) {
    const message = answer.message || `The grab failed with status ${status}.`;
    if (answer.error === "space_taken") {
      for (const label of answer.spaces || labels) {
        const button = byLabel.get(label);
        if (button) markTaken(button, true);
      }
      state.shortlist = state.shortlist.filter((label) => !state.taken.has(label));
      renderShortlist();
      showResult(true, "Taken", [message, freeSpacesLine()]);
      return;
    }
    if (answer.error === "unauthorized") showLoggedOut();
    if (answer.error === "sale_not_open") measureClock(3);
    if (answer.error === "sale_closed") state.phase = "closed";
    if (answer.error === "sale_paused") state.phase = "paused";
    showResult(true, "No space this time", [message]);
  }

  async function sendGrab(key, requestBody) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await fetch(`${api}/holds`, {
          method: "POST",
          headers: { "Content-Type": "application/json", "Idempotency-Key": key },
          body: requestBody,
          credentials: "same-origin",
        });
      } catch {
        if (attempt >= GRAB_RETRIES) return null;
        showHint("Network problem: resending the same request…");
        await sleep(400 * 2 ** attempt);
      }
    }
  }

  async function grab() {
    // Set before the first await, so a second click finds it and does nothing.
    if (state.grabInFlight) return;
    state.grabInFlight = true;
    updateGrabButton();

    const labels = state.shortlist.slice();
    const requestBody = JSON.stringify({ spaces: labels });
    if (state.pendingKey === null || state.pendingBody !== requestBody) {
      state.pendingKey = newIdempotencyKey();
      state.pendingBody = requestBody;
    }
    const response = await sendGrab(state.pendingKey, requestBody);
    state.grabInFlight = false;
    showHint("");

    if (response === null) {
      showResult(true, "Not sent", [
        "The request did not reach the server. Check the connection and press " +
          "Grab again: it resends the same request, which can never win twice.",
      ]);
    } else {
      const answer = await readJson(response);
      if (response.status < 500 && response.status !== 429) {
        state.pendingKey = null;
        state.pendingBody = null;
      }
      if (response.status === 201 || response.status === 202) showWon(answer);
      else showLoss(response.status, answer, labels);
      pollSoon();
    }
    updateGrabButton();
  }

  function pollSoon() {
    poll.failures = 0;
    setTimeout(pollAvailabilityOnce, 200);
  }

  async function pollAvailabilityOnce() {
    try {
      const response = await fetch(`${api}/availability`, { cache: "no-store" });
      if (response.ok) {
        applyAvailability(await response.json());
        poll.etag = response.headers.get("ETag");
      }
    } catch {
      // The regular poll keeps going and retries.
    }
  }

  // ---- Login and my result ---------------------------------------------

  function showLoggedOut() {
    state.loggedIn = false;
    byId("login").hidden = false;
    byId("buyer").hidden = true;
    byId("login-message").textContent = "Your session has ended; log in again.";
  }

  function welcomeText() {
    const now = serverNow();
    if (state.phase === "closed" || now >= state.closesAtMs) {
      return "You are logged in, but this sale is over: no more spaces can be grabbed.";
    }
    if (now < state.opensAtMs) {
      return (
        `You are logged in. The sale is not open yet: it opens at ` +
        `${localTime(state.opensAtMs)}. Shortlist your spaces now and keep this page open.`
      );
    }
    return "You are logged in and the sale is open.";
  }

  async function logIn(event) {
    event.preventDefault();
    const form = event.target;
    const message = byId("login-message");
    const number = form.registration_no.value.trim();
    const code = form.access_code.value.trim();

    message.classList.add("error");
    if (!number || !code) {
      message.textContent = "Enter both your registration number and your access code.";
      return;
    }
    message.textContent = "Logging in…";
    let response;
    try {
      response = await fetch(`${api}/session`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ registration_no: number, access_code: code }),
        credentials: "same-origin",
      });
    } catch {
      message.textContent = "The server could not be reached; check the connection and try again.";
      return;
    }

    const answer = await readJson(response);
    if (response.status !== 201) {
      message.textContent = answer.message || `Logging in failed (status ${response.status}).`;
      return;
    }

    message.textContent = "";
    message.classList.remove("error");
    form.access_code.value = "";
    state.loggedIn = true;
    byId("login").hidden = true;
    byId("buyer").hidden = false;
    byId("who").textContent = `Logged in as ${answer.name} (${answer.registration_no}).`;
    tick();
    byId("buyer-title").focus();
    updateGrabButton();
    refreshMine();
  }

  async function refreshMine() {
    if (!state.loggedIn) return;
    try {
      const response = await fetch(`/sales/${saleId}/mine`, { cache: "no-store" });
      if (response.status === 401) {
        showLoggedOut();
        return;
      }
      const mine = byId("mine");
      mine.innerHTML = await response.text();
      localiseTimes(mine);
      markMineFromResult();
    } catch {
      // Keep what is shown; the next refresh tries again.
    }
  }

  async function refreshSaleInfo() {
    await measureClock(1, true);
    setTimeout(refreshSaleInfo, SALE_INFO_MS);
  }

  // ---- Start -----------------------------------------------------------

  function start() {
    localiseTimes(document);
    byId("buyer-title").tabIndex = -1;
    byId("login-form").addEventListener("submit", logIn);
    byId("grab").addEventListener("click", grab);
    for (const button of spaceButtons) {
      button.addEventListener("click", () => toggleShortlist(button.dataset.label));
    }
    loadShortlist();
    markMineFromResult();
    renderShortlist();
    tick();
    setInterval(tick, 250);
    measureClock(5).then(() => setTimeout(refreshSaleInfo, SALE_INFO_MS));
    pollAvailability();
    setInterval(refreshMine, MINE_MS);
  }

  start();
})();
