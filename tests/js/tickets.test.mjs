// The `ticket` option: a fresh ticket before every (re)connect, sent as ?ticket=, for
// clients outside a browser. Fake sockets and a fake clock, as in client.test.mjs.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ReactiveClient } from "../../reactive_celery/static/reactive_celery/reactive.js";
import { setup } from "./support.mjs";

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A ticket function handing out "t1", "t2", ...; `calls` counts them. */
function tickets() {
  const source = () => {
    source.calls += 1;
    return Promise.resolve(`t${source.calls}`);
  };
  source.calls = 0;
  return source;
}

describe("the ticket option", () => {
  test("no socket opens before the ticket arrives; it is sent as ?ticket=", async () => {
    let resolve;
    const env = setup({ ticket: () => new Promise((done) => (resolve = done)) });
    assert.equal(env.sockets.length, 0);
    resolve("a+b/c=");
    await tick();
    assert.equal(env.sockets.length, 1);
    assert.equal(env.ws().url, "ws://test/ws/reactive/?ticket=a%2Bb%2Fc%3D");
    assert.equal(env.client.url, "ws://test/ws/reactive/", "the ticket stays out of client.url");
  });

  test("every reconnect asks for a new ticket", async () => {
    const ticket = tickets();
    const env = setup({ ticket });
    await tick();
    env.ws().open();
    env.ws().drop(4401);
    assert.equal(ticket.calls, 1, "not before the backoff");
    env.clock.advance(10000);
    await tick();
    assert.equal(ticket.calls, 2);
    assert.equal(env.ws().url, "ws://test/ws/reactive/?ticket=t2");
  });

  test("a URL with a query gets &ticket=", async () => {
    const env = setup({ ticket: tickets() });
    await tick();
    const client = new ReactiveClient("ws://test/ws/reactive/?v=1", {
      WebSocket: class {
        constructor(url) {
          env.sockets.push({ url });
        }
        close() {}
      },
      ticket: () => Promise.resolve("t"),
      setTimeout: env.clock.setTimeout,
      clearTimeout: env.clock.clearTimeout,
    });
    await tick();
    assert.equal(env.sockets.at(-1).url, "ws://test/ws/reactive/?v=1&ticket=t");
    client.close();
  });

  test("a rejected ticket is reported and retried after the backoff", async () => {
    let fail = true;
    let calls = 0;
    const env = setup({
      ticket: () => {
        calls += 1;
        return fail ? Promise.reject(new Error("401 from /ticket")) : Promise.resolve("ok");
      },
    });
    const errors = [];
    env.client.onError = (error) => errors.push(error);
    await tick();
    assert.equal(env.sockets.length, 0);
    assert.deepEqual(errors.map((e) => e.code), ["ticket_failed"]);
    assert.match(errors[0].message, /401 from \/ticket/);
    assert.equal(env.client.state, "reconnecting");
    env.client.reconnect();
    await tick();
    assert.equal(calls, 2, "reconnect() asks again at once");
    fail = false;
    env.clock.advance(10000);
    await tick();
    assert.equal(calls, 3);
    assert.equal(env.ws().url, "ws://test/ws/reactive/?ticket=ok");
  });

  test("a ticket that is not a string counts as a failure", async () => {
    const env = setup({ ticket: () => Promise.resolve(undefined) });
    const errors = [];
    env.client.onError = (error) => errors.push(error);
    await tick();
    assert.equal(env.sockets.length, 0);
    assert.equal(errors[0].code, "ticket_failed");
  });

  test("reconnect() while a ticket is on its way opens no second socket", async () => {
    const pending = [];
    const env = setup({ ticket: () => new Promise((done) => pending.push(done)) });
    pending.shift()("t1");
    await tick();
    env.ws().open();
    env.ws().drop();
    env.clock.advance(10000);
    env.client.reconnect();
    env.client.reconnect();
    assert.equal(pending.length, 1);
    pending.shift()("t2");
    await tick();
    assert.equal(env.sockets.length, 2);
  });

  test("closing while the ticket is on its way opens nothing", async () => {
    let resolve;
    const env = setup({ ticket: () => new Promise((done) => (resolve = done)) });
    env.client.close();
    resolve("late");
    await tick();
    assert.equal(env.sockets.length, 0);
    assert.equal(env.client.state, "closed");
  });

  test("subscriptions resume on the ticket socket as on any other", async () => {
    const env = setup({ ticket: tickets() });
    const promise = env.client.subscribe("/api/tasks/");
    await tick();
    env.ws().open();
    const request = env.ws().last("subscribe");
    assert.equal(request.url, "/api/tasks/");
    env.ws().push({ type: "subscribed", id: request.id, observer: "a".repeat(64), version: 1, primary_key: "id", items: [] });
    await promise;
  });

  test("a ticket option that is not a function is a TypeError", () => {
    assert.throws(() => setup({ ticket: "a-ticket" }), TypeError);
  });
});
