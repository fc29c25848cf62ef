// Owns outbound webhooks: events (PAYMENT_STATUS_CHANGED, BILLING_DELETED)
// are POSTed as {eventType, createdAt, data} to the configured loopback URL,
// retried on a non-2xx answer, an error or a timeout (10 s) on Toss's
// schedule — 1, 4, 16, 64, 256, 1024, 4096 minutes, divided by the time
// scale — and recorded with every attempt for the admin API. Retries are due
// on the emulator clock, so advancing the clock makes them fire.
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const clock = require('./clock');

const RETRY_MINUTES = [1, 4, 16, 64, 256, 1024, 4096];
const MAX_ATTEMPTS = RETRY_MINUTES.length + 1;
const KST_OFFSET_MS = 9 * 60 * 60 * 1000;

/** `2026-01-02T14:46:59.653000`: Korea time, microseconds, no offset (as in Toss's payment events). */
function createdAtOf(ms) {
  return new Date(ms + KST_OFFSET_MS).toISOString().slice(0, 23) + '000';
}

class Webhooks {
  /** getConfig() → {webhookUrl, webhookTimeScale, webhookTimeoutMs} */
  constructor(getConfig) {
    this.getConfig = getConfig;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    this.list = [];
    this.nextId = 1;
    this.timer = null;
    this.requests = new Set();
  }

  clear() {
    clearTimeout(this.timer);
    this.timer = null;
    for (const r of this.requests) r.destroy();
    this.requests.clear();
    this.list = [];
  }

  close() {
    this.clear();
    this.agent.destroy();
  }

  /** Record an event and start delivering it (if a URL is configured). Returns the event record. */
  emit(mId, eventType, data) {
    const now = clock.now();
    const url = this.getConfig().webhookUrl;
    const ev = {
      id: `wh-${this.nextId++}`,
      transmissionId: crypto.randomUUID(),
      eventType,
      mId,
      url,
      createdAt: createdAtOf(now),
      payload: JSON.stringify({ eventType, createdAt: createdAtOf(now), data }),
      status: url ? 'pending' : 'noEndpoint',
      attempts: [],
      nextAttemptAt: url ? now : null,
      sending: false,
    };
    this.list.push(ev);
    if (url) this.schedule();
    return ev;
  }

  /** Arm one timer for the earliest due attempt (emulator clock). Call again after the clock moves. */
  schedule() {
    clearTimeout(this.timer);
    this.timer = null;
    let due = Infinity;
    for (const ev of this.list) {
      if (ev.status === 'pending' && !ev.sending && ev.nextAttemptAt < due) due = ev.nextAttemptAt;
    }
    if (due === Infinity) return;
    const wait = Math.max(0, Math.min(due - clock.now(), 2 ** 31 - 1));
    this.timer = setTimeout(() => this.run(), wait);
  }

  run() {
    this.timer = null;
    const now = clock.now();
    for (const ev of this.list) {
      if (ev.status === 'pending' && !ev.sending && ev.nextAttemptAt <= now) this.attempt(ev);
    }
    this.schedule();
  }

  attempt(ev) {
    const cfg = this.getConfig();
    const n = ev.attempts.length + 1;
    const rec = { n, at: new Date(clock.now()).toISOString(), status: null, error: null, durationMs: null };
    ev.attempts.push(rec);
    ev.sending = true;
    const started = Date.now();
    let finished = false;
    let deadline = null;
    let req = null;
    const finish = (status, error) => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      this.requests.delete(req);
      rec.status = status;
      rec.error = error;
      rec.durationMs = Date.now() - started;
      ev.sending = false;
      if (!this.list.includes(ev)) return; // cleared meanwhile
      if (status !== null && status >= 200 && status < 300) {
        ev.status = 'delivered';
        ev.nextAttemptAt = null;
      } else if (n >= MAX_ATTEMPTS) {
        ev.status = 'failed';
        ev.nextAttemptAt = null;
      } else {
        ev.nextAttemptAt = clock.now() + (RETRY_MINUTES[n - 1] * 60000) / this.getConfig().webhookTimeScale;
      }
      this.schedule();
    };
    const body = Buffer.from(ev.payload);
    try {
      req = http.request(ev.url, {
        method: 'POST',
        agent: this.agent,
        headers: {
          'Content-Type': 'application/json; charset=utf-8',
          'Content-Length': body.length,
          'tosspayments-webhook-transmission-id': ev.transmissionId,
          'tosspayments-webhook-transmission-time': clock.kst(clock.now()),
          'tosspayments-webhook-transmission-retried-count': String(n - 1),
        },
      }, (res) => {
        res.resume();
        res.on('end', () => finish(res.statusCode, null));
        res.on('error', (e) => finish(null, e.message));
      });
    } catch (e) {
      finish(null, e.message);
      return;
    }
    this.requests.add(req);
    deadline = setTimeout(() => req.destroy(new Error(`timeout after ${cfg.webhookTimeoutMs} ms`)), cfg.webhookTimeoutMs);
    req.on('error', (e) => finish(null, e.message));
    req.end(body);
  }

  describe(filter = {}) {
    const out = [];
    for (const ev of this.list) {
      if (filter.eventType && ev.eventType !== filter.eventType) continue;
      if (filter.status && ev.status !== filter.status) continue;
      out.push({
        id: ev.id, eventType: ev.eventType, mId: ev.mId, url: ev.url, status: ev.status, createdAt: ev.createdAt,
        transmissionId: ev.transmissionId, payload: JSON.parse(ev.payload),
        attempts: ev.attempts.map((a) => ({ ...a })),
        nextAttemptAt: ev.nextAttemptAt === null ? null : new Date(ev.nextAttemptAt).toISOString(),
      });
    }
    return out;
  }
}

module.exports = { Webhooks, RETRY_MINUTES, MAX_ATTEMPTS, createdAtOf };
