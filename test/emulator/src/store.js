// Owns the emulator's in-memory state: pending auth keys, billing keys and
// payments (per merchant, i.e. per secret key), plus the admin views derived
// from them (payment list and the exactly-once ledger).
'use strict';

const clock = require('./clock');
const ids = require('./ids');

class Store {
  constructor() {
    this.clear();
  }

  clear() {
    this.authKeys = new Map();      // authKey -> {secretKey, mId, customerKey, card, billingKey|null, createdAt}
    this.billingKeys = new Map();   // billingKey -> {billingKey, secretKey, mId, customerKey, card, authenticatedAt, deleted, chargeAttempts}
    this.reserved = new Set();      // billing keys forced for not-yet-used auth keys
    this.payments = new Map();      // paymentKey -> payment record
    this.paymentList = [];          // payment records in creation order
    this.orders = new Map();        // secretKey + '\n' + orderId -> {done: record|null, latest: record}
  }

  /** Create a one-time auth key for a registered card. Returns the auth key or {error} for a clashing forced billing key. */
  createAuthKey({ merchant, customerKey, card, billingKey }) {
    if (billingKey != null) {
      if (this.billingKeys.has(billingKey) || this.reserved.has(billingKey)) return { error: 'billingKey already exists' };
      this.reserved.add(billingKey);
    }
    let authKey;
    do authKey = ids.authKey(); while (this.authKeys.has(authKey));
    this.authKeys.set(authKey, {
      secretKey: merchant.secretKey, mId: merchant.mId, customerKey, card,
      billingKey: billingKey == null ? null : billingKey, createdAt: clock.now(),
    });
    return { authKey };
  }

  /** Look up an auth key for a merchant (null if unknown, used, or another merchant's). */
  authKeyFor(merchant, authKey) {
    const a = this.authKeys.get(authKey);
    return a && a.secretKey === merchant.secretKey ? a : null;
  }

  /** Consume an auth key and create its billing key. */
  issueBillingKey(authKey) {
    const a = this.authKeys.get(authKey);
    this.authKeys.delete(authKey);
    let key = a.billingKey;
    if (key != null) this.reserved.delete(key);
    else do key = ids.billingKey(); while (this.billingKeys.has(key) || this.reserved.has(key));
    const rec = {
      billingKey: key, secretKey: a.secretKey, mId: a.mId, customerKey: a.customerKey, card: a.card,
      authenticatedAt: a.createdAt, deleted: false, chargeAttempts: 0,
    };
    this.billingKeys.set(key, rec);
    return rec;
  }

  billingKey(key) {
    return this.billingKeys.get(key) || null;
  }

  /** The order slot of a merchant: {done, latest} or null. */
  order(secretKey, orderId) {
    return this.orders.get(secretKey + '\n' + orderId) || null;
  }

  /** Record a payment (DONE or ABORTED). `rec` = {payment, secretKey, mId, billingKey, customerKey}. */
  addPayment(rec) {
    this.payments.set(rec.payment.paymentKey, rec);
    this.paymentList.push(rec);
    const k = rec.secretKey + '\n' + rec.payment.orderId;
    let slot = this.orders.get(k);
    if (!slot) { slot = { done: null, latest: null }; this.orders.set(k, slot); }
    slot.latest = rec;
    if (rec.payment.status === 'DONE') slot.done = rec;
  }

  newPaymentKey(kstTs) {
    let key;
    do key = ids.paymentKey(kstTs); while (this.payments.has(key));
    return key;
  }

  payment(paymentKey) {
    return this.payments.get(paymentKey) || null;
  }

  /** The payment of an orderId: the DONE one if any, else the latest attempt. */
  paymentByOrder(secretKey, orderId) {
    const slot = this.order(secretKey, orderId);
    return slot ? slot.done || slot.latest : null;
  }

  /** Admin view: every payment of every merchant. */
  listPayments(filter = {}) {
    const out = [];
    for (const r of this.paymentList) {
      const p = r.payment;
      if (filter.orderId && p.orderId !== filter.orderId) continue;
      if (filter.billingKey && r.billingKey !== filter.billingKey) continue;
      if (filter.status && p.status !== filter.status) continue;
      if (filter.mId && r.mId !== filter.mId) continue;
      out.push({
        mId: r.mId, orderId: p.orderId, paymentKey: p.paymentKey, billingKey: r.billingKey,
        customerKey: r.customerKey, status: p.status, totalAmount: p.totalAmount,
        failure: p.failure, requestedAt: p.requestedAt, approvedAt: p.approvedAt,
      });
    }
    return out;
  }

  /** Exactly-once summary: DONE charges per orderId (all merchants) and per billing key. */
  ledger() {
    const doneByOrderId = Object.create(null);
    const doneByBillingKey = Object.create(null);
    const amountByBillingKey = Object.create(null);
    let totalDone = 0;
    let totalAborted = 0;
    let totalAmount = 0;
    for (const r of this.paymentList) {
      const p = r.payment;
      if (p.status !== 'DONE') { totalAborted++; continue; }
      totalDone++;
      totalAmount += p.totalAmount;
      doneByOrderId[p.orderId] = (doneByOrderId[p.orderId] || 0) + 1;
      doneByBillingKey[r.billingKey] = (doneByBillingKey[r.billingKey] || 0) + 1;
      amountByBillingKey[r.billingKey] = (amountByBillingKey[r.billingKey] || 0) + p.totalAmount;
    }
    const duplicateOrderIds = Object.keys(doneByOrderId).filter((o) => doneByOrderId[o] > 1);
    return { totalDone, totalAborted, totalAmount, doneByOrderId, doneByBillingKey, amountByBillingKey, duplicateOrderIds };
  }
}

module.exports = { Store };
