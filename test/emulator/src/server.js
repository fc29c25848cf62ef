// Owns the HTTP server: creating the shared state, dispatching each request
// to the Toss API pipeline (/v1), the card window (/billing-auth), the
// receipt page (/sales-slip) or the admin API (/__emulator), keep-alive
// settings, and listening / shutting down on 127.0.0.1.
'use strict';

const http = require('node:http');
const { Store } = require('./store');
const { IdempotencyStore } = require('./idempotency');
const { Faults } = require('./faults');
const { RequestLog } = require('./requestlog');
const { handleApi, catalogMessage } = require('./api');
const { handleAdmin } = require('./admin');
const billingWindow = require('./window');
const receipt = require('./receipt');
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
  const fault = state.faults.take({
    method: req.method, path: decodePath(rawPath), rawPath, orderId: undefined,
    billingKey: undefined, customerKey: params.customerKey,
  });
  await effects.delay(fault);
  if (effects.dropsRequest(fault)) {
    effects.applyDrop(fault, req, res, { lang: languageOf(req.headers['accept-language']), catalogMessage });
    return;
  }
  let resp;
  if (rawPath === '/sales-slip' && req.method === 'GET') resp = receipt.show(state.store, params);
  else if (rawPath === '/billing-auth' && req.method === 'GET') resp = billingWindow.show(params, req.headers);
  else if (rawPath === '/billing-auth' && req.method === 'POST') resp = billingWindow.submit(state.store, params, req.headers);
  else resp = json(405, { code: 'METHOD_NOT_ALLOWED', message: `${req.method} ${rawPath}` });
  if (fault && fault.lostResponse) effects.loseResponse(req);
  else send(res, resp);
}

async function dispatch(state, req, res) {
  const { rawPath, rawQuery } = splitUrl(req.url);
  let rawBody;
  try {
    rawBody = await readBody(req);
  } catch (e) {
    if (e.tooLarge && !res.headersSent) send(res, json(413, { code: 'INVALID_REQUEST', message: 'request body too large' }), { Connection: 'close' });
    return;
  }
  if (rawPath === '/v1' || rawPath.startsWith('/v1/')) return handleApi(state, req, res, rawPath, rawQuery, rawBody);
  if (rawPath.startsWith('/__emulator/')) {
    return send(res, handleAdmin(state, req.method, rawPath, Object.fromEntries(new URLSearchParams(rawQuery)), rawBody));
  }
  if (rawPath === '/billing-auth' || rawPath === '/sales-slip') return handlePage(state, req, res, rawPath, rawQuery, rawBody);
  const lang = languageOf(req.headers['accept-language']);
  return send(res, json(404, errorBody(tossError('NOT_FOUND_HTTP_METHOD'), lang)));
}

function createEmulator({ logSize = 10000 } = {}) {
  const state = {
    store: new Store(),
    idem: new IdempotencyStore(),
    faults: new Faults(),
    log: new RequestLog(logSize),
    baseUrl: null,
  };
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
        server.listen(port, HOST, () => {
          server.removeListener('error', reject);
          const actual = server.address().port;
          state.baseUrl = `http://${HOST}:${actual}`;
          resolve(actual);
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

module.exports = { createEmulator, HOST };
