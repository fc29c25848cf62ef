// Owns the SDK shim: a browser script served at /js/v1, /js/v1/payment,
// /js/v2 and /js/v2/standard that provides the billing-registration calls of
// Toss's JS SDK — v1 `TossPayments(clientKey)` / `loadTossPayments(clientKey)`
// `.requestBillingAuth('카드' | '계좌이체', {customerKey, successUrl, failUrl})`
// and v2 `TossPayments(clientKey).payment({customerKey}).requestBillingAuth({
// method: 'CARD' | 'TRANSFER', successUrl, failUrl, …})` plus `payment.destroy()`
// — with Toss's SDK-side checks and error codes, opening the emulator's window
// (/billing-auth) as an overlay (windowTarget iframe, the PC default) or as the
// whole page (self, the mobile default).
'use strict';

const { CLIENT_CODES, CATALOG } = require('./errors');

const PATHS = new Set(['/js/v1', '/js/v1/payment', '/js/v2', '/js/v2/standard']);
const HOST = /^(127(\.\d{1,3}){3}|localhost|\[::1\]):\d{1,5}$/i;

// The script itself (ES5, no dependencies). __BASE__ is replaced by the emulator's base URL, __MESSAGES__ by the
// SDK-side error messages (Korean and English, from errors.js).
const SCRIPT = `/* Toss Payments SDK shim of the local emulator: billing registration (requestBillingAuth) only. */
(function (global) {
  'use strict';
  var BASE = __BASE__;
  var MESSAGES = __MESSAGES__;
  var ANONYMOUS = '@@ANONYMOUS';
  var CUSTOMER_KEY = /^[A-Za-z0-9\\-_=.@]{2,50}$/;
  var ABSOLUTE = /^https?:\\/\\/[^\\/?#]+/i;
  var open = null; // the overlay on screen: {wrap, frame, reject, owner}

  // Browser messages follow the merchant page's language (<html lang>, else the browser's).
  function lang() {
    var d = global.document;
    var l = (d && d.documentElement && d.documentElement.lang) || (global.navigator && global.navigator.language) || 'ko';
    return /^en/i.test(l) ? 'en' : 'ko';
  }

  function sdkError(code, detail) {
    var m = MESSAGES[code];
    var e = new Error(m ? m[lang() === 'en' ? 1 : 0] : detail || code);
    e.name = 'TossPaymentsError';
    e.code = code;
    return e;
  }

  function isMobile() {
    return !!(global.navigator && /Mobi|Android|iPhone|iPad/i.test(global.navigator.userAgent || ''));
  }

  function closeOverlay() {
    if (!open) return null;
    var o = open;
    open = null;
    global.removeEventListener('message', o.listener);
    if (o.wrap.parentNode) o.wrap.parentNode.removeChild(o.wrap);
    return o;
  }

  // The v2 window on a PC: an overlay over the merchant's page with the card window in an iframe. A card result
  // replaces the whole page (successUrl / failUrl); closing or canceling rejects the Promise with USER_CANCEL.
  function openOverlay(url, reject, owner) {
    var d = global.document;
    var wrap = d.createElement('div');
    wrap.id = 'tosspayments-emulator-overlay';
    wrap.setAttribute('style', 'position:fixed;inset:0;z-index:2147483647;background:rgba(0,0,0,.45);display:flex;align-items:center;justify-content:center');
    var frame = d.createElement('iframe');
    frame.src = url;
    frame.title = 'tosspayments';
    frame.name = 'tosspayments-emulator-window';
    frame.setAttribute('style', 'width:420px;max-width:100%;height:680px;max-height:100%;border:0;border-radius:16px;background:#fff;box-shadow:0 8px 32px rgba(0,0,0,.25)');
    wrap.appendChild(frame);
    var listener = function (ev) {
      var data = ev.data;
      if (!open || ev.source !== frame.contentWindow || !data || data.source !== 'toss-emulator') return;
      if (data.type === 'cancel') {
        var o = closeOverlay();
        o.reject(sdkError('USER_CANCEL'));
      }
    };
    open = { wrap: wrap, frame: frame, reject: reject, owner: owner, listener: listener };
    global.addEventListener('message', listener);
    (d.body || d.documentElement).appendChild(wrap);
  }

  var METHODS = { 'CARD': 'CARD', '카드': 'CARD', 'TRANSFER': 'TRANSFER', '계좌이체': 'TRANSFER' };

  function billingAuth(sdk, clientKey, customerKey, method, p, owner) {
    p = p || {};
    return new Promise(function (resolve, reject) {
      var m = METHODS[method];
      if (!m) return reject(sdkError('NOT_SUPPORTED_METHOD'));
      if (/^(test|live)_gck_/.test(clientKey)) return reject(sdkError('NOT_SUPPORTED_WIDGET_KEY'));
      if (typeof customerKey !== 'string' || customerKey === ANONYMOUS || !CUSTOMER_KEY.test(customerKey)) {
        return reject(sdkError('INVALID_CUSTOMER_KEY'));
      }
      if (typeof p.successUrl !== 'string' || p.successUrl === '' || typeof p.failUrl !== 'string' || p.failUrl === '') {
        return reject(sdkError('INVALID_PARAMETERS'));
      }
      // Toss requires absolute URLs with the origin; a relative one is refused, not resolved.
      if (!ABSOLUTE.test(p.successUrl)) return reject(sdkError('INCORRECT_SUCCESS_URL_FORMAT'));
      if (!ABSOLUTE.test(p.failUrl)) return reject(sdkError('INCORRECT_FAIL_URL_FORMAT'));
      if (open) return reject(sdkError('INVALID_METHOD_TRANSACTION'));
      var target = p.windowTarget === 'self' || p.windowTarget === 'iframe' ? p.windowTarget : isMobile() ? 'self' : 'iframe';
      if (!global.document || !global.document.createElement) target = 'self';
      var q = new URLSearchParams();
      q.set('clientKey', clientKey);
      q.set('customerKey', customerKey);
      q.set('successUrl', p.successUrl);
      q.set('failUrl', p.failUrl);
      q.set('method', m);
      q.set('target', target);
      q.set('lang', lang());
      q.set('sdk', sdk);
      if (p.customerEmail != null) q.set('customerEmail', String(p.customerEmail));
      if (p.customerName != null) q.set('customerName', String(p.customerName));
      var url = BASE + '/billing-auth?' + q.toString();
      if (target === 'self') global.location.href = url;
      else openOverlay(url, reject, owner);
      // Pending: the page moves to successUrl or failUrl.
    });
  }

  function TossPayments(clientKey) {
    if (typeof clientKey !== 'string' || clientKey === '') throw sdkError('INVALID_CLIENT_KEY');
    return {
      // v1: requestBillingAuth('카드' | '계좌이체', {customerKey, successUrl, failUrl, customerEmail?, customerName?, windowTarget?})
      requestBillingAuth: function (method, params) {
        return billingAuth('v1', clientKey, params && params.customerKey, method, params, null);
      },
      // v2: payment({customerKey}).requestBillingAuth({method: 'CARD' | 'TRANSFER', successUrl, failUrl, ...})
      payment: function (opts) {
        var customerKey = opts && opts.customerKey;
        var self = {
          requestBillingAuth: function (params) {
            params = params || {};
            return billingAuth('v2', clientKey, params.customerKey || customerKey, params.method, params, self);
          },
          requestPayment: function () {
            return Promise.reject(sdkError('NOT_SUPPORTED_METHOD'));
          },
          // Closes this payment's window if it is open (its Promise rejects with USER_CANCEL).
          destroy: function () {
            if (open && open.owner === self) closeOverlay().reject(sdkError('USER_CANCEL'));
            return Promise.resolve();
          }
        };
        return self;
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
  global.ANONYMOUS = ANONYMOUS;
  global.__TOSS_EMULATOR__ = { baseUrl: BASE };
})(typeof window !== 'undefined' ? window : this);
`;

const SDK_CODES = ['NOT_SUPPORTED_METHOD', 'NOT_SUPPORTED_WIDGET_KEY', 'INVALID_CUSTOMER_KEY', 'INVALID_PARAMETERS', 'INVALID_CLIENT_KEY',
  'INCORRECT_SUCCESS_URL_FORMAT', 'INCORRECT_FAIL_URL_FORMAT', 'INVALID_METHOD_TRANSACTION', 'USER_CANCEL'];
const MESSAGES = JSON.stringify(Object.fromEntries(SDK_CODES.map((c) => [c, CLIENT_CODES[c] || [CATALOG[c][1], CATALOG[c][2]]])));

const cache = new Map();

/** The script for a request: the base URL is the Host the page used (a loopback host), else the emulator's. */
function script(hostHeader, baseUrl) {
  const base = typeof hostHeader === 'string' && HOST.test(hostHeader) ? `http://${hostHeader}` : baseUrl;
  let s = cache.get(base);
  if (!s) {
    s = SCRIPT.replace('__BASE__', JSON.stringify(base)).replace('__MESSAGES__', MESSAGES);
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
