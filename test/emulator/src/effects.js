// Owns what an injected fault does to the HTTP exchange: latency (fixed or
// random), dropping the connection, hanging forever, an injected Toss error,
// a truncated JSON body, a gateway's HTML 502 — all without doing the work —
// and, after doing the work, losing the response, padding it to an
// oversized body, or trickling it out slowly.
'use strict';

const { send, json, html } = require('./http');

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Milliseconds of latency a fault adds: latencyMs plus a uniform draw in [0, latencyJitterMs]. */
function latencyOf(fault, rng) {
  if (!fault) return 0;
  let ms = fault.latencyMs || 0;
  if (fault.latencyJitterMs) ms += rng.next() * fault.latencyJitterMs;
  return ms;
}

async function delay(fault, rng, extraMs = 0) {
  const ms = latencyOf(fault, rng) + extraMs;
  if (ms > 0) await sleep(ms);
}

/** True when the fault answers in place of the request (nothing is done). */
function dropsRequest(fault) {
  return !!(fault && (fault.reset || fault.hang || (fault.status && !fault.ghost && !fault.hostile) || fault.malformedJson || fault.html502));
}

const HTML_502 = '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n';

/**
 * Apply a dropping fault. Returns {outcome, status} for the request log.
 * ctx: {lang, mId, orderId, catalogMessage(code, lang), headers}
 */
function applyDrop(fault, req, res, ctx) {
  if (fault.reset) {
    req.socket.destroy();
    return { outcome: 'reset', status: null };
  }
  if (fault.hang) {
    // Never answer; the socket stays open until the client gives up (or the emulator stops).
    return { outcome: 'hang', status: null };
  }
  if (fault.status) {
    const message = fault.message !== undefined ? fault.message : ctx.catalogMessage(fault.code, ctx.lang);
    send(res, json(fault.status, { code: fault.code, message }), ctx.headers);
    return { outcome: 'faultError', status: fault.status };
  }
  if (fault.malformedJson) {
    const full = JSON.stringify({ mId: ctx.mId || 'tvivarepublica', version: '2022-11-16', paymentKey: 'tbill', status: 'DONE', orderId: ctx.orderId || null });
    send(res, { status: 200, headers: { 'Content-Type': 'application/json; charset=utf-8' }, payload: full.slice(0, Math.floor(full.length * 0.6)) }, ctx.headers);
    return { outcome: 'malformedJson', status: 200 };
  }
  send(res, html(502, HTML_502, { Server: 'awselb/2.0' }));
  return { outcome: 'html502', status: 502 };
}

/** The work was done; drop the connection instead of answering. */
function loseResponse(req) {
  req.socket.destroy();
}

/** The real response, padded with trailing spaces (still valid JSON) to `bytes` in all. */
function sendOversized(res, resp, bytes, extraHeaders) {
  const body = Buffer.isBuffer(resp.payload) ? resp.payload : Buffer.from(resp.payload);
  const padded = body.length >= bytes ? body : Buffer.concat([body, Buffer.alloc(bytes - body.length, 0x20)]);
  res.writeHead(resp.status, { ...resp.headers, ...extraHeaders, 'Content-Length': padded.length });
  res.end(padded);
}

/** The real response: headers at once, then the body in small pieces spread over `ms` milliseconds. */
function sendTrickle(res, resp, ms, extraHeaders) {
  const body = Buffer.isBuffer(resp.payload) ? resp.payload : Buffer.from(resp.payload);
  res.writeHead(resp.status, { ...resp.headers, ...extraHeaders, 'Content-Length': body.length });
  res.flushHeaders();
  const pieces = Math.max(1, Math.min(body.length, Math.ceil(ms / 50)));
  const size = Math.ceil(body.length / pieces);
  const interval = ms / pieces;
  let pos = 0;
  let timer = null;
  const step = () => {
    if (res.destroyed) return;
    const next = Math.min(body.length, pos + size);
    const chunk = body.subarray(pos, next);
    pos = next;
    if (pos >= body.length) res.end(chunk);
    else {
      res.write(chunk);
      timer = setTimeout(step, interval);
    }
  };
  res.on('close', () => clearTimeout(timer));
  timer = setTimeout(step, interval);
}

/**
 * Deliver the real response (the work is done), spoiled by a delivery fault if any.
 * Returns the outcome for the request log.
 */
function deliver(req, res, resp, fault, extraHeaders) {
  if (fault && fault.lostResponse) {
    loseResponse(req);
    return 'lostResponse';
  }
  if (fault && fault.oversized) {
    sendOversized(res, resp, fault.oversizedBytes, extraHeaders);
    return 'oversized';
  }
  if (fault && fault.trickleMs) {
    sendTrickle(res, resp, fault.trickleMs, extraHeaders);
    return 'trickle';
  }
  send(res, resp, extraHeaders);
  return null;
}

module.exports = { delay, latencyOf, dropsRequest, applyDrop, loseResponse, deliver, sleep };
