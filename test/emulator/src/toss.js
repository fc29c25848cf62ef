// Owns the Toss REST endpoints themselves: URL routing of /v1 paths (with
// per-segment percent-decoding of path parameters) and the handlers for
// billing-key issue (authKey and key-in), billing approval, billing-key
// deletion, payment lookups, payment cancel and the transactions list.
// Handlers are synchronous and return {status, body|error}.
'use strict';

const { tossError } = require('./errors');
const { checkIssueBody, checkApproveBody, checkKeyInBody, checkCancelBody, checkTransactionsQuery } = require('./validate');
const { billingObject, paymentObject, applyCancel, transactionObject } = require('./objects');
const cards = require('./cards');
const clock = require('./clock');

function ok(body) {
  return { status: 200, body };
}

function fail(err) {
  return { status: err.status, error: err };
}

function decode(seg) {
  try {
    return decodeURIComponent(seg);
  } catch {
    return null;
  }
}

/**
 * Route a /v1 request. Returns null (no such API), {badEncoding: true}, or
 * {name, handler, params}. Path parameters are single raw segments, decoded.
 */
function route(method, rawPath) {
  const s = rawPath.split('/');
  if (s[1] !== 'v1') return null;
  let r = null;
  if (s[2] === 'billing') {
    if (s.length === 5 && s[3] === 'authorizations' && s[4] === 'issue') {
      if (method === 'POST') r = { name: 'issue', handler: issue, params: {} };
    } else if (s.length === 5 && s[3] === 'authorizations' && s[4] === 'card') {
      if (method === 'POST') r = { name: 'keyIn', handler: keyIn, params: {} };
    } else if (s.length === 4 && s[3] !== '') {
      if (method === 'POST') r = { name: 'approve', handler: approve, params: { billingKey: s[3] } };
      else if (method === 'DELETE') r = { name: 'deleteBillingKey', handler: deleteBillingKey, params: { billingKey: s[3] } };
    }
  } else if (s[2] === 'payments') {
    if (method === 'GET') {
      if (s.length === 5 && s[3] === 'orders' && s[4] !== '') r = { name: 'paymentByOrderId', handler: paymentByOrderId, params: { orderId: s[4] } };
      else if (s.length === 4 && s[3] !== '') r = { name: 'payment', handler: paymentByKey, params: { paymentKey: s[3] } };
    } else if (method === 'POST' && s.length === 5 && s[3] !== '' && s[4] === 'cancel') {
      r = { name: 'cancel', handler: cancel, params: { paymentKey: s[3] } };
    }
  } else if (s[2] === 'transactions' && s.length === 3 && method === 'GET') {
    r = { name: 'transactions', handler: transactions, params: {} };
  }
  if (!r) return null;
  for (const k of Object.keys(r.params)) {
    const v = decode(r.params[k]);
    if (v === null) return { badEncoding: true };
    r.params[k] = v;
  }
  return r;
}

/** Billing-key record of this merchant, or the Toss error for it. */
function ownBillingKey(ctx, key) {
  const rec = ctx.store.billingKey(key);
  if (!rec) return { error: tossError('NOT_FOUND_BILLING') };
  // A key issued under another merchant (MID) is refused, not reported missing.
  if (rec.secretKey !== ctx.merchant.secretKey) return { error: tossError('INVALID_BILL_KEY_REQUEST') };
  if (rec.deleted) return { error: tossError('ALREADY_REMOVED_BILLING_KEY') };
  return { rec };
}

/** The card company deletes a billing key: mark it and emit BILLING_DELETED. */
function cardCompanyDelete(store, events, rec, reason) {
  rec.deleted = true;
  rec.deletedBy = 'cardCompany';
  return events.emit(rec.mId, 'BILLING_DELETED', { billingKey: rec.billingKey, reason });
}

// POST /v1/billing/authorizations/issue
function issue(ctx) {
  const { body, store, merchant } = ctx;
  const err = checkIssueBody(body);
  if (err) return fail(err);
  const auth = store.authKeyFor(merchant, body.authKey);
  if (!auth) return fail(tossError('NOT_FOUND_BILLING'));
  // A mismatching customerKey does not consume the auth key.
  if (auth.customerKey !== body.customerKey) return fail(tossError('NOT_MATCHES_CUSTOMER_KEY'));
  return ok(billingObject(store.issueBillingKey(body.authKey)));
}

// POST /v1/billing/authorizations/card (key-in: card number entered directly)
function keyIn(ctx) {
  const { body, store, merchant } = ctx;
  const err = checkKeyInBody(body);
  if (err) return fail(err);
  const reg = cards.register(body);
  if (reg.error) return fail(reg.error);
  return ok(billingObject(store.newBillingKey(merchant, body.customerKey, reg.card, ctx.requestedAt)));
}

// POST /v1/billing/{billingKey}
function approve(ctx) {
  const { body, store, merchant, params } = ctx;
  const err = checkApproveBody(body);
  if (err) return fail(err);
  const own = ownBillingKey(ctx, params.billingKey);
  if (own.error) return fail(own.error);
  const billing = own.rec;
  if (billing.customerKey !== body.customerKey) return fail(tossError('NOT_MATCHES_CUSTOMER_KEY'));
  // An orderId with an approved payment is taken; one whose payments were all ABORTED may be used again unless
  // the abortedOrderIdReuse setting is off.
  const slot = store.order(merchant.secretKey, body.orderId);
  if (slot && (slot.done || !ctx.config.abortedOrderIdReuse)) return fail(tossError('DUPLICATED_ORDER_ID'));
  if (billing.method === '계좌이체' && body.amount < 200) return fail(tossError('BELOW_MINIMUM_AMOUNT'));

  billing.chargeAttempts++;
  const failure = cards.chargeOutcome(billing, billing.chargeAttempts);
  const approvedAt = clock.now();
  const fault = ctx.fault || {};
  // The overcharge fault charges another amount than asked, for real, and answers truthfully.
  const charged = fault.overcharge ? chargedBody(body, fault.overcharge) : body;
  const payment = paymentObject({
    baseUrl: ctx.baseUrl,
    paymentKey: store.newPaymentKey(clock.kst(ctx.requestedAt)),
    billing, body: charged, requestedAt: ctx.requestedAt, approvedAt, failure, lang: ctx.lang,
  });
  const lag = fault.lookupLagMs !== undefined ? fault.lookupLagMs : ctx.config.lookupLagMs;
  const rec = {
    payment, secretKey: merchant.secretKey, mId: merchant.mId, billingKey: billing.billingKey, customerKey: billing.customerKey,
    requestedAmount: body.amount, visibleAt: lag > 0 ? clock.now() + lag : 0,
  };
  store.addPayment(rec);
  if (failure) return fail(failure);
  store.addTransaction(merchant.secretKey, approvedAt, transactionObject(rec, {
    transactionKey: payment.lastTransactionKey, status: 'DONE', transactionAt: payment.approvedAt, amount: payment.totalAmount,
  }));
  billing.charges++;
  const reason = cards.deletionAfterCharge(billing.card, billing.charges);
  if (reason) cardCompanyDelete(store, ctx.events, billing, reason);
  return ok(payment);
}

/** The approve body with the amount the overcharge fault really charges (at least 1 KRW; tax-free parts fit). */
function chargedBody(body, delta) {
  const amount = Math.max(1, body.amount + delta);
  const out = { ...body, amount };
  for (const k of ['taxFreeAmount', 'taxExemptionAmount']) if (out[k] != null && out[k] > amount) out[k] = amount;
  return out;
}

// DELETE /v1/billing/{billingKey}: 200 with an empty body.
function deleteBillingKey(ctx) {
  const own = ownBillingKey(ctx, ctx.params.billingKey);
  if (own.error) return fail(own.error);
  own.rec.deleted = true;
  own.rec.deletedBy = 'merchant';
  return { status: 200, body: null };
}

// GET /v1/payments/{paymentKey}
function paymentByKey(ctx) {
  const rec = ctx.store.visiblePayment(ctx.params.paymentKey, clock.now());
  if (!rec || rec.secretKey !== ctx.merchant.secretKey) return fail(tossError('NOT_FOUND_PAYMENT'));
  return ok(rec.payment);
}

// GET /v1/payments/orders/{orderId}
function paymentByOrderId(ctx) {
  const rec = ctx.store.paymentByOrder(ctx.merchant.secretKey, ctx.params.orderId, clock.now());
  if (!rec) return fail(tossError('NOT_FOUND_PAYMENT'));
  return ok(rec.payment);
}

// POST /v1/payments/{paymentKey}/cancel (full when cancelAmount is absent, else partial)
function cancel(ctx) {
  const { body, store, merchant } = ctx;
  const err = checkCancelBody(body);
  if (err) return fail(err);
  const rec = store.payment(ctx.params.paymentKey);
  if (!rec || rec.secretKey !== merchant.secretKey) return fail(tossError('NOT_FOUND_PAYMENT'));
  const p = rec.payment;
  if (p.status === 'ABORTED') return fail(tossError('NOT_CANCELABLE_PAYMENT'));
  if (p.status === 'CANCELED') return fail(tossError('ALREADY_CANCELED_PAYMENT'));
  if (p.balanceAmount === 0) return fail(tossError('NOT_CANCELABLE_AMOUNT'));
  if (body.refundableAmount != null && body.refundableAmount !== p.balanceAmount) return fail(tossError('NOT_MATCHES_REFUNDABLE_AMOUNT'));
  const amount = body.cancelAmount != null ? body.cancelAmount : p.balanceAmount;
  if (amount > p.balanceAmount) return fail(tossError('NOT_CANCELABLE_AMOUNT'));
  const taxFree = body.taxFreeAmount != null ? body.taxFreeAmount : amount === p.balanceAmount ? p.taxFreeAmount : 0;
  if (taxFree > amount || taxFree > p.taxFreeAmount || p.balanceAmount - amount < p.taxFreeAmount - taxFree) {
    return fail(tossError('INVALID_REQUEST', {
      ko: 'taxFreeAmount는 취소 금액과 남은 면세 금액을 넘을 수 없습니다.', en: 'taxFreeAmount cannot exceed the cancel amount or the remaining tax-free amount.' }));
  }
  const at = clock.now();
  const item = applyCancel(p, { cancelAmount: amount, cancelReason: body.cancelReason, taxFreeAmount: taxFree, at });
  store.addTransaction(merchant.secretKey, at, transactionObject(rec, {
    transactionKey: item.transactionKey, status: p.status, transactionAt: item.canceledAt, amount,
  }));
  ctx.events.emit(merchant.mId, 'PAYMENT_STATUS_CHANGED', p);
  return ok(p);
}

// GET /v1/transactions?startDate&endDate&startingAfter&limit
function transactions(ctx) {
  const q = checkTransactionsQuery(ctx.query);
  if (q.error) return fail(q.error);
  const lag = ctx.config.transactionLagMs;
  const stuck = !!(ctx.fault && ctx.fault.stuckCursor);
  const page = ctx.store.transactionPage(ctx.merchant.secretKey, { ...q, visibleUntil: lag > 0 ? clock.now() - lag : Infinity, stuck });
  if (page.unknownStartingAfter) {
    return fail(tossError('INVALID_REQUEST', { ko: 'startingAfter에 해당하는 거래가 없습니다.', en: 'No transaction matches startingAfter.' }));
  }
  return ok(page.items);
}

module.exports = { route, cardCompanyDelete };
