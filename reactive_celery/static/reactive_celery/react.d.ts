// Types for react.js, the React binding of reactive.js.
import type { ConnectionState, Item, Meta, ReactiveClient, ReactiveError } from "./reactive.js";

export interface ReactiveState<T extends object = Item> {
  /** The current items; the client's array, replaced (never mutated) on each change. */
  items: T[];
  /** The version of `items`; null until the subscription resolved. */
  version: number | null;
  /** `{count, next, previous}` for paginated views. */
  meta: Meta;
  /** The error that refused or ended the subscription. */
  error: ReactiveError | null;
  /** True until the first items of the current `url` arrived (or an error did). */
  loading: boolean;
  /** The client's connection state. */
  connection: ConnectionState;
}

/** Subscribe to the `@reactive` view at `url` while the component is mounted; `null`: none. */
export declare function useReactive<T extends object = Item>(
  client: ReactiveClient,
  url: string | null | undefined,
): ReactiveState<T>;
