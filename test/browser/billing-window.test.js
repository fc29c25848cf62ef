// Browser test: headless Chromium (Debian's chromium + chromedriver, driven
// over the WebDriver protocol) runs a merchant page on its own origin that
// loads the emulator's SDK shim, and a person's steps through the billing
// window: the v2 overlay (windowTarget iframe, the PC default) and the v1
// full-page window — a card that registers (redirect to successUrl with an
// authKey that issues a billing key), a declining card (redirect to failUrl
// with its code), and a user cancel (v2: the Promise rejects with USER_CANCEL
// and the page stays; full page: failUrl with PAY_PROCESS_CANCELED). Also the
// window's merchant/customer display, card-company detection as the number is
// typed, the required consent, and the page-language rule.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { Browser } = require('./webdriver');
const { startEmulator, TossClient } = require('../emulator/support/harness');

const SECRET = 'test_sk_browserShop000000001';
const CLIENT = 'test_ck_browserShop000000001';
const SHOP_NAME = '브라우저 테스트 상점';

let emu;
let shop;
let browser;
let client;

/** The merchant's site: pages that load the shim (v1 or v2) and call requestBillingAuth on a click. */
function startShop(emuBase) {
  const page = (q) => {
    const v2 = q.get('sdk') === 'v2';
    const target = q.get('target') || '';
    const lang = q.get('lang') || 'ko';
    const customerKey = q.get('customerKey');
    const call = v2
      ? `(window.__payment = TossPayments(${JSON.stringify(CLIENT)}).payment({ customerKey: ${JSON.stringify(customerKey)} })).requestBillingAuth({ method: 'CARD', successUrl: location.origin + '/ok', failUrl: location.origin + '/fail', customerName: '박토스', customerEmail: 'toss@example.com'${target ? `, windowTarget: ${JSON.stringify(target)}` : ''} })`
      : `TossPayments(${JSON.stringify(CLIENT)}).requestBillingAuth('카드', { customerKey: ${JSON.stringify(customerKey)}, successUrl: location.origin + '/ok', failUrl: location.origin + '/fail', customerName: '박토스'${target ? `, windowTarget: ${JSON.stringify(target)}` : ''} })`;
    return `<!doctype html><html lang="${lang}"><head><meta charset="utf-8"><title>shop</title>
<script src="${emuBase}/js/${v2 ? 'v2/standard' : 'v1'}"></script></head>
<body><h1>구독 결제수단 등록</h1><button id="pay">카드 등록</button><p id="result"></p>
<script>
document.getElementById('pay').addEventListener('click', function () {
  window.__result = 'pending';
  ${call}.then(function () { window.__result = { resolved: true }; }, function (e) {
    window.__result = { code: e.code, message: e.message };
    document.getElementById('result').textContent = e.code;
  });
});
</script></body></html>`;
  };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://shop');
    let body;
    if (u.pathname === '/shop.html') body = page(u.searchParams);
    else if (u.pathname === '/ok' || u.pathname === '/fail') body = `<!doctype html><html><body><h1 id="landed">${u.pathname}</h1></body></html>`;
    else { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, base: `http://127.0.0.1:${server.address().port}` })));
}

before(async () => {
  emu = await startEmulator(['--port', '0', '--merchant', `${SECRET},${CLIENT},browsershop,${SHOP_NAME}`]);
  client = new TossClient(emu, SECRET, { register: false });
  shop = await startShop(emu.base);
  browser = await Browser.start();
});

after(async () => {
  if (browser) await browser.close();
  if (shop) await new Promise((r) => { shop.server.closeAllConnections(); shop.server.close(r); });
  if (emu) await emu.stop();
});

let n = 0;
function shopUrl(sdk, target, lang) {
  const q = new URLSearchParams({ sdk, customerKey: `browser-cust-${++n}`, lang: lang || 'ko' });
  if (target) q.set('target', target);
  return { url: `${shop.base}/shop.html?${q}`, customerKey: q.get('customerKey') };
}

/** Open the window from the shop page; in overlay mode, switch into its iframe. */
async function openWindow(sdk, target, lang) {
  const s = shopUrl(sdk, target, lang);
  await browser.top();
  await browser.go(s.url);
  await browser.click('#pay');
  if (target !== 'self' && sdk === 'v2') {
    await browser.find('#tosspayments-emulator-overlay iframe');
    assert.equal(await browser.run('return location.pathname'), '/shop.html', 'the overlay opens over the shop page');
    await browser.frame('#tosspayments-emulator-overlay iframe');
  }
  await browser.find('#form');
  return s;
}

async function fillCard(number) {
  await browser.type('#cardNumber', number);
  await browser.type('#cardExpirationMonth', '12');
  await browser.type('#cardExpirationYear', '39');
  await browser.type('#customerIdentityNumber', '900101');
}

async function landed() {
  await browser.top();
  return new URL(await browser.until('return document.getElementById("landed") ? location.href : null', (v) => typeof v === 'string', 15000));
}

test('v2 overlay: the window shows merchant and customer, detects the card company, requires consent; a good card lands on successUrl', async () => {
  const s = await openWindow('v2', undefined);
  assert.equal(await browser.text('#merchant'), SHOP_NAME);
  assert.equal(await browser.text('#customer'), '박토스 · toss@example.com');
  assert.equal(await browser.run('return document.documentElement.lang'), 'ko');
  assert.match(await browser.text('#company'), /카드사가 표시됩니다/);
  await browser.type('#cardNumber', '9410');
  assert.equal(await browser.text('#company'), '하나카드', 'the company shows while typing');
  await browser.type('#cardNumber', '001234567890');
  await browser.type('#cardExpirationMonth', '12');
  await browser.type('#cardExpirationYear', '39');
  await browser.type('#customerIdentityNumber', '900101');
  assert.equal(await browser.run('return document.getElementById("submit").disabled'), true, 'no consent, no submit');
  await browser.click('#agree');
  assert.equal(await browser.run('return document.getElementById("submit").disabled'), false);
  if (process.env.BROWSER_SCREENSHOT) await browser.screenshot(process.env.BROWSER_SCREENSHOT);
  await browser.click('#submit');
  const u = await landed();
  assert.equal(u.origin + u.pathname, `${shop.base}/ok`, 'the whole page moved, not the iframe');
  assert.equal(u.searchParams.get('customerKey'), s.customerKey);
  const issued = await client.issue(u.searchParams.get('authKey'), s.customerKey);
  assert.equal(issued.status, 200, issued.text);
  assert.deepEqual([issued.json.mId, issued.json.card.issuerCode], ['browsershop', '21']);
});

test('v2 overlay: a declining card lands on failUrl with its code and message', async () => {
  await openWindow('v2');
  await fillCard('4111111111111112');
  assert.equal(await browser.text('#company'), 'BC카드');
  await browser.click('#agree');
  await browser.click('#submit');
  const u = await landed();
  assert.equal(u.origin + u.pathname, `${shop.base}/fail`);
  assert.deepEqual([u.searchParams.get('code'), u.searchParams.get('message')], ['INVALID_CARD_NUMBER', '카드번호를 다시 확인해주세요.']);
});

test('v2 overlay: 취소 closes the overlay and rejects the Promise with USER_CANCEL; the page stays (English page → English message)', async () => {
  await openWindow('v2');
  await browser.click('#cancel');
  await browser.top();
  const r = await browser.until('return window.__result', (v) => v && v.code);
  assert.deepEqual(r, { code: 'USER_CANCEL', message: '취소되었습니다.' });
  assert.equal(await browser.run('return document.getElementById("tosspayments-emulator-overlay")'), null);
  assert.equal(await browser.run('return location.pathname'), '/shop.html');
  // The × button does the same, and the window follows an English page.
  await openWindow('v2', undefined, 'en');
  assert.equal(await browser.run('return document.documentElement.lang'), 'en');
  assert.match(await browser.text('#title'), /Register a card/);
  await browser.click('#close');
  await browser.top();
  assert.deepEqual(await browser.until('return window.__result', (v) => v && v.code), { code: 'USER_CANCEL', message: 'Canceled.' });
  // payment.destroy() closes the open window the same way.
  await openWindow('v2');
  await browser.top();
  await browser.run('window.__payment.destroy(); return null');
  assert.equal((await browser.until('return window.__result', (v) => v && v.code)).code, 'USER_CANCEL');
  assert.equal(await browser.run('return document.getElementById("tosspayments-emulator-overlay")'), null);
});

test('v1 full page (windowTarget self): success, a declining card, and cancel (failUrl with PAY_PROCESS_CANCELED)', async () => {
  const s = await openWindow('v1', 'self');
  assert.equal(await browser.run('return location.pathname'), '/billing-auth', 'the window replaced the page');
  assert.equal(await browser.text('#merchant'), SHOP_NAME);
  await fillCard('4906251234123456');
  assert.equal(await browser.text('#company'), 'KB국민카드');
  await browser.click('#agree');
  await browser.click('#submit');
  const ok = await landed();
  assert.equal(ok.pathname, '/ok');
  assert.equal((await client.issue(ok.searchParams.get('authKey'), s.customerKey)).json.card.number, '49062512****345*');

  await openWindow('v1', 'self');
  await browser.type('#cardNumber', '4906251234123456');
  await browser.type('#cardExpirationMonth', '01');
  await browser.type('#cardExpirationYear', '20');
  await browser.type('#customerIdentityNumber', '900101');
  await browser.click('#agree');
  await browser.click('#submit');
  const expired = await landed();
  assert.deepEqual([expired.pathname, expired.searchParams.get('code')], ['/fail', 'INVALID_CARD_EXPIRATION']);

  await openWindow('v1', 'self');
  await browser.click('#cancel');
  const canceled = await landed();
  assert.deepEqual([canceled.pathname, canceled.searchParams.get('code'), canceled.searchParams.get('message')],
    ['/fail', 'PAY_PROCESS_CANCELED', '사용자에 의해 결제가 취소되었습니다.']);
});

test('v1 on a PC page defaults to the overlay too: cancel rejects with USER_CANCEL; a card charge declines at approval', async () => {
  const s = shopUrl('v1');
  await browser.top();
  await browser.go(s.url);
  await browser.click('#pay');
  await browser.frame('#tosspayments-emulator-overlay iframe');
  await browser.click('#cancel');
  await browser.top();
  assert.equal((await browser.until('return window.__result', (v) => v && v.code)).code, 'USER_CANCEL');
  // A card that registers but whose charges the card company refuses.
  await browser.click('#pay');
  await browser.frame('#tosspayments-emulator-overlay iframe');
  await fillCard('4111111111110001');
  assert.equal(await browser.text('#company'), '롯데카드');
  await browser.click('#agree');
  await browser.click('#submit');
  const ok = await landed();
  const b = await client.issue(ok.searchParams.get('authKey'), s.customerKey);
  const r = await client.approve(b.json.billingKey, TossClient.charge(b.json));
  assert.deepEqual([r.status, r.json.code], [403, 'REJECT_CARD_COMPANY']);
});

test('a merchant page path is not an emulator file: the test runs from anywhere', () => {
  assert.ok(path.isAbsolute(__dirname));
});
