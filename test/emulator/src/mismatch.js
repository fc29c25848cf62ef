// Owns the `mismatch` fault: a Payment answer (approve, lookups, cancel) that
// does not match what was asked or done. The work itself is real (the charge
// is made at the requested amount); only the answer is altered, and the
// altered answer is what the Idempotency-Key replays.
'use strict';

const ids = require('./ids');
const clock = require('./clock');

const OTHER_MID = 'tvivarepublica';

/** Another DONE payment of the merchant with the same amount and another orderId (newest first), or null. */
function otherPaymentOf(store, secretKey, p) {
  for (let i = store.paymentList.length - 1; i >= 0; i--) {
    const r = store.paymentList[i];
    if (r.secretKey === secretKey && r.payment.orderId !== p.orderId && r.approved && r.payment.totalAmount === p.totalAmount) return r.payment;
  }
  return null;
}

/** Another orderId of the merchant (newest first), else a made-up one. */
function otherOrderIdOf(store, secretKey, orderId) {
  for (let i = store.paymentList.length - 1; i >= 0; i--) {
    const r = store.paymentList[i];
    if (r.secretKey === secretKey && r.payment.orderId !== orderId) return r.payment.orderId;
  }
  return `${orderId}-other`.slice(0, 64);
}

/**
 * Apply mismatch kinds to a Payment object (not modified; a new object is returned).
 * ctx: {store, merchant}
 */
function apply(kinds, payment, ctx) {
  let p = JSON.parse(JSON.stringify(payment));
  for (const k of kinds) {
    switch (k) {
      case 'totalAmount': if (typeof p.totalAmount === 'number') p.totalAmount += 1000; break;
      case 'negativeAmount': if (typeof p.totalAmount === 'number') p.totalAmount = -Math.abs(p.totalAmount); break;
      case 'orderId': p.orderId = otherOrderIdOf(ctx.store, ctx.merchant.secretKey, p.orderId); break;
      case 'otherOrder': {
        const other = otherPaymentOf(ctx.store, ctx.merchant.secretKey, p);
        if (other) p = JSON.parse(JSON.stringify(other));
        else {
          p.orderId = otherOrderIdOf(ctx.store, ctx.merchant.secretKey, p.orderId);
          p.paymentKey = ctx.store.newPaymentKey(clock.kst(clock.now()));
          p.lastTransactionKey = ids.transactionKey();
          p.status = 'DONE';
        }
        break;
      }
      case 'mId': p.mId = p.mId === OTHER_MID ? `${OTHER_MID}2` : OTHER_MID; break;
      case 'currency': p.currency = 'USD'; break;
      case 'type': p.type = 'NORMAL'; break;
      case 'paymentKey': p.paymentKey = ctx.store.newPaymentKey(clock.kst(clock.now())); break;
      case 'minimal': p = { paymentKey: p.paymentKey, status: 'DONE' }; break;
      case 'totalAmountString': if (p.totalAmount !== undefined) p.totalAmount = String(p.totalAmount); break;
      case 'totalAmountNull': p.totalAmount = null; break;
      case 'approvedAtNumber': p.approvedAt = typeof p.approvedAt === 'string' ? Date.parse(p.approvedAt) : Date.now(); break;
      case 'statusNumber': p.status = 1; break;
      case 'statusCanceled': p.status = 'CANCELED'; break;
      default:
        if (k.startsWith('without:')) delete p[k.slice(8)];
        break;
    }
  }
  return p;
}

module.exports = { apply, OTHER_MID };
