// Owns the emulator's runtime settings: global latency and jitter, the rate
// limit, the webhook endpoint and its time scale, the transactions lag and
// the random seed, the lookup lag, whether an ABORTED orderId may be used
// again, and the permissive-keys switch. They are set by startup flags and changed through
// POST /__emulator/config; POST /__emulator/reset restores the startup values.
'use strict';

const { isKnown, statusOf } = require('./errors');

const DEFAULTS = Object.freeze({
  latencyMs: 0,
  latencyJitterMs: 0,
  rateLimit: null,
  webhookUrl: null,
  webhookTimeScale: 1,
  webhookTimeoutMs: 10000,
  transactionLagMs: 0,
  lookupLagMs: 0,
  abortedOrderIdReuse: true,
  permissiveKeys: false,
  seed: null,
});
const KEYS = Object.keys(DEFAULTS);
const MAX_MS = 600000;

const LOOPBACK = /^(127(\.\d{1,3}){3}|localhost|\[::1\])$/i;

/** An http URL on the loopback interface, or an error string. */
function checkWebhookUrl(v) {
  let u;
  try {
    u = new URL(v);
  } catch {
    return 'webhookUrl must be an absolute http URL';
  }
  if (u.protocol !== 'http:') return 'webhookUrl must be an http URL';
  if (!LOOPBACK.test(u.hostname)) return 'webhookUrl must point at the loopback interface (127.0.0.1, localhost, [::1])';
  return null;
}

/** Normalise a rate-limit setting: null, or {perSecond, burst?, code?, status?}. */
function checkRateLimit(v) {
  if (v === null) return { value: null };
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { error: 'rateLimit must be null or {perSecond, burst?, code?, status?}' };
  for (const k of Object.keys(v)) if (!['perSecond', 'burst', 'code', 'status'].includes(k)) return { error: `unknown rateLimit key ${k}` };
  if (typeof v.perSecond !== 'number' || !(v.perSecond > 0) || v.perSecond > 1e7) return { error: 'rateLimit.perSecond must be a number > 0' };
  const burst = v.burst === undefined ? Math.max(1, v.perSecond) : v.burst;
  if (typeof burst !== 'number' || !(burst >= 1) || burst > 1e7) return { error: 'rateLimit.burst must be a number >= 1' };
  const code = v.code === undefined ? 'TOO_MANY_REQUESTS' : v.code;
  if (typeof code !== 'string' || code === '') return { error: 'rateLimit.code must be a non-empty string' };
  const status = v.status === undefined ? statusOf(code) : v.status;
  if (!Number.isInteger(status) || status < 400 || status > 599) {
    return { error: isKnown(code) ? 'rateLimit.status must be 400..599' : `unknown code ${code}: give rateLimit.status` };
  }
  return { value: { perSecond: v.perSecond, burst, code, status } };
}

/**
 * Validate a partial settings object. Returns {value} (normalised, only the
 * given keys) or {error}.
 */
function checkPatch(p) {
  if (!p || typeof p !== 'object' || Array.isArray(p)) return { error: 'body must be a JSON object' };
  const out = {};
  for (const k of Object.keys(p)) {
    if (!KEYS.includes(k)) return { error: `unknown setting ${k}` };
    const v = p[k];
    switch (k) {
      case 'latencyMs':
      case 'latencyJitterMs':
      case 'transactionLagMs':
      case 'lookupLagMs':
        if (typeof v !== 'number' || !(v >= 0) || v > (k.endsWith('LagMs') ? 1e12 : MAX_MS)) return { error: `${k} must be a number >= 0` };
        out[k] = v;
        break;
      case 'webhookTimeoutMs':
        if (typeof v !== 'number' || !(v > 0) || v > MAX_MS) return { error: `webhookTimeoutMs must be 1..${MAX_MS}` };
        out[k] = v;
        break;
      case 'webhookTimeScale':
        if (typeof v !== 'number' || !(v > 0) || v > 1e9) return { error: 'webhookTimeScale must be a number > 0' };
        out[k] = v;
        break;
      case 'webhookUrl': {
        if (v !== null) {
          if (typeof v !== 'string') return { error: 'webhookUrl must be a string or null' };
          const e = checkWebhookUrl(v);
          if (e) return { error: e };
        }
        out[k] = v;
        break;
      }
      case 'rateLimit': {
        const r = checkRateLimit(v);
        if (r.error) return r;
        out[k] = r.value;
        break;
      }
      case 'abortedOrderIdReuse':
      case 'permissiveKeys':
        if (typeof v !== 'boolean') return { error: `${k} must be true or false` };
        out[k] = v;
        break;
      case 'seed':
        if (v !== null && (!Number.isInteger(v) || v < 0 || v > 0xffffffff)) return { error: 'seed must be an integer 0..4294967295 or null' };
        out[k] = v;
        break;
      default:
        break;
    }
  }
  return { value: out };
}

/** Settings and faults given at startup (state.startup); POST /__emulator/reset comes back to them. */
function applyStartup(state) {
  const s = state.startup;
  state.config = { ...DEFAULTS, ...s.config };
  state.rng.reseed(state.config.seed);
  state.limiter.configure(state.config.rateLimit);
  state.faults.clear();
  for (const f of s.faults) state.faults.add(f, 'startup');
  state.merchants.reset();
}

module.exports = { DEFAULTS, KEYS, checkPatch, checkRateLimit, checkWebhookUrl, applyStartup };
