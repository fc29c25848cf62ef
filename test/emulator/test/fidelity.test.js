// Tests: what real clients written against Toss compare — the response headers
// (X-TossPayments-Trace-Id as 32 hex, the echoed Idempotency-Key, both trace ids
// on a replay), Toss's published Korean and English error messages, and the
// test cards' issuer codes where Toss's test environment is known.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startEmulator, uid, TossClient } = require('../support/harness');
const { CATALOG, CLIENT_CODES } = require('../src/errors');
const cardsJson = require('../cards.json');

let emu;
let c;
before(async () => {
  emu = await startEmulator();
  c = emu.client();
  await c.ready;
});
after(() => emu.stop());

/** A raw request that keeps repeated header lines (rawHeaders). */
function raw(method, p, body, headers) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? '' : JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port: emu.port, method, path: p, agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data), Authorization: c.auth, ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const lines = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) lines.push([res.rawHeaders[i].toLowerCase(), res.rawHeaders[i + 1]]);
        resolve({ status: res.statusCode, lines, headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString() || 'null') });
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

const traceLines = (r) => r.lines.filter(([k]) => k === 'x-tosspayments-trace-id').map(([, v]) => v);

test('X-TossPayments-Trace-Id is 32 lowercase hex characters on every /v1 answer', async () => {
  const seen = new Set();
  for (const r of [await raw('GET', '/v1/payments/nope'), await raw('GET', '/v1/nope'), await raw('GET', '/v1/payments/x', undefined, { Authorization: 'Basic eA==' })]) {
    const t = traceLines(r);
    assert.equal(t.length, 1);
    assert.match(t[0], /^[0-9a-f]{32}$/);
    seen.add(t[0]);
  }
  assert.equal(seen.size, 3);
});

test('the Idempotency-Key is echoed; a replay names the new and the original trace id (two header lines)', async () => {
  const b = await c.billing();
  const key = uid('idem');
  const first = await raw('POST', `/v1/billing/${encodeURIComponent(b.billingKey)}`, TossClient.charge(b), { 'Idempotency-Key': key });
  assert.equal(first.status, 200);
  assert.equal(first.headers['idempotency-key'], key);
  const [original] = traceLines(first);
  const replay = await raw('POST', `/v1/billing/${encodeURIComponent(b.billingKey)}`, TossClient.charge(b), { 'Idempotency-Key': key });
  assert.equal(replay.json.paymentKey, first.json.paymentKey);
  assert.equal(replay.headers['idempotency-key'], key);
  const ids = traceLines(replay);
  assert.equal(ids.length, 2);
  assert.match(ids[0], /^[0-9a-f]{32}$/);
  assert.notEqual(ids[0], original);
  assert.equal(ids[1], original);
  // Node joins the two lines as "new, original", as clients see them.
  assert.equal(replay.headers['x-tosspayments-trace-id'], `${ids[0]}, ${original}`);
  // A replayed error too; a request without a key has no Idempotency-Key header.
  const k2 = uid('idem');
  const e1 = await raw('POST', `/v1/billing/${encodeURIComponent(b.billingKey)}`, TossClient.charge(b, { amount: 50 }), { 'Idempotency-Key': k2 });
  const e2 = await raw('POST', `/v1/billing/${encodeURIComponent(b.billingKey)}`, TossClient.charge(b), { 'Idempotency-Key': k2 });
  assert.deepEqual([e1.json.code, e2.json.code], ['BELOW_MINIMUM_AMOUNT', 'BELOW_MINIMUM_AMOUNT']);
  assert.equal(traceLines(e2)[1], traceLines(e1)[0]);
  const none = await raw('GET', '/v1/payments/nope');
  assert.equal(none.headers['idempotency-key'], undefined);
});

// Toss's published messages (the error-codes page), Korean and English.
const PUBLISHED = {
  BELOW_MINIMUM_AMOUNT: ['신용카드는 결제금액이 100원 이상, 계좌는 200원이상부터 결제가 가능합니다.', 'Payment can be made from 100 won or more by credit card, and 200 won or more for account.'],
  PROVIDER_ERROR: ['일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.', 'This is temporary error. Please try again in a few minutes.'],
  INVALID_API_KEY: ['잘못된 시크릿키 연동 정보 입니다.', 'Incorrect secret key.'],
  UNAUTHORIZED_KEY: ['인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.', 'Unauthorized secretKey or clientKey.'],
  REJECT_CARD_PAYMENT: ['한도초과 혹은 잔액부족으로 결제에 실패했습니다.', 'Payment failed due to limit exceeded or insufficient balance.'],
  INVALID_CARD_NUMBER: ['카드번호를 다시 확인해주세요.', 'Please check your card number again.'],
  DUPLICATED_ORDER_ID: ['이미 승인 및 취소가 진행된 중복된 주문번호 입니다. 다른 주문번호로 진행해주세요.', 'This is a duplicate order id that has already been approved or canceled. Please proceed with a different order id.'],
  NOT_MATCHES_CUSTOMER_KEY: ['빌링 인증 고객키와 결제 요청 고객키가 일치하지 않습니다.', '`customerKey` between billing auth request and payment request is not matching.'],
  INVALID_BILL_KEY_REQUEST: ['빌링키 인증이 완료되지 않았거나 유효하지 않은 빌링 거래 건입니다.', 'Unauthorized billingKey or invalid billing transaction'],
  NOT_FOUND_PAYMENT: ['존재하지 않는 결제 정보 입니다.', 'Not found payment.'],
  FAILED_INTERNAL_SYSTEM_PROCESSING: ['내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요.', 'Internal system processing operation has failed. Please try again in a few minutes.'],
  NOT_CANCELABLE_AMOUNT: ['취소 할 수 없는 금액 입니다.', 'This is a non-cancelable amount.'],
  INCORRECT_BASIC_AUTH_FORMAT: ["잘못된 요청입니다. ':' 를 포함해 인코딩해주세요.", "Invalid request. Please encode including the ':' character."],
  FDS_ERROR: ['[토스페이먼츠] 위험거래가 감지되어 결제가 제한됩니다. 발송된 문자에 포함된 링크를 통해 본인인증 후 결제가 가능합니다. (고객센터: 1644-8051)', 'A fraudulent transaction has been detected. To complete the payment, complete the authentication process.'],
  NOT_FOUND_BILLING: ['존재하지 않는 빌링 결제 인증 정보 입니다.', 'Billing payment authentication information that does not exist.'],
};

test("error messages are Toss's published ones, Korean by default and English with Accept-Language: en-US", async () => {
  for (const [code, [ko, en]] of Object.entries(PUBLISHED)) {
    const koR = await c.order('anything', { 'TossPayments-Test-Code': code });
    const enR = await c.order('anything', { 'TossPayments-Test-Code': code, 'Accept-Language': 'en-US' });
    assert.equal(koR.json.code, code);
    assert.equal(koR.json.message, ko, `${code} (ko)`);
    assert.equal(enR.json.message, en, `${code} (en)`);
  }
  // Real errors, not only test codes.
  const b = await c.billing();
  const r = await c.approve(b.billingKey, TossClient.charge(b, { amount: 99 }), { 'Accept-Language': 'en-US' });
  assert.equal(r.json.message, PUBLISHED.BELOW_MINIMUM_AMOUNT[1]);
});

test('the catalog and the SDK codes have a Korean and an English message for every code', () => {
  for (const [code, [status, ko, en]] of Object.entries(CATALOG)) {
    assert.ok(Number.isInteger(status) && ko && en, code);
    assert.ok(/[가-힣]/.test(ko), `${code}: Korean`);
    assert.ok(!/[가-힣]/.test(en), `${code}: English`);
  }
  for (const [code, [ko, en]] of Object.entries(CLIENT_CODES)) assert.ok(ko && en, code);
  assert.deepEqual(CLIENT_CODES.PAY_PROCESS_CANCELED, ['사용자에 의해 결제가 취소되었습니다.', 'Payment has been canceled by the customer.']);
  assert.equal(CLIENT_CODES.USER_CANCEL[0], '취소되었습니다.');
});

test("test cards: 9410001234567890 registers with Toss's test-environment issuer code 21 (하나); every listed card documents its codes", async () => {
  const b = await c.billing({ cardNumber: '9410001234567890' });
  assert.deepEqual([b.card.issuerCode, b.card.acquirerCode, b.cardCompany], ['21', '21', '하나']);
  const p = await c.approve(b.billingKey, TossClient.charge(b));
  assert.equal(p.json.card.issuerCode, '21');
  for (const card of cardsJson.cards) {
    assert.match(card.issuerCode, /^[0-9A-Z]{2}$/, card.number);
    assert.match(card.acquirerCode, /^[0-9A-Z]{2}$/, card.number);
  }
  assert.match(cardsJson.cards[0].note, /test environment/);
});
