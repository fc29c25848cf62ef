// Tests: POST /v1/billing/authorizations/card (key-in issue) — the Billing
// object, required fields and their error codes, the card rules of the
// test-card table, idempotency, and that the key can be charged.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, uid, TossClient } = require('../support/harness');

let emu;
let c;
before(async () => {
  emu = await startEmulator();
  c = emu.client();
});
after(() => emu.stop());

const KST = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+09:00$/;
const body = (extra = {}) => ({
  customerKey: uid('cust'), cardNumber: '4906251234123456', cardExpirationYear: '39', cardExpirationMonth: '12',
  customerIdentityNumber: '900101', ...extra,
});

async function expectError(b, status, code) {
  const r = await c.keyIn(b);
  assert.equal(r.status, status, `${JSON.stringify(b)} → ${r.text}`);
  assert.equal(r.json.code, code, JSON.stringify(b));
  assert.deepEqual(Object.keys(r.json).sort(), ['code', 'message']);
}

test('key-in issue returns a Billing object for the card, usable for charges', async () => {
  const b = body({ cardPassword: '12', customerName: '박토스', customerEmail: 'customer@example.com' });
  const r = await c.keyIn(b);
  assert.equal(r.status, 200, r.text);
  const bill = r.json;
  assert.deepEqual(Object.keys(bill), ['mId', 'customerKey', 'authenticatedAt', 'method', 'billingKey', 'card', 'cardCompany', 'cardNumber', 'transfers', 'easyPay']);
  assert.equal(bill.customerKey, b.customerKey);
  assert.equal(bill.method, '카드');
  assert.match(bill.authenticatedAt, KST);
  assert.match(bill.billingKey, /^[A-Za-z0-9_-]{43}=$/);
  assert.deepEqual(bill.card, { issuerCode: '11', acquirerCode: '11', number: '49062512****345*', cardType: '신용', ownerType: '개인' });
  assert.equal(bill.cardCompany, '국민');
  const p = await c.approve(bill.billingKey, TossClient.charge(bill));
  assert.equal(p.status, 200);
  assert.equal(p.json.card.number, '49062512****345*');
  // A 10-digit business registration number is accepted as the identity.
  assert.equal((await c.keyIn(body({ customerIdentityNumber: '1234567890' }))).status, 200);
});

test('key-in cards follow the test-card table (a declining card issues, then its charges decline)', async () => {
  const r = await c.keyIn(body({ cardNumber: '4111111111110001' }));
  assert.equal(r.status, 200);
  const p = await c.approve(r.json.billingKey, TossClient.charge(r.json));
  assert.deepEqual([p.status, p.json.code], [403, 'REJECT_CARD_COMPANY']);
  const unconfirmed = await c.keyIn(body({ cardNumber: '4330121234567890' }));
  assert.equal(unconfirmed.json.card.cardType, '미확인');
});

test('key-in field rules: required fields → INVALID_REQUEST; customerKey over 300 → 500 FAILED_DB_PROCESSING', async () => {
  for (const f of ['customerKey', 'cardNumber', 'cardExpirationYear', 'cardExpirationMonth', 'customerIdentityNumber']) {
    await expectError(body({ [f]: undefined }), 400, 'INVALID_REQUEST');
    await expectError(body({ [f]: 1234 }), 400, 'INVALID_REQUEST');
  }
  await expectError('not json', 400, 'INVALID_REQUEST');
  await expectError(body({ customerKey: 'k'.repeat(301) }), 500, 'FAILED_DB_PROCESSING');
  await expectError(body({ customerName: 'n'.repeat(101) }), 400, 'INVALID_REQUEST');
});

test('key-in card errors: number, expiry, identity, password, email', async () => {
  await expectError(body({ cardNumber: '4111111111111112' }), 400, 'INVALID_CARD_NUMBER'); // fails Luhn
  await expectError(body({ cardNumber: '433012' }), 400, 'INVALID_CARD_NUMBER'); // a BIN only
  await expectError(body({ cardNumber: '4906-2512-3412-3456' }), 400, 'INVALID_CARD_NUMBER'); // digits only in the API
  await expectError(body({ cardNumber: '1'.repeat(21) }), 400, 'INVALID_CARD_NUMBER');
  await expectError(body({ cardExpirationYear: '20', cardExpirationMonth: '01' }), 400, 'INVALID_CARD_EXPIRATION'); // past
  await expectError(body({ cardExpirationMonth: '13' }), 400, 'INVALID_CARD_EXPIRATION');
  await expectError(body({ cardExpirationYear: '2039' }), 400, 'INVALID_CARD_EXPIRATION');
  await expectError(body({ customerIdentityNumber: '9001' }), 400, 'INVALID_BIRTH_DAY_FORMAT');
  await expectError(body({ customerIdentityNumber: '901301' }), 400, 'INVALID_BIRTH_DAY_FORMAT');
  await expectError(body({ cardPassword: '123' }), 400, 'INVALID_CARD_PASSWORD');
  await expectError(body({ cardPassword: 'ab' }), 400, 'INVALID_CARD_PASSWORD');
  await expectError(body({ customerEmail: 'not-an-email' }), 400, 'INVALID_EMAIL');
});

test('key-in issue honours Idempotency-Key and TossPayments-Test-Code', async () => {
  const b = body();
  const k = uid('idem');
  const first = await c.keyIn(b, { 'Idempotency-Key': k });
  const again = await c.keyIn(body(), { 'Idempotency-Key': k });
  assert.equal(again.text, first.text);
  const coded = await c.keyIn(b, { 'TossPayments-Test-Code': 'INVALID_CARD_NUMBER' });
  assert.deepEqual([coded.status, coded.json.code], [400, 'INVALID_CARD_NUMBER']);
});
