// Types for vue.js, the Vue 3 binding of reactive.js.
import type { MaybeRefOrGetter, ShallowRef } from "vue";
import type { ConnectionState, Item, Meta, ReactiveClient, ReactiveError } from "./reactive.js";

export interface ReactiveRefs<T extends object = Item> {
  /** The current items; the client's array, replaced (never mutated) on each change. */
  items: ShallowRef<T[]>;
  /** The version of `items`; null until the subscription resolved. */
  version: ShallowRef<number | null>;
  /** `{count, next, previous}` for paginated views. */
  meta: ShallowRef<Meta>;
  /** The error that refused or ended the subscription. */
  error: ShallowRef<ReactiveError | null>;
  /** True until the first items of the current `url` arrived (or an error did). */
  loading: ShallowRef<boolean>;
  /** The client's connection state. */
  connection: ShallowRef<ConnectionState>;
}

/** Subscribe to the `@reactive` view at `url` for the life of the current effect scope; `null`: none. */
export declare function useReactive<T extends object = Item>(
  client: ReactiveClient,
  url: MaybeRefOrGetter<string | null | undefined>,
): ReactiveRefs<T>;
