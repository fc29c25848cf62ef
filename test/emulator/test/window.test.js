// Tests: the card registration window — GET /billing-auth form, POST
// /billing-auth redirects to successUrl (authKey of the paired secret key) or
// failUrl (code, message), client-key and customerKey checks.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, uid } = require('../support/harness');

let emu;
before(async () => { emu = await startEmulator(); });
after(() => emu.stop());

function params(extra = {}) {
  const tail = uid('m').replace(/-/g, '');
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
  const p = params({ customerName: '<b>홍길동</b>' });
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
  const p = params();
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

test('live client keys pair with live secret keys', async () => {
  const p = params({ clientKey: 'live_ck_pairing' });
  const authKey = location(await submit(p)).searchParams.get('authKey');
  assert.equal((await emu.client('live_sk_pairing').issue(authKey, p.customerKey)).status, 200);
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
    const loc = location(await submit(params(extra)));
    assert.equal(loc.origin + loc.pathname, 'https://shop.example/billing/fail', JSON.stringify(extra));
    assert.equal(loc.searchParams.get('code'), code, JSON.stringify(extra));
    assert.ok(loc.searchParams.get('message').length > 0);
    if (message) assert.equal(loc.searchParams.get('message'), message);
    assert.equal(loc.searchParams.get('authKey'), null);
  }
  // A 10-digit business registration number is a valid identity.
  assert.ok(location(await submit(params({ customerIdentityNumber: '1234567890' }))).searchParams.get('authKey'));
});

test('a client key is required: secret keys, widget client keys and garbage are refused', async () => {
  const cases = [['test_sk_abc', 'INVALID_API_KEY'], ['live_gsk_abc', 'INVALID_API_KEY'], ['test_gck_abc', 'INVALID_API_KEY'],
    ['', 'UNAUTHORIZED_KEY'], [undefined, 'UNAUTHORIZED_KEY'], ['ck_test_abc', 'UNAUTHORIZED_KEY']];
  for (const [clientKey, code] of cases) {
    const loc = location(await submit(params({ clientKey })));
    assert.equal(loc.searchParams.get('code'), code, String(clientKey));
  }
});

test('customerKey must follow the SDK rule (2-50 of [A-Za-z0-9-_=.@], not @@ANONYMOUS)', async () => {
  for (const customerKey of ['a', 'x'.repeat(51), 'bad key!', '@@ANONYMOUS', undefined]) {
    const loc = location(await submit(params({ customerKey })));
    assert.equal(loc.searchParams.get('code'), 'INVALID_CUSTOMER_KEY', String(customerKey));
  }
  const ok = location(await submit(params({ customerKey: 'user.1@x=y_z-' })));
  assert.ok(ok.searchParams.get('authKey'));
});

test('cancel redirects with PAY_PROCESS_CANCELED; English with Accept-Language: en-US', async () => {
  const loc = location(await submit(params({ action: 'cancel' })));
  assert.equal(loc.searchParams.get('code'), 'PAY_PROCESS_CANCELED');
  const en = location(await submit(params({ cardNumber: '1234' }), { 'Accept-Language': 'en-US' }));
  assert.equal(en.searchParams.get('message'), 'Please check the card number again.');
});

test('GET with a bad client key redirects to failUrl right away; missing/relative URLs → 400 page', async () => {
  const p = params({ clientKey: 'test_sk_wrong' });
  const q = new URLSearchParams({ clientKey: p.clientKey, customerKey: p.customerKey, successUrl: p.successUrl, failUrl: p.failUrl });
  assert.equal(location(await emu.request({ path: `/billing-auth?${q}` })).searchParams.get('code'), 'INVALID_API_KEY');
  for (const extra of [{ successUrl: undefined }, { failUrl: '/relative' }, { successUrl: 'javascript:alert(1)' }]) {
    const r = await submit(params(extra));
    assert.equal(r.status, 400, JSON.stringify(extra));
    assert.match(r.headers['content-type'], /text\/html/);
  }
});

test('query-string fields on the POST URL are accepted too', async () => {
  const p = params();
  const q = new URLSearchParams({ clientKey: p.clientKey, customerKey: p.customerKey, successUrl: p.successUrl, failUrl: p.failUrl });
  const r = await emu.request({ method: 'POST', path: `/billing-auth?${q}`, body: 'cardNumber=4906251234123456', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.ok(location(r).searchParams.get('authKey'));
});
