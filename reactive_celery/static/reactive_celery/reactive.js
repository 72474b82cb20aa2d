/**
 * reactive_celery's client for the batched protocol (`ws/reactive/`, see
 * docs/protocol.md): one socket, subscriptions by URL, one `diff` frame per
 * evaluation, resume after reconnect. Dependency-free ES module.
 *
 *   import { ReactiveClient } from "/static/reactive_celery/reactive.js";
 *   const client = new ReactiveClient("/ws/reactive/");
 *   const list = await client.subscribe("/api/tasks/?done=false", { onChange(items, diff) {} });
 *
 * The pure helpers (`applyDiff`, `versionAction`, `needsResync`, `backoffDelay`,
 * `resolveSocketUrl`) carry the protocol's rules and are tested without a socket.
 */

/** Connection states, in the order a client usually goes through them. */
export const STATES = Object.freeze(["connecting", "open", "reconnecting", "closed"]);

/** Request error codes after which a resubscribe is retried with backoff. */
const TRANSIENT_CODES = new Set(["rate_limited", "busy", "unavailable"]);
/** The ones a first subscribe retries too: pacing, not a failure the caller must see. */
const PACING_CODES = new Set(["rate_limited", "busy"]);
const META_KEYS = ["count", "next", "previous"];
/** Diff frames kept while a resubscribe is in flight; older ones are dropped. */
const MAX_BUFFERED = 1000;

/** An `error` frame (or a local failure) as an Error with the protocol's `code`. */
export class ReactiveError extends Error {
  constructor(code, message, { id, observer } = {}) {
    super(message || code);
    this.name = "ReactiveError";
    this.code = code;
    if (id != null) this.id = id;
    if (observer != null) this.observer = observer;
  }
}

/**
 * Apply one batched `diff` frame to `items`; returns a new array, `items` is untouched.
 *
 * Removed keys go first; then added, changed and moved entries together in
 * ascending `order`, each deleting the item with its key if present and
 * inserting at `order` (moved entries re-insert the item already held).
 * Throws a ReactiveError with code "bad_diff" when the frame cannot apply.
 */
export function applyDiff(items, diff, primaryKey) {
  const removed = new Set(diff.removed || []);
  let result = items.filter((item) => !removed.has(item[primaryKey]));
  const held = new Map(result.map((item) => [item[primaryKey], item]));
  const upserts = [];
  for (const entry of diff.added || []) upserts.push([entry.order, entry.item]);
  for (const entry of diff.changed || []) upserts.push([entry.order, entry.item]);
  for (const entry of diff.moved || []) {
    if (!held.has(entry.pk)) {
      throw new ReactiveError("bad_diff", `Moved item ${JSON.stringify(entry.pk)} is not held.`);
    }
    upserts.push([entry.order, held.get(entry.pk)]);
  }
  for (const [order] of upserts) {
    if (!Number.isInteger(order) || order < 0) {
      throw new ReactiveError("bad_diff", `Bad order ${JSON.stringify(order)} in a diff.`);
    }
  }
  upserts.sort((a, b) => a[0] - b[0]); // stable: ties keep added, changed, moved
  for (const [order, item] of upserts) {
    const key = item[primaryKey];
    const at = result.findIndex((current) => current[primaryKey] === key);
    if (at !== -1) result.splice(at, 1);
    result.splice(order, 0, item);
  }
  return result;
}

/**
 * What to do with a diff of `diffVersion` on a list at `currentVersion`:
 * "apply" (exactly one more), "ignore" (old or duplicate) or "resync" (frames missed).
 */
export function versionAction(currentVersion, diffVersion) {
  if (!Number.isInteger(diffVersion)) return "resync";
  if (diffVersion <= currentVersion) return "ignore";
  return diffVersion === currentVersion + 1 ? "apply" : "resync";
}

/** True when a diff of `diffVersion` shows frames were missed since `currentVersion`. */
export function needsResync(currentVersion, diffVersion) {
  return versionAction(currentVersion, diffVersion) === "resync";
}

/**
 * Milliseconds to wait before reconnect attempt `attempt` (0 for the first):
 * exponential from `base`, capped at `cap`, with "equal jitter" (half fixed, half random).
 */
export function backoffDelay(attempt, { base = 500, cap = 10000, random = Math.random } = {}) {
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, attempt));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * The socket URL for `url`: ws:// and wss:// pass through, http(s):// and
 * relative URLs are resolved against `location` with the matching ws scheme.
 */
export function resolveSocketUrl(url, location = globalThis.location) {
  if (/^wss?:\/\//i.test(url)) return url;
  const absolute = /^https?:\/\//i.test(url);
  if (!absolute && !location) {
    throw new TypeError(`Cannot resolve ${url} without a location; pass a ws:// or wss:// URL.`);
  }
  const resolved = new URL(url, absolute ? undefined : location.href);
  resolved.protocol = resolved.protocol === "https:" ? "wss:" : "ws:";
  return resolved.href;
}

function report(error) {
  // A throwing onChange/onError must not break message handling for everyone else.
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error(error);
}

function pickMeta(message) {
  const meta = {};
  for (const key of META_KEYS) if (key in message) meta[key] = message[key];
  return meta;
}

/** One subscription's live list; made by `ReactiveClient.subscribe`. */
export class Subscription {
  constructor(client, url, { onChange, onError } = {}) {
    this.url = url;
    this.items = [];
    this.version = null;
    this.observer = null;
    this.primaryKey = null;
    this.meta = {};
    this.closed = false;
    this.error = null;
    this.onChange = onChange || null;
    this.onError = onError || null;
    this._client = client;
    this._ready = null; // {resolve, reject} until the first `subscribed`
    this._requestId = null; // id of the subscribe request in flight
    this._resyncing = false; // true while a (re)subscribe is unanswered: diffs are buffered
    this._buffer = [];
    this._attempt = 0; // retries after transient errors
    this._retryTimer = null;
    this._closing = null;
  }

  /** Stop the subscription; resolves once the server confirms (or at once when offline). */
  close() {
    if (this._closing) return this._closing;
    const client = this._client;
    const wasLive = !this.closed;
    this.closed = true;
    client._forget(this);
    const observer = this.observer;
    // With a subscribe in flight its answer sends the unsubscribe (see _onSubscribed).
    const unsubscribe =
      wasLive && observer && this._requestId === null && client._open && !client._held(observer);
    this._closing = unsubscribe ? client._unsubscribe(observer) : Promise.resolve();
    return this._closing;
  }

  _emit(diff) {
    if (!this.onChange) return;
    try {
      this.onChange(this.items, diff);
    } catch (error) {
      report(error);
    }
  }
}

/** A socket to `ws/reactive/` holding any number of subscriptions; reconnects by itself. */
export class ReactiveClient {
  /**
   * Open the socket at once. Options: WebSocket, setTimeout, clearTimeout,
   * random (for tests), location, minDelay (500 ms), maxDelay (10000 ms),
   * pingInterval (25000 ms; 0 turns the keepalive off), handshakeAttempts (3),
   * ticket: a function returning a Promise of a ticket (POST <prefix>/ticket), called
   * before every (re)connect and sent as `?ticket=`: for clients without the session cookie.
   */
  constructor(url, options = {}) {
    this.url = resolveSocketUrl(url, "location" in options ? options.location : globalThis.location);
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("No WebSocket implementation here; pass options.WebSocket.");
    }
    this._setTimeout = options.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout || ((timer) => globalThis.clearTimeout(timer));
    this._backoff = {
      base: options.minDelay ?? 500,
      cap: options.maxDelay ?? 10000,
      random: options.random || Math.random,
    };
    this._pingInterval = options.pingInterval ?? 25000;
    this._handshakeAttempts = options.handshakeAttempts ?? 3;
    this._ticket = options.ticket || null;
    if (this._ticket !== null && typeof this._ticket !== "function") {
      throw new TypeError("options.ticket must be a function returning a Promise of a ticket.");
    }
    this._fetchingTicket = false; // a connect waits for its ticket: no second one meanwhile
    /** Called with the new state: "connecting" | "open" | "reconnecting" | "closed". */
    this.onStateChange = null;
    /** Called with errors that belong to no request or subscription. */
    this.onError = null;
    this._listeners = new Set();
    this._state = "connecting";
    this._nextId = 1;
    this._pending = new Map(); // request id -> {kind: "subscribe", sub} | {kind: "unsubscribe", resolve}
    this._subs = new Set();
    this._byObserver = new Map(); // observer -> Set<Subscription>; identical URLs share one
    this._syncWaiters = new Set(); // {observer, version, resolve, reject} of sync() calls
    this._ws = null;
    this._open = false;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._pingId = null; // id of the last ping: its answer is swallowed
    this._heard = false; // a frame arrived since the last ping
    this._everOpened = false;
    this._refusals = 0; // sockets in a row that closed before they opened, before the first open
    this._connect();
  }

  /** The connection state: "connecting" | "open" | "reconnecting" | "closed". */
  get state() {
    return this._state;
  }

  /** The live subscriptions, in the order they were made. */
  get subscriptions() {
    return [...this._subs];
  }

  /** Call `listener(state)` on every state change; returns a function that removes it. */
  addStateListener(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /**
   * Subscribe to the `@reactive` view at `url` (a path with query on this site).
   * Resolves with the Subscription once its items arrive; rejects with a
   * ReactiveError whose `code` is the server's (or "closed").
   */
  subscribe(url, handlers = {}) {
    if (this._state === "closed") {
      return Promise.reject(new ReactiveError("closed", "The client is closed."));
    }
    const sub = new Subscription(this, url, handlers);
    const ready = new Promise((resolve, reject) => {
      sub._ready = { resolve, reject };
    });
    this._subs.add(sub);
    this._sendSubscribe(sub);
    return ready;
  }

  /**
   * Read your writes: resolves once every subscription reflects each write the
   * server committed before this call (call it after your own POST or PATCH
   * answered). Rejects with a ReactiveError if the client closes first.
   */
  sync() {
    if (this._state === "closed") {
      return Promise.reject(new ReactiveError("closed", "The client is closed."));
    }
    const waits = [...this._byObserver.keys()].map(
      (observer) =>
        new Promise((resolve, reject) => {
          const waiter = { observer, version: null, resolve, reject };
          this._syncWaiters.add(waiter);
          this._sendSync(waiter);
        }),
    );
    return Promise.all(waits).then(() => undefined);
  }

  /** Reconnect now instead of waiting out the backoff; does nothing unless reconnecting. */
  reconnect() {
    if (this._state !== "reconnecting" || this._ws || this._fetchingTicket) return;
    this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._connect();
  }

  /** Close the socket for good; subscriptions end and pending subscribes reject. */
  close() {
    if (this._state === "closed") return;
    this._setState("closed");
    this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._stopPing();
    for (const waiter of this._syncWaiters) {
      waiter.reject(new ReactiveError("closed", "The client was closed."));
    }
    this._syncWaiters.clear();
    for (const sub of this._subs) {
      sub.closed = true;
      sub._closing = Promise.resolve();
      this._clearTimeout(sub._retryTimer);
      if (sub._ready) sub._ready.reject(new ReactiveError("closed", "The client was closed."));
      sub._ready = null;
    }
    this._subs.clear();
    this._byObserver.clear();
    this._settlePending();
    const ws = this._ws;
    this._ws = null;
    this._open = false;
    if (ws) ws.close(1000);
  }

  // Socket lifecycle.

  _connect() {
    if (!this._ticket) {
      this._openSocket(this.url);
      return;
    }
    // A fresh ticket for every socket: one lives TICKET_TTL seconds, a reconnect may come later.
    this._fetchingTicket = true;
    let pending;
    try {
      pending = Promise.resolve(this._ticket());
    } catch (thrown) {
      pending = Promise.reject(thrown);
    }
    pending
      .then((ticket) => {
        this._fetchingTicket = false;
        if (this._state === "closed") return;
        if (typeof ticket !== "string" || !ticket) {
          throw new TypeError(`options.ticket resolved with ${JSON.stringify(ticket)}, not a ticket.`);
        }
        const separator = this.url.includes("?") ? "&" : "?";
        this._openSocket(`${this.url}${separator}ticket=${encodeURIComponent(ticket)}`);
      })
      .catch((error) => {
        this._fetchingTicket = false;
        if (this._state === "closed") return;
        this._reportError(
          new ReactiveError("ticket_failed", `Could not get a ticket for the socket: ${error?.message || error}`),
        );
        this._handleClose(); // as a socket that never opened: backoff, then a new ticket
      });
  }

  _openSocket(url) {
    const ws = new this._WebSocket(url);
    this._ws = ws;
    ws.onopen = () => this._ws === ws && this._handleOpen();
    ws.onmessage = (event) => this._ws === ws && this._handleMessage(event.data);
    ws.onclose = () => this._ws === ws && this._handleClose();
    ws.onerror = () => {}; // a close event follows
  }

  _handleOpen() {
    this._open = true;
    this._everOpened = true;
    this._refusals = 0;
    this._heard = true;
    this._setState("open");
    this._startPing();
    // Resume: each live subscription asks again, with its observer and version when it has them.
    for (const sub of this._subs) this._sendSubscribe(sub);
    // A sync whose answer the old socket took with it asks again.
    for (const waiter of this._syncWaiters) if (waiter.version === null) this._sendSync(waiter);
  }

  _handleClose() {
    const opened = this._open;
    this._ws = null;
    this._open = false;
    this._stopPing();
    this._settlePending();
    for (const sub of this._subs) {
      sub._requestId = null;
      sub._resyncing = false;
      sub._buffer = [];
      this._clearTimeout(sub._retryTimer);
      sub._retryTimer = null;
    }
    if (this._state === "closed") return;
    this._setState("reconnecting");
    if (!opened && !this._everOpened) this._refused();
    const delay = backoffDelay(this._attempt++, this._backoff);
    this._reconnectTimer = this._setTimeout(() => {
      this._reconnectTimer = null;
      if (this._state !== "closed") this._connect();
    }, delay);
  }

  /**
   * A socket closed before it ever opened. Browsers hide why (a 403 from the origin check,
   * a 404, no server: all close with 1006), so after `handshakeAttempts` in a row the
   * pending subscribes reject with "handshake_refused" and onError hears it once; the
   * client keeps reconnecting with backoff, because a server that was starting still may.
   */
  _refused() {
    this._refusals += 1;
    if (this._refusals < this._handshakeAttempts) return;
    const error = new ReactiveError(
      "handshake_refused",
      `The WebSocket ${this.url} closed before it opened, ${this._refusals} times in a row: ` +
        "the server refused the handshake (an Origin header that does not match ALLOWED_HOSTS " +
        "gets a bare HTTP 403; a wrong URL a 404) or cannot be reached.",
    );
    let rejected = false;
    for (const sub of [...this._subs]) {
      if (!sub._ready) continue;
      this._rejectFirst(sub, error);
      rejected = true;
    }
    if (this._refusals === this._handshakeAttempts || rejected) this._reportError(error);
  }

  _reportError(error) {
    if (!this.onError) return;
    try {
      this.onError(error);
    } catch (thrown) {
      report(thrown);
    }
  }

  /** Give up on a socket that stopped answering, without waiting for its close event. */
  _dropSocket() {
    const ws = this._ws;
    this._handleClose();
    try {
      ws.close();
    } catch {
      // already closing
    }
  }

  _settlePending() {
    // Closing the socket ends its subscriptions on the server: unsubscribes are done.
    for (const entry of this._pending.values()) if (entry.kind === "unsubscribe") entry.resolve();
    this._pending.clear();
  }

  _setState(state) {
    if (state === this._state) return;
    this._state = state;
    for (const listener of [this.onStateChange, ...this._listeners]) {
      if (!listener) continue;
      try {
        listener(state);
      } catch (error) {
        report(error);
      }
    }
  }

  _startPing() {
    if (!(this._pingInterval > 0)) return;
    this._pingTimer = this._setTimeout(() => {
      this._pingTimer = null;
      if (!this._open) return;
      if (!this._heard) return this._dropSocket(); // not a frame since the last ping
      this._heard = false;
      this._pingId = this._nextId++;
      this._send({ type: "ping", id: this._pingId });
      this._startPing();
    }, this._pingInterval);
  }

  _stopPing() {
    this._clearTimeout(this._pingTimer);
    this._pingTimer = null;
    this._pingId = null;
  }

  // Requests.

  _send(frame) {
    this._ws.send(JSON.stringify(frame));
  }

  _request(type, fields, entry) {
    const id = this._nextId++;
    this._pending.set(id, entry);
    this._send({ type, id, ...fields });
    return id;
  }

  /** Send `sub`'s subscribe (a resume when it holds a version); `fresh` asks for full items. */
  _sendSubscribe(sub, { fresh = false } = {}) {
    if (!this._open || sub.closed) return;
    this._clearTimeout(sub._retryTimer);
    sub._retryTimer = null;
    if (sub._requestId !== null) this._pending.delete(sub._requestId); // its answer is ignored
    const fields = { url: sub.url };
    if (!fresh && sub.observer !== null && sub.version !== null) {
      fields.observer = sub.observer;
      fields.version = sub.version;
    }
    sub._resyncing = true;
    sub._requestId = this._request("subscribe", fields, { kind: "subscribe", sub });
  }

  _sendSync(waiter) {
    if (this._open) this._request("sync", { observer: waiter.observer }, { kind: "sync", waiter });
  }

  _unsubscribe(observer) {
    return new Promise((resolve) => {
      // Never rejects: the subscription is gone locally and ends with the socket anyway.
      this._request("unsubscribe", { observer }, { kind: "unsubscribe", resolve });
    });
  }

  // Incoming frames.

  _handleMessage(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message === null || typeof message !== "object") return;
    this._attempt = 0; // the server answers: the next drop starts the backoff afresh
    this._heard = true;
    if (message.id != null && message.id === this._pingId) return; // pong (or an error for it)
    switch (message.type) {
      case "subscribed":
        return this._onSubscribed(message);
      case "diff":
        return this._onDiff(message);
      case "unsubscribed":
        return this._onUnsubscribed(message);
      case "sync_pending":
        // A `synced` push follows once the observer catches up.
        return this._pending.delete(message.id);
      case "synced":
        return this._onSynced(message);
      case "error":
        return this._onError(message);
    }
  }

  _onSubscribed(message) {
    const entry = this._pending.get(message.id);
    if (!entry || entry.kind !== "subscribe") return;
    this._pending.delete(message.id);
    const sub = entry.sub;
    sub._requestId = null;
    if (sub.closed) {
      // Closed while the request was in flight: undo it unless another subscription shares it.
      if (this._open && !this._held(message.observer)) this._unsubscribe(message.observer);
      return;
    }
    this._index(sub, message.observer);
    sub.primaryKey = message.primary_key ?? sub.primaryKey ?? "id";
    sub._attempt = 0;
    if (Array.isArray(message.items)) {
      sub.items = message.items.slice();
      sub.version = message.version;
      sub.meta = pickMeta(message);
      sub._emit(null);
    } else {
      let consistent = Number.isInteger(sub.version);
      for (const diff of message.diffs || []) {
        if (!consistent) break;
        const action = versionAction(sub.version, diff.version);
        if (action === "ignore") continue;
        if (action === "resync" || !this._apply(sub, diff)) consistent = false;
      }
      if (!consistent || sub.version !== message.version) {
        // The replay does not lead to the announced version: start over with full items.
        return this._sendSubscribe(sub, { fresh: true });
      }
      sub.meta = { ...sub.meta, ...pickMeta(message) };
    }
    sub._resyncing = false;
    const buffered = sub._buffer;
    sub._buffer = [];
    for (const diff of buffered) this._onDiffFor(sub, diff);
    if (sub._ready) {
      sub._ready.resolve(sub);
      sub._ready = null;
    }
    this._settleSyncs(sub.observer);
  }

  _onDiff(message) {
    const subs = this._byObserver.get(message.observer);
    if (subs) for (const sub of [...subs]) this._onDiffFor(sub, message);
  }

  _onDiffFor(sub, diff) {
    if (sub.closed) return;
    if (sub._resyncing) {
      // A push may overtake the (re)subscribe's answer; sort it out once that arrives.
      sub._buffer.push(diff);
      if (sub._buffer.length > MAX_BUFFERED) sub._buffer.shift();
      return;
    }
    const action = versionAction(sub.version, diff.version);
    if (action === "ignore") return;
    if (action === "resync") return this._sendSubscribe(sub);
    if (!this._apply(sub, diff)) this._sendSubscribe(sub, { fresh: true });
  }

  /** Apply one diff to `sub` and tell its onChange; false when the diff does not fit. */
  _apply(sub, diff) {
    let items;
    try {
      items = applyDiff(sub.items, diff, sub.primaryKey);
    } catch {
      return false;
    }
    sub.items = items;
    sub.version = diff.version;
    sub.meta = { ...sub.meta, ...pickMeta(diff) };
    sub._emit(diff);
    this._settleSyncs(sub.observer);
    return true;
  }

  _onSynced(message) {
    if (message.id != null) this._pending.delete(message.id);
    for (const waiter of this._syncWaiters) {
      if (waiter.observer === message.observer) waiter.version = message.version;
    }
    this._settleSyncs(message.observer);
  }

  /** Resolve the syncs of `observer` whose version every subscription of it holds. */
  _settleSyncs(observer) {
    const subs = [...(this._byObserver.get(observer) || [])];
    for (const waiter of [...this._syncWaiters]) {
      if (waiter.observer !== observer || waiter.version === null) continue;
      const caughtUp = subs.every(
        (sub) =>
          sub.closed ||
          (!sub._resyncing && Number.isInteger(sub.version) && sub.version >= waiter.version),
      );
      if (!caughtUp) continue;
      this._syncWaiters.delete(waiter);
      waiter.resolve();
    }
  }

  _onUnsubscribed(message) {
    const entry = this._pending.get(message.id);
    if (!entry || entry.kind !== "unsubscribe") return;
    this._pending.delete(message.id);
    entry.resolve();
  }

  _onError(message) {
    const error = new ReactiveError(message.code || "error", message.message || message.error, {
      id: message.id,
      observer: message.observer,
    });
    const entry = message.id != null ? this._pending.get(message.id) : undefined;
    if (entry) {
      this._pending.delete(message.id);
      if (entry.kind === "unsubscribe") return entry.resolve();
      if (entry.kind === "sync") {
        this._syncWaiters.delete(entry.waiter);
        return entry.waiter.reject(error);
      }
      return this._subscribeFailed(entry.sub, error);
    }
    if (message.observer != null && message.id == null) {
      const subs = this._byObserver.get(message.observer);
      if (subs) for (const sub of [...subs]) this._end(sub, error);
      return;
    }
    this._reportError(error);
  }

  /** End `sub` before its first answer: its subscribe() promise rejects with `error`. */
  _rejectFirst(sub, error) {
    this._forget(sub);
    sub.closed = true;
    sub.error = error;
    sub._closing = Promise.resolve();
    sub._ready.reject(error);
    sub._ready = null;
  }

  _subscribeFailed(sub, error) {
    sub._requestId = null;
    if (sub.closed) return;
    if (sub._ready && !PACING_CODES.has(error.code)) {
      // The first answer: the caller decides what to do (but pacing is ours to handle).
      this._rejectFirst(sub, error);
    } else if (TRANSIENT_CODES.has(error.code)) {
      // Refused for now (too fast, or Redis away): try again later, still buffering diffs.
      const delay = backoffDelay(sub._attempt++, this._backoff);
      sub._retryTimer = this._setTimeout(() => {
        sub._retryTimer = null;
        this._sendSubscribe(sub);
      }, delay);
    } else {
      this._end(sub, error);
    }
  }

  /** The server ended `sub`: forget it and call its onError. */
  _end(sub, error) {
    if (sub.closed) return;
    sub.closed = true;
    sub.error = error;
    sub._closing = Promise.resolve();
    this._forget(sub);
    if (sub.onError) {
      try {
        sub.onError(error);
      } catch (thrown) {
        report(thrown);
      }
    }
  }

  // The observer index.

  _index(sub, observer) {
    if (sub.observer === observer && this._byObserver.get(observer)?.has(sub)) return;
    this._unindex(sub);
    sub.observer = observer;
    if (!this._byObserver.has(observer)) this._byObserver.set(observer, new Set());
    this._byObserver.get(observer).add(sub);
  }

  _unindex(sub) {
    const subs = this._byObserver.get(sub.observer);
    if (!subs) return;
    subs.delete(sub);
    if (subs.size === 0) this._byObserver.delete(sub.observer);
  }

  _forget(sub) {
    this._subs.delete(sub);
    this._unindex(sub);
    this._clearTimeout(sub._retryTimer);
    sub._retryTimer = null;
  }

  /** True when a live subscription still uses `observer`. */
  _held(observer) {
    return (this._byObserver.get(observer)?.size ?? 0) > 0;
  }
}
