// Tests: the SDK shim served at /js/v1, /js/v1/payment, /js/v2 and
// /js/v2/standard — v1 loadTossPayments/TossPayments(clientKey)
// .requestBillingAuth('카드', …) and v2 TossPayments(clientKey).payment({
// customerKey}).requestBillingAuth({method: 'CARD' | 'TRANSFER', …}) send the
// page to the window (windowTarget self here: these run without a DOM; the
// overlay is driven by the headless-Chromium test in test/browser), which
// leads to successUrl?customerKey&authKey; Toss's SDK-side errors and codes.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const vm = require('node:vm');
const { startEmulator, uid } = require('../support/harness');

let emu;
before(async () => { emu = await startEmulator(); });
after(() => emu.stop());

/** Run the shim in a fake page at `pageUrl`; returns {window, navigations}. */
async function page(scriptPath = '/js/v2/standard', pageUrl = 'https://shop.example/billing/register', host, language = 'ko-KR') {
  const r = await emu.request({ path: scriptPath, headers: host ? { Host: host } : {} });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^application\/javascript/);
  const navigations = [];
  const location = {};
  Object.defineProperty(location, 'href', { get: () => pageUrl, set: (v) => navigations.push(v) });
  const window = { location, URL, URLSearchParams, Promise, navigator: { language, userAgent: 'node' } };
  vm.createContext(window);
  window.window = window;
  vm.runInContext(r.text, window);
  return { window, navigations };
}

/** Follow the window URL as a user would: open the form, submit a card, return the final redirect URL. */
async function register(windowUrl, cardNumber = '9410001234567890') {
  const u = new URL(windowUrl);
  assert.equal(`${u.protocol}//${u.host}`, emu.base);
  assert.equal(u.pathname, '/billing-auth');
  const form = await emu.request({ path: u.pathname + u.search });
  assert.equal(form.status, 200, form.text);
  assert.match(form.text, /<form/);
  const fields = Object.fromEntries(u.searchParams);
  const body = new URLSearchParams({ ...fields, cardNumber, cardExpirationMonth: '12', cardExpirationYear: '39', customerIdentityNumber: '900101',
    terms: 'shown', agree: 'on' }).toString();
  const r = await emu.request({ method: 'POST', path: '/billing-auth', body, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 302, r.text);
  return new URL(r.headers.location);
}

test('v2: TossPayments(clientKey).payment({customerKey}).requestBillingAuth({method: "CARD", …}) → card window → successUrl with an authKey', async () => {
  const tail = uid('m').replace(/-/g, '');
  const shop = emu.client(`test_sk_${tail}`);
  await shop.ready;
  const customerKey = uid('cust');
  const { window, navigations } = await page('/js/v2/standard');
  const tossPayments = window.TossPayments(`test_ck_${tail}`);
  const payment = tossPayments.payment({ customerKey });
  assert.equal(typeof payment.destroy, 'function');
  const pending = payment.requestBillingAuth({
    method: 'CARD', successUrl: 'https://shop.example/billing/success?plan=pro', failUrl: 'https://shop.example/billing/fail',
    customerEmail: 'customer@example.com', customerName: '박토스', windowTarget: 'iframe',
  });
  assert.ok(pending instanceof window.Promise);
  assert.equal(navigations.length, 1, 'without a DOM the window replaces the page');
  const win = new URL(navigations[0]);
  assert.equal(win.searchParams.get('clientKey'), `test_ck_${tail}`);
  assert.equal(win.searchParams.get('customerKey'), customerKey);
  assert.equal(win.searchParams.get('failUrl'), 'https://shop.example/billing/fail');
  assert.deepEqual([win.searchParams.get('method'), win.searchParams.get('target'), win.searchParams.get('lang'), win.searchParams.get('sdk')], ['CARD', 'self', 'ko', 'v2']);
  assert.equal(win.searchParams.get('customerEmail'), 'customer@example.com');
  const success = await register(navigations[0]);
  assert.equal(success.origin + success.pathname, 'https://shop.example/billing/success');
  assert.equal(success.searchParams.get('plan'), 'pro');
  assert.equal(success.searchParams.get('customerKey'), customerKey);
  const issued = await shop.issue(success.searchParams.get('authKey'), customerKey);
  assert.equal(issued.status, 200, issued.text);
  assert.equal(await payment.destroy(), undefined);
});

test('v2: method TRANSFER opens the account window and issues a 계좌이체 billing key', async () => {
  const tail = uid('m').replace(/-/g, '');
  const shop = emu.client(`test_sk_${tail}`);
  await shop.ready;
  const customerKey = uid('cust');
  const { window, navigations } = await page('/js/v2/standard');
  window.TossPayments(`test_ck_${tail}`).payment({ customerKey })
    .requestBillingAuth({ method: 'TRANSFER', successUrl: 'https://shop.example/ok', failUrl: 'https://shop.example/fail' });
  const u = new URL(navigations[0]);
  assert.equal(u.searchParams.get('method'), 'TRANSFER');
  assert.ok((await emu.request({ path: u.pathname + u.search })).text.includes('name="accountNumber"'));
  const body = new URLSearchParams({ ...Object.fromEntries(u.searchParams), bankCode: '092', accountNumber: '100012345678', terms: 'shown', agree: 'on' }).toString();
  const r = await emu.request({ method: 'POST', path: '/billing-auth', body, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  const issued = await shop.issue(new URL(r.headers.location).searchParams.get('authKey'), customerKey);
  assert.deepEqual([issued.json.method, issued.json.transfers[0].bankName], ['계좌이체', '토스뱅크']);
});

test('v1: loadTossPayments(clientKey).then(t => t.requestBillingAuth("카드", {customerKey, successUrl, failUrl}))', async () => {
  for (const scriptPath of ['/js/v1', '/js/v1/payment']) {
    const tail = uid('m').replace(/-/g, '');
    const shop = emu.client(`test_sk_${tail}`);
    await shop.ready;
    const customerKey = uid('cust');
    const { window, navigations } = await page(scriptPath);
    const tossPayments = await window.loadTossPayments(`test_ck_${tail}`);
    tossPayments.requestBillingAuth('카드', { customerKey, successUrl: 'https://shop.example/ok', failUrl: 'https://shop.example/fail' });
    assert.equal(navigations.length, 1);
    const success = await register(navigations[0], '4906251234123456');
    assert.equal(new URL(navigations[0]).searchParams.get('sdk'), 'v1');
    const issued = await shop.issue(success.searchParams.get('authKey'), customerKey);
    assert.equal(issued.json.card.number, '49062512****345*');
    // The global TossPayments(clientKey) of the v1 script tag works the same way.
    window.TossPayments(`test_ck_${tail}`).requestBillingAuth('CARD', { customerKey, successUrl: 'https://shop.example/ok', failUrl: 'https://shop.example/fail' });
    assert.equal(navigations.length, 2);
  }
});

test('a refused card in the window goes to failUrl?code&message', async () => {
  await emu.client('test_sk_sdkfail').ready;
  const { window, navigations } = await page('/js/v2');
  window.TossPayments('test_ck_sdkfail').payment({ customerKey: 'cust-sdk-1' })
    .requestBillingAuth({ method: 'CARD', successUrl: 'https://shop.example/ok', failUrl: 'https://shop.example/fail' });
  const fail = await register(navigations[0], '4111111111111112');
  assert.equal(fail.pathname, '/fail');
  assert.equal(fail.searchParams.get('code'), 'INVALID_CARD_NUMBER');
});

test("SDK-side errors reject the promise without navigating, with Toss's codes and messages in the page's language", async () => {
  const { window, navigations } = await page();
  const t = window.TossPayments('test_ck_sdkerr');
  const rejects = async (p, code, message) => {
    await assert.rejects(p, (e) => e.code === code && e.name === 'TossPaymentsError' && (message === undefined || e.message === message));
  };
  await rejects(t.payment({ customerKey: 'cust-1' }).requestBillingAuth({ method: 'VIRTUAL_ACCOUNT', successUrl: 'https://a.example/s', failUrl: 'https://a.example/f' }), 'NOT_SUPPORTED_METHOD', '지원되지 않는 결제 수단입니다.');
  // Toss requires absolute success/fail URLs with the origin.
  await rejects(t.payment({ customerKey: 'cust-1' }).requestBillingAuth({ method: 'CARD', successUrl: '/billing/ok', failUrl: 'https://a.example/f' }), 'INCORRECT_SUCCESS_URL_FORMAT', '잘못된 successUrl 입니다.');
  await rejects(t.payment({ customerKey: 'cust-1' }).requestBillingAuth({ method: 'CARD', successUrl: 'https://a.example/s', failUrl: 'fail.html' }), 'INCORRECT_FAIL_URL_FORMAT', '잘못된 failUrl 입니다.');
  await rejects(t.requestBillingAuth('카드', { customerKey: 'cust-1', successUrl: '//a.example/s', failUrl: 'https://a.example/f' }), 'INCORRECT_SUCCESS_URL_FORMAT');
  await rejects(window.TossPayments('test_gck_widget').payment({ customerKey: 'cust-1' }).requestBillingAuth({ method: 'CARD', successUrl: 'https://a.example/s', failUrl: 'https://a.example/f' }), 'NOT_SUPPORTED_WIDGET_KEY');
  await rejects(t.payment({ customerKey: window.TossPayments.ANONYMOUS }).requestBillingAuth({ method: 'CARD', successUrl: 'https://a.example/s', failUrl: 'https://a.example/f' }), 'INVALID_CUSTOMER_KEY');
  await rejects(t.payment({ customerKey: 'x' }).requestBillingAuth({ method: 'CARD', successUrl: 'https://a.example/s', failUrl: 'https://a.example/f' }), 'INVALID_CUSTOMER_KEY');
  await rejects(t.payment({ customerKey: 'cust-1' }).requestBillingAuth({ method: 'CARD', failUrl: 'https://a.example/f' }), 'INVALID_PARAMETERS');
  await rejects(t.requestBillingAuth('휴대폰', { customerKey: 'cust-1', successUrl: 'https://a.example/s', failUrl: 'https://a.example/f' }), 'NOT_SUPPORTED_METHOD');
  await rejects(t.payment({ customerKey: 'cust-1' }).requestPayment({}), 'NOT_SUPPORTED_METHOD');
  assert.throws(() => window.TossPayments(''), (e) => e.code === 'INVALID_CLIENT_KEY' && e.message === 'ClientKey 형태가 올바르지 않습니다.');
  assert.equal(navigations.length, 0);
  const en = await page('/js/v2/standard', 'https://shop.example/', undefined, 'en-US');
  await assert.rejects(en.window.TossPayments('test_ck_sdkerr').payment({ customerKey: 'cust-1' })
    .requestBillingAuth({ method: 'CARD', successUrl: '/s', failUrl: 'https://a.example/f' }), (e) => e.message === 'Invalid format: `successUrl`');
});

test('the script points at the host the page used to load it (loopback names only)', async () => {
  const local = await page('/js/v2/standard', 'http://localhost:3000/', `localhost:${emu.port}`);
  assert.equal(local.window.__TOSS_EMULATOR__.baseUrl, `http://localhost:${emu.port}`);
  const foreign = await page('/js/v2/standard', 'http://localhost:3000/', 'evil.example');
  assert.equal(foreign.window.__TOSS_EMULATOR__.baseUrl, emu.base);
  assert.equal((await emu.request({ method: 'POST', path: '/js/v2/standard' })).status, 404);
});
