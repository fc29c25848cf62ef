// Owns the billing-auth window that the browser SDK's requestBillingAuth opens:
// GET /billing-auth serves the registration page (a card form, or a bank-account
// form for method TRANSFER) in the look of Toss's window — the merchant's name,
// the customer, the card company detected as the number is typed, the required
// terms consent — as a full page (windowTarget self) or as the panel of the SDK
// shim's overlay (windowTarget iframe). POST /billing-auth registers the card or
// account and redirects (302) to successUrl?customerKey&authKey, or to
// failUrl?code&message. The merchant is the one the client key is registered to.
// Everything is inline (no external assets); the page's language is the `lang`
// the SDK passes (the merchant page's language), else Accept-Language.
'use strict';

const { tossError, messageOf, languageOf } = require('./errors');
const { classifyKey } = require('./auth');
const cards = require('./cards');
const { html, redirect, escapeHtml } = require('./http');

const SDK_CUSTOMER_KEY = /^[A-Za-z0-9\-_=.@]{2,50}$/;
const FIELDS = ['clientKey', 'customerKey', 'successUrl', 'failUrl', 'customerEmail', 'customerName', 'method', 'target', 'lang', 'sdk'];

const COMPANY_NAMES = {
  하나: ['하나카드', 'Hana Card'], 국민: ['KB국민카드', 'KB Kookmin Card'], 현대: ['현대카드', 'Hyundai Card'],
  삼성: ['삼성카드', 'Samsung Card'], 롯데: ['롯데카드', 'Lotte Card'], 우리: ['우리카드', 'Woori Card'],
  BC: ['BC카드', 'BC Card'], 신한: ['신한카드', 'Shinhan Card'], 농협: ['NH농협카드', 'NH Card'],
};

const TEXT = {
  ko: {
    title: '카드 등록', titleTransfer: '계좌 등록', subtitle: '자동결제에 사용할 카드를 등록해주세요.',
    subtitleTransfer: '자동결제에 사용할 출금 계좌를 등록해주세요.', merchant: '상점', customer: '고객', billing: '자동결제',
    cardNumber: '카드 번호', expiry: '유효기간', month: '월 (MM)', year: '년 (YY)', identity: '생년월일 6자리 또는 사업자등록번호 10자리',
    bank: '은행', accountNumber: '계좌번호', choose: '선택해주세요',
    agree: '[필수] 자동결제(정기결제) 이용약관 및 개인정보 수집·이용에 동의합니다.', terms: '약관 보기',
    termsText: '등록한 결제수단으로 상점이 정한 주기와 금액에 따라 결제가 진행됩니다. 등록은 언제든지 해지할 수 있습니다.',
    submit: '등록하기', cancel: '취소', close: '닫기', detecting: '카드 번호를 입력하면 카드사가 표시됩니다.',
    emulator: '로컬 에뮬레이터 — 실제 결제가 일어나지 않습니다.', badUrls: 'successUrl과 failUrl은 http(s)로 시작하는 절대 URL이어야 합니다.',
    badRequest: '잘못된 요청', moving: '이동 중…',
  },
  en: {
    title: 'Register a card', titleTransfer: 'Register an account', subtitle: 'Register the card to use for automatic payments.',
    subtitleTransfer: 'Register the bank account to use for automatic payments.', merchant: 'Store', customer: 'Customer', billing: 'Automatic payment',
    cardNumber: 'Card number', expiry: 'Expiry', month: 'Month (MM)', year: 'Year (YY)', identity: 'Date of birth (YYMMDD) or 10-digit business number',
    bank: 'Bank', accountNumber: 'Account number', choose: 'Choose',
    agree: '[Required] I agree to the automatic (recurring) payment terms and the collection and use of personal information.', terms: 'View terms',
    termsText: 'The store charges the registered payment method on its own schedule and amounts. You can cancel the registration at any time.',
    submit: 'Register', cancel: 'Cancel', close: 'Close', detecting: 'The card company shows up as you type the number.',
    emulator: 'Local emulator — no real payment happens.', badUrls: 'successUrl and failUrl must be absolute http(s) URLs.',
    badRequest: 'Bad request', moving: 'Redirecting…',
  },
};

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

/** The page's language: the `lang` the SDK passed (ko / en…), else the browser's Accept-Language. */
function pageLanguage(p, headers) {
  if (typeof p.lang === 'string' && p.lang !== '') return /^en\b/i.test(p.lang) ? 'en' : 'ko';
  return languageOf(headers['accept-language']);
}

/**
 * A redirect to the merchant. The overlay's form posts to the top window (target _top), so POST answers are plain
 * 302s; a GET that fails inside the overlay's iframe must replace the merchant's page, not the iframe's.
 */
function go(p, location, inFrame) {
  if (!inFrame) return redirect(location);
  const u = JSON.stringify(location).replace(/</g, '\\u003c');
  return html(200, `<!doctype html><html><head><meta charset="utf-8"><title>…</title></head><body>
<script>(function () { var u = ${u}; try { window.top.location.href = u; } catch (e) { window.location.href = u; } })();</script>
<a href="${escapeHtml(location)}" target="_top">${escapeHtml(location)}</a></body></html>`);
}

function failRedirect(p, failUrl, err, lang, inFrame = false) {
  return go(p, withParams(failUrl, { code: err.code, message: messageOf(err, lang) }), inFrame);
}

/** Merchant of a client key (the registry; permissive mode pairs `test_ck_X` with `test_sk_X`), or a Toss error value. */
function merchantForClientKey(state, clientKey) {
  const cls = classifyKey(clientKey);
  if (cls.kind === 'client' && !cls.widget) {
    const merchant = state.merchants.forClient(clientKey, state.config.permissiveKeys);
    return merchant ? { merchant } : { error: tossError('UNAUTHORIZED_KEY') };
  }
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

function isTransfer(p) {
  return p.method === 'TRANSFER' || p.method === '계좌이체';
}

function badRequestPage(t, lang) {
  return html(400, `<!doctype html><html lang="${lang}"><head><meta charset="utf-8"><title>${t.badRequest}</title></head><body><h1>${t.badRequest}</h1><p>${escapeHtml(t.badUrls)}</p></body></html>`);
}

/** Card-company detection data for the page: the listed test cards and the default profile's company. */
function detectionData(lang) {
  const i = lang === 'en' ? 1 : 0;
  const name = (c) => (COMPANY_NAMES[c] ? COMPANY_NAMES[c][i] : c);
  return {
    cards: cards.table.cards.map((c) => [c.number, name(c.cardCompany), c.issuerCode]),
    fallback: [name(cards.table.default.cardCompany), cards.table.default.issuerCode],
  };
}

const STYLE = `*{box-sizing:border-box}
body{margin:0;font-family:-apple-system,BlinkMacSystemFont,"Apple SD Gothic Neo","Malgun Gothic","Noto Sans KR",sans-serif;color:#191f28;background:#f2f4f6}
body.overlay{background:transparent}
.panel{max-width:420px;margin:32px auto;background:#fff;border-radius:16px;box-shadow:0 8px 32px rgba(0,23,51,.12);overflow:hidden}
body.overlay .panel{margin:0 auto;box-shadow:none;border-radius:16px;min-height:100vh}
header{display:flex;align-items:center;justify-content:space-between;padding:16px 20px;border-bottom:1px solid #f2f4f6}
.brand{font-weight:700;font-size:17px;letter-spacing:-.3px;color:#0064ff}.brand span{color:#191f28}
.x{border:0;background:none;font-size:22px;line-height:1;color:#8b95a1;cursor:pointer}
main{padding:20px}
.order{background:#f9fafb;border-radius:12px;padding:14px 16px;margin-bottom:18px;font-size:14px}
.order div{display:flex;justify-content:space-between;margin:3px 0}.order .k{color:#6b7684}.order .v{font-weight:600;text-align:right}
.badge{display:inline-block;background:#e8f3ff;color:#1b64da;border-radius:6px;padding:2px 8px;font-size:12px;font-weight:600}
h1{font-size:20px;margin:4px 0 4px}p.sub{color:#6b7684;font-size:14px;margin:0 0 16px}
label{display:block;font-size:13px;color:#4e5968;margin:12px 0 6px}
input[type=text],input:not([type]),select{width:100%;padding:12px;border:1px solid #d1d6db;border-radius:10px;font-size:16px;background:#fff}
input:focus,select:focus{outline:2px solid #3182f6;border-color:#3182f6}
.row{display:flex;gap:10px}.row>div{flex:1}
.company{min-height:22px;margin-top:6px;font-size:13px;color:#3182f6;font-weight:600}
.company.idle{color:#8b95a1;font-weight:400}
.terms{margin:18px 0 6px;padding:12px;border:1px solid #e5e8eb;border-radius:10px;font-size:13px}
.terms label{display:flex;gap:8px;align-items:flex-start;margin:0;color:#191f28}
.terms details{margin-top:8px;color:#6b7684}
.buttons{display:flex;gap:8px;margin-top:18px}
button.primary{flex:2;padding:14px;border:0;border-radius:10px;background:#3182f6;color:#fff;font-size:16px;font-weight:600;cursor:pointer}
button.primary:disabled{background:#b0d0fb;cursor:default}
button.secondary{flex:1;padding:14px;border:0;border-radius:10px;background:#f2f4f6;color:#4e5968;font-size:16px;cursor:pointer}
.error{background:#fff0f0;color:#e42939;border-radius:8px;padding:10px 12px;font-size:13px;margin-bottom:12px}
footer{padding:12px 20px 18px;color:#8b95a1;font-size:12px;text-align:center}`;

function formPage(p, merchant, lang, errorText) {
  const t = TEXT[lang];
  const transfer = isTransfer(p);
  const overlay = p.target === 'iframe';
  const hidden = FIELDS.filter((f) => p[f] !== undefined)
    .map((f) => `<input type="hidden" name="${f}" value="${escapeHtml(p[f])}">`).join('\n      ');
  const customer = [p.customerName, p.customerEmail].filter((v) => typeof v === 'string' && v !== '').join(' · ') || p.customerKey;
  const cardFields = `
      <label for="cardNumber">${t.cardNumber}</label>
      <input id="cardNumber" name="cardNumber" inputmode="numeric" autocomplete="cc-number" maxlength="23" placeholder="0000 0000 0000 0000" required>
      <div id="company" class="company idle" aria-live="polite">${t.detecting}</div>
      <div class="row">
        <div><label for="cardExpirationMonth">${t.expiry} ${t.month}</label><input id="cardExpirationMonth" name="cardExpirationMonth" inputmode="numeric" maxlength="2" placeholder="MM" required></div>
        <div><label for="cardExpirationYear">${t.year}</label><input id="cardExpirationYear" name="cardExpirationYear" inputmode="numeric" maxlength="2" placeholder="YY" required></div>
      </div>
      <label for="customerIdentityNumber">${t.identity}</label>
      <input id="customerIdentityNumber" name="customerIdentityNumber" inputmode="numeric" maxlength="10" required>`;
  const bankOptions = cards.BANKS.map(([code, name]) => `<option value="${code}">${escapeHtml(name)}</option>`).join('');
  const transferFields = `
      <label for="bankCode">${t.bank}</label>
      <select id="bankCode" name="bankCode" required><option value="">${t.choose}</option>${bankOptions}</select>
      <label for="accountNumber">${t.accountNumber}</label>
      <input id="accountNumber" name="accountNumber" inputmode="numeric" maxlength="20" required>`;
  const detect = JSON.stringify(detectionData(lang)).replace(/</g, '\\u003c');
  const cancelButton = overlay
    ? `<button type="button" class="secondary" id="cancel">${t.cancel}</button>`
    : `<button type="submit" class="secondary" id="cancel" name="action" value="cancel" formnovalidate>${t.cancel}</button>`;
  return html(errorText ? 400 : 200, `<!doctype html>
<html lang="${lang}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${transfer ? t.titleTransfer : t.title} - 토스페이먼츠</title>
<style>${STYLE}</style>
</head>
<body class="${overlay ? 'overlay' : 'page'}">
<div class="panel" role="dialog" aria-labelledby="title">
  <header><div class="brand">toss <span>payments</span></div>${overlay ? `<button type="button" class="x" id="close" aria-label="${t.close}">×</button>` : ''}</header>
  <main>
    <div class="order">
      <div><span class="k">${t.merchant}</span><span class="v" id="merchant">${escapeHtml(merchant.name)}</span></div>
      <div><span class="k">${t.customer}</span><span class="v" id="customer">${escapeHtml(customer)}</span></div>
      <div><span class="k"></span><span class="badge">${t.billing}</span></div>
    </div>
    <h1 id="title">${transfer ? t.titleTransfer : t.title}</h1>
    <p class="sub">${transfer ? t.subtitleTransfer : t.subtitle}</p>
    ${errorText ? `<div class="error" id="error">${escapeHtml(errorText)}</div>` : ''}
    <form method="post" action="/billing-auth" id="form"${overlay ? ' target="_top"' : ''}>
      ${hidden}
      <input type="hidden" name="terms" value="shown">${transfer ? transferFields : cardFields}
      <div class="terms">
        <label><input type="checkbox" id="agree" name="agree" value="on" required> <span>${t.agree}</span></label>
        <details><summary>${t.terms}</summary>${t.termsText}</details>
      </div>
      <div class="buttons">${cancelButton}<button type="submit" class="primary" id="submit" name="action" value="register" disabled>${t.submit}</button></div>
    </form>
  </main>
  <footer>${t.emulator}</footer>
</div>
<script>
(function () {
  var data = ${detect};
  var idle = ${JSON.stringify(t.detecting)};
  var agree = document.getElementById('agree');
  var submit = document.getElementById('submit');
  function sync() { submit.disabled = !agree.checked; }
  agree.addEventListener('change', sync);
  sync();
  var num = document.getElementById('cardNumber');
  var out = document.getElementById('company');
  function company(d) {
    if (d.length === 0) return null;
    var names = {}, count = 0, code = null;
    for (var i = 0; i < data.cards.length; i++) {
      var c = data.cards[i];
      if (c[0].indexOf(d) === 0 || (d.length > c[0].length && d.indexOf(c[0]) === 0)) {
        if (!names[c[1]]) { names[c[1]] = 1; count++; code = c[2]; }
      }
    }
    if (count === 1) return [Object.keys(names)[0], code];
    if (count === 0 && d.length >= 6) return data.fallback;
    return null;
  }
  if (num) {
    num.addEventListener('input', function () {
      var d = num.value.replace(/[^0-9]/g, '');
      var c = company(d);
      out.textContent = c ? c[0] : idle;
      out.className = c ? 'company' : 'company idle';
      out.setAttribute('data-issuer-code', c ? c[1] : '');
    });
  }
  function cancel() {
    // The SDK shim's overlay closes and rejects requestBillingAuth with USER_CANCEL.
    window.parent.postMessage({ source: 'toss-emulator', type: 'cancel' }, '*');
  }
  if (${overlay}) {
    document.getElementById('cancel').addEventListener('click', cancel);
    document.getElementById('close').addEventListener('click', cancel);
  }
})();
</script>
</body>
</html>
`);
}

/** Common checks; returns {resp} to answer with, or {merchant, success, fail, lang}. */
function precheck(state, p, headers, inFrame = false) {
  const lang = pageLanguage(p, headers);
  const success = absoluteHttpUrl(p.successUrl);
  const fail = absoluteHttpUrl(p.failUrl);
  if (!success || !fail) return { resp: badRequestPage(TEXT[lang], lang) };
  const m = merchantForClientKey(state, p.clientKey);
  if (m.error) return { resp: failRedirect(p, fail, m.error, lang, inFrame) };
  const ck = customerKeyError(p.customerKey);
  if (ck) return { resp: failRedirect(p, fail, ck, lang, inFrame) };
  return { merchant: m.merchant, success, fail, lang };
}

// GET /billing-auth?clientKey&customerKey&successUrl&failUrl[&method&customerEmail&customerName&target&lang&sdk]
function show(state, query, headers) {
  const pre = precheck(state, query, headers, query.target === 'iframe');
  return pre.resp || formPage(query, pre.merchant, pre.lang);
}

// POST /billing-auth (form-urlencoded)
function submit(state, params, headers) {
  const pre = precheck(state, params, headers);
  if (pre.resp) return pre.resp;
  const { lang } = pre;
  if (params.action === 'cancel') return failRedirect(params, pre.fail, tossError('PAY_PROCESS_CANCELED'), lang);
  // The page itself requires the consent; a form that showed the terms must come back with it.
  if (params.terms === 'shown' && params.agree !== 'on') {
    return formPage(params, pre.merchant, lang, messageOf(tossError('NEED_AGREEMENT_WITH_REQUIRED_TERMS'), lang));
  }
  let made;
  if (isTransfer(params)) {
    const acc = cards.registerAccount(params);
    if (acc.error) return failRedirect(params, pre.fail, acc.error, lang);
    made = state.store.createAuthKey({ merchant: pre.merchant, customerKey: params.customerKey, transfer: acc.transfer });
  } else {
    const reg = cards.register(params);
    if (reg.error) return failRedirect(params, pre.fail, reg.error, lang);
    made = state.store.createAuthKey({ merchant: pre.merchant, customerKey: params.customerKey, card: reg.card });
  }
  return redirect(withParams(pre.success, { customerKey: params.customerKey, authKey: made.authKey }));
}

module.exports = { show, submit, COMPANY_NAMES };
