// Owns request throttling: a token bucket per merchant (secret key) that
// refills at `perSecond` tokens a second up to `burst`. A request that finds
// the bucket empty is refused (429 TOO_MANY_REQUESTS by default, or a
// configured code such as FORBIDDEN_CONSECUTIVE_REQUEST) without being run.
'use strict';

class RateLimiter {
  constructor() {
    this.configure(null);
  }

  /** cfg: null (off) or {perSecond, burst}. Resets every bucket. */
  configure(cfg) {
    this.cfg = cfg;
    this.buckets = new Map();
  }

  /** Take a token for `key`. Returns 0 when allowed, else the seconds until a token is available. */
  take(key, nowMs = performance.now()) {
    const cfg = this.cfg;
    if (!cfg) return 0;
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: cfg.burst, at: nowMs };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(cfg.burst, b.tokens + ((nowMs - b.at) / 1000) * cfg.perSecond);
      b.at = nowMs;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return (1 - b.tokens) / cfg.perSecond;
  }
}

module.exports = { RateLimiter };
