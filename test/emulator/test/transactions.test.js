// Tests: GET /v1/transactions — one item per transaction (approval, each
// cancel) with the Transaction fields, the local-time window (no Z/offset →
// INVALID_DATE), ordering, paging with startingAfter and limit (≤ 5000),
// per-merchant data, and the optional lag before transactions appear.
'use strict';

const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, uid, TossClient } = require('../support/harness');

let emu;
before(async () => { emu = await startEmulator(); });
after(() => emu.stop());
afterEach(async () => {
  await emu.admin('POST', '/__emulator/clock', { reset: true });
  await emu.admin('POST', '/__emulator/config', { transactionLagMs: 0 });
});

const FIELDS = ['mId', 'transactionKey', 'paymentKey', 'orderId', 'method', 'customerKey', 'useEscrow', 'receiptUrl', 'status',
  'transactionAt', 'currency', 'amount'];
const setClock = (iso) => emu.admin('POST', '/__emulator/clock', { set: iso });
const advance = (ms) => emu.admin('POST', '/__emulator/clock', { advanceMs: ms });
const HOUR = 3600 * 1000;

test('one transaction per approval and per cancel, with the Transaction fields, filtered by local time', async () => {
  const c = emu.client();
  await setClock('2030-03-01T10:00:00+09:00');
  const b = await c.billing();
  const p1 = (await c.approve(b.billingKey, TossClient.charge(b, { amount: 10000 }))).json;
  await advance(HOUR);
  const cancel = (await c.cancel(p1.paymentKey, { cancelReason: 'part', cancelAmount: 3000 })).json;
  const declined = await c.billing({ cardNumber: '4111111111110001' });
  assert.equal((await c.approve(declined.billingKey, TossClient.charge(declined))).status, 403); // ABORTED: no transaction
  await advance(24 * HOUR);
  const p2 = (await c.approve(b.billingKey, TossClient.charge(b, { amount: 2000 }))).json;

  const day1 = await c.transactions({ startDate: '2030-03-01', endDate: '2030-03-02' });
  assert.equal(day1.status, 200, day1.text);
  assert.equal(day1.json.length, 2);
  const [approval, canceled] = day1.json;
  assert.deepEqual(Object.keys(approval), FIELDS);
  assert.deepEqual(approval, {
    mId: b.mId, transactionKey: p1.lastTransactionKey, paymentKey: p1.paymentKey, orderId: p1.orderId, method: '카드',
    customerKey: b.customerKey, useEscrow: false, receiptUrl: p1.receipt.url, status: 'DONE', transactionAt: p1.approvedAt,
    currency: 'KRW', amount: 10000,
  });
  assert.deepEqual([canceled.transactionKey, canceled.status, canceled.amount, canceled.transactionAt, canceled.paymentKey],
    [cancel.cancels[0].transactionKey, 'PARTIAL_CANCELED', 3000, cancel.cancels[0].canceledAt, p1.paymentKey]);
  assert.ok(approval.transactionAt.startsWith('2030-03-01T10:00:0'));
  assert.ok(canceled.transactionAt.startsWith('2030-03-01T11:00:0'));

  // Bounds are local (KST) times, inclusive, to the second.
  const exact = await c.transactions({ startDate: '2030-03-01T10:00:00', endDate: '2030-03-01T10:59:59' });
  assert.deepEqual(exact.json.map((t) => t.transactionKey), [p1.lastTransactionKey]);
  const second = await c.transactions({ startDate: '2030-03-01T10:30:00', endDate: canceled.transactionAt.slice(0, 19) });
  assert.deepEqual(second.json.map((t) => t.transactionKey), [canceled.transactionKey]);
  const all = await c.transactions({ startDate: '2030-01-01T00:00:00', endDate: '2030-12-31T23:59:59.999' });
  assert.deepEqual(all.json.map((t) => t.transactionKey), [p1.lastTransactionKey, canceled.transactionKey, p2.lastTransactionKey]);
  assert.deepEqual((await c.transactions({ startDate: '2030-03-03', endDate: '2030-03-04' })).json, []);
  // Another merchant sees none of them.
  assert.deepEqual((await emu.client().transactions({ startDate: '2030-01-01', endDate: '2031-01-01' })).json, []);
});

test('a full cancel is one transaction with status CANCELED', async () => {
  const c = emu.client();
  const p = await c.paid({ amount: 7000 });
  await c.cancel(p.paymentKey, { cancelReason: 'all' });
  const r = await c.transactions({ startDate: '2000-01-01', endDate: '2100-01-01' });
  assert.deepEqual(r.json.map((t) => [t.status, t.amount]), [['DONE', 7000], ['CANCELED', 7000]]);
});

test('dates with Z or an offset, or malformed, → 400 INVALID_DATE; missing → 400 INVALID_REQUEST', async () => {
  const c = emu.client();
  for (const [startDate, endDate] of [['2030-01-01T00:00:00Z', '2030-01-02T00:00:00'], ['2030-01-01T00:00:00', '2030-01-02T00:00:00+09:00'],
    ['2030-01-01T00:00:00.000Z', '2030-01-02'], ['2030-13-01', '2030-12-31'], ['2030-02-30', '2030-03-01'], ['yesterday', '2030-01-01'],
    ['2030-01-01T24:00:00', '2030-01-02'], ['2030-01-02', '2030-01-01']]) {
    const r = await c.transactions({ startDate, endDate });
    assert.deepEqual([r.status, r.json.code], [400, 'INVALID_DATE'], `${startDate} ${endDate}`);
  }
  for (const q of [{ startDate: '2030-01-01' }, { endDate: '2030-01-01' }, {}]) {
    const r = await c.transactions(q);
    assert.deepEqual([r.status, r.json.code], [400, 'INVALID_REQUEST'], JSON.stringify(q));
  }
  const en = await c.transactions({ startDate: '2030-01-01Z', endDate: '2030-01-02' }, { 'Accept-Language': 'en-US' });
  assert.match(en.json.message, /invalid/i);
});

test('paging: limit (default 100, at most 5000) and startingAfter walk every transaction once, oldest first', async () => {
  const c = emu.client();
  const b = await c.billing();
  await setClock('2031-05-05T12:00:00+09:00');
  const keys = [];
  for (let i = 0; i < 130; i++) {
    keys.push((await c.approve(b.billingKey, TossClient.charge(b))).json.lastTransactionKey);
    if (i % 40 === 0) await advance(1000);
  }
  const q = { startDate: '2031-05-05', endDate: '2031-05-06' };
  assert.equal((await c.transactions(q)).json.length, 100, 'default limit 100');
  assert.deepEqual((await c.transactions({ ...q, limit: 5000 })).json.map((t) => t.transactionKey), keys);
  const seen = [];
  let after = '';
  for (;;) {
    const page = (await c.transactions({ ...q, limit: 30, startingAfter: after })).json;
    seen.push(...page.map((t) => t.transactionKey));
    if (page.length < 30) break;
    after = page[page.length - 1].transactionKey;
  }
  assert.deepEqual(seen, keys);
  for (const limit of ['5001', '0', '-1', 'abc', '1.5']) {
    const r = await c.transactions({ ...q, limit });
    assert.deepEqual([r.status, r.json.code], [400, 'INVALID_REQUEST'], limit);
  }
  const unknown = await c.transactions({ ...q, startingAfter: 'NOPE' });
  assert.deepEqual([unknown.status, unknown.json.code], [400, 'INVALID_REQUEST']);
  const otherMerchant = await emu.client().transactions({ ...q, startingAfter: keys[0] });
  assert.equal(otherMerchant.status, 400, "another merchant's transaction key is unknown");
});

test('transactions are ordered by time even when the emulator clock went back', async () => {
  const c = emu.client();
  const b = await c.billing();
  await setClock('2032-01-01T12:00:00+09:00');
  const later = (await c.approve(b.billingKey, TossClient.charge(b))).json;
  await setClock('2032-01-01T09:00:00+09:00');
  const earlier = (await c.approve(b.billingKey, TossClient.charge(b))).json;
  const r = await c.transactions({ startDate: '2032-01-01', endDate: '2032-01-02' });
  assert.deepEqual(r.json.map((t) => t.paymentKey), [earlier.paymentKey, later.paymentKey]);
});

test('transactionLagMs: recent transactions appear only after the lag (emulator clock)', async () => {
  const c = emu.client();
  await emu.admin('POST', '/__emulator/config', { transactionLagMs: 60000 });
  const p = await c.paid();
  const q = { startDate: '2000-01-01', endDate: '2100-01-01' };
  assert.deepEqual((await c.transactions(q)).json, []);
  assert.equal((await c.order(p.orderId)).status, 200, 'the payment itself is there at once');
  await advance(60000);
  assert.deepEqual((await c.transactions(q)).json.map((t) => t.paymentKey), [p.paymentKey]);
});

test('GET /v1/transactions answers TossPayments-Test-Code and needs auth', async () => {
  const c = emu.client();
  const coded = await c.transactions({ startDate: '2030-01-01', endDate: '2030-01-02' }, { 'TossPayments-Test-Code': 'FAILED_INTERNAL_SYSTEM_PROCESSING' });
  assert.equal(coded.status, 500);
  const anon = await emu.request({ path: '/v1/transactions?startDate=2030-01-01&endDate=2030-01-02' });
  assert.equal(anon.status, 401);
  void uid;
});
