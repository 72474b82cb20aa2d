// The part of Vue 3 the adapter uses, with Vue's rules where the adapter relies on them:
// refs notify watchers when their value changes; `watch(source, cb, {immediate})` takes
// a ref or a getter and calls cb(new, old); `onScopeDispose` runs when the scope stops.
// Watchers re-check their source on every ref write (Vue tracks finer; same outcome).
const REF = Symbol("ref");
const watchers = new Set();
let scope = null;

function notify() {
  for (const watcher of [...watchers]) watcher.check();
}

export function shallowRef(initial) {
  let value = initial;
  return {
    [REF]: true,
    get value() {
      return value;
    },
    set value(next) {
      if (Object.is(next, value)) return;
      value = next;
      notify();
    },
  };
}

export const ref = shallowRef;

export function isRef(value) {
  return Boolean(value && value[REF]);
}

export function watch(source, callback, { immediate = false } = {}) {
  const read = isRef(source) ? () => source.value : source;
  let last = read();
  const watcher = {
    check() {
      const next = read();
      if (Object.is(next, last)) return;
      const old = last;
      last = next;
      callback(next, old);
    },
  };
  watchers.add(watcher);
  const stop = () => watchers.delete(watcher);
  if (scope) scope.cleanups.push(stop);
  if (immediate) callback(last, undefined);
  return stop;
}

export function onScopeDispose(fn) {
  if (!scope) throw new Error("onScopeDispose() outside an effect scope");
  scope.cleanups.push(fn);
}

export function effectScope() {
  const own = { cleanups: [], active: true };
  return {
    run(fn) {
      const outer = scope;
      scope = own;
      try {
        return fn();
      } finally {
        scope = outer;
      }
    },
    stop() {
      if (!own.active) return;
      own.active = false;
      for (const cleanup of own.cleanups) cleanup();
    },
  };
}
