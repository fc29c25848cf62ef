// Owns the Toss REST endpoints themselves: URL routing of /v1 paths (with
// per-segment percent-decoding of path parameters) and the handlers for
// billing-key issue, billing approval, billing-key deletion and payment
// lookups. Handlers are synchronous and return {status, body|error}.
'use strict';

const { tossError } = require('./errors');
const { checkIssueBody, checkApproveBody } = require('./validate');
const { billingObject, paymentObject } = require('./objects');
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
    } else if (s.length === 4 && s[3] !== '') {
      if (method === 'POST') r = { name: 'approve', handler: approve, params: { billingKey: s[3] } };
      else if (method === 'DELETE') r = { name: 'deleteBillingKey', handler: deleteBillingKey, params: { billingKey: s[3] } };
    }
  } else if (s[2] === 'payments' && method === 'GET') {
    if (s.length === 5 && s[3] === 'orders' && s[4] !== '') r = { name: 'paymentByOrderId', handler: paymentByOrderId, params: { orderId: s[4] } };
    else if (s.length === 4 && s[3] !== '') r = { name: 'payment', handler: paymentByKey, params: { paymentKey: s[3] } };
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

// POST /v1/billing/{billingKey}
function approve(ctx) {
  const { body, store, merchant, params } = ctx;
  const err = checkApproveBody(body);
  if (err) return fail(err);
  const own = ownBillingKey(ctx, params.billingKey);
  if (own.error) return fail(own.error);
  const billing = own.rec;
  if (billing.customerKey !== body.customerKey) return fail(tossError('NOT_MATCHES_CUSTOMER_KEY'));
  const slot = store.order(merchant.secretKey, body.orderId);
  if (slot && slot.done) return fail(tossError('DUPLICATED_ORDER_ID'));

  billing.chargeAttempts++;
  const failure = cards.chargeOutcome(billing.card, billing.chargeAttempts);
  const payment = paymentObject({
    baseUrl: ctx.baseUrl,
    paymentKey: store.newPaymentKey(clock.kst(ctx.requestedAt)),
    billing, body, requestedAt: ctx.requestedAt, failure, lang: ctx.lang,
  });
  store.addPayment({ payment, secretKey: merchant.secretKey, mId: merchant.mId, billingKey: billing.billingKey, customerKey: billing.customerKey });
  return failure ? fail(failure) : ok(payment);
}

// DELETE /v1/billing/{billingKey}: 200 with an empty body.
function deleteBillingKey(ctx) {
  const own = ownBillingKey(ctx, ctx.params.billingKey);
  if (own.error) return fail(own.error);
  own.rec.deleted = true;
  return { status: 200, body: null };
}

// GET /v1/payments/{paymentKey}
function paymentByKey(ctx) {
  const rec = ctx.store.payment(ctx.params.paymentKey);
  if (!rec || rec.secretKey !== ctx.merchant.secretKey) return fail(tossError('NOT_FOUND_PAYMENT'));
  return ok(rec.payment);
}

// GET /v1/payments/orders/{orderId}
function paymentByOrderId(ctx) {
  const rec = ctx.store.paymentByOrder(ctx.merchant.secretKey, ctx.params.orderId);
  if (!rec) return fail(tossError('NOT_FOUND_PAYMENT'));
  return ok(rec.payment);
}

module.exports = { route };
