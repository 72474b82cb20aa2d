// Types for reactive.js, the client of reactive_celery's batched protocol (ws/reactive/).

/** A primary key value as the server serializes it. */
export type PrimaryKey = string | number;

/** One serialized item of a reactive view's result. */
export type Item = Record<string, unknown>;

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export declare const STATES: readonly ConnectionState[];

/** Codes of `error` frames answering a request (`id`). */
export type RequestErrorCode =
  | "bad_json"
  | "bad_message"
  | "unknown_type"
  | "bad_url"
  | "not_reactive"
  | "forbidden"
  | "not_found"
  | "not_subscribed"
  | "too_large"
  | "too_many_subscriptions"
  | "rate_limited"
  | "unavailable"
  | "busy"
  | "unsupported"
  | "depends_on_user"
  | "error";

/** Codes of `error` frames that end a subscription (`observer`). */
export type ObserverErrorCode = "forbidden" | "gone" | "timeout" | "error" | "crashed";

/**
 * Codes the client itself uses: "closed" (client closed), "bad_diff" (a diff that does not
 * apply), "handshake_refused" (the socket closed before it ever opened, `handshakeAttempts`
 * times in a row: see ReactiveClientOptions), "ticket_failed" (options.ticket rejected).
 */
export type ClientErrorCode = "closed" | "bad_diff" | "handshake_refused" | "ticket_failed";

export type ErrorCode = RequestErrorCode | ObserverErrorCode | ClientErrorCode;

export declare class ReactiveError extends Error {
  constructor(code: string, message?: string, where?: { id?: number | string; observer?: string });
  readonly name: "ReactiveError";
  /** The protocol's code; see ErrorCode (a newer server may send others). */
  readonly code: ErrorCode | (string & {});
  /** The request id, for an error answering a request. */
  readonly id?: number | string;
  /** The observer, for an error that ended a subscription. */
  readonly observer?: string;
}

export interface AddedEntry<T extends object = Item> {
  order: number;
  item: T;
}

export interface MovedEntry {
  order: number;
  pk: PrimaryKey;
}

/** A `diff` frame: one evaluation's changes, applied to the list at `version - 1`. */
export interface DiffFrame<T extends object = Item> {
  type?: "diff";
  observer?: string;
  version?: number;
  removed?: PrimaryKey[];
  added?: AddedEntry<T>[];
  changed?: AddedEntry<T>[];
  moved?: MovedEntry[];
}

/** Pagination fields of paginated views, as the latest frame gave them. */
export interface Meta {
  count?: number;
  next?: string | null;
  previous?: string | null;
}

/**
 * Apply one diff; returns a new array and leaves `items` untouched.
 * Throws a ReactiveError with code "bad_diff" when the diff cannot apply.
 */
export declare function applyDiff<T extends object>(
  items: readonly T[],
  diff: DiffFrame<T>,
  primaryKey: string,
): T[];

/** "apply" for exactly the next version, "ignore" for old ones, "resync" after a gap. */
export declare function versionAction(
  currentVersion: number,
  diffVersion: number,
): "apply" | "ignore" | "resync";

/** True when a diff of `diffVersion` shows frames were missed since `currentVersion`. */
export declare function needsResync(currentVersion: number, diffVersion: number): boolean;

export interface BackoffOptions {
  /** Ceiling of the first delay, ms (500). */
  base?: number;
  /** Largest delay, ms (10000). */
  cap?: number;
  /** Source of jitter in [0, 1) (Math.random). */
  random?: () => number;
}

/** Delay before reconnect attempt `attempt` (0-based): between half and all of min(cap, base * 2^attempt). */
export declare function backoffDelay(attempt: number, options?: BackoffOptions): number;

/** ws(s):// URL for `url`; relative and http(s) URLs resolve against `location`. */
export declare function resolveSocketUrl(url: string, location?: { href: string } | null): string;

export interface SubscriptionHandlers<T extends object = Item> {
  /** Called with the new items after the first answer, each diff and each reset; `diff` is null for full items. */
  onChange?(items: T[], diff: DiffFrame<T> | null): void;
  /** Called once when the server ends the subscription (error frame with its observer). */
  onError?(error: ReactiveError): void;
}

export declare class Subscription<T extends object = Item> {
  /** The path with query this subscription observes. */
  readonly url: string;
  /** The current items, in the view's order; replaced (never mutated) on every change. */
  readonly items: T[];
  /** The version of `items`. */
  readonly version: number;
  /** The server's observer id (64 hex); identical URLs share one. */
  readonly observer: string;
  /** The field identifying items. */
  readonly primaryKey: string;
  readonly meta: Meta;
  /** True once closed by the caller, the client or the server. */
  readonly closed: boolean;
  /** The error that ended the subscription, if the server ended it. */
  readonly error: ReactiveError | null;
  onChange: SubscriptionHandlers<T>["onChange"] | null;
  onError: SubscriptionHandlers<T>["onError"] | null;
  /** Stop the subscription; resolves when the server confirms, at once when offline. Never rejects. */
  close(): Promise<void>;
}

/** The subset of the WebSocket API the client uses. */
export interface WebSocketLike {
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface ReactiveClientOptions {
  /** WebSocket constructor (globalThis.WebSocket). */
  WebSocket?: new (url: string) => WebSocketLike;
  setTimeout?: (callback: () => void, ms: number) => unknown;
  clearTimeout?: (timer: unknown) => void;
  /** Source of backoff jitter (Math.random). */
  random?: () => number;
  /** Base for relative URLs (globalThis.location). */
  location?: { href: string } | null;
  /** First reconnect delay ceiling, ms (500). */
  minDelay?: number;
  /** Largest reconnect delay, ms (10000). */
  maxDelay?: number;
  /** Keepalive ping interval, ms (25000); 0 turns it off. No frame at all between two pings drops the socket. */
  pingInterval?: number;
  /**
   * Sockets in a row that may close before opening, before the client has ever been open,
   * until pending subscribes reject with "handshake_refused" and onError is told (3).
   * The client keeps reconnecting afterwards.
   */
  handshakeAttempts?: number;
  /**
   * For clients without the session cookie: returns a ticket from `POST <prefix>/ticket`
   * (authenticated as the views the socket subscribes to accept). Called before every
   * (re)connect and sent as `?ticket=`; a rejection reaches onError as "ticket_failed"
   * and counts as a socket that did not open (backoff, then a new ticket).
   */
  ticket?: () => Promise<string>;
}

export declare class ReactiveClient {
  /** Opens the socket at once. `url` may be relative ("/ws/reactive/"). */
  constructor(url: string, options?: ReactiveClientOptions);
  /** The resolved ws:// or wss:// URL. */
  readonly url: string;
  readonly state: ConnectionState;
  /** Live subscriptions, in the order they were made. */
  readonly subscriptions: Subscription[];
  onStateChange: ((state: ConnectionState) => void) | null;
  /** Errors that match no request and no subscription, and "handshake_refused". */
  onError: ((error: ReactiveError) => void) | null;
  /** Add a state listener; returns a function that removes it. */
  addStateListener(listener: (state: ConnectionState) => void): () => void;
  /** Subscribe to a `@reactive` view; resolves once its items arrived, rejects with a ReactiveError. */
  subscribe<T extends object = Item>(url: string, handlers?: SubscriptionHandlers<T>): Promise<Subscription<T>>;
  /** Reconnect now instead of after the backoff; only while "reconnecting". */
  reconnect(): void;
  /**
   * Read your writes: resolves once every subscription reflects each write the
   * server committed before the call (e.g. after your own POST answered).
   */
  sync(): Promise<void>;
  /** Close for good: no reconnect, subscriptions end, pending subscribes reject with "closed". */
  close(): void;
}
