// Tests: the test-card table (cards.json) — succeeding cards, 미확인 cards,
// declining cards (and their ABORTED payments), transient cards, and numbers
// refused at registration.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { startEmulator, TossClient } = require('../support/harness');

const table = require(path.join(__dirname, '..', 'cards.json'));

let emu;
let c;
before(async () => {
  emu = await startEmulator();
  c = emu.client();
});
after(() => emu.stop());

test('cards.json lists every required test card', () => {
  const numbers = table.cards.map((x) => x.number);
  for (const n of ['9410001234567890', '4906251234123456', '4330121234567890', '5520221234567890', '4111111111119001', '4111111111119002']) {
    assert.ok(numbers.includes(n), n);
  }
  for (let i = 1; i <= 9; i++) assert.ok(numbers.includes(`411111111111000${i}`));
  assert.equal(table.defaultCard, '9410001234567890');
  // Every card-refusal code has a card, and so do the transient and the card-company-deletion behaviours.
  const declines = table.cards.filter((x) => x.charge.outcome === 'decline').map((x) => x.charge.code);
  for (const code of ['REJECT_CARD_COMPANY', 'REJECT_CARD_PAYMENT', 'INVALID_STOPPED_CARD', 'INVALID_CARD_EXPIRATION',
    'INVALID_CARD_LOST_OR_STOLEN', 'EXCEED_MAX_DAILY_PAYMENT_COUNT', 'NOT_SUPPORTED_CARD_TYPE', 'FDS_ERROR', 'INVALID_REJECT_CARD',
    'EXCEED_MAX_PAYMENT_AMOUNT', 'EXCEED_MAX_AMOUNT']) assert.ok(declines.includes(code), code);
  assert.ok(table.cards.filter((x) => x.charge.outcome === 'failFirst').length >= 3);
  assert.ok(table.cards.some((x) => x.charge.outcome === 'approveThenDelete' && x.number === '4111111111118001'));
});

test('9410001234567890 and 4906251234123456 succeed (신용/개인)', async () => {
  for (const cardNumber of ['9410001234567890', '4906251234123456']) {
    const b = await c.billing({ cardNumber });
    assert.deepEqual([b.card.cardType, b.card.ownerType], ['신용', '개인']);
    for (let i = 0; i < 3; i++) {
      const r = await c.approve(b.billingKey, TossClient.charge(b));
      assert.equal(r.status, 200);
      assert.equal(r.json.status, 'DONE');
      assert.equal(r.json.card.cardType, '신용');
    }
  }
});

test('4330121234567890 / 5520221234567890 issue as 미확인 and every charge fails with NOT_SUPPORTED_CARD_TYPE', async () => {
  for (const cardNumber of ['4330121234567890', '5520221234567890']) {
    const b = await c.billing({ cardNumber });
    assert.equal(b.card.cardType, '미확인');
    for (let i = 0; i < 2; i++) {
      const r = await c.approve(b.billingKey, TossClient.charge(b));
      assert.deepEqual([r.status, r.json.code], [400, 'NOT_SUPPORTED_CARD_TYPE']);
    }
  }
});

test('declining cards 411111111111000N answer their code and status, and record an ABORTED payment', async () => {
  const expected = {
    1: ['REJECT_CARD_COMPANY', 403], 2: ['REJECT_CARD_PAYMENT', 403], 3: ['INVALID_STOPPED_CARD', 400],
    4: ['INVALID_CARD_EXPIRATION', 400], 5: ['INVALID_CARD_LOST_OR_STOLEN', 400], 6: ['EXCEED_MAX_DAILY_PAYMENT_COUNT', 400],
    7: ['FDS_ERROR', 403], 8: ['INVALID_REJECT_CARD', 400], 9: ['EXCEED_MAX_PAYMENT_AMOUNT', 400],
  };
  for (const [n, [code, status]] of Object.entries(expected)) {
    const b = await c.billing({ cardNumber: `411111111111000${n}` });
    const body = TossClient.charge(b);
    const r = await c.approve(b.billingKey, body);
    assert.deepEqual([r.status, r.json.code], [status, code], `card ${n}`);
    const p = (await c.order(body.orderId)).json;
    assert.equal(p.status, 'ABORTED');
    assert.deepEqual(p.failure, { code, message: r.json.message });
    assert.equal(p.approvedAt, null);
    assert.equal(p.lastTransactionKey, null);
    assert.equal(p.card.approveNo, null);
    assert.equal((await c.payment(p.paymentKey)).json.paymentKey, p.paymentKey);
    // Declines are permanent: a second charge fails the same way.
    const again = await c.approve(b.billingKey, TossClient.charge(b));
    assert.equal(again.json.code, code);
  }
});

test('4111111111119001: PROVIDER_ERROR (400) on its first 2 charges, then succeeds; the ABORTED orderId can be retried', async () => {
  const b = await c.billing({ cardNumber: '4111111111119001' });
  const body = TossClient.charge(b);
  for (let i = 0; i < 2; i++) {
    const r = await c.approve(b.billingKey, body);
    assert.deepEqual([r.status, r.json.code], [400, 'PROVIDER_ERROR']);
    assert.equal((await c.order(body.orderId)).json.status, 'ABORTED');
  }
  const ok = await c.approve(b.billingKey, body);
  assert.equal(ok.status, 200);
  assert.equal(ok.json.status, 'DONE');
  assert.equal((await c.order(body.orderId)).json.paymentKey, ok.json.paymentKey);
  const later = await c.approve(b.billingKey, TossClient.charge(b));
  assert.equal(later.status, 200);
  const all = (await emu.admin('GET', `/__emulator/payments?orderId=${body.orderId}`)).json;
  assert.deepEqual(all.map((p) => p.status), ['ABORTED', 'ABORTED', 'DONE']);
});

test('4111111111119002: 500 FAILED_INTERNAL_SYSTEM_PROCESSING on its first charge, then succeeds', async () => {
  const b = await c.billing({ cardNumber: '4111111111119002' });
  const body = TossClient.charge(b);
  const first = await c.approve(b.billingKey, body);
  assert.deepEqual([first.status, first.json.code], [500, 'FAILED_INTERNAL_SYSTEM_PROCESSING']);
  const second = await c.approve(b.billingKey, body);
  assert.equal(second.status, 200);
  // The failure count is per billing key: a new registration of the same card fails once again.
  const b2 = await c.billing({ cardNumber: '4111111111119002' });
  assert.equal((await c.approve(b2.billingKey, TossClient.charge(b2))).status, 500);
});

test('numbers that fail Luhn or are too short are refused at registration (INVALID_CARD_NUMBER)', async () => {
  for (const cardNumber of ['4111111111111112', '433012', '1234', '', 'abcd-efgh', '41111111111111111111111', ...table.refusedAtRegistration.map((x) => x.number)]) {
    const r = await emu.admin('POST', '/__emulator/auth-keys', { secretKey: c.secretKey, customerKey: 'cust-x', cardNumber });
    assert.deepEqual([r.status, r.json.code], [400, 'INVALID_CARD_NUMBER'], cardNumber);
  }
});

test('other Luhn-valid numbers register with the default profile and succeed', async () => {
  const b = await c.billing({ cardNumber: '4111-1111-1111-1111' });
  assert.equal(b.card.number, '41111111****111*');
  assert.equal(b.card.issuerCode, table.default.issuerCode);
  assert.equal((await c.approve(b.billingKey, TossClient.charge(b))).status, 200);
});

test('cards.json drives the behaviour: every listed card does what its entry says', async () => {
  for (const card of table.cards) {
    const b = await c.billing({ cardNumber: card.number });
    assert.deepEqual([b.card.issuerCode, b.card.acquirerCode, b.cardCompany, b.card.cardType, b.card.ownerType],
      [card.issuerCode, card.acquirerCode, card.cardCompany, card.cardType, card.ownerType], card.number);
    const fails = card.charge.outcome === 'decline' ? 3 : card.charge.outcome === 'failFirst' ? card.charge.failCount : 0;
    const deletedAfter = card.charge.outcome === 'approveThenDelete' ? card.charge.deleteAfterCharges : Infinity;
    for (let i = 0; i < 3; i++) {
      const r = await c.approve(b.billingKey, TossClient.charge(b));
      if (i < fails) assert.deepEqual([r.status, r.json.code], [card.charge.status, card.charge.code], `${card.number} #${i + 1}`);
      else if (i >= deletedAfter) assert.deepEqual([r.status, r.json.code], [400, 'ALREADY_REMOVED_BILLING_KEY'], `${card.number} #${i + 1}`);
      else assert.equal(r.status, 200, `${card.number} #${i + 1}`);
    }
  }
});
