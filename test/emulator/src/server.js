// Owns the HTTP server: creating the shared state (store, idempotency,
// faults, request log, settings, rate limiter, webhooks, stats), applying the
// startup settings, dispatching each request to the Toss API pipeline (/v1),
// the card window (/billing-auth), the receipt page (/sales-slip), the SDK
// shim (/js/…) or the admin API (/__emulator), keep-alive settings, and
// listening / shutting down on 127.0.0.1.
'use strict';

const http = require('node:http');
const { Store } = require('./store');
const { IdempotencyStore } = require('./idempotency');
const { Faults } = require('./faults');
const { RequestLog } = require('./requestlog');
const { Rng } = require('./rng');
const { RateLimiter } = require('./ratelimit');
const { Webhooks } = require('./webhooks');
const { Merchants } = require('./merchants');
const { applyStartup } = require('./config');
const { handleApi, catalogMessage } = require('./api');
const { handleAdmin } = require('./admin');
const billingWindow = require('./window');
const receipt = require('./receipt');
const sdk = require('./sdk');
const effects = require('./effects');
const { tossError, errorBody, languageOf } = require('./errors');
const { readBody, splitUrl, decodePath, json, send } = require('./http');

const HOST = '127.0.0.1';

function formParams(rawQuery, rawBody) {
  const p = Object.fromEntries(new URLSearchParams(rawQuery));
  for (const [k, v] of new URLSearchParams(rawBody.toString('utf8'))) p[k] = v;
  return p;
}

/** Card window and receipt page: faults apply, no auth or idempotency. */
async function handlePage(state, req, res, rawPath, rawQuery, rawBody) {
  const params = req.method === 'POST' ? formParams(rawQuery, rawBody) : Object.fromEntries(new URLSearchParams(rawQuery));
  let fault = null;
  const header = req.headers['x-emulator-fault'];
  if (typeof header === 'string') {
    const parsed = state.faults.fromHeader(header);
    if (parsed.error) return send(res, json(400, { code: 'INVALID_EMULATOR_FAULT', message: `X-Emulator-Fault: ${parsed.error}` }));
    fault = parsed.fault;
  } else {
    fault = state.faults.take({
      method: req.method, path: decodePath(rawPath), rawPath, orderId: undefined,
      billingKey: undefined, paymentKey: rawPath === '/sales-slip' ? params.paymentKey : undefined, customerKey: params.customerKey, mId: undefined,
    });
  }
  await effects.delay(fault, state.rng);
  if (effects.dropsRequest(fault)) {
    effects.applyDrop(fault, req, res, { lang: languageOf(req.headers['accept-language']), catalogMessage });
    return undefined;
  }
  let resp;
  if (rawPath === '/sales-slip' && req.method === 'GET') resp = receipt.show(state.store, params);
  else if (rawPath === '/billing-auth' && req.method === 'GET') resp = billingWindow.show(state, params, req.headers);
  else if (rawPath === '/billing-auth' && req.method === 'POST') resp = billingWindow.submit(state, params, req.headers);
  else resp = json(405, { code: 'METHOD_NOT_ALLOWED', message: `${req.method} ${rawPath}` });
  effects.deliver(req, res, resp, fault);
  return undefined;
}

async function dispatch(state, req, res) {
  const { rawPath, rawQuery } = splitUrl(req.url);
  let rawBody;
  try {
    rawBody = await readBody(req);
  } catch (e) {
    if (e.tooLarge && !res.headersSent) send(res, json(413, { code: 'INVALID_REQUEST', message: 'request body too large' }), { Connection: 'close' });
    return undefined;
  }
  if (rawPath.startsWith('/__emulator/')) {
    return send(res, handleAdmin(state, req.method, rawPath, Object.fromEntries(new URLSearchParams(rawQuery)), rawBody));
  }
  const stats = state.stats;
  stats.requests++;
  if (++stats.inFlight > stats.maxInFlight) stats.maxInFlight = stats.inFlight;
  res.once('close', () => { stats.inFlight--; });
  if (rawPath === '/v1' || rawPath.startsWith('/v1/')) return handleApi(state, req, res, rawPath, rawQuery, rawBody);
  if (rawPath === '/billing-auth' || rawPath === '/sales-slip') return handlePage(state, req, res, rawPath, rawQuery, rawBody);
  if (req.method === 'GET' && sdk.PATHS.has(rawPath)) return send(res, sdk.script(req.headers.host, state.baseUrl));
  const lang = languageOf(req.headers['accept-language']);
  return send(res, json(404, errorBody(tossError('NOT_FOUND_HTTP_METHOD'), lang)));
}

/**
 * opts: {logSize, config: validated settings patch (see config.js), faults: [parsed fault definitions],
 * merchants: [validated merchant definitions (see merchants.js)]}
 */
function createEmulator({ logSize = 10000, config = {}, faults = [], merchants = [] } = {}) {
  const rng = new Rng();
  const state = {
    store: new Store(),
    idem: new IdempotencyStore(),
    rng,
    faults: new Faults(rng),
    log: new RequestLog(logSize),
    limiter: new RateLimiter(),
    stats: { requests: 0, inFlight: 0, maxInFlight: 0 },
    merchants: new Merchants(merchants),
    startup: { config, faults },
    config: null,
    baseUrl: null,
  };
  state.webhooks = new Webhooks(() => state.config);
  applyStartup(state);
  const server = http.createServer((req, res) => {
    dispatch(state, req, res).catch((err) => {
      process.stderr.write(`emulator: ${err && err.stack}\n`);
      if (!res.headersSent && !res.destroyed) {
        send(res, json(500, errorBody(tossError('FAILED_INTERNAL_SYSTEM_PROCESSING'), 'ko')));
      }
    });
  });
  server.keepAliveTimeout = 65000;
  server.headersTimeout = 66000;
  server.requestTimeout = 0;

  return {
    state,
    server,
    listen(port) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port, host: HOST, backlog: 4096 }, () => {
          server.removeListener('error', reject);
          const actual = server.address().port;
          state.baseUrl = `http://${HOST}:${actual}`;
          resolve(actual);
        });
      });
    },
    close() {
      state.webhooks.close();
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

module.exports = { createEmulator, HOST };
