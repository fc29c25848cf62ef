// Owns fault injection: the registry of faults set through the admin API,
// their validation, and matching a request against them (oldest matching
// fault wins; `times` limits how many requests one fault applies to).
'use strict';

const { isKnown, statusOf } = require('./errors');

const MATCH_KEYS = ['method', 'pathPrefix', 'orderId', 'orderIdPrefix', 'billingKey', 'customerKey'];
const EFFECTS = ['status', 'reset', 'hang', 'lostResponse', 'malformedJson', 'html502'];
const FAULT_KEYS = ['latencyMs', 'status', 'code', 'message', 'reset', 'hang', 'lostResponse', 'malformedJson', 'html502'];

/** Validate and normalise an admin fault definition. Returns {fault} or {error: string}. */
function parseFault(def) {
  if (!def || typeof def !== 'object') return { error: 'body must be {match, fault, times?}' };
  const match = def.match === undefined ? {} : def.match;
  if (!match || typeof match !== 'object' || Array.isArray(match)) return { error: 'match must be an object' };
  for (const k of Object.keys(match)) {
    if (!MATCH_KEYS.includes(k)) return { error: `unknown match key ${k}` };
    if (typeof match[k] !== 'string') return { error: `match.${k} must be a string` };
  }
  const f = def.fault;
  if (!f || typeof f !== 'object' || Array.isArray(f)) return { error: 'fault must be an object' };
  for (const k of Object.keys(f)) if (!FAULT_KEYS.includes(k)) return { error: `unknown fault key ${k}` };
  const fault = {};
  if (f.latencyMs !== undefined) {
    if (!Number.isFinite(f.latencyMs) || f.latencyMs < 0 || f.latencyMs > 600000) return { error: 'latencyMs must be 0..600000' };
    fault.latencyMs = f.latencyMs;
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
  for (const k of ['reset', 'hang', 'lostResponse', 'malformedJson', 'html502']) {
    if (f[k] !== undefined) {
      if (f[k] !== true) return { error: `${k} must be true` };
      fault[k] = true;
    }
  }
  const effects = EFFECTS.filter((k) => fault[k] !== undefined);
  if (effects.length > 1) return { error: `only one of ${EFFECTS.join(', ')} per fault (latencyMs may be combined)` };
  if (effects.length === 0 && fault.latencyMs === undefined) return { error: 'fault has no effect' };
  let times = null;
  if (def.times !== undefined && def.times !== null) {
    if (!Number.isInteger(def.times) || def.times < 1) return { error: 'times must be a positive integer' };
    times = def.times;
  }
  return { fault: { match: { ...match }, fault, times } };
}

function matches(m, info) {
  if (m.method !== undefined && m.method.toUpperCase() !== info.method) return false;
  if (m.pathPrefix !== undefined && !(info.path.startsWith(m.pathPrefix) || info.rawPath.startsWith(m.pathPrefix))) return false;
  if (m.orderId !== undefined && info.orderId !== m.orderId) return false;
  if (m.orderIdPrefix !== undefined && !(typeof info.orderId === 'string' && info.orderId.startsWith(m.orderIdPrefix))) return false;
  if (m.billingKey !== undefined && info.billingKey !== m.billingKey) return false;
  if (m.customerKey !== undefined && info.customerKey !== m.customerKey) return false;
  return true;
}

class Faults {
  constructor() {
    this.clear();
  }

  clear() {
    this.list = [];
    this.nextId = 1;
  }

  add(parsed) {
    const id = `fault-${this.nextId++}`;
    this.list.push({ id, ...parsed, hits: 0 });
    return id;
  }

  remove(id) {
    const i = this.list.findIndex((f) => f.id === id);
    if (i < 0) return false;
    this.list.splice(i, 1);
    return true;
  }

  describe() {
    return this.list.map((f) => ({ id: f.id, match: f.match, fault: f.fault, times: f.times, hits: f.hits }));
  }

  /**
   * The fault to apply to a request, consuming one use of it.
   * info: {method, path, rawPath, orderId, billingKey, customerKey}
   */
  take(info) {
    if (this.list.length === 0) return null;
    for (let i = 0; i < this.list.length; i++) {
      const f = this.list[i];
      if (!matches(f.match, info)) continue;
      f.hits++;
      if (f.times !== null && --f.times === 0) this.list.splice(i, 1);
      return { id: f.id, ...f.fault };
    }
    return null;
  }
}

module.exports = { Faults, parseFault };
