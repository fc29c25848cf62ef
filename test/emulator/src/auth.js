// Owns API-key handling: parsing `Authorization: Basic base64(secretKey + ":")`,
// classifying key shapes (secret / widget secret / client keys), and deriving
// the merchant a key belongs to. Each well-formed secret key is its own merchant.
'use strict';

const { tossError } = require('./errors');
const ids = require('./ids');

const SECRET_KEY = /^(test|live)_(sk|gsk)_[A-Za-z0-9_-]{1,200}$/;
const CLIENT_KEY = /^(test|live)_(ck|gck)_[A-Za-z0-9_-]{1,200}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }) // keep a BOM: it makes the key invalid;

/** {kind: 'secret'|'client'|'unknown', mode: 'test'|'live'|null, widget: bool} */
function classifyKey(key) {
  if (typeof key !== 'string') return { kind: 'unknown', mode: null, widget: false };
  let m = SECRET_KEY.exec(key);
  if (m) return { kind: 'secret', mode: m[1], widget: m[2] === 'gsk' };
  m = CLIENT_KEY.exec(key);
  if (m) return { kind: 'client', mode: m[1], widget: m[2] === 'gck' };
  return { kind: 'unknown', mode: null, widget: false };
}

// The public key pair of Toss's documentation and samples: one merchant, with unrelated tails.
const DOC_PAIRS = new Map([['test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq', 'test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R']]);

/** The secret key paired with an API-individual client key: `test_ck_X` → `test_sk_X` (and the documentation pair). */
function secretKeyForClientKey(clientKey) {
  return DOC_PAIRS.get(clientKey) || clientKey.replace(/^(test|live)_ck_/, '$1_sk_');
}

function merchantOf(secretKey) {
  const { mode, widget } = classifyKey(secretKey);
  return { secretKey, mode, widget, mId: ids.merchantId(secretKey, mode) };
}

function decodeBasic(header) {
  const m = /^Basic[ ]+(\S*)\s*$/i.exec(header);
  if (!m) return { error: tossError('UNAUTHORIZED_KEY') };
  const b64 = m[1];
  if (b64.length === 0 || !BASE64.test(b64) || b64.length % 4 === 1 ||
      (b64.includes('=') && b64.length % 4 !== 0)) {
    return { error: tossError('INCORRECT_BASIC_AUTH_FORMAT') };
  }
  let text;
  try {
    text = utf8.decode(Buffer.from(b64, 'base64'));
  } catch {
    return { error: tossError('INCORRECT_BASIC_AUTH_FORMAT') };
  }
  const colon = text.indexOf(':');
  if (colon < 0) return { error: tossError('INCORRECT_BASIC_AUTH_FORMAT') };
  // The password part (after the colon) is ignored, as a Basic-auth server would.
  return { key: text.slice(0, colon) };
}

const cache = new Map();

/**
 * Authenticate a request's Authorization header.
 * Returns {merchant} or {error} (a Toss error value).
 */
function authenticate(header) {
  if (typeof header !== 'string' || header.trim() === '') return { error: tossError('UNAUTHORIZED_KEY') };
  const hit = cache.get(header);
  if (hit) return hit;
  let result;
  const decoded = decodeBasic(header);
  if (decoded.error) {
    result = decoded;
  } else {
    const cls = classifyKey(decoded.key);
    if (cls.kind === 'secret') result = { merchant: merchantOf(decoded.key) };
    else if (cls.kind === 'client') result = { error: tossError('INVALID_API_KEY') };
    else result = { error: tossError('UNAUTHORIZED_KEY') };
  }
  if (cache.size > 10000) cache.clear();
  cache.set(header, result);
  return result;
}

module.exports = { authenticate, classifyKey, secretKeyForClientKey, merchantOf };
