// ReactiveClient against a fake WebSocket and a fake clock: requests, diffs,
// version gaps, resume on reconnect, backoff, keepalive and error routing.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ReactiveClient, ReactiveError } from "../../reactive_celery/static/reactive_celery/reactive.js";
import { setup } from "./support.mjs";

const OBS = "a".repeat(64);
const OBS2 = "b".repeat(64);
const row = (id, name = `n${id}`) => ({ id, name });
const ids = (items) => items.map((item) => item.id);
const tick = () => new Promise((resolve) => setImmediate(resolve));

function subscribed(request, fields) {
  return { type: "subscribed", id: request.id, observer: OBS, version: 1, primary_key: "id", ...fields };
}

function diffFrame(version, fields = {}, observer = OBS) {
  return { type: "diff", observer, version, removed: [], added: [], changed: [], moved: [], ...fields };
}

/** Subscribe and answer with `items`; returns the subscription and the onChange calls. */
async function subscribeTo(env, url, fields = {}) {
  const calls = [];
  const errors = [];
  const promise = env.client.subscribe(url, {
    onChange: (items, diff) => calls.push({ items, diff }),
    onError: (error) => errors.push(error),
  });
  const request = env.ws().last("subscribe");
  assert.equal(request.url, url);
  env.ws().push(subscribed(request, { items: [row(1), row(2)], ...fields }));
  const sub = await promise;
  return { sub, calls, errors, request };
}

describe("subscribing", () => {
  test("waits for the socket, then sends a subscribe and resolves with the list", async () => {
    const env = setup();
    assert.equal(env.client.state, "connecting");
    const calls = [];
    const promise = env.client.subscribe("/api/tasks/?done=false", { onChange: (...args) => calls.push(args) });
    assert.deepEqual(env.ws().sent, [], "nothing is sent before the socket opens");
    env.ws().open();
    assert.deepEqual(env.states, ["open"]);
    const request = env.ws().last();
    assert.deepEqual(request, { type: "subscribe", id: request.id, url: "/api/tasks/?done=false" });
    env.ws().push(subscribed(request, { version: 7, items: [row(1)], count: 20, next: "/api/tasks/?page=2", previous: null }));
    const list = await promise;
    assert.deepEqual(list.items, [row(1)]);
    assert.equal(list.version, 7);
    assert.equal(list.observer, OBS);
    assert.equal(list.primaryKey, "id");
    assert.deepEqual(list.meta, { count: 20, next: "/api/tasks/?page=2", previous: null });
    assert.deepEqual(calls, [[[row(1)], null]], "onChange sees the first items with a null diff");
    assert.deepEqual(env.client.subscriptions, [list]);
  });

  test("every request carries an increasing id", async () => {
    const env = setup({ pingInterval: 1000 });
    env.ws().open();
    env.client.subscribe("/api/a/");
    env.client.subscribe("/api/b/");
    env.clock.advance(1000);
    const requestIds = env.ws().sent.map((frame) => frame.id);
    assert.deepEqual(env.ws().sent.map((frame) => frame.type), ["subscribe", "subscribe", "ping"]);
    assert.ok(requestIds.every((id, i) => Number.isInteger(id) && (i === 0 || id > requestIds[i - 1])), String(requestIds));
  });

  test("answers are matched by id, not by arrival order", async () => {
    const env = setup();
    env.ws().open();
    const first = env.client.subscribe("/api/a/");
    const second = env.client.subscribe("/api/b/");
    const [a, b] = env.ws().sent;
    env.ws().push(subscribed(b, { observer: OBS2, items: [row(2)] }));
    env.ws().push(subscribed(a, { items: [row(1)] }));
    assert.equal((await first).url, "/api/a/");
    assert.deepEqual(ids((await first).items), [1]);
    assert.equal((await second).observer, OBS2);
  });
});

describe("diffs and versions", () => {
  test("a diff with the next version is applied and reported", async () => {
    const env = setup();
    env.ws().open();
    const { sub, calls } = await subscribeTo(env, "/api/items/");
    const before = sub.items;
    const frame = diffFrame(2, { removed: [1], added: [{ order: 1, item: row(3) }] });
    env.ws().push(frame);
    assert.deepEqual(ids(sub.items), [2, 3]);
    assert.equal(sub.version, 2);
    assert.notEqual(sub.items, before, "a new array, so UI frameworks see the change");
    assert.deepEqual(ids(before), [1, 2]);
    assert.equal(calls.at(-1).items, sub.items);
    assert.deepEqual(calls.at(-1).diff, frame);
  });

  test("old or duplicate versions are ignored without a resync", async () => {
    const env = setup();
    env.ws().open();
    const { sub, calls } = await subscribeTo(env, "/api/items/", { version: 5 });
    const sent = env.ws().sent.length;
    env.ws().push(diffFrame(5, { removed: [1] }));
    env.ws().push(diffFrame(3, { removed: [2] }));
    assert.deepEqual(ids(sub.items), [1, 2]);
    assert.equal(sub.version, 5);
    assert.equal(calls.length, 1, "only the initial onChange");
    assert.equal(env.ws().sent.length, sent, "no resubscribe");
  });

  test("diffs for another observer do not touch the list", async () => {
    const env = setup();
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/items/");
    env.ws().push(diffFrame(2, { removed: [1] }, OBS2));
    assert.deepEqual(ids(sub.items), [1, 2]);
  });

  test("a gap resubscribes with observer and version, then applies the replayed diffs", async () => {
    const env = setup();
    env.ws().open();
    const { sub, calls } = await subscribeTo(env, "/api/items/", { version: 3 });
    env.ws().push(diffFrame(5, { removed: [1] }));
    const resume = env.ws().last();
    assert.deepEqual(resume, { type: "subscribe", id: resume.id, url: "/api/items/", observer: OBS, version: 3 });
    assert.deepEqual(ids(sub.items), [1, 2], "the gapped diff is not applied");

    // A push overtaking the answer waits for it.
    env.ws().push(diffFrame(6, { added: [{ order: 0, item: row(6) }] }));
    assert.equal(env.ws().sent.length, 2, "no second resubscribe while one is in flight");
    env.ws().push(
      subscribed(resume, {
        version: 5,
        diffs: [
          diffFrame(4, { added: [{ order: 2, item: row(4) }] }),
          diffFrame(5, { removed: [1] }),
        ],
      }),
    );
    assert.deepEqual(ids(sub.items), [6, 2, 4]);
    assert.equal(sub.version, 6);
    assert.deepEqual(calls.map((call) => call.diff?.version ?? null), [null, 4, 5, 6]);
  });

  test("a resubscribe answered with reset replaces the items", async () => {
    const env = setup();
    env.ws().open();
    const { sub, calls } = await subscribeTo(env, "/api/items/", { count: 2 });
    env.ws().push(diffFrame(9));
    const resume = env.ws().last();
    env.ws().push(subscribed(resume, { version: 9, reset: true, items: [row(7)], count: 1 }));
    assert.deepEqual(sub.items, [row(7)]);
    assert.equal(sub.version, 9);
    assert.deepEqual(sub.meta, { count: 1 });
    assert.deepEqual(calls.at(-1), { items: [row(7)], diff: null });
    env.ws().push(diffFrame(10, { changed: [{ order: 0, item: row(7, "x") }] }));
    assert.deepEqual(sub.items, [row(7, "x")], "diffs continue from the reset's version");
  });

  test("a diff that does not fit the list asks for full items", async () => {
    const env = setup();
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/items/");
    env.ws().push(diffFrame(2, { moved: [{ order: 0, pk: 99 }] }));
    const again = env.ws().last();
    assert.deepEqual(again, { type: "subscribe", id: again.id, url: "/api/items/" }, "no observer/version: fresh");
    assert.equal(sub.version, 1);
  });

  test("a replay that skips a version falls back to full items", async () => {
    const env = setup();
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/items/");
    env.ws().push(diffFrame(4));
    const resume = env.ws().last();
    env.ws().push(subscribed(resume, { version: 4, diffs: [diffFrame(2), diffFrame(4)] }));
    const fresh = env.ws().last();
    assert.notEqual(fresh.id, resume.id);
    assert.equal(fresh.observer, undefined);
    env.ws().push(subscribed(fresh, { version: 4, items: [row(5)] }));
    assert.deepEqual(ids(sub.items), [5]);
  });
});

describe("reconnecting", () => {
  test("resumes every live subscription with its observer and version", async () => {
    const env = setup();
    env.ws().open();
    const a = await subscribeTo(env, "/api/a/", { version: 4 });
    const second = env.client.subscribe("/api/b/");
    env.ws().push(subscribed(env.ws().last(), { observer: OBS2, version: 10, items: [row(8)] }));
    const b = await second;
    env.ws().push(diffFrame(5, { removed: [2] }));
    const closedSub = await subscribeTo(env, "/api/c/", { observer: "c".repeat(64) });
    const closing = closedSub.sub.close();
    env.ws().push({ type: "unsubscribed", id: env.ws().last().id, observer: "c".repeat(64) });
    await closing;

    const first = env.ws();
    first.drop();
    assert.equal(env.client.state, "reconnecting");
    assert.equal(env.sockets.length, 1, "waits before reconnecting");
    env.clock.advance(10000);
    assert.equal(env.sockets.length, 2);
    assert.equal(env.ws().url, "ws://test/ws/reactive/");
    env.ws().open();
    assert.deepEqual(env.states, ["open", "reconnecting", "open"]);
    const resumes = env.ws().sent;
    assert.deepEqual(
      resumes.map(({ url, observer, version }) => ({ url, observer, version })),
      [
        { url: "/api/a/", observer: OBS, version: 5 },
        { url: "/api/b/", observer: OBS2, version: 10 },
      ],
      "the closed subscription is not resumed",
    );
    assert.ok(resumes[0].id > closedSub.request.id, "ids keep increasing across sockets");

    env.ws().push(subscribed(resumes[0], { version: 6, diffs: [diffFrame(6, { added: [{ order: 0, item: row(3) }] })] }));
    env.ws().push(subscribed(resumes[1], { observer: OBS2, version: 30, reset: true, items: [row(9)] }));
    assert.deepEqual(ids(a.sub.items), [3, 1]);
    assert.equal(a.sub.version, 6);
    assert.deepEqual(b.items, [row(9)]);
    assert.equal(b.version, 30);
    env.ws().push(diffFrame(7, { removed: [3] }));
    assert.deepEqual(ids(a.sub.items), [1], "live again after the resume");
  });

  test("frames of the dead socket are ignored", async () => {
    const env = setup();
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/a/");
    const dead = env.ws();
    dead.drop();
    dead.push(diffFrame(2, { removed: [1] }));
    assert.deepEqual(ids(sub.items), [1, 2]);
  });

  test("a subscribe made before the first open survives a failed connect", async () => {
    const env = setup();
    const promise = env.client.subscribe("/api/a/");
    env.ws().drop();
    env.clock.advance(10000);
    env.ws().open();
    const request = env.ws().last();
    assert.deepEqual(request, { type: "subscribe", id: request.id, url: "/api/a/" });
    env.ws().push(subscribed(request, { items: [row(1)] }));
    assert.deepEqual(ids((await promise).items), [1]);
  });

  test("the resubscribe answer replaces a new observer id", async () => {
    const env = setup();
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/a/");
    env.ws().drop();
    env.clock.advance(10000);
    env.ws().open();
    env.ws().push(subscribed(env.ws().last(), { observer: OBS2, version: 1, reset: true, items: [] }));
    assert.equal(sub.observer, OBS2);
    env.ws().push(diffFrame(2, { added: [{ order: 0, item: row(5) }] }, OBS2));
    env.ws().push(diffFrame(2, { added: [{ order: 0, item: row(6) }] }, OBS));
    assert.deepEqual(ids(sub.items), [5]);
  });

  test("backoff grows to the cap while connecting fails, and starts over once the server answers", async () => {
    const env = setup({ minDelay: 500, maxDelay: 10000, random: () => 1 });
    const delays = [];
    for (let i = 0; i < 7; i++) {
      env.ws().drop();
      delays.push(...env.clock.waiting);
      env.clock.advance(delays.at(-1));
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
    assert.equal(env.sockets.length, 8);
    assert.deepEqual([...new Set(env.states)], ["reconnecting"]);

    env.ws().open(); // opening alone does not prove the server serves us
    env.ws().drop();
    assert.deepEqual(env.clock.waiting, [10000]);
    env.clock.advance(10000);
    env.ws().open();
    env.client.subscribe("/api/a/");
    env.ws().push(subscribed(env.ws().last(), { items: [] }));
    env.ws().drop();
    assert.deepEqual(env.clock.waiting, [500]);
  });

  test("reconnect delays are jittered within each step", () => {
    let seed = 0;
    const env = setup({ random: () => [0, 0.25, 0.9][seed++ % 3] });
    const delays = [];
    for (let i = 0; i < 3; i++) {
      env.ws().drop();
      delays.push(...env.clock.waiting);
      env.clock.advance(delays.at(-1));
    }
    assert.deepEqual(delays, [250, 625, 1900]);
  });

  test("reconnect() skips the wait", () => {
    const env = setup({ random: () => 1 });
    env.ws().drop();
    env.client.reconnect();
    assert.equal(env.sockets.length, 2);
    assert.deepEqual(env.clock.waiting, []);
    env.client.reconnect();
    assert.equal(env.sockets.length, 2, "not while a socket is connecting");
  });

  test("close() ends everything and never reconnects", async () => {
    const env = setup();
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/a/");
    const pending = env.client.subscribe("/api/b/");
    env.client.close();
    await assert.rejects(pending, (error) => error instanceof ReactiveError && error.code === "closed");
    assert.equal(env.ws().closedWith, 1000);
    assert.equal(env.client.state, "closed");
    assert.equal(sub.closed, true);
    env.ws().drop(1000);
    env.clock.advance(60000);
    assert.equal(env.sockets.length, 1);
    assert.deepEqual(env.states, ["open", "closed"]);
    await assert.rejects(env.client.subscribe("/api/c/"), { code: "closed" });
  });
});

describe("handshake refused", () => {
  // Browsers report a refused handshake (403 from the origin check, 404) exactly like an
  // unreachable server: a close before open. Only the count of them in a row can tell.
  test("sockets that never open reject the pending subscribes, once the attempts are used", async () => {
    const env = setup({ handshakeAttempts: 3 });
    const seen = [];
    env.client.onError = (error) => seen.push(error);
    let error = null;
    env.client.subscribe("/api/a/").then(
      () => assert.fail("resolved"),
      (thrown) => (error = thrown),
    );
    for (let i = 0; i < 2; i++) {
      env.ws().drop(1006);
      env.clock.advance(10000);
    }
    await tick();
    assert.deepEqual(seen, [], "two failures may still be a server that is starting");
    env.ws().drop(1006);
    await tick();
    assert.ok(error instanceof ReactiveError, String(error));
    assert.equal(error.code, "handshake_refused");
    assert.match(error.message, /Origin.*ALLOWED_HOSTS/);
    assert.deepEqual(seen.map((e) => e.code), ["handshake_refused"]);
    assert.deepEqual(env.client.subscriptions, [], "the rejected subscription is forgotten");

    // The client still reconnects: a server that comes up later is used.
    assert.equal(env.client.state, "reconnecting");
    env.clock.advance(10000);
    env.ws().drop(1006);
    assert.equal(seen.length, 1, "told once, not on every further attempt");
    env.clock.advance(10000);
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/b/");
    assert.deepEqual(ids(sub.items), [1, 2]);
  });

  test("a subscribe made after the refusal is rejected by the next failed attempt", async () => {
    const env = setup({ handshakeAttempts: 1 });
    const seen = [];
    env.client.onError = (error) => seen.push(error.code);
    env.ws().drop(1006);
    assert.deepEqual(seen, ["handshake_refused"]);
    let late = null;
    env.client.subscribe("/api/a/").catch((error) => (late = error.code));
    env.clock.advance(10000);
    env.ws().drop(1006);
    await tick();
    assert.equal(late, "handshake_refused");
    assert.deepEqual(seen, ["handshake_refused", "handshake_refused"]);
  });

  test("after the socket was open once, failed reconnects stay silent and subscribes wait", async () => {
    const env = setup({ handshakeAttempts: 1 });
    const seen = [];
    env.client.onError = (error) => seen.push(error.code);
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/a/");
    env.ws().drop(1006);
    let settled = false;
    const pending = env.client.subscribe("/api/b/").finally(() => (settled = true));
    for (let i = 0; i < 5; i++) {
      env.clock.advance(10000);
      env.ws().drop(1006);
    }
    await tick();
    assert.deepEqual(seen, []);
    assert.equal(settled, false);
    assert.equal(sub.closed, false);
    env.clock.advance(10000);
    env.ws().open();
    const request = env.ws().sent.find((frame) => frame.url === "/api/b/");
    env.ws().push(subscribed(request, { observer: OBS2, items: [row(9)] }));
    assert.deepEqual(ids((await pending).items), [9]);
  });
});

describe("keepalive", () => {
  test("pings every interval and drops a socket whose pong does not come", async () => {
    const env = setup({ pingInterval: 25000 });
    env.ws().open();
    env.clock.advance(25000);
    const ping = env.ws().last();
    assert.deepEqual(ping, { type: "ping", id: ping.id });
    env.ws().push({ type: "pong", id: ping.id });
    env.clock.advance(25000);
    const second = env.ws().last();
    assert.equal(second.type, "ping");
    assert.ok(second.id > ping.id);
    env.clock.advance(25000); // no pong
    assert.equal(env.client.state, "reconnecting");
    assert.equal(env.sockets[0].closedWith, null, "the silent socket is closed");
    env.clock.advance(10000);
    assert.equal(env.sockets.length, 2);
  });

  test("any frame shows the socket is alive, and a ping's answer goes nowhere else", async () => {
    const env = setup({ pingInterval: 25000 });
    const seen = [];
    env.client.onError = (error) => seen.push(error.code);
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/a/");
    env.clock.advance(25000);
    const ping = env.ws().last("ping");
    env.ws().push(diffFrame(2, { removed: [1] })); // no pong, but the server is talking
    env.clock.advance(25000);
    assert.equal(env.client.state, "open");
    const second = env.ws().last("ping");
    assert.notEqual(second.id, ping.id);
    env.ws().push({ type: "error", id: second.id, code: "rate_limited", message: "slow down" });
    assert.deepEqual(seen, []);
    env.clock.advance(25000);
    assert.equal(env.client.state, "open", "the error answered the ping");
    assert.deepEqual(ids(sub.items), [2]);
  });
});

describe("errors", () => {
  test("an error with an id rejects that request only", async () => {
    const env = setup();
    env.ws().open();
    const live = await subscribeTo(env, "/api/items/");
    const refused = env.client.subscribe("/api/plain/");
    const request = env.ws().last();
    env.ws().push({ type: "error", id: request.id, code: "not_reactive", message: "The view at /api/plain/ is not @reactive." });
    await assert.rejects(refused, (error) => {
      assert.ok(error instanceof ReactiveError);
      assert.equal(error.code, "not_reactive");
      assert.equal(error.message, "The view at /api/plain/ is not @reactive.");
      assert.equal(error.id, request.id);
      return true;
    });
    assert.deepEqual(env.client.subscriptions, [live.sub]);
    assert.deepEqual(live.errors, []);
    env.ws().push(diffFrame(2, { removed: [1] }));
    assert.deepEqual(ids(live.sub.items), [2]);
  });

  test("an error with an observer ends that subscription through onError", async () => {
    const env = setup();
    env.ws().open();
    const doomed = await subscribeTo(env, "/api/staff/");
    const other = env.client.subscribe("/api/items/");
    env.ws().push(subscribed(env.ws().last(), { observer: OBS2, items: [] }));
    const otherSub = await other;

    env.ws().push({ type: "error", observer: OBS, code: "forbidden", message: "no longer staff" });
    assert.equal(doomed.errors.length, 1);
    assert.equal(doomed.errors[0].code, "forbidden");
    assert.equal(doomed.errors[0].observer, OBS);
    assert.equal(doomed.sub.closed, true);
    assert.equal(doomed.sub.error, doomed.errors[0]);
    assert.deepEqual(env.client.subscriptions, [otherSub]);

    const calls = doomed.calls.length;
    env.ws().push(diffFrame(2, { removed: [1] }));
    assert.equal(doomed.calls.length, calls, "no onChange after the end");
    const sent = env.ws().sent.length;
    await doomed.sub.close();
    assert.equal(env.ws().sent.length, sent, "nothing to unsubscribe");

    env.ws().drop();
    env.clock.advance(10000);
    env.ws().open();
    assert.deepEqual(env.ws().sent.map((frame) => frame.url), ["/api/items/"], "not resumed");
  });

  test("a refused resume ends the subscription; a transient one is retried", async () => {
    const env = setup({ random: () => 1 });
    env.ws().open();
    const retried = await subscribeTo(env, "/api/a/");
    const bErrors = [];
    const second = env.client.subscribe("/api/b/", { onError: (error) => bErrors.push(error) });
    env.ws().push(subscribed(env.ws().last(), { observer: OBS2, items: [] }));
    const refused = await second;
    env.ws().drop();
    env.clock.advance(10000);
    env.ws().open();
    const [resumeA, resumeB] = env.ws().sent;
    env.ws().push({ type: "error", id: resumeA.id, code: "unavailable", message: "Redis is down" });
    env.ws().push({ type: "error", id: resumeB.id, code: "forbidden", message: "no" });
    assert.deepEqual(bErrors.map((error) => error.code), ["forbidden"]);
    assert.equal(refused.closed, true);
    assert.equal(retried.sub.closed, false);
    assert.deepEqual(retried.errors, []);
    assert.deepEqual(env.clock.waiting, [500]);
    env.clock.advance(500);
    const again = env.ws().last();
    assert.deepEqual(again, { type: "subscribe", id: again.id, url: "/api/a/", observer: OBS, version: 1 });
  });

  for (const code of ["rate_limited", "busy"]) {
    test(`a first subscribe refused with ${code} is retried; other refusals reject`, async () => {
      const env = setup({ random: () => 1 });
      env.ws().open();
      const promise = env.client.subscribe("/api/a/");
      const first = env.ws().last();
      env.ws().push({ type: "error", id: first.id, code, message: "Not now; retry." });
      assert.deepEqual(env.clock.waiting, [500]);
      env.clock.advance(500);
      const again = env.ws().last();
      assert.deepEqual(again, { type: "subscribe", id: again.id, url: "/api/a/" });
      assert.ok(again.id > first.id);
      env.ws().push(subscribed(again, { items: [row(1)] }));
      const list = await promise;
      assert.deepEqual(ids(list.items), [1]);
      assert.equal(list.closed, false);

      const down = env.client.subscribe("/api/b/");
      env.ws().push({ type: "error", id: env.ws().last().id, code: "unavailable", message: "Redis is down" });
      await assert.rejects(down, { code: "unavailable" });
    });
  }

  test("errors that match nothing go to client.onError", async () => {
    const env = setup();
    const seen = [];
    env.client.onError = (error) => seen.push(error.code);
    env.ws().open();
    env.ws().push({ type: "error", code: "bad_json", message: "?" });
    env.ws().push({ type: "error", id: 999, code: "not_subscribed", message: "?" });
    env.ws().push("not json at all"); // ignored
    assert.deepEqual(seen, ["bad_json", "not_subscribed"]);
  });

  test("a throwing onChange does not break other subscriptions", async () => {
    const env = setup();
    env.ws().open();
    const reported = [];
    const original = globalThis.reportError;
    globalThis.reportError = (error) => reported.push(error.message);
    try {
      const bad = env.client.subscribe("/api/a/", { onChange: () => { throw new Error("boom"); } });
      env.ws().push(subscribed(env.ws().last(), { items: [] }));
      await bad;
      const good = await subscribeTo(env, "/api/b/", { observer: OBS });
      env.ws().push(diffFrame(2, { removed: [1] }));
      assert.deepEqual(ids(good.sub.items), [2]);
      assert.deepEqual(reported, ["boom", "boom"]);
    } finally {
      globalThis.reportError = original;
    }
  });
});

describe("unsubscribing", () => {
  test("close() sends unsubscribe and resolves on the answer", async () => {
    const env = setup();
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/a/");
    let done = false;
    const closing = sub.close().then(() => (done = true));
    const request = env.ws().last();
    assert.deepEqual(request, { type: "unsubscribe", id: request.id, observer: OBS });
    await tick();
    assert.equal(done, false, "waits for the answer");
    env.ws().push({ type: "unsubscribed", id: request.id, observer: OBS });
    await closing;
    assert.equal(done, true);
    assert.deepEqual(env.client.subscriptions, []);
    env.ws().push(diffFrame(2, { removed: [1] }));
    assert.deepEqual(ids(sub.items), [1, 2], "no diffs after close");
  });

  test("subscriptions sharing an observer unsubscribe once, with the last", async () => {
    const env = setup();
    env.ws().open();
    const a = await subscribeTo(env, "/api/a/");
    const b = await subscribeTo(env, "/api/a/");
    env.ws().push(diffFrame(2, { removed: [1] }));
    assert.deepEqual([ids(a.sub.items), ids(b.sub.items)], [[2], [2]], "both get the diff");
    await a.sub.close();
    assert.equal(env.ws().last().type, "subscribe", "b still needs the observer");
    const closing = b.sub.close();
    const request = env.ws().last();
    assert.equal(request.type, "unsubscribe");
    env.ws().push({ type: "error", id: request.id, code: "not_subscribed", message: "gone" });
    await closing; // resolves: the subscription is gone either way
  });

  test("closing during a resubscribe unsubscribes when its answer comes", async () => {
    const env = setup();
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/a/");
    env.ws().push(diffFrame(5));
    const resume = env.ws().last();
    await sub.close();
    assert.equal(env.ws().last(), resume, "nothing sent while the resubscribe is in flight");
    env.ws().push(subscribed(resume, { version: 5, reset: true, items: [] }));
    assert.deepEqual(env.ws().last(), { type: "unsubscribe", id: env.ws().last().id, observer: OBS });
  });

  test("closing while offline resolves at once and is not resumed", async () => {
    const env = setup();
    env.ws().open();
    const { sub } = await subscribeTo(env, "/api/a/");
    env.ws().drop();
    await sub.close();
    env.clock.advance(10000);
    env.ws().open();
    assert.deepEqual(env.ws().sent, []);
  });
});

test("relative URLs resolve against the given location", () => {
  const env = setup({ location: { href: "https://board.example/tasks/" } });
  assert.throws(() => new ReactiveClient("/ws/reactive/", { WebSocket: class {}, location: undefined }), TypeError);
  const client = new ReactiveClient("/ws/reactive/", {
    WebSocket: env.sockets[0].constructor,
    location: { href: "https://board.example/tasks/" },
    pingInterval: 0,
  });
  assert.equal(env.ws().url, "wss://board.example/ws/reactive/");
  client.close();
});
