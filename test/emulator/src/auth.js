// Owns API-key handling: parsing `Authorization: Basic base64(secretKey + ":")`,
// classifying key shapes (secret / widget secret / client keys), and
// looking the secret key up in the merchant registry (merchants.js).
'use strict';

const { tossError } = require('./errors');

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

/**
 * Authenticate a request's Authorization header against the merchant registry.
 * Returns {merchant} or {error} (a Toss error value). An unknown but well-formed
 * secret key is 401 UNAUTHORIZED_KEY (Toss's answer), unless `permissive`.
 */
function authenticate(header, merchants, permissive) {
  if (typeof header !== 'string' || header.trim() === '') return { error: tossError('UNAUTHORIZED_KEY') };
  const cache = merchants.authCache && merchants.authCache.version === merchants.version && merchants.authCache.permissive === permissive
    ? merchants.authCache : (merchants.authCache = { version: merchants.version, permissive, map: new Map() });
  const hit = cache.map.get(header);
  if (hit) return hit;
  let result;
  const decoded = decodeBasic(header);
  if (decoded.error) {
    result = decoded;
  } else {
    const cls = classifyKey(decoded.key);
    if (cls.kind === 'secret') {
      const merchant = merchants.forSecret(decoded.key, permissive);
      result = merchant ? { merchant } : { error: tossError('UNAUTHORIZED_KEY') };
    } else if (cls.kind === 'client') {
      result = { error: tossError('INVALID_API_KEY') };
    } else {
      result = { error: tossError('UNAUTHORIZED_KEY') };
    }
  }
  if (cache.map.size > 10000) cache.map.clear();
  cache.map.set(header, result);
  return result;
}

module.exports = { authenticate, classifyKey };
