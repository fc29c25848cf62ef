// Owns the SDK shim: a browser script served at /js/v1, /js/v1/payment,
// /js/v2 and /js/v2/standard that provides the card-registration calls of
// Toss's JS SDK — v1 `TossPayments(clientKey)` / `loadTossPayments(clientKey)`
// `.requestBillingAuth('카드', {customerKey, successUrl, failUrl})` and v2
// `TossPayments(clientKey).payment({customerKey}).requestBillingAuth({method:
// 'CARD', successUrl, failUrl, …})` — by sending the browser to the
// emulator's card window (/billing-auth).
'use strict';

const PATHS = new Set(['/js/v1', '/js/v1/payment', '/js/v2', '/js/v2/standard']);
const HOST = /^(127(\.\d{1,3}){3}|localhost|\[::1\]):\d{1,5}$/i;

// The script itself (ES5, no dependencies). __BASE__ is replaced by the emulator's base URL.
const SCRIPT = `/* Toss Payments SDK shim of the local emulator: card registration (requestBillingAuth) only. */
(function (global) {
  'use strict';
  var BASE = __BASE__;
  var ANONYMOUS = '@@ANONYMOUS';
  var CUSTOMER_KEY = /^[A-Za-z0-9\\-_=.@]{2,50}$/;

  function sdkError(code, message) {
    var e = new Error(message);
    e.name = 'TossPaymentsError';
    e.code = code;
    return e;
  }

  function absolute(u) {
    return new URL(u, global.location.href).href;
  }

  function billingAuth(clientKey, customerKey, method, p) {
    p = p || {};
    if (method !== 'CARD' && method !== '카드') {
      return Promise.reject(sdkError('NOT_SUPPORTED_METHOD', 'The emulator supports card billing only (CARD / 카드), not ' + method + '.'));
    }
    if (typeof customerKey !== 'string' || customerKey === ANONYMOUS || !CUSTOMER_KEY.test(customerKey)) {
      return Promise.reject(sdkError('INVALID_CUSTOMER_KEY', 'customerKey must be 2-50 characters of letters, digits and - _ = . @ (not ANONYMOUS).'));
    }
    if (typeof p.successUrl !== 'string' || p.successUrl === '' || typeof p.failUrl !== 'string' || p.failUrl === '') {
      return Promise.reject(sdkError('INVALID_PARAMETERS', 'successUrl and failUrl are required.'));
    }
    var q = new URLSearchParams();
    q.set('clientKey', clientKey);
    q.set('customerKey', customerKey);
    q.set('successUrl', absolute(p.successUrl));
    q.set('failUrl', absolute(p.failUrl));
    if (p.customerEmail != null) q.set('customerEmail', String(p.customerEmail));
    if (p.customerName != null) q.set('customerName', String(p.customerName));
    // windowTarget 'iframe' and 'self' both open the window in place of the page.
    global.location.href = BASE + '/billing-auth?' + q.toString();
    return new Promise(function () {});
  }

  function TossPayments(clientKey) {
    if (typeof clientKey !== 'string' || clientKey === '') throw sdkError('INVALID_CLIENT_KEY', 'A client key is required.');
    return {
      // v1: requestBillingAuth('카드', {customerKey, successUrl, failUrl, customerEmail?, customerName?})
      requestBillingAuth: function (method, params) {
        return billingAuth(clientKey, params && params.customerKey, method, params);
      },
      // v2: payment({customerKey}).requestBillingAuth({method: 'CARD', successUrl, failUrl, ...})
      payment: function (opts) {
        var customerKey = opts && opts.customerKey;
        return {
          requestBillingAuth: function (params) {
            params = params || {};
            return billingAuth(clientKey, params.customerKey || customerKey, params.method, params);
          },
          requestPayment: function () {
            return Promise.reject(sdkError('NOT_SUPPORTED_METHOD', 'The emulator supports requestBillingAuth only.'));
          }
        };
      }
    };
  }
  TossPayments.ANONYMOUS = ANONYMOUS;

  function loadTossPayments(clientKey) {
    return new Promise(function (resolve) { resolve(TossPayments(clientKey)); });
  }
  loadTossPayments.ANONYMOUS = ANONYMOUS;

  global.TossPayments = TossPayments;
  global.loadTossPayments = loadTossPayments;
  global.__TOSS_EMULATOR__ = { baseUrl: BASE };
})(typeof window !== 'undefined' ? window : this);
`;

const cache = new Map();

/** The script for a request: the base URL is the Host the page used (a loopback host), else the emulator's. */
function script(hostHeader, baseUrl) {
  const base = typeof hostHeader === 'string' && HOST.test(hostHeader) ? `http://${hostHeader}` : baseUrl;
  let s = cache.get(base);
  if (!s) {
    s = SCRIPT.replace('__BASE__', JSON.stringify(base));
    if (cache.size > 16) cache.clear();
    cache.set(base, s);
  }
  return {
    status: 200,
    headers: { 'Content-Type': 'application/javascript; charset=utf-8', 'Cache-Control': 'no-store', 'Access-Control-Allow-Origin': '*' },
    payload: s,
  };
}

module.exports = { PATHS, script };
