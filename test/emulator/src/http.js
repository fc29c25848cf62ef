// Owns low-level HTTP plumbing shared by every route: reading request bodies
// (with a size limit), splitting the raw URL, and writing prepared responses
// ({status, headers, payload}) with the right length and content type.
'use strict';

const MAX_BODY = 1024 * 1024;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('body too large'), { tooLarge: true }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function splitUrl(url) {
  const q = url.indexOf('?');
  return q < 0 ? { rawPath: url, rawQuery: '' } : { rawPath: url.slice(0, q), rawQuery: url.slice(q + 1) };
}

function decodePath(rawPath) {
  try {
    return decodeURIComponent(rawPath);
  } catch {
    return rawPath;
  }
}

function json(status, value, headers) {
  return { status, headers: { 'Content-Type': 'application/json; charset=utf-8', ...headers }, payload: JSON.stringify(value) };
}

function html(status, text, headers) {
  return { status, headers: { 'Content-Type': 'text/html; charset=utf-8', ...headers }, payload: text };
}

function redirect(location) {
  return { status: 302, headers: { Location: location }, payload: '' };
}

function send(res, resp, extraHeaders) {
  const headers = { ...resp.headers, ...extraHeaders, 'Content-Length': Buffer.byteLength(resp.payload) };
  res.writeHead(resp.status, headers);
  res.end(resp.payload);
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

module.exports = { readBody, splitUrl, decodePath, json, html, redirect, send, escapeHtml };
