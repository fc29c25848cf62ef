// Owns Toss's Idempotency-Key semantics for POST requests: the scope is
// key + secret key + method + URL path (the body is not compared), the first
// response (errors included) is replayed for 15 days of the emulator clock,
// and a duplicate arriving while the first is still running is told so (409).
'use strict';

const clock = require('./clock');

const MAX_KEY_LENGTH = 300;
const TTL_MS = 15 * 24 * 60 * 60 * 1000;

class IdempotencyStore {
  constructor() {
    this.entries = new Map();
    this.inserts = 0;
  }

  clear() {
    this.entries.clear();
  }

  static scope(secretKey, method, rawPath, key) {
    return secretKey + '\n' + method + '\n' + rawPath + '\n' + key;
  }

  /**
   * Claim a scope. Returns {state: 'new'} (caller must complete() or abandon()),
   * {state: 'inflight'} or {state: 'done', response}.
   */
  begin(scope) {
    const now = clock.now();
    const e = this.entries.get(scope);
    if (e && e.expiresAt > now) {
      return e.response ? { state: 'done', response: e.response, traceId: e.traceId } : { state: 'inflight' };
    }
    this.entries.set(scope, { expiresAt: now + TTL_MS, response: null });
    if (++this.inserts % 50000 === 0) this.sweep(now);
    return { state: 'new' };
  }

  /** Store the first response ({status, headers, payload}) and its trace id for replay. */
  complete(scope, response, traceId) {
    const e = this.entries.get(scope);
    if (e) {
      e.response = response;
      e.traceId = traceId;
    }
  }

  /** Forget a claim whose request did nothing (faults that drop the request). */
  abandon(scope) {
    const e = this.entries.get(scope);
    if (e && !e.response) this.entries.delete(scope);
  }

  sweep(now = clock.now()) {
    for (const [k, e] of this.entries) if (e.expiresAt <= now && e.response) this.entries.delete(k);
  }
}

module.exports = { IdempotencyStore, MAX_KEY_LENGTH, TTL_MS };
