/**
 * Vue 3 binding for reactive.js: the composable `useReactive(client, url)`.
 *
 *   import { ReactiveClient } from "reactive-celery";
 *   import { useReactive } from "reactive-celery/vue";
 *
 *   const client = new ReactiveClient("/ws/reactive/"); // one per page
 *   // in <script setup>:
 *   const { items, error, loading, connection } = useReactive(client, "/api/tasks/?done=false");
 *
 * The only module of the package that imports Vue (an optional peer dependency).
 */
import { isRef, onScopeDispose, shallowRef, watch } from "vue";

/**
 * Subscribe to the `@reactive` view at `url` for the life of the calling effect scope
 * (a component's setup, or an `effectScope()`).
 *
 * Returns shallow refs `{items, version, meta, error, loading, connection}`; `items`
 * holds the client's array (replaced, never mutated, on each change). `url` may be a
 * string, a ref or a getter: a new value unsubscribes the old URL and subscribes the
 * new one; `null` subscribes to nothing.
 */
export function useReactive(client, url) {
  const items = shallowRef([]);
  const version = shallowRef(null);
  const meta = shallowRef({});
  const error = shallowRef(null);
  const loading = shallowRef(false);
  const connection = shallowRef(client.state);
  const removeListener = client.addStateListener((state) => (connection.value = state));
  let stop = null;

  const start = (target) => {
    if (stop) stop();
    stop = null;
    items.value = [];
    version.value = null;
    meta.value = {};
    error.value = null;
    loading.value = target != null;
    if (target == null) return;
    let active = true;
    let subscription = null;
    const show = (next) => {
      if (!active) return;
      items.value = next;
      if (subscription) {
        version.value = subscription.version;
        meta.value = subscription.meta;
      }
      loading.value = false;
    };
    const fail = (reason) => {
      if (!active) return;
      error.value = reason;
      loading.value = false;
    };
    client.subscribe(target, { onChange: show, onError: fail }).then(
      (sub) => {
        if (!active) return sub.close(); // the scope ended (or url changed) before the items came
        subscription = sub;
        show(sub.items);
      },
      fail,
    );
    stop = () => {
      active = false;
      if (subscription) subscription.close();
    };
  };

  // Vue warns about watching a plain string; only refs and getters can change.
  if (isRef(url) || typeof url === "function") watch(url, start, { immediate: true });
  else start(url);

  onScopeDispose(() => {
    removeListener();
    if (stop) stop();
    stop = null;
  });
  return { items, version, meta, error, loading, connection };
}
