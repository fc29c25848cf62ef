// Tests: POST /v1/payments/{paymentKey}/cancel — full cancel, partial cancels
// (the rest after a partial stays PARTIAL_CANCELED with balanceAmount 0), the
// cancel error codes, amounts (vat, suppliedAmount, taxFreeAmount),
// idempotency, lookups after a cancel and the ledger's cancel figures.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, uid } = require('../support/harness');

let emu;
let c;
before(async () => {
  emu = await startEmulator();
  c = emu.client();
});
after(() => emu.stop());

const KST = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+09:00$/;
const CANCEL_FIELDS = ['transactionKey', 'cancelReason', 'taxExemptionAmount', 'canceledAt', 'transferDiscountAmount',
  'easyPayDiscountAmount', 'receiptKey', 'cancelAmount', 'taxFreeAmount', 'refundableAmount', 'cardDiscountAmount',
  'cancelStatus', 'cancelRequestId'];

async function expectError(paymentKey, b, status, code, client = c) {
  const r = await client.cancel(paymentKey, b);
  assert.equal(r.status, status, `${JSON.stringify(b)} → ${r.text}`);
  assert.equal(r.json.code, code, JSON.stringify(b));
  return r;
}

test('a full cancel makes the payment CANCELED with balanceAmount 0; cancelling again → 400 ALREADY_CANCELED_PAYMENT', async () => {
  const p = await c.paid({ amount: 11000 });
  const r = await c.cancel(p.paymentKey, { cancelReason: '고객 변심' });
  assert.equal(r.status, 200, r.text);
  const x = r.json;
  assert.equal(x.paymentKey, p.paymentKey);
  assert.equal(x.status, 'CANCELED');
  assert.equal(x.totalAmount, 11000);
  assert.equal(x.balanceAmount, 0);
  assert.equal(x.vat, 0);
  assert.equal(x.suppliedAmount, 0);
  assert.equal(x.cancels.length, 1);
  const cx = x.cancels[0];
  assert.deepEqual(Object.keys(cx), CANCEL_FIELDS);
  assert.equal(cx.cancelAmount, 11000);
  assert.equal(cx.cancelReason, '고객 변심');
  assert.equal(cx.refundableAmount, 0);
  assert.equal(cx.cancelStatus, 'DONE');
  assert.match(cx.canceledAt, KST);
  assert.match(cx.transactionKey, /^[0-9A-F]{32}$/);
  assert.notEqual(cx.transactionKey, p.lastTransactionKey);
  assert.equal(x.lastTransactionKey, cx.transactionKey);
  assert.deepEqual(Object.keys(x), Object.keys(p), 'same Payment shape');
  await expectError(p.paymentKey, { cancelReason: 'again' }, 400, 'ALREADY_CANCELED_PAYMENT');
  await expectError(p.paymentKey, { cancelReason: 'again', cancelAmount: 100 }, 400, 'ALREADY_CANCELED_PAYMENT');
  // Lookups show the canceled payment.
  assert.equal((await c.payment(p.paymentKey)).json.status, 'CANCELED');
  assert.equal((await c.order(p.orderId)).json.status, 'CANCELED');
});

test('cancelAmount equal to the whole amount on the first cancel is a full cancel', async () => {
  const p = await c.paid({ amount: 5000 });
  const r = await c.cancel(p.paymentKey, { cancelReason: 'all', cancelAmount: 5000 });
  assert.deepEqual([r.json.status, r.json.balanceAmount], ['CANCELED', 0]);
});

test('partial cancel, then the rest: stays PARTIAL_CANCELED with balanceAmount 0; then 403 NOT_CANCELABLE_AMOUNT', async () => {
  const p = await c.paid({ amount: 10000 });
  const r1 = await c.cancel(p.paymentKey, { cancelReason: '부분 환불', cancelAmount: 3000 });
  assert.equal(r1.status, 200, r1.text);
  assert.equal(r1.json.status, 'PARTIAL_CANCELED');
  assert.equal(r1.json.balanceAmount, 7000);
  assert.equal(r1.json.vat, 636); // round(7000 / 11)
  assert.equal(r1.json.suppliedAmount, 6364);
  assert.equal(r1.json.cancels[0].refundableAmount, 7000);
  const r2 = await c.cancel(p.paymentKey, { cancelReason: '나머지' });
  assert.equal(r2.status, 200, r2.text);
  assert.equal(r2.json.status, 'PARTIAL_CANCELED');
  assert.equal(r2.json.balanceAmount, 0);
  assert.equal(r2.json.vat, 0);
  assert.deepEqual(r2.json.cancels.map((x) => [x.cancelAmount, x.refundableAmount]), [[3000, 7000], [7000, 0]]);
  assert.equal(r2.json.lastTransactionKey, r2.json.cancels[1].transactionKey);
  await expectError(p.paymentKey, { cancelReason: 'again' }, 403, 'NOT_CANCELABLE_AMOUNT');
  await expectError(p.paymentKey, { cancelReason: 'again', cancelAmount: 1 }, 403, 'NOT_CANCELABLE_AMOUNT');
  // Exact remaining amount as cancelAmount behaves the same.
  const q = await c.paid({ amount: 10000 });
  await c.cancel(q.paymentKey, { cancelReason: 'a', cancelAmount: 4000 });
  const rest = await c.cancel(q.paymentKey, { cancelReason: 'b', cancelAmount: 6000 });
  assert.deepEqual([rest.json.status, rest.json.balanceAmount], ['PARTIAL_CANCELED', 0]);
});

test('cancel errors: amount over the balance, refundableAmount mismatch, not found, another merchant, ABORTED', async () => {
  const p = await c.paid({ amount: 10000 });
  await expectError(p.paymentKey, { cancelReason: 'x', cancelAmount: 10001 }, 403, 'NOT_CANCELABLE_AMOUNT');
  await expectError(p.paymentKey, { cancelReason: 'x', cancelAmount: 100, refundableAmount: 9999 }, 400, 'NOT_MATCHES_REFUNDABLE_AMOUNT');
  assert.equal((await c.cancel(p.paymentKey, { cancelReason: 'x', cancelAmount: 100, refundableAmount: 10000 })).status, 200);
  await expectError('tbill-no-such-payment', { cancelReason: 'x' }, 404, 'NOT_FOUND_PAYMENT');
  await expectError(p.paymentKey, { cancelReason: 'x' }, 404, 'NOT_FOUND_PAYMENT', emu.client());
  const b = await c.billing({ cardNumber: '4111111111110002' });
  const orderId = uid('o');
  assert.equal((await c.approve(b.billingKey, { customerKey: b.customerKey, amount: 1000, orderId, orderName: 'x' })).status, 403);
  const aborted = (await c.order(orderId)).json;
  assert.equal(aborted.status, 'ABORTED');
  await expectError(aborted.paymentKey, { cancelReason: 'x' }, 403, 'NOT_CANCELABLE_PAYMENT');
  // Refused cancels change nothing.
  const now = (await c.payment(p.paymentKey)).json;
  assert.deepEqual([now.status, now.balanceAmount, now.cancels.length], ['PARTIAL_CANCELED', 9900, 1]);
});

test('cancel body rules → 400 INVALID_REQUEST (checked before the payment is looked up)', async () => {
  const p = await c.paid();
  for (const b of [{}, { cancelReason: '' }, { cancelReason: 'r'.repeat(201) }, { cancelReason: 5 },
    { cancelReason: 'x', cancelAmount: 0 }, { cancelReason: 'x', cancelAmount: -1 }, { cancelReason: 'x', cancelAmount: '100' },
    { cancelReason: 'x', cancelAmount: 1.5 }, { cancelReason: 'x', taxFreeAmount: -1 }, { cancelReason: 'x', refundableAmount: 'a' }]) {
    await expectError(p.paymentKey, b, 400, 'INVALID_REQUEST');
    await expectError('tbill-missing', b, 400, 'INVALID_REQUEST');
  }
  await expectError(p.paymentKey, 'not json', 400, 'INVALID_REQUEST');
  assert.equal((await c.payment(p.paymentKey)).json.status, 'DONE');
  // 200 characters is fine; English messages with Accept-Language.
  const en = await c.cancel(p.paymentKey, { cancelReason: 'x', cancelAmount: 999999 }, { 'Accept-Language': 'en-US' });
  assert.equal(en.json.message, 'This is a non-cancelable amount.');
  assert.equal((await c.cancel(p.paymentKey, { cancelReason: 'r'.repeat(200) })).status, 200);
});

test('taxFreeAmount: a full cancel cancels the tax-free part too; a partial one may not exceed it', async () => {
  const p = await c.paid({ amount: 12000, taxFreeAmount: 1000 });
  assert.deepEqual([p.vat, p.suppliedAmount, p.taxFreeAmount], [1000, 10000, 1000]);
  await expectError(p.paymentKey, { cancelReason: 'x', cancelAmount: 500, taxFreeAmount: 600 }, 400, 'INVALID_REQUEST');
  await expectError(p.paymentKey, { cancelReason: 'x', cancelAmount: 5000, taxFreeAmount: 1001 }, 400, 'INVALID_REQUEST');
  await expectError(p.paymentKey, { cancelReason: 'x', cancelAmount: 11500 }, 400, 'INVALID_REQUEST'); // would leave 500 < 1000 tax-free
  const r1 = await c.cancel(p.paymentKey, { cancelReason: 'x', cancelAmount: 6000, taxFreeAmount: 500 });
  assert.deepEqual([r1.json.balanceAmount, r1.json.taxFreeAmount, r1.json.vat, r1.json.suppliedAmount], [6000, 500, 500, 5000]);
  assert.equal(r1.json.cancels[0].taxFreeAmount, 500);
  const r2 = await c.cancel(p.paymentKey, { cancelReason: 'rest' });
  assert.deepEqual([r2.json.balanceAmount, r2.json.taxFreeAmount, r2.json.vat, r2.json.suppliedAmount], [0, 0, 0, 0]);
  assert.equal(r2.json.cancels[1].taxFreeAmount, 500);
});

test('cancel honours Idempotency-Key: a retry replays the first cancel instead of cancelling again', async () => {
  const p = await c.paid({ amount: 10000 });
  const k = uid('idem');
  const first = await c.cancel(p.paymentKey, { cancelReason: 'x', cancelAmount: 1000 }, { 'Idempotency-Key': k });
  const again = await c.cancel(p.paymentKey, { cancelReason: 'x', cancelAmount: 1000 }, { 'Idempotency-Key': k });
  assert.equal(again.text, first.text);
  assert.equal((await c.payment(p.paymentKey)).json.balanceAmount, 9000);
  const coded = await c.cancel(p.paymentKey, { cancelReason: 'x' }, { 'TossPayments-Test-Code': 'FAILED_REFUND_PROCESS' });
  assert.deepEqual([coded.status, coded.json.code], [500, 'FAILED_REFUND_PROCESS']);
});

test('the ledger still counts a canceled charge once, and sums what was canceled', async () => {
  await emu.reset();
  await c.register();
  const p = await c.paid({ amount: 10000 });
  const q = await c.paid({ amount: 5000 });
  await c.cancel(p.paymentKey, { cancelReason: 'x', cancelAmount: 2500 });
  await c.cancel(q.paymentKey, { cancelReason: 'y' });
  const l = (await emu.admin('GET', '/__emulator/ledger')).json;
  assert.equal(l.totalDone, 2);
  assert.equal(l.doneByOrderId[p.orderId], 1);
  assert.equal(l.doneByOrderId[q.orderId], 1);
  assert.deepEqual([l.totalAmount, l.totalCancelAmount, l.netAmount], [15000, 7500, 7500]);
  assert.deepEqual([l.totalCanceled, l.totalPartialCanceled], [1, 1]);
  assert.deepEqual(l.canceledAmountByOrderId, { [p.orderId]: 2500, [q.orderId]: 5000 });
  const listed = (await emu.admin('GET', '/__emulator/payments')).json.find((x) => x.paymentKey === p.paymentKey);
  assert.deepEqual([listed.status, listed.balanceAmount, listed.cancels], ['PARTIAL_CANCELED', 7500, 1]);
});
