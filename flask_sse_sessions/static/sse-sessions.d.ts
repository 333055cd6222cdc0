/**
 * Types of the flask-sse-sessions browser client, served beside it as
 * `<prefix>/sse-sessions.d.ts`. They type both forms of the client:
 *
 * - the ES module `<prefix>/sse-sessions.mjs`: `import { connect } from "..."`;
 * - the classic script `<prefix>/sse-sessions.js`: the global `SSESessions`.
 *
 * The message interfaces match `flask_sse_sessions/messages.py`.
 */

export as namespace SSESessions;

/** First message of every connection; it has no id. */
export interface ConnectedMessage {
  type: "connected";
  sessionId: string;
  timestamp: string;
}

/** Sent after `SSE_SESSIONS_HEARTBEAT_INTERVAL` seconds of silence; no id. */
export interface HeartbeatMessage {
  type: "heartbeat";
  timestamp: string;
}

/**
 * The stream's last id is no longer stored on the server: some events were
 * missed, and the session's latest event follows. No id.
 */
export interface ResetMessage {
  type: "reset";
}

/** What `broadcast_progress` sends, plus the app's own keys. */
export interface ProgressMessage {
  type: "progress";
  timestamp: string;
  percent?: number;
  message?: string;
  [key: string]: unknown;
}

/** What `broadcast_complete` sends, plus the app's own keys; the stream closes after it. */
export interface CompleteMessage {
  type: "complete";
  timestamp: string;
  [key: string]: unknown;
}

/** What `broadcast_error` sends, plus the app's own keys. */
export interface ErrorMessage {
  type: "error";
  message: string;
  timestamp: string;
  [key: string]: unknown;
}

/** An event of a type the app named with `broadcast(session_id, type, ...)`. */
export interface AppMessage<T extends string = string> {
  type: T;
  timestamp: string;
  [key: string]: unknown;
}

export type Message =
  | ConnectedMessage
  | HeartbeatMessage
  | ResetMessage
  | ProgressMessage
  | CompleteMessage
  | ErrorMessage;

/** The message of each type the server itself defines. */
export interface MessageMap {
  connected: ConnectedMessage;
  heartbeat: HeartbeatMessage;
  reset: ResetMessage;
  progress: ProgressMessage;
  complete: CompleteMessage;
  error: ErrorMessage;
}

/**
 * The app's own event types and the keys each carries, for example
 * `{ token: { text: string } }`, given to `connect<Events>()`.
 */
export type AppEvents = { [type: string]: object };

/** The message of each type a stream with the app's `Events` may carry. */
export type MessagesOf<Events extends AppEvents> = MessageMap & {
  [K in Exclude<keyof Events, keyof MessageMap> & string]: AppMessage<K> & Events[K];
};

export interface Meta<T extends string = string> {
  /** The event's id; null for connected, heartbeat and reset messages. */
  id: string | null;
  type: T;
}

export type Listener<M, T extends string = string> = (data: M, meta: Meta<T>) => void;

export type State = "connecting" | "open" | "closed";

export interface ConnectOptions {
  /** Resume after this id (for example one kept in localStorage). */
  lastEventId?: string | null;
  /** Send cookies to another origin (it must be in `SSE_SESSIONS_CORS_ORIGINS`). */
  withCredentials?: boolean;
  /** First reconnect delay in milliseconds, doubled per failure. Default 1000. */
  minDelay?: number;
  /** Longest reconnect delay in milliseconds. Default 30000. */
  maxDelay?: number;
  /** Called whenever `stream.state` changes. */
  onStateChange?: (state: State, stream: Stream) => void;
}

/** Why a stream closed for good when the server refused it (a 4xx but 408 and 429). */
export interface StreamError {
  status: number;
  /** The `error` code of the server's JSON answer, such as `"invalid_token"`. */
  error?: string;
  /** The server's sentence for a person. */
  message?: string;
}

export interface Stream<Events extends AppEvents = {}> {
  readonly state: State;
  /** The last id seen, kept across reconnects. */
  readonly lastEventId: string | null;
  /** Set when the server refused the stream for good; `state` is then "closed". */
  readonly error: StreamError | null;
  on<K extends keyof MessagesOf<Events> & string>(
    type: K,
    fn: Listener<MessagesOf<Events>[K], K>
  ): this;
  /** Every message but heartbeats. */
  on(type: "*", fn: Listener<Exclude<Message, HeartbeatMessage> | AppMessage>): this;
  on(type: string, fn: Listener<AppMessage>): this;
  off(type: string, fn: Listener<any, any>): this;
  /** Stop for good. */
  close(): void;
}

/**
 * Open the stream at `url` (as the server rendered it, token included).
 * `Events` types the app's own event types: `connect<{ token: { text: string } }>(url)`.
 */
export declare function connect<Events extends AppEvents = {}>(
  url: string,
  options?: ConnectOptions
): Stream<Events>;

declare const client: { connect: typeof connect };
export default client;
