// ReactiveClient.sync(): read your writes, against a fake WebSocket.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ReactiveError } from "../../reactive_celery/static/reactive_celery/reactive.js";
import { setup } from "./support.mjs";

const OBS = "a".repeat(64);
const row = (id) => ({ id, name: `n${id}` });
const tick = () => new Promise((resolve) => setImmediate(resolve));

async function subscribed(env, version = 1) {
  env.ws().open();
  const promise = env.client.subscribe("/api/tasks/");
  const request = env.ws().last("subscribe");
  env.ws().push({ type: "subscribed", id: request.id, observer: OBS, version, primary_key: "id", items: [row(1)] });
  return promise;
}

function diff(version, added) {
  return { type: "diff", observer: OBS, version, removed: [], added, changed: [], moved: [] };
}

describe("sync", () => {
  test("resolves at once when the server says the observer has caught up", async () => {
    const env = setup();
    await subscribed(env, 4);
    let done = false;
    const promise = env.client.sync().then(() => (done = true));
    const request = env.ws().last("sync");
    assert.deepEqual(request, { type: "sync", id: request.id, observer: OBS });
    env.ws().push({ type: "synced", id: request.id, observer: OBS, version: 4 });
    await promise;
    assert.ok(done);
  });

  test("waits for the diff the pending evaluation pushes, then resolves", async () => {
    const env = setup();
    const sub = await subscribed(env, 4);
    let done = false;
    const promise = env.client.sync().then(() => (done = true));
    const request = env.ws().last("sync");
    env.ws().push({ type: "sync_pending", id: request.id, observer: OBS });
    await tick();
    assert.equal(done, false);
    env.ws().push({ type: "synced", observer: OBS, version: 5 }); // overtakes its diff
    await tick();
    assert.equal(done, false, "the list does not hold version 5 yet");
    env.ws().push(diff(5, [{ order: 1, item: row(2) }]));
    await promise;
    assert.deepEqual(sub.items.map((item) => item.id), [1, 2]);
  });

  test("a refused sync rejects with the server's code; close rejects the rest", async () => {
    const env = setup();
    await subscribed(env);
    const refused = env.client.sync();
    const request = env.ws().last("sync");
    env.ws().push({ type: "error", id: request.id, code: "not_subscribed", message: "no" });
    await assert.rejects(refused, (error) => error instanceof ReactiveError && error.code === "not_subscribed");
    const pending = env.client.sync();
    env.client.close();
    await assert.rejects(pending, (error) => error.code === "closed");
  });
});
