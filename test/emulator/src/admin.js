// Owns the admin/inspection API under /__emulator/ (no auth, JSON): reset,
// settings, the merchant registry, the auth-key shortcut, fault management, the request log, the
// payment list, the exactly-once ledger, the emulator clock, card-company
// billing-key removal (BILLING_DELETED), webhook deliveries and load stats.
'use strict';

const { classifyKey } = require('./auth');
const { checkDefinition } = require('./merchants');
const { parseFault } = require('./faults');
const cards = require('./cards');
const clock = require('./clock');
const { checkPatch, applyStartup } = require('./config');
const { cardCompanyDelete } = require('./toss');
const { json } = require('./http');

function bad(message, status = 400, code = 'INVALID_ADMIN_REQUEST') {
  return json(status, { code, message });
}

function parseBody(buf) {
  if (buf.length === 0) return {};
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
}

function createAuthKey(state, b) {
  if (!b || typeof b !== 'object') return bad('body must be a JSON object');
  if (classifyKey(b.secretKey).kind !== 'secret') return bad('secretKey must be a test_sk_/live_sk_/test_gsk_/live_gsk_ key', 400, 'INVALID_API_KEY');
  const merchant = state.merchants.forSecret(b.secretKey, state.config.permissiveKeys);
  if (!merchant) return bad(`secretKey ${b.secretKey} is not a registered merchant (POST /__emulator/merchants, --merchant, --merchants FILE)`, 400, 'UNAUTHORIZED_KEY');
  if (typeof b.customerKey !== 'string' || b.customerKey === '') return bad('customerKey must be a non-empty string');
  if (b.billingKey !== undefined && b.billingKey !== null && (typeof b.billingKey !== 'string' || b.billingKey === '' || b.billingKey.length > 200)) {
    return bad('billingKey must be a string of 1-200 characters');
  }
  let card = null;
  let transfer = null;
  if (b.method === 'TRANSFER' || b.method === '계좌이체') {
    const acc = cards.registerAccount({ bankCode: b.bankCode === undefined ? '088' : b.bankCode, accountNumber: b.accountNumber === undefined ? '110123456789' : b.accountNumber });
    if (acc.error) return bad(acc.error.en, acc.error.status, acc.error.code);
    transfer = acc.transfer;
  } else if (b.method === undefined || b.method === 'CARD' || b.method === '카드') {
    const reg = cards.register({ ...b, cardNumber: b.cardNumber === undefined ? cards.defaultCard : b.cardNumber });
    if (reg.error) return bad(reg.error.en, reg.error.status, reg.error.code);
    card = reg.card;
  } else {
    return bad('method must be CARD or TRANSFER');
  }
  const made = state.store.createAuthKey({
    merchant, customerKey: b.customerKey, card, transfer, billingKey: b.billingKey,
  });
  if (made.error) return bad(made.error, 409, 'DUPLICATED_BILLING_KEY');
  return json(200, { authKey: made.authKey, customerKey: b.customerKey });
}

function clockOp(state, b) {
  if (!b || typeof b !== 'object') return bad('body must be a JSON object');
  if (b.advanceMs !== undefined) {
    if (!Number.isFinite(b.advanceMs)) return bad('advanceMs must be a number');
    clock.advance(b.advanceMs);
  } else if (b.set !== undefined) {
    const t = Date.parse(b.set);
    if (Number.isNaN(t)) return bad('set must be an ISO 8601 date');
    clock.set(t);
  } else if (b.reset === true) {
    clock.reset();
  } else {
    return bad('give advanceMs, set or reset');
  }
  state.webhooks.schedule(); // retries are due on the emulator clock
  return clockView();
}

function clockView() {
  const now = clock.now();
  return json(200, { now: new Date(now).toISOString(), kst: clock.kst(now), offsetMs: clock.offset() });
}

/** The card company (or Toss) deletes a billing key: later approvals fail, BILLING_DELETED is sent. */
function removeBillingKey(state, seg, query, body) {
  let key;
  try {
    key = decodeURIComponent(seg);
  } catch {
    return bad('bad percent-encoding');
  }
  const rec = state.store.billingKey(key);
  if (!rec) return bad('no such billing key', 404, 'NOT_FOUND');
  const reason = body && typeof body.reason === 'string' ? body.reason : typeof query.reason === 'string' ? query.reason : cards.DEFAULT_DELETE_REASON;
  if (rec.deleted) return json(200, { billingKey: key, deleted: true, alreadyDeleted: true, webhookId: null });
  const ev = cardCompanyDelete(state.store, state.webhooks, rec, reason);
  return json(200, { billingKey: key, deleted: true, alreadyDeleted: false, webhookId: ev.id });
}

/** POST /__emulator/merchants: one definition or an array of them. */
function addMerchants(state, b) {
  const list = Array.isArray(b) ? b : [b];
  const out = [];
  for (const d of list) {
    const c = checkDefinition(d);
    if (c.error) return bad(c.error);
    const r = state.merchants.add(c.merchant);
    if (r.error) return bad(r.error, 409, 'DUPLICATED_MERCHANT');
    const { secretKey, clientKey, mId, name, source } = r.merchant;
    out.push({ secretKey, clientKey, mId, name, source, created: r.created });
  }
  return json(200, Array.isArray(b) ? out : out[0]);
}

function reset(state) {
  state.store.clear();
  state.idem.clear();
  state.log.clear();
  state.webhooks.clear();
  clock.reset();
  applyStartup(state);
  state.stats.maxInFlight = state.stats.inFlight;
  return json(200, { reset: true });
}

function configView(state) {
  return json(200, { ...state.config, seed: state.rng.seed });
}

function configOp(state, b) {
  const p = checkPatch(b);
  if (p.error) return bad(p.error);
  Object.assign(state.config, p.value);
  if ('seed' in p.value) state.rng.reseed(p.value.seed);
  if ('rateLimit' in p.value) state.limiter.configure(p.value.rateLimit);
  return configView(state);
}

function statsView(state) {
  const s = state.stats;
  return json(200, { requests: s.requests, inFlight: s.inFlight, maxInFlight: s.maxInFlight });
}

/** Dispatch an admin request. Returns a prepared response. */
function handleAdmin(state, method, rawPath, query, rawBody) {
  const parts = rawPath.split('/').slice(2); // after '/__emulator'
  const [a, b] = parts;
  const body = parseBody(rawBody);
  if (body === undefined) return bad('body is not valid JSON');
  if (parts.length === 1) {
    switch (`${method} ${a}`) {
      case 'POST reset': return reset(state);
      case 'POST auth-keys': return createAuthKey(state, body);
      case 'GET faults': return json(200, state.faults.describe());
      case 'GET merchants': return json(200, state.merchants.list());
      case 'POST merchants': return addMerchants(state, body);
      case 'POST faults': {
        const parsed = parseFault(body);
        if (parsed.error) return bad(parsed.error);
        return json(200, { id: state.faults.add(parsed.fault) });
      }
      case 'DELETE faults': state.faults.clear(); return json(200, { deleted: 'all' });
      case 'GET requests': {
        const limit = query.limit === undefined ? 100 : Number(query.limit);
        if (!Number.isInteger(limit) || limit < 0) return bad('limit must be a non-negative integer');
        return json(200, state.log.recent(limit));
      }
      case 'GET payments': return json(200, state.store.listPayments(query));
      case 'GET ledger': return json(200, state.store.ledger());
      case 'GET clock': return clockView();
      case 'POST clock': return clockOp(state, body);
      case 'GET config': return configView(state);
      case 'POST config': return configOp(state, body);
      case 'GET webhooks': return json(200, state.webhooks.describe(query));
      case 'DELETE webhooks': state.webhooks.clear(); return json(200, { deleted: 'all' });
      case 'GET stats': return statsView(state);
      case 'DELETE stats':
        state.stats.requests = 0;
        state.stats.maxInFlight = state.stats.inFlight;
        return statsView(state);
      case 'GET info': return json(200, {
        baseUrl: state.baseUrl, payments: state.store.paymentList.length, billingKeys: state.store.billingKeys.size,
        faults: state.faults.list.length, webhooks: state.webhooks.list.length,
        inFlight: state.stats.inFlight, maxInFlight: state.stats.maxInFlight,
      });
      default: break;
    }
  }
  if (parts.length === 2 && b !== '') {
    if (method === 'DELETE' && a === 'faults') {
      return state.faults.remove(b) ? json(200, { deleted: b }) : bad(`no fault ${b}`, 404, 'NOT_FOUND');
    }
    if (method === 'DELETE' && a === 'billing-keys') return removeBillingKey(state, b, query, body);
    if (method === 'DELETE' && a === 'merchants') {
      let key;
      try { key = decodeURIComponent(b); } catch { return bad('bad percent-encoding'); }
      return state.merchants.remove(key) ? json(200, { deleted: key }) : bad(`no merchant ${key}`, 404, 'NOT_FOUND');
    }
  }
  return bad(`no admin route ${method} ${rawPath}`, 404, 'NOT_FOUND');
}

module.exports = { handleAdmin };
