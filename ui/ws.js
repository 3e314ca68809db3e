// GraphQL subscriptions over one WebSocket with the `graphql-transport-ws` protocol.
//
// The socket opens with the first subscription and sends the token in `connection_init`. When
// it drops, it reconnects with a growing delay and starts every running operation again; each
// operation gives its variables as a function, so a resumable one (`jobLog(after:)`) continues
// after what it already received. A close with 4403 (token refused, revoked or expired) ends
// every operation with that reason instead.

import { ApiError } from './api.js';

const PROTOCOL = 'graphql-transport-ws';

/** Subscriptions of one signed-in tab. */
export class Subscriptions {
  /** `token()` gives the token; `onState(text)` hears of the connection's state. */
  constructor(token, onState = () => {}) {
    this.token = token;
    this.onState = onState;
    this.operations = new Map();
    this.nextId = 1;
    this.socket = null;
    this.acknowledged = false;
    this.retries = 0;
    this.timer = null;
    this.closed = false;
  }

  /**
   * Starts `query` with `variables()`; `handlers.next(data)` for each result,
   * `handlers.error(apiError)` if it fails, `handlers.complete()` when the server ends it,
   * `handlers.restarted()` when it was started again after the connection dropped (what changed
   * meanwhile was not sent: a list reads itself again).
   * Returns a function that stops it.
   */
  subscribe(query, variables, handlers) {
    const id = String(this.nextId++);
    const operation = { query, variables, handlers };
    this.operations.set(id, operation);
    if (this.acknowledged) this.start(id, operation);
    else this.connect();
    return () => {
      if (!this.operations.delete(id)) return;
      if (this.acknowledged) this.send({ id, type: 'complete' });
    };
  }

  /** Ends every operation and the socket, for good. */
  close() {
    this.closed = true;
    this.operations.clear();
    clearTimeout(this.timer);
    this.socket?.close(1000, 'signed out');
    this.socket = null;
  }

  connect() {
    if (this.socket || this.closed || this.timer) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/graphql`, PROTOCOL);
    this.socket = socket;
    this.onState('connecting');
    socket.addEventListener('open', () => {
      this.send({ type: 'connection_init', payload: { Authorization: `Bearer ${this.token() ?? ''}` } });
    });
    socket.addEventListener('message', (event) => this.receive(event.data));
    socket.addEventListener('close', (event) => this.dropped(socket, event));
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  /** Starts an operation; after a reconnect, tells it (`handlers.restarted()`) that it may have missed results. */
  start(id, operation) {
    this.send({ id, type: 'subscribe', payload: { query: operation.query, variables: operation.variables() } });
    if (operation.started) operation.handlers.restarted?.();
    operation.started = true;
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const operation = this.operations.get(message.id);
    switch (message.type) {
      case 'connection_ack':
        this.acknowledged = true;
        this.retries = 0;
        this.onState('live');
        for (const [id, op] of this.operations) this.start(id, op);
        break;
      case 'ping':
        this.send({ type: 'pong' });
        break;
      case 'next':
        if (!operation) break;
        if (message.payload?.errors?.length) operation.handlers.error?.(ApiError.of(message.payload.errors));
        if (message.payload?.data) operation.handlers.next(message.payload.data);
        break;
      case 'error':
        if (!operation) break;
        this.operations.delete(message.id);
        operation.handlers.error?.(ApiError.of(message.payload));
        break;
      case 'complete':
        if (!operation) break;
        this.operations.delete(message.id);
        operation.handlers.complete?.();
        break;
      default:
        break;
    }
  }

  dropped(socket, event) {
    if (this.socket !== socket) return;
    this.socket = null;
    this.acknowledged = false;
    if (this.closed) return;
    if (event.code === 4403 || event.code === 4401) {
      const error = new ApiError('UNAUTHENTICATED', event.reason || 'the server ended the session');
      const ended = [...this.operations.values()];
      this.operations.clear();
      this.onState('closed');
      for (const op of ended) op.handlers.error?.(error);
      return;
    }
    if (this.operations.size === 0) {
      this.onState('');
      return;
    }
    const delay = Math.min(15000, 500 * 2 ** this.retries);
    this.retries += 1;
    this.onState(`reconnecting in ${Math.round(delay / 1000)} s`);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }
}
