// Tests: POST /v1/billing/authorizations/issue — the Billing object, authKey
// single use, NOT_MATCHES_CUSTOMER_KEY, merchant scoping, forced billing keys.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, uid } = require('../support/harness');

let emu;
before(async () => { emu = await startEmulator(); });
after(() => emu.stop());

const KST = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+09:00$/;

test('issue returns a complete Billing object', async () => {
  const c = emu.client();
  const customerKey = uid('cust');
  const authKey = await c.authKey({ customerKey, cardNumber: '4330121234567890' });
  const r = await c.issue(authKey, customerKey);
  assert.equal(r.status, 200);
  const b = r.json;
  assert.deepEqual(Object.keys(b).sort(), ['authenticatedAt', 'billingKey', 'card', 'cardCompany', 'cardNumber', 'customerKey', 'easyPay', 'mId', 'method', 'transfers'].sort());
  assert.equal(b.customerKey, customerKey);
  assert.equal(b.method, '카드');
  assert.match(b.authenticatedAt, KST);
  assert.ok(b.mId.length <= 14);
  assert.match(b.billingKey, /^[A-Za-z0-9_-]{43}=$/);
  assert.deepEqual(b.card, { issuerCode: '61', acquirerCode: '31', number: '43301212****789*', cardType: '미확인', ownerType: '개인' });
  assert.equal(b.cardCompany, '현대');
  assert.equal(b.cardNumber, b.card.number);
  assert.equal(b.transfers, null);
  assert.equal(b.easyPay, null);
});

test('billing keys are unique and look like real ones (~44 base64 chars)', async () => {
  const c = emu.client();
  const keys = new Set();
  for (let i = 0; i < 20; i++) keys.add((await c.billing()).billingKey);
  assert.equal(keys.size, 20);
  for (const k of keys) assert.match(k, /^[A-Za-z0-9_-]{43}=$/);
});

test('an authKey works once; reuse and unknown keys → 404 NOT_FOUND_BILLING', async () => {
  const c = emu.client();
  const customerKey = uid('cust');
  const authKey = await c.authKey({ customerKey });
  assert.equal((await c.issue(authKey, customerKey)).status, 200);
  const again = await c.issue(authKey, customerKey);
  assert.equal(again.status, 404);
  assert.deepEqual(again.json, { code: 'NOT_FOUND_BILLING', message: '존재하지 않는 빌링 결제 인증 정보 입니다.' });
  const unknown = await c.issue('5pBoBAPfQr7R1coCx9WSr', customerKey);
  assert.deepEqual([unknown.status, unknown.json.code], [404, 'NOT_FOUND_BILLING']);
});

test('customerKey must match the one the authKey was created for (400 NOT_MATCHES_CUSTOMER_KEY); a mismatch does not use up the authKey', async () => {
  const c = emu.client();
  const customerKey = uid('cust');
  const authKey = await c.authKey({ customerKey });
  const wrong = await c.issue(authKey, customerKey + 'x');
  assert.deepEqual([wrong.status, wrong.json.code], [400, 'NOT_MATCHES_CUSTOMER_KEY']);
  const right = await c.issue(authKey, customerKey);
  assert.equal(right.status, 200);
  assert.equal(right.json.customerKey, customerKey);
});

test("another merchant's authKey → 404 NOT_FOUND_BILLING", async () => {
  const a = emu.client();
  const b = emu.client();
  const customerKey = uid('cust');
  const authKey = await a.authKey({ customerKey });
  const r = await b.issue(authKey, customerKey);
  assert.deepEqual([r.status, r.json.code], [404, 'NOT_FOUND_BILLING']);
  assert.equal((await a.issue(authKey, customerKey)).status, 200);
});

test('issue body validation: missing fields / bad JSON → 400 INVALID_REQUEST; customerKey > 300 → 500 FAILED_DB_PROCESSING', async () => {
  const c = emu.client();
  for (const body of [{ customerKey: 'x' }, { authKey: 'abc' }, { authKey: '', customerKey: 'x' }, { authKey: 5, customerKey: 'x' }, [], 'not json', '']) {
    const r = await c.call('POST', '/v1/billing/authorizations/issue', body);
    assert.deepEqual([r.status, r.json.code], [400, 'INVALID_REQUEST'], JSON.stringify(body));
  }
  const long = await c.issue('abc', 'k'.repeat(301));
  assert.deepEqual([long.status, long.json.code], [500, 'FAILED_DB_PROCESSING']);
});

test('the admin shortcut can force the billing key value (keys with / ? = % ..)', async () => {
  const c = emu.client();
  const forced = `a/b?c=d%e..f/${uid('k')}==`;
  const b = await c.billing({ billingKey: forced });
  assert.equal(b.billingKey, forced);
  // The same value cannot be forced twice (pending or issued).
  const dup = await emu.admin('POST', '/__emulator/auth-keys', { secretKey: c.secretKey, customerKey: 'x1', billingKey: forced });
  assert.deepEqual([dup.status, dup.json.code], [409, 'DUPLICATED_BILLING_KEY']);
  const pendingKey = uid('pending');
  assert.equal((await emu.admin('POST', '/__emulator/auth-keys', { secretKey: c.secretKey, customerKey: 'x2', billingKey: pendingKey })).status, 200);
  assert.equal((await emu.admin('POST', '/__emulator/auth-keys', { secretKey: c.secretKey, customerKey: 'x3', billingKey: pendingKey })).status, 409);
});

test('authenticatedAt is the card registration time', async () => {
  const c = emu.client();
  const customerKey = uid('cust');
  const authKey = await c.authKey({ customerKey });
  await emu.admin('POST', '/__emulator/clock', { advanceMs: 3600 * 1000 });
  const b = (await c.issue(authKey, customerKey)).json;
  const clockNow = (await emu.admin('GET', '/__emulator/clock')).json.kst;
  await emu.admin('POST', '/__emulator/clock', { reset: true });
  assert.ok(Date.parse(clockNow) - Date.parse(b.authenticatedAt) >= 3599 * 1000);
});
