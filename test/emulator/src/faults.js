// Owns fault injection: the registry of faults set through the admin API or
// startup flags, their validation, per-request faults from the
// X-Emulator-Fault header, and matching a request against them (oldest
// matching fault wins; `rate` applies a fault to a random fraction of the
// matching requests; `times` limits how many requests one fault applies to).
'use strict';

const { isKnown, statusOf } = require('./errors');

const MATCH_KEYS = ['method', 'pathPrefix', 'orderId', 'orderIdPrefix', 'billingKey', 'customerKey', 'paymentKey', 'mId'];
// Effects: at most one per fault.
//  - drop: answer instead of the request, nothing is done (an error `status`/`code`, reset, hang, malformedJson, html502);
//  - answer: do the work, then answer something else (`ghost` error, `mismatch`ed Payment, `hostile` bytes);
//  - delivery: do the work, then spoil the delivery of the real response (lostResponse, oversized, trickleMs).
// Modifiers combine with any effect: latencyMs, latencyJitterMs, lookupLagMs, overcharge, stuckCursor.
const DROP_EFFECTS = ['status', 'reset', 'hang', 'malformedJson', 'html502'];
const ANSWER_EFFECTS = ['ghost', 'mismatch', 'hostile'];
const DELIVERY_EFFECTS = ['lostResponse', 'oversized', 'trickleMs'];
const EFFECTS = [...DROP_EFFECTS, ...ANSWER_EFFECTS, ...DELIVERY_EFFECTS];
const FLAGS = ['reset', 'hang', 'lostResponse', 'malformedJson', 'html502', 'oversized', 'ghost', 'stuckCursor'];
const FAULT_KEYS = ['latencyMs', 'latencyJitterMs', 'status', 'code', 'message', ...FLAGS, 'oversizedBytes', 'trickleMs',
  'mismatch', 'hostile', 'hostileSize', 'lookupLagMs', 'overcharge'];
const NUMERIC = new Set(['latencyMs', 'latencyJitterMs', 'status', 'oversizedBytes', 'trickleMs', 'hostileSize', 'lookupLagMs']);
const MAX_MS = 600000;
const MAX_LAG_MS = 86400000;
const DEFAULT_OVERSIZED_BYTES = 8 * 1024 * 1024;
const MAX_OVERSIZED_BYTES = 256 * 1024 * 1024;
const DEFAULT_OVERCHARGE = 1000;

// What `mismatch` can do to a Payment answer (joined with `+` for several): see mismatch.js.
const MISMATCH_KINDS = ['totalAmount', 'negativeAmount', 'orderId', 'otherOrder', 'mId', 'currency', 'type', 'paymentKey',
  'minimal', 'totalAmountString', 'totalAmountNull', 'approvedAtNumber', 'statusNumber', 'statusCanceled'];
const MISMATCH_WITHOUT = /^without:[A-Za-z][A-Za-z0-9]{0,63}$/;
// What `hostile` does to the bytes of the answer: see hostile.js.
const HOSTILE_KINDS = ['invalidUtf8', 'nulEscape', 'hugeArray', 'deepNesting', 'echoSecrets'];
const HOSTILE_DEFAULT_SIZE = { hugeArray: 15 * 1024 * 1024, deepNesting: 100000 };
const HOSTILE_MAX_SIZE = { hugeArray: 256 * 1024 * 1024, deepNesting: 10000000 };

function ms(v, name, max = MAX_MS) {
  if (!Number.isFinite(v) || v < 0 || v > max) return `${name} must be 0..${max}`;
  return null;
}

function parseMismatch(v) {
  const kinds = Array.isArray(v) ? v : typeof v === 'string' ? v.split('+').map((s) => s.trim()).filter(Boolean) : null;
  if (!kinds || kinds.length === 0) return { error: `mismatch must be one of ${MISMATCH_KINDS.join(', ')} or without:FIELD (several joined with +)` };
  for (const k of kinds) {
    if (typeof k !== 'string' || !(MISMATCH_KINDS.includes(k) || MISMATCH_WITHOUT.test(k))) {
      return { error: `unknown mismatch kind ${k}: use ${MISMATCH_KINDS.join(', ')} or without:FIELD` };
    }
  }
  return { kinds };
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
  if (f.lookupLagMs !== undefined) {
    const e = ms(f.lookupLagMs, 'lookupLagMs', MAX_LAG_MS);
    if (e) return { error: e };
    fault.lookupLagMs = f.lookupLagMs;
  }
  if (f.overcharge !== undefined) {
    const v = f.overcharge === true ? DEFAULT_OVERCHARGE : f.overcharge;
    if (!Number.isSafeInteger(v) || v === 0) return { error: 'overcharge must be a non-zero whole number of KRW (or true for +1000)' };
    fault.overcharge = v;
  }
  if (f.hostile !== undefined) {
    if (!HOSTILE_KINDS.includes(f.hostile)) return { error: `hostile must be one of ${HOSTILE_KINDS.join(', ')}` };
    fault.hostile = f.hostile;
    if (f.hostileSize !== undefined) {
      const max = HOSTILE_MAX_SIZE[f.hostile];
      if (!max) return { error: 'hostileSize applies to hostile=hugeArray (bytes) and hostile=deepNesting (depth)' };
      if (!Number.isInteger(f.hostileSize) || f.hostileSize < 1 || f.hostileSize > max) return { error: `hostileSize must be 1..${max}` };
      fault.hostileSize = f.hostileSize;
    } else if (HOSTILE_DEFAULT_SIZE[f.hostile]) {
      fault.hostileSize = HOSTILE_DEFAULT_SIZE[f.hostile];
    }
  } else if (f.hostileSize !== undefined) {
    return { error: 'hostileSize needs hostile' };
  }
  if (f.mismatch !== undefined) {
    const m = parseMismatch(f.mismatch);
    if (m.error) return m;
    fault.mismatch = m.kinds;
  }
  const errorGiven = f.code !== undefined || f.status !== undefined || f.message !== undefined;
  if (f.ghost !== undefined && f.ghost !== true) return { error: 'ghost must be true' };
  if (errorGiven || f.ghost || f.hostile === 'echoSecrets') {
    if (f.hostile !== undefined && f.hostile !== 'echoSecrets') return { error: `hostile=${f.hostile} takes no code/status/message` };
    const code = f.code === undefined && (f.hostile === 'echoSecrets') ? 'INVALID_REQUEST' : f.code;
    if (typeof code !== 'string' || code === '') return { error: f.ghost ? 'ghost needs a code (the error to answer after doing the work)' : 'an error fault needs a code' };
    const status = f.status === undefined ? statusOf(code) : f.status;
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      return { error: isKnown(code) ? 'status must be 400..599' : `unknown code ${code}: give its status` };
    }
    if (f.message !== undefined && typeof f.message !== 'string') return { error: 'message must be a string' };
    fault.status = status;
    fault.code = code;
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
  // The error of a ghost or an echoSecrets answer is a parameter of that effect, not a dropping error of its own.
  const effects = EFFECTS.filter((k) => fault[k] !== undefined && !(k === 'status' && (fault.ghost || fault.hostile)));
  if (effects.length > 1) {
    return { error: `only one of ${EFFECTS.join(', ')} per fault (latencyMs, latencyJitterMs, lookupLagMs, overcharge and stuckCursor may be combined)` };
  }
  const modifiers = ['latencyMs', 'latencyJitterMs', 'lookupLagMs', 'overcharge', 'stuckCursor'];
  if (effects.length === 0 && !modifiers.some((k) => fault[k] !== undefined)) return { error: 'fault has no effect' };
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
      if (name === 'overcharge') { f.overcharge = true; continue; }
      if (!FLAGS.includes(name)) return { error: `${name} needs a value (${name}=…)` };
      f[name] = true;
      continue;
    }
    const value = item.slice(eq + 1).trim();
    if (name === 'overcharge') {
      if (!/^[+-]?\d+$/.test(value)) return { error: 'overcharge must be a whole number (+N or -N)' };
      f.overcharge = Number(value);
    } else if (NUMERIC.has(name)) {
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

module.exports = { Faults, parseFault, parseSpec, DROP_EFFECTS, ANSWER_EFFECTS, DELIVERY_EFFECTS, MISMATCH_KINDS, HOSTILE_KINDS };
