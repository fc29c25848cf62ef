// Owns the request pipeline of the Toss API (/v1/...): request logging,
// routing, authentication, throttling, TossPayments-Test-Code,
// Idempotency-Key handling, fault injection (X-Emulator-Fault header or the
// fault registry, plus the global latency), running the handler and writing,
// replaying or spoiling the response. The order of these steps is documented
// in README.md.
'use strict';

const { tossError, errorBody, languageOf, isKnown, CATALOG } = require('./errors');
const { authenticate } = require('./auth');
const { IdempotencyStore, MAX_KEY_LENGTH } = require('./idempotency');
const { route } = require('./toss');
const { json, send, decodePath } = require('./http');
const effects = require('./effects');
const clock = require('./clock');
const ids = require('./ids');
const mismatch = require('./mismatch');
const hostile = require('./hostile');

function catalogMessage(code, lang) {
  return CATALOG[code] ? (lang === 'en' ? CATALOG[code][2] : CATALOG[code][1]) : code;
}

function errorResponse(err, lang) {
  return json(err.status, errorBody(err, lang));
}

function serialize(result, lang) {
  if (result.error) return errorResponse(result.error, lang);
  if (result.body === null) return { status: result.status, headers: {}, payload: '' };
  return json(result.status, result.body);
}

function testCodeError(code) {
  if (isKnown(code)) return tossError(code);
  return tossError('INVALID_TEST_CODE');
}

/** The answer a `ghost` fault gives after the work was done: its Toss error. */
function ghostAnswer(fault, lang) {
  const message = fault.message !== undefined ? fault.message : catalogMessage(fault.code, lang);
  return json(fault.status, { code: fault.code, message });
}

/** A Payment-shaped JSON object in a prepared 200 response, else null. */
function paymentBody(resp) {
  if (resp.status !== 200 || !resp.payload) return null;
  try {
    const v = JSON.parse(resp.payload);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

function parseJson(buf) {
  if (buf.length === 0) return null;
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
}

function queryObject(rawQuery) {
  return rawQuery ? Object.fromEntries(new URLSearchParams(rawQuery)) : {};
}

/** Global latency from the settings: latencyMs plus a uniform draw in [0, latencyJitterMs]. */
function globalLatency(state) {
  const c = state.config;
  if (!c.latencyMs && !c.latencyJitterMs) return 0;
  return c.latencyMs + (c.latencyJitterMs ? state.rng.next() * c.latencyJitterMs : 0);
}

async function handleApi(state, req, res, rawPath, rawQuery, rawBody) {
  const requestedAt = clock.now();
  const h = req.headers;
  const lang = languageOf(h['accept-language']);
  const body = parseJson(rawBody);
  const query = queryObject(rawQuery);
  const idemKey = typeof h['idempotency-key'] === 'string' && h['idempotency-key'] !== '' ? h['idempotency-key'] : null;
  const faultHeader = h['x-emulator-fault'];
  const entry = state.log.add({
    method: req.method, rawPath, path: decodePath(rawPath), query,
    idempotencyKey: idemKey, acceptLanguage: h['accept-language'] || null,
    testCode: h['tosspayments-test-code'] || null, mId: null,
    body: body === undefined ? null : body, status: null, outcome: null, replayed: false, faultId: null,
    at: new Date(requestedAt).toISOString(),
  });
  if (faultHeader !== undefined) entry.faultHeader = faultHeader;
  const traceId = ids.traceId();
  const headers = { 'X-TossPayments-Trace-Id': traceId };
  // Toss echoes the Idempotency-Key of a request in its answer.
  if (idemKey !== null && /^[\t\x20-\x7e\x80-\xff]*$/.test(idemKey)) headers['Idempotency-Key'] = idemKey;
  const reply = (resp, outcome = 'response', extra) => {
    send(res, resp, extra ? { ...headers, ...extra } : headers);
    entry.status = resp.status;
    entry.outcome = outcome;
  };

  const r = route(req.method, rawPath);
  if (!r) return reply(errorResponse(tossError('NOT_FOUND_HTTP_METHOD'), lang));
  if (r.badEncoding) return reply(errorResponse(tossError('INVALID_REQUEST'), lang));

  const auth = authenticate(h.authorization, state.merchants, state.config.permissiveKeys);
  if (auth.error) return reply(errorResponse(auth.error, lang));
  const merchant = auth.merchant;
  entry.mId = merchant.mId;

  const limit = state.config.rateLimit;
  if (limit) {
    const wait = state.limiter.take(merchant.secretKey);
    if (wait > 0) {
      const msg = catalogMessage(limit.code, lang);
      return reply(json(limit.status, { code: limit.code, message: msg }), 'throttled', { 'Retry-After': String(Math.max(1, Math.ceil(wait))) });
    }
  }

  const testCode = h['tosspayments-test-code'];
  if (testCode && merchant.mode === 'test') return reply(errorResponse(testCodeError(testCode), lang));

  let headerFault = null;
  if (typeof faultHeader === 'string') {
    const parsed = state.faults.fromHeader(faultHeader);
    if (parsed.error) {
      return reply(json(400, { code: 'INVALID_EMULATOR_FAULT', message: `X-Emulator-Fault: ${parsed.error}` }));
    }
    headerFault = parsed.fault;
  }

  let scope = null;
  let claim = null;
  if (req.method === 'POST' && idemKey !== null) {
    if (idemKey.length > MAX_KEY_LENGTH) return reply(errorResponse(tossError('INVALID_IDEMPOTENCY_KEY'), lang));
    scope = IdempotencyStore.scope(merchant.secretKey, req.method, rawPath, idemKey);
    claim = state.idem.begin(scope);
    if (claim.state === 'inflight') return reply(errorResponse(tossError('IDEMPOTENT_REQUEST_PROCESSING'), lang));
  }
  const claimed = claim !== null && claim.state === 'new';

  const isObj = body !== null && typeof body === 'object';
  const fault = headerFault || state.faults.take({
    method: req.method, path: entry.path, rawPath,
    orderId: r.params.orderId !== undefined ? r.params.orderId : isObj ? body.orderId : undefined,
    billingKey: r.params.billingKey,
    paymentKey: r.params.paymentKey,
    customerKey: isObj ? body.customerKey : undefined,
    mId: merchant.mId,
  });
  const extraLatency = globalLatency(state);
  if (fault || extraLatency > 0) {
    if (fault) entry.faultId = fault.id;
    try {
      await effects.delay(fault, state.rng, extraLatency);
    } catch (e) {
      if (claimed) state.idem.abandon(scope);
      throw e;
    }
    if (effects.dropsRequest(fault)) {
      if (claimed) state.idem.abandon(scope);
      const done = effects.applyDrop(fault, req, res, {
        lang, mId: merchant.mId, orderId: isObj ? body.orderId : null, catalogMessage, headers,
      });
      entry.status = done.status;
      entry.outcome = done.outcome;
      return undefined;
    }
  }

  let resp;
  if (claim !== null && claim.state === 'done') {
    resp = claim.response;
    entry.replayed = true;
    // A replay names its own trace id and the original request's, as Toss does.
    if (claim.traceId) headers['X-TossPayments-Trace-Id'] = [traceId, claim.traceId];
  } else {
    let real;
    try {
      real = serialize(r.handler({
        store: state.store, merchant, body, params: r.params, query, lang, requestedAt, baseUrl: state.baseUrl,
        events: state.webhooks, config: state.config, fault,
      }), lang);
    } catch (e) {
      if (claimed) state.idem.abandon(scope);
      throw e;
    }
    resp = real;
    // Answer faults: the work is done. A ghost error and a mismatched Payment are what the key replays;
    // hostile bytes spoil only this delivery (the key replays the real answer).
    if (fault && fault.ghost) resp = ghostAnswer(fault, lang);
    else if (fault && fault.mismatch) {
      const p = paymentBody(real);
      if (p) resp = json(200, mismatch.apply(fault.mismatch, p, { store: state.store, merchant }));
    }
    if (claimed) state.idem.complete(scope, resp, traceId);
  }
  if (fault && fault.hostile) {
    resp = hostile.corrupt(fault, resp, { method: req.method, rawPath, path: entry.path, authorization: h.authorization, lang });
  }
  if (fault && (fault.ghost || fault.mismatch || fault.hostile)) entry.fault = fault.ghost ? 'ghost' : fault.mismatch ? 'mismatch' : 'hostile';

  const spoiled = effects.deliver(req, res, resp, fault, headers);
  entry.status = resp.status;
  entry.outcome = spoiled || (entry.replayed ? 'replay' : entry.fault || 'response');
  delete entry.fault;
  return undefined;
}

module.exports = { handleApi, catalogMessage };
