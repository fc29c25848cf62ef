// Tests: the billing-auth window — GET /billing-auth page (merchant, customer,
// card-company detection data, required consent, language), POST /billing-auth
// redirects to successUrl (authKey of the client key's registered merchant) or
// failUrl (code, message), client-key and customerKey checks, the overlay
// (target=iframe) variant and account (TRANSFER) registration.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, uid, TossClient } = require('../support/harness');

let emu;
before(async () => { emu = await startEmulator(); });
after(() => emu.stop());

/** Window fields for a fresh registered merchant (test_sk_X / test_ck_X), with overrides. */
async function params(extra = {}) {
  const tail = uid('m').replace(/-/g, '');
  await emu.client(`test_sk_${tail}`, { name: `상점 ${tail}` }).ready;
  return {
    clientKey: `test_ck_${tail}`, customerKey: uid('cust'),
    successUrl: 'https://shop.example/billing/success?plan=pro', failUrl: 'https://shop.example/billing/fail',
    cardNumber: '9410001234567890', cardExpirationMonth: '12', cardExpirationYear: '99', customerIdentityNumber: '900101',
    ...extra,
  };
}

function submit(p, headers = {}) {
  const form = new URLSearchParams(Object.entries(p).filter(([, v]) => v !== undefined)).toString();
  return emu.request({ method: 'POST', path: '/billing-auth', body: form, headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers } });
}

function location(r) {
  assert.equal(r.status, 302, r.text);
  return new URL(r.headers.location);
}

test('GET /billing-auth serves the card form with the query fields carried along', async () => {
  const p = await params({ customerName: '<b>홍길동</b>' });
  const q = new URLSearchParams({ clientKey: p.clientKey, customerKey: p.customerKey, successUrl: p.successUrl, failUrl: p.failUrl, customerName: p.customerName });
  const r = await emu.request({ path: `/billing-auth?${q}` });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /text\/html/);
  for (const name of ['cardNumber', 'cardExpirationMonth', 'cardExpirationYear', 'customerIdentityNumber']) assert.match(r.text, new RegExp(`name="${name}"`));
  assert.match(r.text, new RegExp(`name="clientKey" value="${p.clientKey}"`));
  assert.ok(r.text.includes('&lt;b&gt;홍길동&lt;/b&gt;'));
  assert.ok(!r.text.includes('<b>홍길동'));
});

test('a good card redirects to successUrl?customerKey&authKey; the authKey belongs to the paired secret key (_ck_ → _sk_)', async () => {
  const p = await params();
  const loc = location(await submit(p));
  assert.equal(loc.origin + loc.pathname, 'https://shop.example/billing/success');
  assert.equal(loc.searchParams.get('plan'), 'pro');
  assert.equal(loc.searchParams.get('customerKey'), p.customerKey);
  const authKey = loc.searchParams.get('authKey');
  assert.match(authKey, /^[A-Za-z0-9]{21}$/);
  const other = emu.client('test_sk_someoneelse');
  assert.equal((await other.issue(authKey, p.customerKey)).status, 404);
  const mine = emu.client(p.clientKey.replace('_ck_', '_sk_'));
  const r = await mine.issue(authKey, p.customerKey);
  assert.equal(r.status, 200);
  assert.equal(r.json.card.number, '94100012****789*');
  assert.equal((await mine.issue(authKey, p.customerKey)).status, 404);
});

test('live client keys pair with live secret keys; a registered client key belongs to its own merchant', async () => {
  const live = emu.client('live_sk_pairing');
  await live.ready;
  const p = await params({ clientKey: 'live_ck_pairing' });
  const authKey = location(await submit(p)).searchParams.get('authKey');
  assert.equal((await live.issue(authKey, p.customerKey)).status, 200);
  // A client key registered with an unrelated secret key (as Toss issues them) pairs with that secret key.
  const shop = emu.client('test_sk_unrelatedSecret01', { clientKey: 'test_ck_unrelatedClient01' });
  await shop.ready;
  const q = await params({ clientKey: 'test_ck_unrelatedClient01' });
  const ak = location(await submit(q)).searchParams.get('authKey');
  assert.equal((await shop.issue(ak, q.customerKey)).status, 200);
});

test('an unregistered client key → failUrl with UNAUTHORIZED_KEY (no authKey)', async () => {
  const p = await params({ clientKey: 'test_ck_neverRegistered0001' });
  const loc = location(await submit(p));
  assert.equal(loc.searchParams.get('code'), 'UNAUTHORIZED_KEY');
  assert.equal(loc.searchParams.get('authKey'), null);
});

test('cards refused at registration redirect to failUrl?code&message', async () => {
  const cases = [
    [{ cardNumber: '4111111111111112' }, 'INVALID_CARD_NUMBER', '카드번호를 다시 확인해주세요.'],
    [{ cardNumber: '433012' }, 'INVALID_CARD_NUMBER'],
    [{ cardNumber: '' }, 'INVALID_CARD_NUMBER'],
    [{ cardExpirationMonth: '13' }, 'INVALID_CARD_EXPIRATION'],
    [{ cardExpirationYear: '20', cardExpirationMonth: '01' }, 'INVALID_CARD_EXPIRATION'],
    [{ customerIdentityNumber: '12345' }, 'INVALID_BIRTH_DAY_FORMAT'],
    [{ customerIdentityNumber: '901301' }, 'INVALID_BIRTH_DAY_FORMAT'],
  ];
  for (const [extra, code, message] of cases) {
    const loc = location(await submit(await params(extra)));
    assert.equal(loc.origin + loc.pathname, 'https://shop.example/billing/fail', JSON.stringify(extra));
    assert.equal(loc.searchParams.get('code'), code, JSON.stringify(extra));
    assert.ok(loc.searchParams.get('message').length > 0);
    if (message) assert.equal(loc.searchParams.get('message'), message);
    assert.equal(loc.searchParams.get('authKey'), null);
  }
  // A 10-digit business registration number is a valid identity.
  assert.ok(location(await submit(await params({ customerIdentityNumber: '1234567890' }))).searchParams.get('authKey'));
});

test('a client key is required: secret keys, widget client keys and garbage are refused', async () => {
  const cases = [['test_sk_abc', 'INVALID_API_KEY'], ['live_gsk_abc', 'INVALID_API_KEY'], ['test_gck_abc', 'INVALID_API_KEY'],
    ['', 'UNAUTHORIZED_KEY'], [undefined, 'UNAUTHORIZED_KEY'], ['ck_test_abc', 'UNAUTHORIZED_KEY']];
  for (const [clientKey, code] of cases) {
    const loc = location(await submit(await params({ clientKey })));
    assert.equal(loc.searchParams.get('code'), code, String(clientKey));
  }
});

test('customerKey must follow the SDK rule (2-50 of [A-Za-z0-9-_=.@], not @@ANONYMOUS)', async () => {
  for (const customerKey of ['a', 'x'.repeat(51), 'bad key!', '@@ANONYMOUS', undefined]) {
    const loc = location(await submit(await params({ customerKey })));
    assert.equal(loc.searchParams.get('code'), 'INVALID_CUSTOMER_KEY', String(customerKey));
  }
  const ok = location(await submit(await params({ customerKey: 'user.1@x=y_z-' })));
  assert.ok(ok.searchParams.get('authKey'));
});

test("cancel redirects with PAY_PROCESS_CANCELED (Toss's messages); English with Accept-Language: en-US or lang=en", async () => {
  const loc = location(await submit(await params({ action: 'cancel' })));
  assert.equal(loc.searchParams.get('code'), 'PAY_PROCESS_CANCELED');
  assert.equal(loc.searchParams.get('message'), '사용자에 의해 결제가 취소되었습니다.');
  const enCancel = location(await submit(await params({ action: 'cancel' }), { 'Accept-Language': 'en-US' }));
  assert.equal(enCancel.searchParams.get('message'), 'Payment has been canceled by the customer.');
  const en = location(await submit(await params({ cardNumber: '1234' }), { 'Accept-Language': 'en-US' }));
  assert.equal(en.searchParams.get('message'), 'Please check your card number again.');
  // The SDK passes the merchant page's language; it wins over the browser's Accept-Language.
  const byLang = location(await submit(await params({ cardNumber: '1234', lang: 'en' }), { 'Accept-Language': 'ko-KR' }));
  assert.equal(byLang.searchParams.get('message'), 'Please check your card number again.');
  const ko = location(await submit(await params({ cardNumber: '1234', lang: 'ko' }), { 'Accept-Language': 'en-US' }));
  assert.equal(ko.searchParams.get('message'), '카드번호를 다시 확인해주세요.');
});

test('GET with a bad client key redirects to failUrl right away; missing/relative URLs → 400 page', async () => {
  const p = await params({ clientKey: 'test_sk_wrong' });
  const q = new URLSearchParams({ clientKey: p.clientKey, customerKey: p.customerKey, successUrl: p.successUrl, failUrl: p.failUrl });
  assert.equal(location(await emu.request({ path: `/billing-auth?${q}` })).searchParams.get('code'), 'INVALID_API_KEY');
  for (const extra of [{ successUrl: undefined }, { failUrl: '/relative' }, { successUrl: 'javascript:alert(1)' }]) {
    const r = await submit(await params(extra));
    assert.equal(r.status, 400, JSON.stringify(extra));
    assert.match(r.headers['content-type'], /text\/html/);
  }
});

test('query-string fields on the POST URL are accepted too', async () => {
  const p = await params();
  const q = new URLSearchParams({ clientKey: p.clientKey, customerKey: p.customerKey, successUrl: p.successUrl, failUrl: p.failUrl });
  const r = await emu.request({ method: 'POST', path: `/billing-auth?${q}`, body: 'cardNumber=4906251234123456', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.ok(location(r).searchParams.get('authKey'));
});

test('the page shows the merchant name, the customer, the required consent and the card-company table; language follows lang / Accept-Language', async () => {
  const p = await params({ customerName: '박토스', customerEmail: 'toss@example.com' });
  const shopName = (await emu.admin('GET', '/__emulator/merchants')).json.find((m) => m.clientKey === p.clientKey).name;
  const q = new URLSearchParams({ clientKey: p.clientKey, customerKey: p.customerKey, successUrl: p.successUrl, failUrl: p.failUrl,
    customerName: p.customerName, customerEmail: p.customerEmail });
  const ko = await emu.request({ path: `/billing-auth?${q}` });
  assert.match(ko.text, /<html lang="ko">/);
  assert.ok(ko.text.includes(`<span class="v" id="merchant">${shopName}</span>`), 'merchant name');
  assert.ok(ko.text.includes('박토스 · toss@example.com'), 'customer');
  assert.match(ko.text, /<input type="checkbox" id="agree" name="agree" value="on" required>/);
  assert.ok(ko.text.includes('[필수] 자동결제'), 'the required terms');
  assert.ok(ko.text.includes('"9410001234567890","하나카드","21"'), 'card-company detection data');
  assert.ok(!/<(script|link|img)[^>]+(src|href)=/i.test(ko.text), 'no external assets');
  const en = await emu.request({ path: `/billing-auth?${q}&lang=en-US` });
  assert.match(en.text, /<html lang="en">/);
  assert.ok(en.text.includes('Register a card') && en.text.includes('"9410001234567890","Hana Card","21"'));
  const byHeader = await emu.request({ path: `/billing-auth?${q}`, headers: { 'Accept-Language': 'en-US,en;q=0.9' } });
  assert.match(byHeader.text, /<html lang="en">/);
});

test('a page that showed the terms must come back with the consent (NEED_AGREEMENT_WITH_REQUIRED_TERMS)', async () => {
  const p = await params({ terms: 'shown' });
  const r = await submit(p);
  assert.equal(r.status, 400);
  assert.ok(r.text.includes('필수 약관에 동의해주세요.'));
  assert.ok(location(await submit({ ...p, agree: 'on' })).searchParams.get('authKey'));
});

test('overlay (target=iframe): the form posts to the top window; a failing GET replaces the top page, not the iframe', async () => {
  const p = await params({ target: 'iframe' });
  const q = new URLSearchParams({ clientKey: p.clientKey, customerKey: p.customerKey, successUrl: p.successUrl, failUrl: p.failUrl, target: 'iframe' });
  const page = await emu.request({ path: `/billing-auth?${q}` });
  assert.equal(page.status, 200);
  assert.match(page.text, /<form method="post" action="\/billing-auth" id="form" target="_top">/);
  assert.match(page.text, /postMessage\(\{ source: 'toss-emulator', type: 'cancel' \}/);
  q.set('customerKey', 'x');
  const bad = await emu.request({ path: `/billing-auth?${q}` });
  assert.equal(bad.status, 200);
  assert.match(bad.text, /window\.top\.location\.href = u/);
  assert.ok(bad.text.includes('code=INVALID_CUSTOMER_KEY'));
  // The POST answer itself is a plain redirect (it already loads in the top window).
  assert.ok(location(await submit(p)).searchParams.get('authKey'));
});

test('method TRANSFER registers a bank account: 계좌이체 billing key, Payment with transfer, 200 KRW minimum', async () => {
  const p = await params({ method: 'TRANSFER', bankCode: '088', accountNumber: '110-123-456789', cardNumber: undefined });
  const q = new URLSearchParams({ clientKey: p.clientKey, customerKey: p.customerKey, successUrl: p.successUrl, failUrl: p.failUrl, method: 'TRANSFER' });
  const page = await emu.request({ path: `/billing-auth?${q}` });
  assert.ok(page.text.includes('계좌 등록') && page.text.includes('name="bankCode"') && page.text.includes('name="accountNumber"'));
  assert.ok(!page.text.includes('name="cardNumber"'));
  const authKey = location(await submit(p)).searchParams.get('authKey');
  const c = emu.client(p.clientKey.replace('_ck_', '_sk_'));
  const b = await c.issue(authKey, p.customerKey);
  assert.equal(b.status, 200, b.text);
  assert.deepEqual([b.json.method, b.json.card, b.json.transfers], ['계좌이체', null, [{ bankName: '신한', bankAccountNumber: '110******789' }]]);
  const small = await c.approve(b.json.billingKey, TossClient.charge(b.json, { amount: 150 }));
  assert.deepEqual([small.status, small.json.code], [400, 'BELOW_MINIMUM_AMOUNT']);
  const pay = await c.approve(b.json.billingKey, TossClient.charge(b.json));
  assert.equal(pay.status, 200, pay.text);
  assert.deepEqual([pay.json.method, pay.json.card, pay.json.transfer, pay.json.status], ['계좌이체', null, { bankCode: '088', settlementStatus: 'INCOMPLETED' }, 'DONE']);
  for (const [extra, code] of [[{ bankCode: '999' }, 'INVALID_BANK'], [{ accountNumber: '12' }, 'INVALID_ACCOUNT_INFO_RE_REGISTER']]) {
    assert.equal(location(await submit({ ...p, ...extra })).searchParams.get('code'), code);
  }
});
