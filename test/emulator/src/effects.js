// Owns what an injected fault does to the HTTP exchange: latency, dropping
// the connection, hanging forever, an injected Toss error, a truncated JSON
// body, a gateway's HTML 502, or losing the response after doing the work.
'use strict';

const { send, json, html } = require('./http');

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function delay(fault) {
  if (fault && fault.latencyMs) await sleep(fault.latencyMs);
}

/** True when the fault answers in place of the request (nothing is done). */
function dropsRequest(fault) {
  return !!(fault && (fault.reset || fault.hang || fault.status || fault.malformedJson || fault.html502));
}

const HTML_502 = '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n';

/**
 * Apply a dropping fault. Returns {outcome, status} for the request log.
 * ctx: {lang, mId, catalogMessage(code, lang)}
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

module.exports = { delay, dropsRequest, applyDrop, loseResponse, sleep };
