// Owns fault injection: the registry of faults set through the admin API or
// startup flags, their validation, per-request faults from the
// X-Emulator-Fault header, and matching a request against them (oldest
// matching fault wins; `rate` applies a fault to a random fraction of the
// matching requests; `times` limits how many requests one fault applies to).
'use strict';

const { isKnown, statusOf } = require('./errors');

const MATCH_KEYS = ['method', 'pathPrefix', 'orderId', 'orderIdPrefix', 'billingKey', 'customerKey', 'paymentKey', 'mId'];
// Effects: at most one per fault. The first group answers instead of the request (nothing is done);
// the second group does the work and then spoils the delivery of the real response.
const DROP_EFFECTS = ['status', 'reset', 'hang', 'malformedJson', 'html502'];
const DELIVERY_EFFECTS = ['lostResponse', 'oversized', 'trickleMs'];
const EFFECTS = [...DROP_EFFECTS, ...DELIVERY_EFFECTS];
const FLAGS = ['reset', 'hang', 'lostResponse', 'malformedJson', 'html502', 'oversized'];
const FAULT_KEYS = ['latencyMs', 'latencyJitterMs', 'status', 'code', 'message', ...FLAGS, 'oversizedBytes', 'trickleMs'];
const NUMERIC = new Set(['latencyMs', 'latencyJitterMs', 'status', 'oversizedBytes', 'trickleMs']);
const MAX_MS = 600000;
const DEFAULT_OVERSIZED_BYTES = 8 * 1024 * 1024;
const MAX_OVERSIZED_BYTES = 256 * 1024 * 1024;

function ms(v, name) {
  if (!Number.isFinite(v) || v < 0 || v > MAX_MS) return `${name} must be 0..${MAX_MS}`;
  return null;
}

/** Validate and normalise the `fault` part of a definition. Returns {fault} or {error}. */
function parseEffect(f) {
  if (!f || typeof f !== 'object' || Array.isArray(f)) return { error: 'fault must be an object' };
  for (const k of Object.keys(f)) if (!FAULT_KEYS.includes(k)) return { error: `unknown fault key ${k}` };
  const fault = {};
  for (const k of ['latencyMs', 'latencyJitterMs']) {
    if (f[k] !== undefined) {
      const e = ms(f[k], k);
      if (e) return { error: e };
      fault[k] = f[k];
    }
  }
  if (f.code !== undefined || f.status !== undefined || f.message !== undefined) {
    if (typeof f.code !== 'string' || f.code === '') return { error: 'an error fault needs a code' };
    const status = f.status === undefined ? statusOf(f.code) : f.status;
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      return { error: isKnown(f.code) ? 'status must be 400..599' : `unknown code ${f.code}: give its status` };
    }
    if (f.message !== undefined && typeof f.message !== 'string') return { error: 'message must be a string' };
    fault.status = status;
    fault.code = f.code;
    if (f.message !== undefined) fault.message = f.message;
  }
  for (const k of FLAGS) {
    if (f[k] !== undefined) {
      if (f[k] !== true) return { error: `${k} must be true` };
      fault[k] = true;
    }
  }
  if (f.oversizedBytes !== undefined) {
    if (!Number.isInteger(f.oversizedBytes) || f.oversizedBytes < 1 || f.oversizedBytes > MAX_OVERSIZED_BYTES) {
      return { error: `oversizedBytes must be 1..${MAX_OVERSIZED_BYTES}` };
    }
    fault.oversized = true;
    fault.oversizedBytes = f.oversizedBytes;
  } else if (fault.oversized) {
    fault.oversizedBytes = DEFAULT_OVERSIZED_BYTES;
  }
  if (f.trickleMs !== undefined) {
    const e = ms(f.trickleMs, 'trickleMs');
    if (e) return { error: e };
    if (f.trickleMs === 0) return { error: 'trickleMs must be > 0' };
    fault.trickleMs = f.trickleMs;
  }
  const effects = EFFECTS.filter((k) => fault[k] !== undefined);
  if (effects.length > 1) return { error: `only one of ${EFFECTS.join(', ')} per fault (latencyMs/latencyJitterMs may be combined)` };
  if (effects.length === 0 && fault.latencyMs === undefined && fault.latencyJitterMs === undefined) return { error: 'fault has no effect' };
  return { fault };
}

/** Validate and normalise an admin fault definition {match, fault, times?, rate?}. Returns {fault} or {error: string}. */
function parseFault(def) {
  if (!def || typeof def !== 'object' || Array.isArray(def)) return { error: 'body must be {match, fault, times?, rate?}' };
  const match = def.match === undefined ? {} : def.match;
  if (!match || typeof match !== 'object' || Array.isArray(match)) return { error: 'match must be an object' };
  for (const k of Object.keys(match)) {
    if (!MATCH_KEYS.includes(k)) return { error: `unknown match key ${k}` };
    if (typeof match[k] !== 'string') return { error: `match.${k} must be a string` };
  }
  const eff = parseEffect(def.fault);
  if (eff.error) return eff;
  let times = null;
  if (def.times !== undefined && def.times !== null) {
    if (!Number.isInteger(def.times) || def.times < 1) return { error: 'times must be a positive integer' };
    times = def.times;
  }
  let rate = null;
  if (def.rate !== undefined && def.rate !== null) {
    if (typeof def.rate !== 'number' || !(def.rate > 0 && def.rate <= 1)) return { error: 'rate must be a number in (0, 1]' };
    rate = def.rate;
  }
  return { fault: { match: { ...match }, fault: eff.fault, times, rate } };
}

/**
 * Parse the compact fault syntax of the X-Emulator-Fault header and of the
 * --fault-kind flag: items separated by `,` or `;`, each `name` (a flag set
 * to true) or `name=value`, e.g. `reset`, `latencyMs=200, code=PROVIDER_ERROR`,
 * `status=503;code=COMMON_ERROR;message=down`. Returns {fault} or {error}.
 */
function parseSpec(spec) {
  if (typeof spec !== 'string' || spec.trim() === '') return { error: 'empty fault spec' };
  const f = {};
  for (const raw of spec.split(/[,;]/)) {
    const item = raw.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    const name = (eq < 0 ? item : item.slice(0, eq)).trim();
    if (!FAULT_KEYS.includes(name)) return { error: `unknown fault key ${name}` };
    if (eq < 0) {
      if (!FLAGS.includes(name)) return { error: `${name} needs a value (${name}=…)` };
      f[name] = true;
      continue;
    }
    const value = item.slice(eq + 1).trim();
    if (NUMERIC.has(name)) {
      if (!/^\d+$/.test(value)) return { error: `${name} must be a whole number` };
      f[name] = Number(value);
    } else if (FLAGS.includes(name)) {
      if (value !== 'true') return { error: `${name} takes no value` };
      f[name] = true;
    } else {
      f[name] = name === 'message' ? decodeURIComponentSafe(value) : value;
    }
  }
  return parseEffect(f);
}

function decodeURIComponentSafe(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function matches(m, info) {
  if (m.method !== undefined && m.method.toUpperCase() !== info.method) return false;
  if (m.pathPrefix !== undefined && !(info.path.startsWith(m.pathPrefix) || info.rawPath.startsWith(m.pathPrefix))) return false;
  if (m.orderId !== undefined && info.orderId !== m.orderId) return false;
  if (m.orderIdPrefix !== undefined && !(typeof info.orderId === 'string' && info.orderId.startsWith(m.orderIdPrefix))) return false;
  if (m.billingKey !== undefined && info.billingKey !== m.billingKey) return false;
  if (m.customerKey !== undefined && info.customerKey !== m.customerKey) return false;
  if (m.paymentKey !== undefined && info.paymentKey !== m.paymentKey) return false;
  if (m.mId !== undefined && info.mId !== m.mId) return false;
  return true;
}

class Faults {
  constructor(rng) {
    this.rng = rng;
    this.specCache = new Map();
    this.clear();
  }

  clear() {
    this.list = [];
    this.nextId = 1;
  }

  add(parsed, source = 'admin') {
    const id = `fault-${this.nextId++}`;
    this.list.push({ id, ...parsed, hits: 0, source });
    return id;
  }

  remove(id) {
    const i = this.list.findIndex((f) => f.id === id);
    if (i < 0) return false;
    this.list.splice(i, 1);
    return true;
  }

  describe() {
    return this.list.map((f) => {
      const d = { id: f.id, match: f.match, fault: f.fault, times: f.times, hits: f.hits };
      if (f.rate !== null) d.rate = f.rate;
      if (f.source !== 'admin') d.source = f.source;
      return d;
    });
  }

  /** A parsed X-Emulator-Fault header value (cached): {fault} or {error}. */
  fromHeader(value) {
    let hit = this.specCache.get(value);
    if (!hit) {
      const p = parseSpec(value);
      hit = p.error ? p : { fault: { id: 'header', ...p.fault } };
      if (this.specCache.size > 1000) this.specCache.clear();
      this.specCache.set(value, hit);
    }
    return hit;
  }

  /**
   * The fault to apply to a request, consuming one use of it.
   * info: {method, path, rawPath, orderId, billingKey, customerKey, paymentKey, mId}
   */
  take(info) {
    if (this.list.length === 0) return null;
    for (let i = 0; i < this.list.length; i++) {
      const f = this.list[i];
      if (!matches(f.match, info)) continue;
      if (f.rate !== null && f.rate < 1 && this.rng.next() >= f.rate) continue;
      f.hits++;
      if (f.times !== null && --f.times === 0) this.list.splice(i, 1);
      return { id: f.id, ...f.fault };
    }
    return null;
  }
}

module.exports = { Faults, parseFault, parseSpec, DROP_EFFECTS, DELIVERY_EFFECTS };
