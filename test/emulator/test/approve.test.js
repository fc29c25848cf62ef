// Tests: POST /v1/billing/{billingKey} — Payment shape, vat/suppliedAmount,
// every field rule, billing-key and customerKey rules, DUPLICATED_ORDER_ID,
// deletion, percent-encoded keys, and the GET lookups.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, uid, TossClient } = require('../support/harness');

let emu;
let c;
let bill;
before(async () => {
  emu = await startEmulator();
  c = emu.client();
  bill = await c.billing();
});
after(() => emu.stop());

const KST = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+09:00$/;
const charge = (extra) => TossClient.charge(bill, extra);
async function expectError(body, status, code, billing = bill, client = c) {
  const r = await client.approve(billing.billingKey, body);
  assert.equal(r.status, status, `${JSON.stringify(body).slice(0, 120)} → ${r.text}`);
  assert.equal(r.json.code, code);
  assert.equal(typeof r.json.message, 'string');
  assert.deepEqual(Object.keys(r.json).sort(), ['code', 'message']);
  if (typeof body === 'object' && typeof body.orderId === 'string') {
    assert.equal((await client.order(body.orderId)).status, 404, 'a refused request records no payment');
  }
  return r;
}

const PAYMENT_FIELDS = ['mId', 'version', 'paymentKey', 'status', 'lastTransactionKey', 'orderId', 'orderName', 'requestedAt',
  'approvedAt', 'useEscrow', 'cultureExpense', 'card', 'virtualAccount', 'transfer', 'mobilePhone', 'giftCertificate',
  'cashReceipt', 'cashReceipts', 'discount', 'cancels', 'secret', 'type', 'easyPay', 'country', 'failure',
  'isPartialCancelable', 'receipt', 'checkout', 'currency', 'totalAmount', 'balanceAmount', 'suppliedAmount', 'vat',
  'taxFreeAmount', 'metadata', 'taxExemptionAmount', 'method'];
const CARD_FIELDS = ['issuerCode', 'acquirerCode', 'number', 'installmentPlanMonths', 'isInterestFree', 'interestPayer',
  'approveNo', 'useCardPoint', 'cardType', 'ownerType', 'acquireStatus', 'amount'];

test('approval returns a complete 2022-11-16 Payment object', async () => {
  const body = charge({ customerEmail: 'customer@email.com', customerName: '박토스', taxFreeAmount: 0 });
  const r = await c.approve(bill.billingKey, body);
  assert.equal(r.status, 200);
  const p = r.json;
  assert.deepEqual(Object.keys(p), PAYMENT_FIELDS);
  assert.deepEqual(Object.keys(p.card), CARD_FIELDS);
  assert.equal(p.mId, bill.mId);
  assert.equal(p.version, '2022-11-16');
  assert.equal(p.status, 'DONE');
  assert.equal(p.type, 'BILLING');
  assert.equal(p.method, '카드');
  assert.equal(p.orderId, body.orderId);
  assert.equal(p.orderName, body.orderName);
  assert.match(p.requestedAt, KST);
  assert.match(p.approvedAt, KST);
  assert.match(p.lastTransactionKey, /^[0-9A-F]{32}$/);
  assert.ok(p.paymentKey.length > 10 && p.paymentKey.length <= 200);
  assert.equal(typeof p.secret, 'string');
  assert.ok(p.secret.length > 0 && p.secret.length <= 50);
  assert.equal(p.useEscrow, false);
  assert.equal(p.cultureExpense, false);
  assert.equal(p.isPartialCancelable, true);
  assert.equal(p.country, 'KR');
  assert.equal(p.currency, 'KRW');
  for (const k of ['virtualAccount', 'transfer', 'mobilePhone', 'giftCertificate', 'cashReceipt', 'cashReceipts', 'discount', 'cancels', 'easyPay', 'failure', 'metadata']) {
    assert.equal(p[k], null, k);
  }
  assert.deepEqual(p.card, {
    issuerCode: bill.card.issuerCode, acquirerCode: bill.card.acquirerCode, number: bill.card.number,
    installmentPlanMonths: 0, isInterestFree: false, interestPayer: null, approveNo: p.card.approveNo,
    useCardPoint: false, cardType: '신용', ownerType: '개인', acquireStatus: 'READY', amount: 4900,
  });
  assert.match(p.card.approveNo, /^\d{8}$/);
  assert.equal(p.totalAmount, 4900);
  assert.equal(p.balanceAmount, 4900);
  assert.equal(p.taxExemptionAmount, 0);
  // URLs point at the emulator, never at Toss.
  assert.ok(p.receipt.url.startsWith(emu.base + '/'));
  assert.equal(p.checkout.url, `${emu.base}/v1/payments/${p.paymentKey}/checkout`);
  assert.ok(!r.text.includes('tosspayments.com'));
  const slip = await emu.request({ path: new URL(p.receipt.url).pathname + new URL(p.receipt.url).search });
  assert.equal(slip.status, 200);
  assert.match(slip.text, new RegExp(p.orderId));
});

test('vat = round((amount - taxFree) / 11), suppliedAmount = amount - taxFree - vat', async () => {
  const cases = [[4900, 0, 445, 4455], [10000, 1000, 818, 8182], [1005, 0, 91, 914], [100, 0, 9, 91], [1000, 1000, 0, 0],
    [50000, 0, 4545, 45455], [1234567, 34567, 109091, 1090909], [106, 0, 10, 96]];
  for (const [amount, taxFreeAmount, vat, suppliedAmount] of cases) {
    const r = await c.approve(bill.billingKey, charge({ amount, taxFreeAmount }));
    assert.equal(r.status, 200);
    assert.deepEqual([r.json.vat, r.json.suppliedAmount, r.json.taxFreeAmount, r.json.totalAmount], [vat, suppliedAmount, taxFreeAmount, amount], `${amount}/${taxFreeAmount}`);
    assert.equal(r.json.suppliedAmount + r.json.vat + r.json.taxFreeAmount, amount);
  }
  const ex = await c.approve(bill.billingKey, charge({ amount: 11000, taxExemptionAmount: 500 }));
  assert.deepEqual([ex.json.taxExemptionAmount, ex.json.vat, ex.json.suppliedAmount], [500, 1000, 10000]);
});

test('orderId must be 6-64 chars of [A-Za-z0-9-_] (else 400 INVALID_REQUEST)', async () => {
  for (const orderId of ['abcde', 'a'.repeat(65), 'order#1234', 'order 1234', '주문번호123456', 'abc.def.gh', 'abc=defgh', 'abc/defgh', '', 123456, null]) {
    await expectError(charge({ orderId }), 400, 'INVALID_REQUEST');
  }
  const noOrder = charge();
  delete noOrder.orderId;
  await expectError(noOrder, 400, 'INVALID_REQUEST');
  for (const orderId of ['abcdef', 'A'.repeat(64), `ord_-${uid('x')}`]) {
    assert.equal((await c.approve(bill.billingKey, charge({ orderId }))).status, 200, orderId);
  }
});

test('orderName is required and at most 100 chars', async () => {
  const missing = charge();
  delete missing.orderName;
  await expectError(missing, 400, 'INVALID_REQUEST');
  await expectError(charge({ orderName: '' }), 400, 'INVALID_REQUEST');
  await expectError(charge({ orderName: 42 }), 400, 'INVALID_REQUEST');
  await expectError(charge({ orderName: '가'.repeat(101) }), 400, 'INVALID_REQUEST');
  assert.equal((await c.approve(bill.billingKey, charge({ orderName: '가'.repeat(100) }))).status, 200);
});

test('customerEmail and customerName are at most 100 chars', async () => {
  await expectError(charge({ customerEmail: `${'a'.repeat(90)}@email.com1` }), 400, 'INVALID_REQUEST');
  await expectError(charge({ customerName: '홍'.repeat(101) }), 400, 'INVALID_REQUEST');
  await expectError(charge({ customerName: 7 }), 400, 'INVALID_REQUEST');
  const ok = await c.approve(bill.billingKey, charge({ customerEmail: `${'a'.repeat(90)}@email.co`, customerName: '홍'.repeat(100), customerMobilePhone: '01012345678', customerIp: '127.0.0.1' }));
  assert.equal(ok.status, 200);
  await expectError(charge({ customerMobilePhone: '010-1234-5678' }), 400, 'INVALID_REQUEST');
});

test('amount: integer ≥ 100 (below → BELOW_MINIMUM_AMOUNT; not an integer → INVALID_REQUEST)', async () => {
  for (const amount of [99, 0, 1, -100]) await expectError(charge({ amount }), 400, 'BELOW_MINIMUM_AMOUNT');
  for (const amount of [100.5, '4900', null, true, 1e300]) await expectError(charge({ amount }), 400, 'INVALID_REQUEST');
  const noAmount = charge();
  delete noAmount.amount;
  await expectError(noAmount, 400, 'INVALID_REQUEST');
  const r = await c.approve(bill.billingKey, charge({ amount: 100 }));
  assert.equal(r.status, 200);
  const msg = await c.approve(bill.billingKey, charge({ amount: 99 }));
  assert.equal(msg.json.message, '신용카드는 결제금액이 100원 이상, 계좌는 200원이상부터 결제가 가능합니다.');
});

test('taxFreeAmount / taxExemptionAmount: integers from 0 to amount', async () => {
  await expectError(charge({ amount: 1000, taxFreeAmount: 1001 }), 400, 'INVALID_REQUEST');
  await expectError(charge({ taxFreeAmount: -1 }), 400, 'INVALID_REQUEST');
  await expectError(charge({ taxFreeAmount: 1.5 }), 400, 'INVALID_REQUEST');
  await expectError(charge({ amount: 1000, taxExemptionAmount: 1001 }), 400, 'INVALID_REQUEST');
  assert.equal((await c.approve(bill.billingKey, charge({ amount: 1000, taxFreeAmount: 1000 }))).status, 200);
});

test('cardInstallmentPlan: 2-12 months, only for amounts ≥ 50,000', async () => {
  await expectError(charge({ amount: 49999, cardInstallmentPlan: 3 }), 400, 'INVALID_CARD_INSTALLMENT_PLAN');
  for (const plan of [1, 13, -2, 2.5, '3']) await expectError(charge({ amount: 60000, cardInstallmentPlan: plan }), 400, 'INVALID_CARD_INSTALLMENT_PLAN');
  for (const plan of [2, 12]) {
    const r = await c.approve(bill.billingKey, charge({ amount: 50000, cardInstallmentPlan: plan }));
    assert.equal(r.status, 200);
    assert.equal(r.json.card.installmentPlanMonths, plan);
  }
  const lump = await c.approve(bill.billingKey, charge({ amount: 1000, cardInstallmentPlan: 0 }));
  assert.equal(lump.json.card.installmentPlanMonths, 0);
});

test('body must be a JSON object', async () => {
  for (const body of ['{broken', '', '[]', '"str"', 'null']) {
    const r = await c.call('POST', `/v1/billing/${encodeURIComponent(bill.billingKey)}`, body);
    assert.deepEqual([r.status, r.json.code], [400, 'INVALID_REQUEST'], body);
  }
});

test("customerKey: must match the billing key's (400 NOT_MATCHES_CUSTOMER_KEY); over 300 chars → 500 FAILED_DB_PROCESSING", async () => {
  await expectError(charge({ customerKey: bill.customerKey + 'x' }), 400, 'NOT_MATCHES_CUSTOMER_KEY');
  await expectError(charge({ customerKey: 'k'.repeat(301) }), 500, 'FAILED_DB_PROCESSING');
  await expectError(charge({ customerKey: undefined }), 400, 'INVALID_REQUEST');
  // 300 chars is accepted as a customerKey (here via the admin shortcut).
  const longKey = 'L'.repeat(300);
  const b = await c.billing({ customerKey: longKey });
  assert.equal((await c.approve(b.billingKey, TossClient.charge(b))).status, 200);
});

test('unknown billing key → 404 NOT_FOUND_BILLING; another merchant\'s → 400 INVALID_BILL_KEY_REQUEST', async () => {
  await expectError(charge(), 404, 'NOT_FOUND_BILLING', { billingKey: 'Z_t5vOvQxrj4499PeiJcjen28-V2RyqgYTwN44Rdzk0=' });
  const other = emu.client();
  await expectError(charge(), 400, 'INVALID_BILL_KEY_REQUEST', bill, other);
});

test('deleted billing key → 400 ALREADY_REMOVED_BILLING_KEY (DELETE answers 200 with an empty body)', async () => {
  const b = await c.billing();
  assert.equal((await c.approve(b.billingKey, TossClient.charge(b))).status, 200);
  const other = await emu.client().deleteBillingKey(b.billingKey);
  assert.deepEqual([other.status, other.json.code], [400, 'INVALID_BILL_KEY_REQUEST']);
  const del = await c.deleteBillingKey(b.billingKey);
  assert.equal(del.status, 200);
  assert.equal(del.text, '');
  await expectError(TossClient.charge(b), 400, 'ALREADY_REMOVED_BILLING_KEY', b);
  const again = await c.deleteBillingKey(b.billingKey);
  assert.deepEqual([again.status, again.json.code], [400, 'ALREADY_REMOVED_BILLING_KEY']);
  const unknown = await c.deleteBillingKey('nope-nope');
  assert.deepEqual([unknown.status, unknown.json.code], [404, 'NOT_FOUND_BILLING']);
  // Toss-side removal (card company / Toss deletes the key) through the admin API.
  const b2 = await c.billing({ billingKey: `x/y=${uid('k')}` });
  const rm = await emu.admin('DELETE', `/__emulator/billing-keys/${encodeURIComponent(b2.billingKey)}`);
  assert.equal(rm.status, 200);
  await expectError(TossClient.charge(b2), 400, 'ALREADY_REMOVED_BILLING_KEY', b2);
});

test('orderId already approved for this merchant → 400 DUPLICATED_ORDER_ID (any billing key); other merchants unaffected', async () => {
  const body = charge();
  const first = await c.approve(bill.billingKey, body);
  assert.equal(first.status, 200);
  const dup = await c.approve(bill.billingKey, { ...body, amount: 9999 });
  assert.deepEqual([dup.status, dup.json.code], [400, 'DUPLICATED_ORDER_ID']);
  const b2 = await c.billing();
  const dup2 = await c.approve(b2.billingKey, TossClient.charge(b2, { orderId: body.orderId }));
  assert.deepEqual([dup2.status, dup2.json.code], [400, 'DUPLICATED_ORDER_ID']);
  const byOrder = await c.order(body.orderId);
  assert.equal(byOrder.json.paymentKey, first.json.paymentKey);
  assert.equal(byOrder.json.totalAmount, 4900);
  const other = emu.client();
  const ob = await other.billing();
  assert.equal((await other.approve(ob.billingKey, TossClient.charge(ob, { orderId: body.orderId }))).status, 200);
});

test('rule order: field errors come before billing-key errors, which come before NOT_MATCHES_CUSTOMER_KEY and DUPLICATED_ORDER_ID', async () => {
  const unknownKey = { billingKey: 'unknown-key' };
  await expectError(charge({ amount: 50 }), 400, 'BELOW_MINIMUM_AMOUNT', unknownKey);
  await expectError(charge({ customerKey: 'k'.repeat(301), amount: 50 }), 500, 'FAILED_DB_PROCESSING', unknownKey);
  await expectError(charge({ customerKey: 'someone-else' }), 404, 'NOT_FOUND_BILLING', unknownKey);
  const body = charge();
  await c.approve(bill.billingKey, body);
  const r = await c.approve(bill.billingKey, { ...body, customerKey: 'someone-else' });
  assert.equal(r.json.code, 'NOT_MATCHES_CUSTOMER_KEY');
});

test('billing keys with / ? = % .. work when percent-encoded in the path', async () => {
  const keys = ['a/b', 'q?x=1&y=2', 'pct%41%zz', '..', '../../etc/passwd', 'dots/../x', 'plus+and=', 'sp ace', '#frag', '한글키', `${uid('k')}==`];
  for (const key of keys) {
    const b = await c.billing({ billingKey: key });
    assert.equal(b.billingKey, key);
    const body = TossClient.charge(b);
    const r = await c.approve(key, body);
    assert.equal(r.status, 200, `${key}: ${r.text}`);
    const log = (await emu.admin('GET', '/__emulator/requests?limit=1')).json[0];
    assert.equal(log.rawPath, `/v1/billing/${encodeURIComponent(key)}`);
    const listed = (await emu.admin('GET', `/__emulator/payments?orderId=${body.orderId}`)).json;
    assert.equal(listed[0].billingKey, key);
  }
  // Raw '=' and fully encoded dots are fine too.
  const eq = await c.billing({ billingKey: `raw=${uid('k')}=` });
  assert.equal((await c.call('POST', `/v1/billing/${eq.billingKey}`, TossClient.charge(eq))).status, 200);
  const dots = await c.billing({ billingKey: '...' });
  assert.equal((await c.call('POST', '/v1/billing/%2E%2E%2E', TossClient.charge(dots))).status, 200);
  // An unencoded '/' splits the path: no such API.
  const slash = await c.call('POST', '/v1/billing/a/b', TossClient.charge(bill));
  assert.deepEqual([slash.status, slash.json.code], [404, 'NOT_FOUND_HTTP_METHOD']);
  // Broken percent-encoding.
  const broken = await c.call('POST', '/v1/billing/abc%zz', TossClient.charge(bill));
  assert.deepEqual([broken.status, broken.json.code], [400, 'INVALID_REQUEST']);
});

test('GET /v1/payments/{paymentKey} and /v1/payments/orders/{orderId} return the Payment, else 404 NOT_FOUND_PAYMENT', async () => {
  const r = await c.approve(bill.billingKey, charge());
  const byKey = await c.payment(r.json.paymentKey);
  assert.equal(byKey.status, 200);
  assert.deepEqual(byKey.json, r.json);
  const byOrder = await c.order(r.json.orderId);
  assert.deepEqual(byOrder.json, r.json);
  for (const res of [await c.payment('tbill-unknown'), await c.order('unknown-order')]) {
    assert.deepEqual([res.status, res.json], [404, { code: 'NOT_FOUND_PAYMENT', message: '존재하지 않는 결제 정보 입니다.' }]);
  }
  const idem = await c.order(r.json.orderId, { 'Idempotency-Key': 'x'.repeat(400) });
  assert.equal(idem.status, 200, 'GET ignores Idempotency-Key');
});
