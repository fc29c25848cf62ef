// Owns the merchant registry: which secret keys (and their client keys, MIDs
// and store names) the emulator knows. Toss answers an unknown secret key with
// 401 UNAUTHORIZED_KEY, so the emulator only accepts registered merchants:
// from --merchant / --merchants FILE at startup, the admin API at run time,
// and the public documentation key pair, which is always there. The opt-in
// permissive mode (--permissive-keys, config permissiveKeys) makes every
// well-formed secret key its own merchant, as the emulator used to.
'use strict';

const fs = require('node:fs');
const { classifyKey } = require('./auth');
const ids = require('./ids');

const MID = /^[A-Za-z0-9_-]{1,14}$/;

// Toss's public documentation pair (shared by everyone in Toss's test environment).
const BUILTIN = [{
  secretKey: 'test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R', clientKey: 'test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq', name: '토스페이먼츠 문서 샘플',
}];

/** The client key that pairs with a secret key by default: `test_sk_X` → `test_ck_X`, `test_gsk_X` → `test_gck_X`. */
function defaultClientKey(secretKey) {
  return secretKey.replace(/^(test|live)_(g?)sk_/, '$1_$2ck_');
}

/** The merchant a well-formed secret key stands for when nothing is registered (permissive mode). */
function derived(secretKey) {
  const { mode, widget } = classifyKey(secretKey);
  const mId = ids.merchantId(secretKey, mode);
  return { secretKey, clientKey: defaultClientKey(secretKey), mId, name: mId, mode, widget, source: 'permissive' };
}

/** Validate a merchant definition {secretKey, clientKey?, mId?, name?}. Returns {merchant} or {error}. */
function checkDefinition(d) {
  if (!d || typeof d !== 'object' || Array.isArray(d)) return { error: 'a merchant is {secretKey, clientKey?, mId?, name?}' };
  for (const k of Object.keys(d)) if (!['secretKey', 'clientKey', 'mId', 'name'].includes(k)) return { error: `unknown merchant field ${k}` };
  const sk = classifyKey(d.secretKey);
  if (sk.kind !== 'secret') return { error: `secretKey ${JSON.stringify(d.secretKey)} is not a test_sk_/live_sk_/test_gsk_/live_gsk_ key` };
  const base = derived(d.secretKey);
  let clientKey = base.clientKey;
  if (d.clientKey !== undefined && d.clientKey !== null && d.clientKey !== '') {
    const ck = classifyKey(d.clientKey);
    if (ck.kind !== 'client') return { error: `clientKey ${JSON.stringify(d.clientKey)} is not a test_ck_/live_ck_/test_gck_/live_gck_ key` };
    if (ck.mode !== sk.mode) return { error: `clientKey ${d.clientKey} and secretKey ${d.secretKey} mix test and live` };
    clientKey = d.clientKey;
  }
  let mId = base.mId;
  if (d.mId !== undefined && d.mId !== null && d.mId !== '') {
    if (typeof d.mId !== 'string' || !MID.test(d.mId)) return { error: 'mId must be 1-14 characters of letters, digits, - and _' };
    mId = d.mId;
  }
  let name = mId;
  if (d.name !== undefined && d.name !== null && d.name !== '') {
    if (typeof d.name !== 'string' || d.name.length > 100) return { error: 'name must be a string of at most 100 characters' };
    name = d.name;
  }
  return { merchant: { secretKey: d.secretKey, clientKey, mId, name, mode: sk.mode, widget: sk.widget } };
}

/** `SECRET[,CLIENT[,MID[,NAME]]]` (the --merchant flag; empty parts take their defaults). */
function parseFlag(spec) {
  if (typeof spec !== 'string' || spec.trim() === '') return { error: '--merchant needs SECRET[,CLIENT[,MID[,NAME]]]' };
  const [secretKey, clientKey, mId, ...rest] = spec.split(',');
  const name = rest.length ? rest.join(',') : undefined;
  return checkDefinition({ secretKey: secretKey.trim(), clientKey: clientKey && clientKey.trim(), mId: mId && mId.trim(), name });
}

/** A merchants file: a JSON array of definitions, or {merchants: [...]}. Returns {merchants} or {error}. */
function loadFile(file) {
  let data;
  try {
    data = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    return { error: `cannot read merchants file ${file}: ${e.message}` };
  }
  const list = Array.isArray(data) ? data : data && Array.isArray(data.merchants) ? data.merchants : null;
  if (!list) return { error: `${file}: expected a JSON array of merchants or {"merchants": [...]}` };
  const merchants = [];
  for (const [i, d] of list.entries()) {
    const c = checkDefinition(d);
    if (c.error) return { error: `${file}: merchant ${i + 1}: ${c.error}` };
    merchants.push(c.merchant);
  }
  return { merchants };
}

class Merchants {
  /** startup: validated merchants given at startup (flags and files). */
  constructor(startup = []) {
    this.startup = startup;
    this.reset();
  }

  /** Back to the built-in and startup merchants. Returns {error} if the startup list conflicts with itself. */
  reset() {
    this.bySecret = new Map();
    this.byClient = new Map();
    this.byMid = new Map();
    this.version = (this.version || 0) + 1;
    for (const d of BUILTIN) this.add(checkDefinition(d).merchant, 'builtin');
    for (const m of this.startup) {
      const r = this.add(m, 'startup');
      if (r.error) return r;
    }
    return {};
  }

  /**
   * Register a validated merchant. The same definition again is a no-op; a secret key, client key or mId that
   * already belongs to a different merchant is refused. Returns {merchant, created} or {error}.
   */
  add(m, source = 'admin') {
    const same = this.bySecret.get(m.secretKey);
    if (same) {
      if (same.clientKey === m.clientKey && same.mId === m.mId && same.name === m.name) return { merchant: same, created: false };
      return { error: `secretKey ${m.secretKey} is already registered with other settings (${same.clientKey}, ${same.mId}, ${same.name})` };
    }
    const client = this.byClient.get(m.clientKey);
    if (client) return { error: `clientKey ${m.clientKey} already belongs to ${client.secretKey}` };
    const mid = this.byMid.get(m.mId);
    if (mid) return { error: `mId ${m.mId} already belongs to ${mid.secretKey}` };
    const rec = { ...m, source };
    this.bySecret.set(m.secretKey, rec);
    this.byClient.set(m.clientKey, rec);
    this.byMid.set(m.mId, rec);
    this.version++;
    return { merchant: rec, created: true };
  }

  remove(secretKey) {
    const m = this.bySecret.get(secretKey);
    if (!m) return false;
    this.bySecret.delete(secretKey);
    this.byClient.delete(m.clientKey);
    this.byMid.delete(m.mId);
    this.version++;
    return true;
  }

  /** The merchant of a secret key: registered, or derived in permissive mode, else null. */
  forSecret(secretKey, permissive) {
    return this.bySecret.get(secretKey) || (permissive ? derived(secretKey) : null);
  }

  /** The merchant of a client key: registered, or (permissive) the derived merchant of its `_sk_` twin, else null. */
  forClient(clientKey, permissive) {
    const m = this.byClient.get(clientKey);
    if (m) return m;
    if (!permissive) return null;
    return this.forSecret(clientKey.replace(/^(test|live)_(g?)ck_/, '$1_$2sk_'), true);
  }

  list() {
    return [...this.bySecret.values()].map(({ secretKey, clientKey, mId, name, source }) => ({ secretKey, clientKey, mId, name, source }));
  }
}

module.exports = { Merchants, checkDefinition, parseFlag, loadFile, defaultClientKey, derived, BUILTIN };
