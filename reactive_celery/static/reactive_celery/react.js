/**
 * React binding for reactive.js: `useReactive(client, url)` keeps a component's list live.
 *
 *   import { ReactiveClient } from "reactive-celery";
 *   import { useReactive } from "reactive-celery/react";
 *
 *   const client = new ReactiveClient("/ws/reactive/"); // one per page
 *   function Tasks() {
 *     const { items, error, loading, connection } = useReactive(client, "/api/tasks/?done=false");
 *   }
 *
 * The only module of the package that imports React (an optional peer dependency).
 */
import { useEffect, useState } from "react";

const IDLE = Object.freeze({ items: [], version: null, meta: {}, error: null, loading: false });

function loadingFor(url) {
  return { url, items: [], version: null, meta: {}, error: null, loading: true };
}

/**
 * Subscribe to the `@reactive` view at `url` while the component is mounted.
 *
 * Returns `{items, version, meta, error, loading, connection}`: `items` is the client's
 * array (replaced, never mutated, on each change), `error` the ReactiveError that refused
 * or ended the subscription, `connection` the client's state. A new `url` unsubscribes
 * the old one and starts loading the new one; `null` subscribes to nothing.
 */
export function useReactive(client, url) {
  const [snapshot, setSnapshot] = useState(() => (url == null ? { url, ...IDLE } : loadingFor(url)));
  const [connection, setConnection] = useState(client.state);

  useEffect(() => {
    setConnection(client.state); // it may have changed between render and effect
    return client.addStateListener(setConnection);
  }, [client]);

  useEffect(() => {
    if (url == null) return undefined;
    let active = true;
    let subscription = null;
    const show = (items) => {
      if (!active) return;
      setSnapshot({
        url,
        items,
        version: subscription ? subscription.version : null,
        meta: subscription ? subscription.meta : {},
        error: null,
        loading: false,
      });
    };
    const fail = (error) => {
      if (active) setSnapshot((previous) => ({ ...previous, url, error, loading: false }));
    };
    setSnapshot((previous) => (previous.url === url && previous.loading ? previous : loadingFor(url)));
    client.subscribe(url, { onChange: show, onError: fail }).then(
      (sub) => {
        if (!active) return sub.close(); // unmounted (or url changed) before the items came
        subscription = sub;
        show(sub.items);
      },
      fail,
    );
    return () => {
      active = false;
      if (subscription) subscription.close();
    };
  }, [client, url]);

  // Between a url change and its effect, the previous url's items must not show.
  const current = snapshot.url === url ? snapshot : url == null ? { url, ...IDLE } : loadingFor(url);
  return {
    items: current.items,
    version: current.version,
    meta: current.meta,
    error: current.error,
    loading: current.loading,
    connection,
  };
}
