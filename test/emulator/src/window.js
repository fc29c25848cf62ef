// Owns the card registration window that the browser SDK's requestBillingAuth
// opens: GET /billing-auth serves the card form, POST /billing-auth registers
// the card and redirects (302) to successUrl?customerKey&authKey or to
// failUrl?code&message. The merchant is the client key's paired secret key
// (`test_ck_X` → `test_sk_X`).
'use strict';

const { tossError, messageOf, languageOf } = require('./errors');
const { classifyKey, secretKeyForClientKey, merchantOf } = require('./auth');
const cards = require('./cards');
const { html, redirect, escapeHtml } = require('./http');

const SDK_CUSTOMER_KEY = /^[A-Za-z0-9\-_=.@]{2,50}$/;
const FIELDS = ['clientKey', 'customerKey', 'successUrl', 'failUrl', 'customerEmail', 'customerName'];

function absoluteHttpUrl(s) {
  if (typeof s !== 'string' || s === '') return null;
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u : null;
  } catch {
    return null;
  }
}

function withParams(url, params) {
  const u = new URL(url.href);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
}

function failRedirect(failUrl, err, lang) {
  return redirect(withParams(failUrl, { code: err.code, message: messageOf(err, lang) }));
}

/** Merchant of a client key, or a Toss error value. */
function merchantForClientKey(clientKey) {
  const cls = classifyKey(clientKey);
  if (cls.kind === 'client' && !cls.widget) return { merchant: merchantOf(secretKeyForClientKey(clientKey)) };
  if (cls.kind === 'client') {
    return { error: tossError('INVALID_API_KEY', { ko: '자동결제(빌링)는 API 개별 연동 키의 클라이언트 키로만 사용할 수 있습니다. 결제위젯 연동 키는 사용할 수 없습니다.', en: 'Billing needs an API-individual client key (test_ck_/live_ck_), not a payment-widget key.' }) };
  }
  if (cls.kind === 'secret') {
    return { error: tossError('INVALID_API_KEY', { ko: '시크릿 키가 아닌 클라이언트 키를 사용해주세요.', en: 'Use a client key, not a secret key, in the browser.' }) };
  }
  return { error: tossError('UNAUTHORIZED_KEY') };
}

function customerKeyError(customerKey) {
  if (typeof customerKey !== 'string' || customerKey === '@@ANONYMOUS' || !SDK_CUSTOMER_KEY.test(customerKey)) {
    return tossError('INVALID_CUSTOMER_KEY');
  }
  return null;
}

function badRequestPage(message) {
  return html(400, `<!doctype html><html lang="ko"><head><meta charset="utf-8"><title>잘못된 요청</title></head><body><h1>잘못된 요청</h1><p>${escapeHtml(message)}</p></body></html>`);
}

function formPage(p) {
  const hidden = FIELDS.filter((f) => p[f] !== undefined)
    .map((f) => `<input type="hidden" name="${f}" value="${escapeHtml(p[f])}">`).join('\n      ');
  return html(200, `<!doctype html>
<html lang="ko">
<head><meta charset="utf-8"><title>카드 등록 - 토스페이먼츠 (에뮬레이터)</title>
<style>body{font-family:sans-serif;max-width:26rem;margin:2rem auto}label{display:block;margin:.6rem 0}input{width:100%;padding:.4rem}</style>
</head>
<body>
  <h1>카드 등록</h1>
  <p>자동결제에 사용할 카드 정보를 입력해주세요. (로컬 에뮬레이터)</p>
  <form method="post" action="/billing-auth">
      ${hidden}
    <label>카드 번호 <input name="cardNumber" inputmode="numeric" autocomplete="cc-number" required></label>
    <label>유효기간 월 (MM) <input name="cardExpirationMonth" inputmode="numeric" maxlength="2" required></label>
    <label>유효기간 연도 (YY) <input name="cardExpirationYear" inputmode="numeric" maxlength="2" required></label>
    <label>생년월일 (YYMMDD) 또는 사업자등록번호 <input name="customerIdentityNumber" inputmode="numeric" maxlength="10" required></label>
    <button type="submit" name="action" value="register">카드 등록</button>
    <button type="submit" name="action" value="cancel" formnovalidate>취소</button>
  </form>
</body>
</html>
`);
}

/** Common checks; returns {resp} to answer with, or {merchant, success, fail}. */
function precheck(p, lang) {
  const success = absoluteHttpUrl(p.successUrl);
  const fail = absoluteHttpUrl(p.failUrl);
  if (!success || !fail) return { resp: badRequestPage('successUrl과 failUrl은 http(s)로 시작하는 절대 URL이어야 합니다.') };
  const m = merchantForClientKey(p.clientKey);
  if (m.error) return { resp: failRedirect(fail, m.error, lang) };
  const ck = customerKeyError(p.customerKey);
  if (ck) return { resp: failRedirect(fail, ck, lang) };
  return { merchant: m.merchant, success, fail };
}

// GET /billing-auth?clientKey&customerKey&successUrl&failUrl
function show(query, headers) {
  const lang = languageOf(headers['accept-language']);
  const pre = precheck(query, lang);
  return pre.resp || formPage(query);
}

// POST /billing-auth (form-urlencoded)
function submit(store, params, headers) {
  const lang = languageOf(headers['accept-language']);
  const pre = precheck(params, lang);
  if (pre.resp) return pre.resp;
  if (params.action === 'cancel') return failRedirect(pre.fail, tossError('PAY_PROCESS_CANCELED'), lang);
  const reg = cards.register(params);
  if (reg.error) return failRedirect(pre.fail, reg.error, lang);
  const { authKey } = store.createAuthKey({ merchant: pre.merchant, customerKey: params.customerKey, card: reg.card });
  return redirect(withParams(pre.success, { customerKey: params.customerKey, authKey }));
}

module.exports = { show, submit };
