// The React and Vue adapters, run unchanged against hand-written fakes of the few
// React/Vue functions they import (tests/js/fakes/), and a real ReactiveClient on a
// fake socket: what a component sees while loading, on diffs, on a new URL, on errors,
// and that leaving unsubscribes and never updates state afterwards.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { register } from "node:module";
import { describe, test } from "node:test";

import { setup } from "./support.mjs";

register("./fakes/resolve.mjs", import.meta.url);
const STATIC = new URL("../../reactive_celery/static/reactive_celery/", import.meta.url);
const { useReactive: useReactiveReact } = await import(new URL("react.js", STATIC));
const { useReactive: useReactiveVue } = await import(new URL("vue.js", STATIC));
const { renderHook } = await import("react");
const { effectScope, ref } = await import("vue");

const OBS = "a".repeat(64);
const OBS2 = "b".repeat(64);
const row = (id) => ({ id, name: `n${id}` });
const ids = (items) => items.map((item) => item.id);
const tick = () => new Promise((resolve) => setImmediate(resolve));

function answer(env, fields = {}) {
  const request = env.ws().last("subscribe");
  env.ws().push({ type: "subscribed", id: request.id, observer: OBS, version: 3, primary_key: "id", items: [row(1)], ...fields });
}

function diff(version, item, observer = OBS) {
  return { type: "diff", observer, version, removed: [], added: [{ order: 0, item }], changed: [], moved: [] };
}

test("reactive.js imports neither React nor Vue; each adapter imports only its own", async () => {
  const source = (name) => readFile(new URL(name, STATIC), "utf8");
  const imports = (text) => [...text.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
  assert.deepEqual(imports(await source("reactive.js")), []);
  assert.deepEqual(imports(await source("react.js")), ["react"]);
  assert.deepEqual(imports(await source("vue.js")), ["vue"]);
});

describe("React: useReactive(client, url)", () => {
  test("loading, then the items; diffs re-render; the connection state follows", async () => {
    const env = setup();
    const view = renderHook(({ url }) => useReactiveReact(env.client, url), { url: "/api/tasks/" });
    assert.deepEqual(view.result, { items: [], version: null, meta: {}, error: null, loading: true, connection: "connecting" });
    env.ws().open();
    assert.equal(view.result.connection, "open");
    assert.equal(env.ws().last("subscribe").url, "/api/tasks/");
    answer(env, { count: 1, next: null, previous: null });
    await tick();
    assert.deepEqual(ids(view.result.items), [1]);
    assert.equal(view.result.loading, false);
    assert.equal(view.result.version, 3);
    assert.deepEqual(view.result.meta, { count: 1, next: null, previous: null });
    env.ws().push(diff(4, row(2)));
    assert.deepEqual(ids(view.result.items), [2, 1]);
    assert.equal(view.result.version, 4);
    env.ws().drop();
    assert.equal(view.result.connection, "reconnecting");
  });

  test("a new url unsubscribes the old one and never shows its items", async () => {
    const env = setup();
    env.ws().open();
    const view = renderHook(({ url }) => useReactiveReact(env.client, url), { url: "/api/tasks/?done=false" });
    answer(env);
    await tick();
    const seen = [];
    const hook = ({ url }) => {
      const state = useReactiveReact(env.client, url);
      seen.push({ url, items: ids(state.items), loading: state.loading });
      return state;
    };
    const next = renderHook(hook, { url: "/api/a/" });
    answer(env, { observer: OBS2, items: [row(7)] });
    await tick();
    const before = seen.length;
    next.rerender({ url: "/api/b/" });
    assert.deepEqual(seen[before], { url: "/api/b/", items: [], loading: true }, "the old url's items are gone from the first render");
    assert.deepEqual(env.ws().last("unsubscribe").observer, OBS2);
    assert.equal(env.ws().last("subscribe").url, "/api/b/");
    assert.deepEqual(ids(view.result.items), [1], "another component's list is untouched");
  });

  test("unmounting unsubscribes, also before the items arrived, and sets no state after", async () => {
    const env = setup();
    env.ws().open();
    const early = renderHook(() => useReactiveReact(env.client, "/api/a/"));
    early.unmount();
    answer(env);
    await tick();
    assert.equal(env.ws().last("unsubscribe").observer, OBS, "the late answer is unsubscribed");

    const late = renderHook(() => useReactiveReact(env.client, "/api/b/"));
    answer(env, { observer: OBS2 });
    await tick();
    late.unmount();
    assert.equal(env.ws().last("unsubscribe").observer, OBS2);
    env.ws().push(diff(4, row(2), OBS2));

    const refused = renderHook(() => useReactiveReact(env.client, "/api/c/"));
    const request = env.ws().last("subscribe");
    refused.unmount();
    env.ws().push({ type: "error", id: request.id, code: "forbidden", message: "No." });
    await tick();
    env.ws().drop();
    assert.equal(early.lateUpdates + late.lateUpdates + refused.lateUpdates, 0);
  });

  test("a refused subscribe shows the error; null subscribes to nothing", async () => {
    const env = setup();
    env.ws().open();
    const view = renderHook(() => useReactiveReact(env.client, "/api/secret/"));
    const request = env.ws().last("subscribe");
    env.ws().push({ type: "error", id: request.id, code: "forbidden", message: "No." });
    await tick();
    assert.equal(view.result.error.code, "forbidden");
    assert.equal(view.result.loading, false);

    const sent = env.ws().sent.length;
    const idle = renderHook(() => useReactiveReact(env.client, null));
    assert.equal(env.ws().sent.length, sent);
    assert.equal(idle.result.loading, false);
  });

  test("a subscription the server ends keeps its items and shows the error", async () => {
    const env = setup();
    env.ws().open();
    const view = renderHook(() => useReactiveReact(env.client, "/api/a/"));
    answer(env);
    await tick();
    env.ws().push({ type: "error", observer: OBS, code: "timeout", message: "Too slow." });
    assert.equal(view.result.error.code, "timeout");
    assert.deepEqual(ids(view.result.items), [1]);
  });
});

describe("Vue: useReactive(client, url)", () => {
  test("loading, then the items; diffs update the refs; the connection state follows", async () => {
    const env = setup();
    const scope = effectScope();
    const state = scope.run(() => useReactiveVue(env.client, "/api/tasks/"));
    assert.equal(state.loading.value, true);
    assert.equal(state.connection.value, "connecting");
    env.ws().open();
    assert.equal(state.connection.value, "open");
    answer(env);
    await tick();
    assert.deepEqual(ids(state.items.value), [1]);
    assert.equal(state.loading.value, false);
    assert.equal(state.version.value, 3);
    env.ws().push(diff(4, row(2)));
    assert.deepEqual(ids(state.items.value), [2, 1]);
    assert.equal(state.version.value, 4);
    scope.stop();
    assert.equal(env.ws().last("unsubscribe").observer, OBS);
    env.ws().drop();
    assert.equal(state.connection.value, "open", "no updates once the scope stopped");
  });

  test("a ref url switches the subscription; a getter works too", async () => {
    const env = setup();
    env.ws().open();
    const url = ref("/api/a/");
    const scope = effectScope();
    const state = scope.run(() => useReactiveVue(env.client, url));
    answer(env);
    await tick();
    url.value = "/api/b/";
    assert.deepEqual(state.items.value, []);
    assert.equal(state.loading.value, true);
    assert.equal(env.ws().last("unsubscribe").observer, OBS);
    assert.equal(env.ws().last("subscribe").url, "/api/b/");
    answer(env, { observer: OBS2, items: [row(9)] });
    await tick();
    assert.deepEqual(ids(state.items.value), [9]);

    const owner = ref(1);
    const other = effectScope();
    other.run(() => useReactiveVue(env.client, () => `/api/c/?owner=${owner.value}`));
    assert.equal(env.ws().last("subscribe").url, "/api/c/?owner=1");
    owner.value = 2;
    assert.equal(env.ws().last("subscribe").url, "/api/c/?owner=2");
    scope.stop();
    other.stop();
  });

  test("stopping before the items arrived unsubscribes the late answer; errors land in error", async () => {
    const env = setup();
    env.ws().open();
    const scope = effectScope();
    const state = scope.run(() => useReactiveVue(env.client, "/api/a/"));
    scope.stop();
    answer(env);
    await tick();
    assert.equal(env.ws().last("unsubscribe").observer, OBS);
    assert.deepEqual(state.items.value, [], "the late answer is not shown");

    const refused = effectScope().run(() => useReactiveVue(env.client, "/api/secret/"));
    const request = env.ws().last("subscribe");
    env.ws().push({ type: "error", id: request.id, code: "not_reactive", message: "No." });
    await tick();
    assert.equal(refused.error.value.code, "not_reactive");
    assert.equal(refused.loading.value, false);
  });
});
