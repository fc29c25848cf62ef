// Owns the `hostile` fault: the work is done, then the bytes of the answer are
// made hostile to the client's parser and logs — invalid UTF-8 inside strings,
// `\u0000` escapes inside strings, a huge JSON array, deeply nested JSON, or an
// error whose message echoes secrets (the request path with the billing key,
// raw and percent-encoded, and the Authorization header). The real answer is
// what the Idempotency-Key replays (like the other delivery faults).
'use strict';

/** Split a JSON text at the middle of every top-level string value and put `insert` (bytes) there. */
function spliceStrings(payload, insert) {
  let value;
  try {
    value = JSON.parse(payload);
  } catch {
    value = null;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    // Not an object (e.g. an empty DELETE answer): answer a string with the bytes in it.
    return Buffer.concat([Buffer.from('{"message":"'), insert, Buffer.from('"}')]);
  }
  const parts = [Buffer.from('{')];
  let first = true;
  for (const [k, v] of Object.entries(value)) {
    if (!first) parts.push(Buffer.from(','));
    first = false;
    parts.push(Buffer.from(JSON.stringify(k) + ':'));
    if (typeof v === 'string') {
      const enc = JSON.stringify(v);
      // Cut near the middle, never inside an escape sequence or a surrogate pair.
      const mid = Math.floor(enc.length / 2);
      let cut = 1;
      while (cut < mid && cut < enc.length - 1) {
        const c = enc.charCodeAt(cut);
        const step = enc[cut] === '\\' ? (enc[cut + 1] === 'u' ? 6 : 2) : c >= 0xd800 && c <= 0xdbff ? 2 : 1;
        if (cut + step > enc.length - 1) break;
        cut += step;
      }
      parts.push(Buffer.from(enc.slice(0, cut)), insert, Buffer.from(enc.slice(cut)));
    } else {
      parts.push(Buffer.from(JSON.stringify(v)));
    }
  }
  parts.push(Buffer.from('}'));
  return Buffer.concat(parts);
}

/** `[0,0,0,…]` of about `bytes` bytes. */
function hugeArray(bytes) {
  const n = Math.max(1, Math.floor((bytes - 1) / 2));
  const buf = Buffer.alloc(n * 2 + 1, 0x30);
  buf[0] = 0x5b; // [
  for (let i = 2; i < buf.length; i += 2) buf[i] = 0x2c; // ,
  buf[buf.length - 1] = 0x5d; // ]
  return buf;
}

/** `[[[…]]]` nested `depth` deep. */
function deepNesting(depth) {
  return Buffer.concat([Buffer.alloc(depth, 0x5b), Buffer.alloc(depth, 0x5d)]);
}

/**
 * The hostile answer for a real response {status, headers, payload}.
 * req: {method, rawPath, path, authorization, lang}. Returns a prepared response.
 */
function corrupt(fault, real, req) {
  const headers = { 'Content-Type': 'application/json; charset=utf-8' };
  switch (fault.hostile) {
    case 'invalidUtf8':
      return { status: real.status, headers, payload: spliceStrings(real.payload, Buffer.from([0xff, 0xfe, 0xc3])) };
    case 'nulEscape':
      return { status: real.status, headers, payload: spliceStrings(real.payload, Buffer.from('\\u0000')) };
    case 'hugeArray':
      return { status: 200, headers, payload: hugeArray(fault.hostileSize) };
    case 'deepNesting':
      return { status: 200, headers, payload: deepNesting(fault.hostileSize) };
    case 'echoSecrets': {
      const auth = req.authorization === undefined ? '(none)' : req.authorization;
      const message = req.lang === 'en'
        ? `Request ${req.method} ${req.rawPath} (decoded: ${req.path}) failed; Authorization: ${auth}`
        : `요청 ${req.method} ${req.rawPath} (디코딩: ${req.path}) 처리에 실패했습니다. Authorization: ${auth}`;
      return { status: fault.status, headers, payload: JSON.stringify({ code: fault.code, message: fault.message !== undefined ? `${fault.message} ${message}` : message }) };
    }
    default:
      return real;
  }
}

module.exports = { corrupt, spliceStrings, hugeArray, deepNesting };
