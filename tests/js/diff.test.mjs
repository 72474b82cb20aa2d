// The pure helpers of reactive.js: diff application, version checks, backoff, URLs.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isDeepStrictEqual } from "node:util";

import {
  applyDiff,
  backoffDelay,
  needsResync,
  resolveSocketUrl,
  versionAction,
} from "../../reactive_celery/static/reactive_celery/reactive.js";

const row = (id, name = `n${id}`) => ({ id, name });
const ids = (items) => items.map((item) => item.id);
const emptyDiff = { removed: [], added: [], changed: [], moved: [] };

function deepFreeze(value) {
  if (value && typeof value === "object") {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}

describe("applyDiff", () => {
  test("removes by primary key", () => {
    const old = [row(1), row(2), row(3)];
    assert.deepEqual(ids(applyDiff(old, { ...emptyDiff, removed: [3, 1] }, "id")), [2]);
  });

  test("inserts added items at their order", () => {
    const old = [row(1), row(2)];
    const result = applyDiff(old, { ...emptyDiff, added: [{ order: 1, item: row(9) }] }, "id");
    assert.deepEqual(ids(result), [1, 9, 2]);
  });

  test("changed replaces the held item and moves it to its order", () => {
    const old = [row(1), row(2), row(3)];
    const diff = { ...emptyDiff, changed: [{ order: 0, item: row(3, "new") }] };
    assert.deepEqual(applyDiff(old, diff, "id"), [row(3, "new"), row(1), row(2)]);
  });

  test("moved re-inserts the item already held, not data from the frame", () => {
    const held = row(3, "held");
    const diff = { ...emptyDiff, moved: [{ order: 0, pk: 3, item: row(3, "ignored") }] };
    const result = applyDiff([row(1), row(2), held], diff, "id");
    assert.deepEqual(ids(result), [3, 1, 2]);
    assert.equal(result[0], held);
  });

  test("removals go before upserts", () => {
    // Upserting first would give [9, 2]; the protocol removes 1 first, then inserts at 1.
    const diff = { ...emptyDiff, removed: [1], added: [{ order: 1, item: row(9) }] };
    assert.deepEqual(ids(applyDiff([row(1), row(2)], diff, "id")), [2, 9]);
  });

  test("added, changed and moved apply together in ascending order", () => {
    // In frame order (added, then moved) this would be [3, 1, 9, 2].
    const diff = { ...emptyDiff, added: [{ order: 1, item: row(9) }], moved: [{ order: 0, pk: 3 }] };
    assert.deepEqual(ids(applyDiff([row(1), row(2), row(3)], diff, "id")), [3, 9, 1, 2]);
    // Entries listed out of order within one kind are sorted as well.
    const changed = {
      ...emptyDiff,
      changed: [
        { order: 2, item: row(1, "x") },
        { order: 0, item: row(3, "y") },
      ],
    };
    assert.deepEqual(ids(applyDiff([row(1), row(2), row(3)], changed, "id")), [3, 2, 1]);
  });

  test("uses the given primary key field, string keys included", () => {
    const old = [{ slug: "a" }, { slug: "b" }];
    const diff = { removed: ["a"], added: [{ order: 1, item: { slug: "c" } }] };
    assert.deepEqual(applyDiff(old, diff, "slug"), [{ slug: "b" }, { slug: "c" }]);
  });

  test("returns a new array and leaves the input untouched", () => {
    const old = deepFreeze([row(1), row(2)]);
    const same = applyDiff(old, emptyDiff, "id");
    assert.notEqual(same, old);
    assert.deepEqual(same, old);
    const changed = applyDiff(old, { ...emptyDiff, removed: [1] }, "id");
    assert.deepEqual(ids(changed), [2]);
    assert.deepEqual(ids(old), [1, 2]);
  });

  test("a moved key that is not held is a bad_diff", () => {
    assert.throws(
      () => applyDiff([row(1)], { ...emptyDiff, moved: [{ order: 0, pk: 7 }] }, "id"),
      (error) => error.code === "bad_diff",
    );
    assert.throws(
      () => applyDiff([row(1)], { ...emptyDiff, moved: [{ order: 0, pk: 1 }], removed: [1] }, "id"),
      (error) => error.code === "bad_diff",
      "a removed item is no longer held",
    );
    assert.throws(
      () => applyDiff([row(1)], { ...emptyDiff, added: [{ order: -1, item: row(2) }] }, "id"),
      (error) => error.code === "bad_diff",
    );
  });
});

// The server's diff, ported from reactive_celery/diff.py: diff(), batch() and apply().

function serverDiff(old, next, pk) {
  const oldKeys = new Set(old.map((item) => item[pk]));
  const newKeys = new Set(next.map((item) => item[pk]));
  const changes = [];
  for (let order = old.length - 1; order >= 0; order--) {
    if (!newKeys.has(old[order][pk])) changes.push({ msg: "removed", order, item: old[order] });
  }
  const current = old.filter((item) => newKeys.has(item[pk]));
  next.forEach((item, order) => {
    const key = item[pk];
    if (order < current.length && current[order][pk] === key) {
      if (!isDeepStrictEqual(current[order], item)) {
        changes.push({ msg: "changed", order, item });
        current[order] = item;
      }
      return;
    }
    if (oldKeys.has(key)) {
      const position = current.findIndex((held, i) => i > order && held[pk] === key);
      const [popped] = current.splice(position, 1);
      const change = { msg: "changed", order, item };
      if (isDeepStrictEqual(popped, item)) change.moved = true;
      changes.push(change);
    } else {
      changes.push({ msg: "added", order, item });
    }
    current.splice(order, 0, item);
  });
  return changes;
}

function batch(changes, pk, { withMoved = true } = {}) {
  const result = { removed: [], added: [], changed: [], moved: [] };
  for (const change of changes) {
    if (change.msg === "removed") result.removed.push(change.item[pk]);
    else if (change.moved && withMoved) result.moved.push({ order: change.order, pk: change.item[pk] });
    else result[change.msg].push({ order: change.order, item: change.item });
  }
  return result;
}

function sequentialApply(items, changes, pk) {
  const result = [...items];
  for (const change of changes) {
    const at = result.findIndex((item) => item[pk] === change.item[pk]);
    if (change.msg !== "added" && at !== -1) result.splice(at, 1);
    if (change.msg !== "removed") result.splice(change.order, 0, change.item);
  }
  return result;
}

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomList(random, pool, stringKeys) {
  const keys = pool.filter(() => random() < 0.6);
  for (let i = keys.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [keys[i], keys[j]] = [keys[j], keys[i]];
  }
  // Few distinct values, so many items keep their data and only move.
  return keys.map((key) => ({ id: stringKeys ? `k${key}` : key, value: Math.floor(random() * 3) }));
}

describe("applyDiff against the server's diff (seeded property test)", () => {
  const SEED = 20240607;
  const RUNS = 3000;

  test(`applyDiff(old, batch(diff(old, new))) equals new over ${RUNS} random cases`, () => {
    const random = mulberry32(SEED);
    const seen = { removed: 0, added: 0, changed: 0, moved: 0 };
    for (let run = 0; run < RUNS; run++) {
      const pool = Array.from({ length: 1 + Math.floor(random() * 12) }, (_, i) => i);
      const stringKeys = random() < 0.3;
      const old = deepFreeze(randomList(random, pool, stringKeys));
      const next = randomList(random, pool, stringKeys);
      const changes = serverDiff(old, next, "id");
      const context = `seed ${SEED}, run ${run}: ${JSON.stringify({ old, next })}`;
      assert.deepEqual(sequentialApply(old, changes, "id"), next, `reference port, ${context}`);

      const frame = batch(changes, "id");
      for (const kind of Object.keys(seen)) if (frame[kind].length) seen[kind]++;
      assert.deepEqual(applyDiff(old, frame, "id"), next, `batched, ${context}`);
      const upsertsOnly = batch(changes, "id", { withMoved: false });
      assert.deepEqual(applyDiff(old, upsertsOnly, "id"), next, `upserts only, ${context}`);
    }
    // The generator must exercise every kind of entry, or the property proves little.
    for (const [kind, count] of Object.entries(seen)) {
      assert.ok(count > RUNS / 20, `only ${count} frames with ${kind}`);
    }
  });

  test("an upsert-only frame in any entry order still yields new", () => {
    const random = mulberry32(7);
    for (let run = 0; run < 500; run++) {
      const pool = Array.from({ length: 8 }, (_, i) => i);
      const old = randomList(random, pool, false);
      const next = randomList(random, pool, false);
      const frame = batch(serverDiff(old, next, "id"), "id");
      // Shuffle within each kind: the client sorts by order.
      for (const kind of ["added", "changed", "moved"]) frame[kind].reverse();
      assert.deepEqual(applyDiff(old, frame, "id"), next, `run ${run}`);
    }
  });
});

describe("versions", () => {
  test("versionAction: apply the next version, ignore old ones, resync on a gap", () => {
    assert.equal(versionAction(7, 8), "apply");
    assert.equal(versionAction(7, 7), "ignore");
    assert.equal(versionAction(7, 3), "ignore");
    assert.equal(versionAction(7, 9), "resync");
    assert.equal(versionAction(7, 100), "resync");
    assert.equal(versionAction(7, undefined), "resync");
    assert.equal(versionAction(7, "8"), "resync");
  });

  test("needsResync only for a gap, never for duplicates", () => {
    assert.equal(needsResync(1, 2), false);
    assert.equal(needsResync(1, 1), false);
    assert.equal(needsResync(5, 0), false);
    assert.equal(needsResync(1, 3), true);
    assert.equal(needsResync(0, 2), true);
  });
});

describe("backoffDelay", () => {
  test("doubles from the base up to the cap", () => {
    const top = (attempt) => backoffDelay(attempt, { base: 500, cap: 10000, random: () => 1 });
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 20].map(top), [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
  });

  test("jitter keeps each delay between half and all of its ceiling", () => {
    const random = mulberry32(1);
    for (let attempt = 0; attempt < 10; attempt++) {
      const ceiling = Math.min(10000, 500 * 2 ** attempt);
      const delays = Array.from({ length: 50 }, () => backoffDelay(attempt, { random }));
      assert.ok(delays.every((d) => d >= ceiling / 2 && d <= ceiling), `attempt ${attempt}`);
      assert.ok(new Set(delays).size > 1, "jitter varies the delay");
    }
    assert.equal(backoffDelay(0, { random: () => 0 }), 250);
  });
});

describe("resolveSocketUrl", () => {
  const location = { href: "https://board.example/tasks/?x=1" };

  test("relative URLs take the page's host and a matching ws scheme", () => {
    assert.equal(resolveSocketUrl("/ws/reactive/", location), "wss://board.example/ws/reactive/");
    assert.equal(
      resolveSocketUrl("/ws/reactive/", { href: "http://localhost:8000/" }),
      "ws://localhost:8000/ws/reactive/",
    );
  });

  test("ws URLs pass through and http URLs change scheme", () => {
    assert.equal(resolveSocketUrl("ws://a.example/ws/reactive/", location), "ws://a.example/ws/reactive/");
    assert.equal(resolveSocketUrl("https://a.example/ws/reactive/", undefined), "wss://a.example/ws/reactive/");
  });

  test("a relative URL without a location is an error that says what to pass", () => {
    assert.throws(() => resolveSocketUrl("/ws/reactive/", undefined), /ws:\/\/ or wss:\/\//);
  });
});
