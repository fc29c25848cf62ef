// Owns identifier generation: billing keys, auth keys, payment keys,
// transaction keys, secrets, approval numbers and merchant ids (mId),
// shaped like the real ones seen in Toss responses.
'use strict';

const crypto = require('node:crypto');

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

// Random bytes are drawn from a pool to keep per-request cost low.
const POOL_SIZE = 64 * 1024;
let pool = crypto.randomBytes(POOL_SIZE);
let poolPos = 0;

function randomBytes(n) {
  if (poolPos + n > POOL_SIZE) {
    pool = crypto.randomBytes(POOL_SIZE);
    poolPos = 0;
  }
  const out = pool.subarray(poolPos, poolPos + n);
  poolPos += n;
  return out;
}

function base62(n) {
  // 248 = 4 * 62: rejecting bytes >= 248 keeps the alphabet unbiased.
  let s = '';
  while (s.length < n) {
    const bytes = randomBytes(n);
    for (let i = 0; i < bytes.length && s.length < n; i++) {
      if (bytes[i] < 248) s += BASE62[bytes[i] % 62];
    }
  }
  return s;
}

function digits(n) {
  let s = '';
  const bytes = randomBytes(n);
  for (let i = 0; i < n; i++) s += String(bytes[i] % 10);
  return s;
}

/** Like `Z_t5vOvQxrj4499PeiJcjen28-V2RyqgYTwN44Rdzk0=`: 32 random bytes, URL-safe base64, padded (44 chars). */
function billingKey() {
  return Buffer.from(randomBytes(32)).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

/** Like `5pBoBAPfQr7R1coCx9WSr` (one-time key from the successUrl). */
function authKey() {
  return base62(21);
}

/** Like `tviva20240611150723tBMw2`: prefix + KST timestamp + random tail (≤200 chars). */
function paymentKey(kstTimestamp) {
  return 'tbill' + kstTimestamp.slice(0, 19).replace(/[-T:]/g, '') + base62(8);
}

/** Older 32-hex uppercase transaction key, e.g. `3CCA83C4814FC15B67058F74D42F980B`. */
function transactionKey() {
  return Buffer.from(randomBytes(16)).toString('hex').toUpperCase();
}

/** Payment secret (≤50 chars), e.g. `ps_Z1aOwX7K8mYwOXqq1mNk3yQxzvNP`. */
function paymentSecret() {
  return 'ps_' + base62(27);
}

function approveNo() {
  return digits(8);
}

/** mId (≤14 chars) derived from the secret key: "test"/"live" + 10 base36 chars of its SHA-256. */
function merchantId(secretKey, mode) {
  const h = crypto.createHash('sha256').update(secretKey).digest();
  const tail = BigInt('0x' + h.subarray(0, 8).toString('hex')).toString(36).padStart(13, '0').slice(-10);
  return mode + tail;
}

/** `X-TossPayments-Trace-Id`: 32 lowercase hex characters, like `afbc9b43d8f9c55f1201d777b6e68418`. */
function traceId() {
  return Buffer.from(randomBytes(16)).toString('hex');
}

module.exports = { base62, billingKey, authKey, paymentKey, transactionKey, paymentSecret, approveNo, merchantId, traceId };
