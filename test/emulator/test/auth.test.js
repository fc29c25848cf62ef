// Tests: Basic-auth variants, key shapes and merchant separation, Accept-Language,
// TossPayments-Test-Code, unknown routes (NOT_FOUND_HTTP_METHOD).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, basic, uid, TossClient } = require('../support/harness');

let emu;
before(async () => {
  emu = await startEmulator();
  // The keys the probes below use are registered merchants.
  await emu.admin('POST', '/__emulator/merchants', ['test_sk_lang', 'test_sk_routes', 'test_sk_trace', 'test_sk_pw'].map((secretKey) => ({ secretKey })));
});
after(() => emu.stop());

const probe = (authorization, headers = {}) => emu.request({
  method: 'GET', path: '/v1/payments/no-such-payment', headers: authorization === undefined ? headers : { Authorization: authorization, ...headers },
});

test('missing Authorization header → 401 UNAUTHORIZED_KEY (Korean message)', async () => {
  const r = await probe(undefined);
  assert.equal(r.status, 401);
  assert.deepEqual(r.json, { code: 'UNAUTHORIZED_KEY', message: '인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.' });
});

test('non-Basic scheme → 401 UNAUTHORIZED_KEY', async () => {
  const r = await probe('Bearer test_sk_abc');
  assert.equal(r.status, 401);
  assert.equal(r.json.code, 'UNAUTHORIZED_KEY');
});

test('secret key encoded without the colon → 403 INCORRECT_BASIC_AUTH_FORMAT', async () => {
  const r = await probe('Basic ' + Buffer.from('test_sk_nocolon').toString('base64'));
  assert.equal(r.status, 403);
  assert.equal(r.json.code, 'INCORRECT_BASIC_AUTH_FORMAT');
});

test('garbled base64 → 403 INCORRECT_BASIC_AUTH_FORMAT', async () => {
  for (const bad of ['Basic !!!notbase64!!!', 'Basic abcde', 'Basic =abc', 'Basic ' + Buffer.from([0xff, 0xfe, 0x3a]).toString('base64')]) {
    const r = await probe(bad);
    assert.equal(r.status, 403, bad);
    assert.equal(r.json.code, 'INCORRECT_BASIC_AUTH_FORMAT', bad);
  }
});

test('client keys (ck and widget gck, test and live) → 400 INVALID_API_KEY', async () => {
  for (const key of ['test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq', 'live_ck_abc', 'test_gck_docs_Ovk5rk1EwkEbP0W43n07xlzm', 'live_gck_x']) {
    const r = await probe(basic(key));
    assert.equal(r.status, 400, key);
    assert.equal(r.json.code, 'INVALID_API_KEY', key);
  }
});

test('unknown-shaped keys → 401 UNAUTHORIZED_KEY', async () => {
  for (const key of ['test_ak_legacy', 'sk_test_stripe', 'test_sk_', 'prod_sk_x', '', 'test_sk_has space', '\ufefftest_sk_bom']) {
    const r = await probe(basic(key));
    assert.equal(r.status, 401, JSON.stringify(key));
    assert.equal(r.json.code, 'UNAUTHORIZED_KEY');
  }
});

test('an unknown secret key → 401 UNAUTHORIZED_KEY; once registered, every secret key shape works (test_sk_, live_sk_, test_gsk_, live_gsk_)', async () => {
  for (const key of ['live_sk_abc', 'test_gsk_docs_OaPz8L5KdmQXkzRz3y47BMw6', 'live_gsk_X', 'test_sk_typo0000000000000001']) {
    const r = await probe(basic(key));
    assert.deepEqual([r.status, r.json.code], [401, 'UNAUTHORIZED_KEY'], key);
    assert.equal(r.json.message, '인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.');
  }
  for (const key of ['test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R', 'live_sk_abc', 'test_gsk_docs_OaPz8L5KdmQXkzRz3y47BMw6', 'live_gsk_X']) {
    const c = emu.client(key);
    await c.ready;
    const r = await probe(basic(key));
    assert.equal(r.status, 404, key); // authenticated: the payment simply does not exist
    assert.equal(r.json.code, 'NOT_FOUND_PAYMENT');
    const b = await c.billing();
    const p = await c.approve(b.billingKey, TossClient.charge(b));
    assert.equal(p.status, 200, key);
  }
});

test('a password after the colon is ignored', async () => {
  const r = await probe('Basic ' + Buffer.from('test_sk_pw:ignored').toString('base64'));
  assert.equal(r.status, 404);
});

test('each secret key is its own merchant: mId ≤14 chars, stable, data separated', async () => {
  const a = emu.client();
  const b = emu.client();
  const billA = await a.billing();
  const billA2 = await emu.client(a.secretKey).billing();
  assert.ok(billA.mId.length <= 14 && billA.mId.length > 0);
  assert.equal(billA.mId, billA2.mId);
  const billB = await b.billing();
  assert.notEqual(billA.mId, billB.mId);
  const pay = await a.approve(billA.billingKey, TossClient.charge(billA));
  assert.equal(pay.json.mId, billA.mId);
  assert.equal((await b.payment(pay.json.paymentKey)).status, 404);
  assert.equal((await b.order(pay.json.orderId)).json.code, 'NOT_FOUND_PAYMENT');
  // B may use the same orderId: order ids are per merchant.
  const payB = await b.approve(billB.billingKey, TossClient.charge(billB, { orderId: pay.json.orderId }));
  assert.equal(payB.status, 200);
  // A test key and a live key with the same tail are different merchants.
  const live = await emu.client(a.secretKey.replace('test_', 'live_')).billing();
  assert.notEqual(live.mId, billA.mId);
  assert.ok(billA.mId.startsWith('test') && live.mId.startsWith('live'));
});

test('Accept-Language: en-US gives English messages; Korean otherwise', async () => {
  const en = await probe(undefined, { 'Accept-Language': 'en-US' });
  assert.deepEqual(en.json, { code: 'UNAUTHORIZED_KEY', message: 'Unauthorized secretKey or clientKey.' });
  const enList = await probe(basic('test_sk_lang'), { 'Accept-Language': 'en-US,en;q=0.9,ko;q=0.8' });
  assert.equal(enList.json.message, 'Not found payment.');
  const ko = await probe(basic('test_sk_lang'), { 'Accept-Language': 'ko-KR,en;q=0.8' });
  assert.equal(ko.json.message, '존재하지 않는 결제 정보 입니다.');
  const c = emu.client();
  const b = await c.billing();
  const small = await c.approve(b.billingKey, TossClient.charge(b, { amount: 50 }), { 'Accept-Language': 'en-US' });
  assert.equal(small.json.code, 'BELOW_MINIMUM_AMOUNT');
  assert.equal(small.json.message, 'Payment can be made from 100 won or more by credit card, and 200 won or more for account.');
});

test('TossPayments-Test-Code returns that error with its reference HTTP status, test keys only', async () => {
  const c = emu.client();
  const b = await c.billing();
  const cases = [['REJECT_CARD_COMPANY', 403], ['PROVIDER_ERROR', 400], ['IDEMPOTENT_REQUEST_PROCESSING', 409],
    ['FAILED_INTERNAL_SYSTEM_PROCESSING', 500], ['NOT_FOUND_PAYMENT', 404], ['UNAUTHORIZED_KEY', 401],
    ['INVALID_STOPPED_CARD', 400], ['FDS_ERROR', 403], ['NOT_SUPPORTED_CARD_TYPE', 400], ['DUPLICATED_ORDER_ID', 400]];
  for (const [code, status] of cases) {
    const body = TossClient.charge(b);
    const r = await c.approve(b.billingKey, body, { 'TossPayments-Test-Code': code });
    assert.equal(r.status, status, code);
    assert.equal(r.json.code, code);
    assert.ok(r.json.message.length > 0);
    assert.equal((await c.order(body.orderId)).status, 404, 'nothing was charged');
  }
  const en = await c.approve(b.billingKey, TossClient.charge(b), { 'TossPayments-Test-Code': 'REJECT_CARD_COMPANY', 'Accept-Language': 'en-US' });
  assert.equal(en.json.message, 'Payment confirm is rejected');
  const onIssue = await c.issue('whatever', 'x', { 'TossPayments-Test-Code': 'INVALID_BILLING_AUTH' });
  assert.deepEqual([onIssue.status, onIssue.json.code], [400, 'INVALID_BILLING_AUTH']);
  const onGet = await c.order('anything', { 'TossPayments-Test-Code': 'FORBIDDEN_CONSECUTIVE_REQUEST' });
  assert.deepEqual([onGet.status, onGet.json.code], [403, 'FORBIDDEN_CONSECUTIVE_REQUEST']);
  const unknown = await c.order('anything', { 'TossPayments-Test-Code': 'NO_SUCH_CODE' });
  assert.deepEqual([unknown.status, unknown.json.code, unknown.json.message], [400, 'INVALID_TEST_CODE', '유효하지 않은 테스트 코드입니다.']);
  // Live keys ignore the header.
  const live = emu.client('live_sk_' + uid('l').replace(/-/g, ''));
  const lb = await live.billing();
  const lr = await live.approve(lb.billingKey, TossClient.charge(lb), { 'TossPayments-Test-Code': 'REJECT_CARD_COMPANY' });
  assert.equal(lr.status, 200);
});

test('unknown APIs and methods under /v1 → 404 NOT_FOUND_HTTP_METHOD', async () => {
  const auth = { Authorization: basic('test_sk_routes') };
  const cases = [['GET', '/v1/billing/authorizations/issue'], ['PUT', '/v1/billing/abc'], ['POST', '/v1/payments/abc'],
    ['GET', '/v1/nope'], ['POST', '/v1/billing/'], ['GET', '/v1/payments/orders/'], ['GET', '/v1/payments/a/b'],
    ['POST', '/v1/billing/a/b'], ['GET', '/v1'], ['GET', '/v1/billing/authorizations/card'], ['GET', '/v1/payments/x/cancel'],
    ['POST', '/v1/transactions'], ['GET', '/v1/transactions/x'], ['GET', '/v2/payments/x']];
  for (const [method, p] of cases) {
    const r = await emu.request({ method, path: p, headers: auth });
    assert.equal(r.status, 404, `${method} ${p}`);
    assert.equal(r.json.code, 'NOT_FOUND_HTTP_METHOD', `${method} ${p}`);
  }
});

test('responses carry an X-TossPayments-Trace-Id header of 32 hex characters, errors and unknown keys too', async () => {
  const a = await probe(basic('test_sk_trace'));
  const b = await probe(basic('test_sk_trace'));
  const c = await probe(basic('test_sk_neverRegistered'));
  for (const r of [a, b, c]) assert.match(r.headers['x-tosspayments-trace-id'], /^[0-9a-f]{32}$/);
  assert.notEqual(a.headers['x-tosspayments-trace-id'], b.headers['x-tosspayments-trace-id']);
});

test("the public documentation keys work: the secret key is a merchant, and its client key pairs with it", async () => {
  const docSecret = 'test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R';
  const docClient = 'test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq';
  const c = emu.client(docSecret);
  const b = await c.billing();
  assert.equal((await c.approve(b.billingKey, TossClient.charge(b))).status, 200);
  const form = new URLSearchParams({ clientKey: docClient, customerKey: 'doc-customer-1', successUrl: 'https://shop.example/ok',
    failUrl: 'https://shop.example/fail', cardNumber: '9410001234567890' }).toString();
  const win = await emu.request({ method: 'POST', path: '/billing-auth', body: form, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  const authKey = new URL(win.headers.location).searchParams.get('authKey');
  assert.equal((await c.issue(authKey, 'doc-customer-1')).status, 200);
  const widget = emu.client('test_gsk_docs_OaPz8L5KdmQXkzRz3y47BMw6');
  assert.equal((await widget.payment('x')).json.code, 'NOT_FOUND_PAYMENT');
  const asClient = await emu.request({ path: '/v1/payments/x', headers: { Authorization: basic(docClient) } });
  assert.deepEqual([asClient.status, asClient.json.code], [400, 'INVALID_API_KEY']);
});
