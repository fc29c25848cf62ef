// Owns the emulator's in-memory state: pending auth keys, billing keys,
// payments and transactions (per merchant, i.e. per secret key), plus the
// views derived from them (transaction pages, the admin payment list and the
// exactly-once ledger).
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
    this.orders = new Map();        // secretKey + '\n' + orderId -> {done: record|null, latest: record, all: [records]}
    this.transactions = new Map();  // secretKey -> {list: [{at, seq, tx}], sorted, byKey: Map(transactionKey -> entry)}
    this.txSeq = 0;
  }

  /** Create a one-time auth key for a registered card. Returns the auth key or {error} for a clashing forced billing key. */
  createAuthKey({ merchant, customerKey, card = null, transfer = null, billingKey }) {
    if (billingKey != null) {
      if (this.billingKeys.has(billingKey) || this.reserved.has(billingKey)) return { error: 'billingKey already exists' };
      this.reserved.add(billingKey);
    }
    let authKey;
    do authKey = ids.authKey(); while (this.authKeys.has(authKey));
    this.authKeys.set(authKey, {
      secretKey: merchant.secretKey, mId: merchant.mId, customerKey, card, transfer,
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
    return this.newBillingKey({ secretKey: a.secretKey, mId: a.mId }, a.customerKey, a.card, a.createdAt, key, a.transfer);
  }

  /** Create a billing key for a card or a bank account (key-in issue, or the end of issueBillingKey). */
  newBillingKey(merchant, customerKey, card, authenticatedAt, forced = null, transfer = null) {
    let key = forced;
    if (key == null) do key = ids.billingKey(); while (this.billingKeys.has(key) || this.reserved.has(key));
    const rec = {
      billingKey: key, secretKey: merchant.secretKey, mId: merchant.mId, customerKey, card, transfer,
      method: transfer ? '계좌이체' : '카드',
      authenticatedAt, deleted: false, deletedBy: null, chargeAttempts: 0, charges: 0,
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

  /**
   * Record a payment (DONE or ABORTED). `rec` = {payment, secretKey, mId, billingKey, customerKey, visibleAt?}.
   * `visibleAt` (ms, emulator clock) hides the payment from the lookups until then (the lookup lag); everything
   * else — the duplicate-orderId check, cancels, the ledger — sees it at once.
   */
  addPayment(rec) {
    rec.approved = rec.payment.status === 'DONE';
    if (rec.visibleAt === undefined) rec.visibleAt = 0;
    this.payments.set(rec.payment.paymentKey, rec);
    this.paymentList.push(rec);
    const k = rec.secretKey + '\n' + rec.payment.orderId;
    let slot = this.orders.get(k);
    if (!slot) { slot = { done: null, latest: null, all: [] }; this.orders.set(k, slot); }
    slot.latest = rec;
    slot.all.push(rec);
    if (rec.approved) slot.done = rec;
  }

  /** Record a transaction (approval or cancel) of a merchant at `at` (ms). */
  addTransaction(secretKey, at, tx) {
    let t = this.transactions.get(secretKey);
    if (!t) {
      t = { list: [], sorted: true, byKey: new Map() };
      this.transactions.set(secretKey, t);
    }
    const entry = { at, seq: ++this.txSeq, tx };
    const last = t.list[t.list.length - 1];
    if (last && last.at > at) t.sorted = false;
    t.list.push(entry);
    t.byKey.set(tx.transactionKey, entry);
  }

  /**
   * A page of a merchant's transactions, oldest first: transactionAt (to the second) in
   * [fromMs, toMs], recorded at or before `visibleUntil`, after the `startingAfter`
   * transaction. Returns {items} or {unknownStartingAfter: true}. `stuck` ignores
   * startingAfter and fills the page up to `limit` by repeating the matching items
   * (the cursor that never advances).
   */
  transactionPage(secretKey, { fromMs, toMs, startingAfter, limit, visibleUntil, stuck }) {
    const t = this.transactions.get(secretKey);
    let after = null;
    if (stuck) {
      const first = this.transactionPage(secretKey, { fromMs, toMs, startingAfter: null, limit, visibleUntil });
      const items = first.items.slice();
      for (let i = 0; items.length > 0 && items.length < limit; i++) items.push(first.items[i % first.items.length]);
      return { items };
    }
    if (startingAfter) {
      after = t ? t.byKey.get(startingAfter) : undefined;
      if (!after) return { unknownStartingAfter: true };
    }
    const items = [];
    if (!t) return { items };
    if (!t.sorted) {
      t.list.sort((x, y) => x.at - y.at || x.seq - y.seq);
      t.sorted = true;
    }
    for (const e of t.list) {
      if (items.length >= limit) break;
      if (after && (e.at < after.at || (e.at === after.at && e.seq <= after.seq))) continue;
      const sec = e.at - (((e.at % 1000) + 1000) % 1000);
      if (sec < fromMs || sec > toMs || e.at > visibleUntil) continue;
      items.push(e.tx);
    }
    return { items };
  }

  newPaymentKey(kstTs) {
    let key;
    do key = ids.paymentKey(kstTs); while (this.payments.has(key));
    return key;
  }

  payment(paymentKey) {
    return this.payments.get(paymentKey) || null;
  }

  /** The payment a lookup by paymentKey sees at `nowMs` (null while it is hidden by the lookup lag). */
  visiblePayment(paymentKey, nowMs) {
    const rec = this.payments.get(paymentKey);
    return rec && rec.visibleAt <= nowMs ? rec : null;
  }

  /**
   * The payment a lookup by orderId sees at `nowMs`: among the visible payments of the order, the approved one
   * (DONE when it was made, even if canceled later) if any, else the latest attempt.
   */
  paymentByOrder(secretKey, orderId, nowMs = Infinity) {
    const slot = this.order(secretKey, orderId);
    if (!slot) return null;
    let latest = null;
    for (let i = slot.all.length - 1; i >= 0; i--) {
      const r = slot.all[i];
      if (r.visibleAt > nowMs) continue;
      if (r.approved) return r;
      if (!latest) latest = r;
    }
    return latest;
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
        customerKey: r.customerKey, status: p.status, totalAmount: p.totalAmount, balanceAmount: p.balanceAmount,
        cancels: p.cancels ? p.cancels.length : 0,
        failure: p.failure, requestedAt: p.requestedAt, approvedAt: p.approvedAt,
      });
    }
    return out;
  }

  /**
   * Exactly-once summary: approved (DONE) charges per orderId (all merchants) and per
   * billing key. A charge that was approved and later canceled still counts as charged
   * once; cancels are summed separately.
   */
  ledger() {
    const doneByOrderId = Object.create(null);
    const doneByBillingKey = Object.create(null);
    const amountByBillingKey = Object.create(null);
    const canceledAmountByOrderId = Object.create(null);
    const amountByOrderId = Object.create(null);
    const chargesByOrderId = Object.create(null);
    let totalDone = 0;
    let totalAborted = 0;
    let totalAmount = 0;
    let totalCanceled = 0;
    let totalPartialCanceled = 0;
    let totalCancelAmount = 0;
    for (const r of this.paymentList) {
      const p = r.payment;
      if (!r.approved) { totalAborted++; continue; }
      totalDone++;
      totalAmount += p.totalAmount;
      doneByOrderId[p.orderId] = (doneByOrderId[p.orderId] || 0) + 1;
      amountByOrderId[p.orderId] = (amountByOrderId[p.orderId] || 0) + p.totalAmount;
      (chargesByOrderId[p.orderId] || (chargesByOrderId[p.orderId] = [])).push({
        mId: r.mId, paymentKey: p.paymentKey, amount: p.totalAmount, requestedAmount: r.requestedAmount === undefined ? p.totalAmount : r.requestedAmount,
        status: p.status, balanceAmount: p.balanceAmount, approvedAt: p.approvedAt,
      });
      doneByBillingKey[r.billingKey] = (doneByBillingKey[r.billingKey] || 0) + 1;
      amountByBillingKey[r.billingKey] = (amountByBillingKey[r.billingKey] || 0) + p.totalAmount;
      if (p.status === 'CANCELED') totalCanceled++;
      else if (p.status === 'PARTIAL_CANCELED') totalPartialCanceled++;
      const canceled = p.totalAmount - p.balanceAmount;
      if (canceled > 0) {
        totalCancelAmount += canceled;
        canceledAmountByOrderId[p.orderId] = (canceledAmountByOrderId[p.orderId] || 0) + canceled;
      }
    }
    const duplicateOrderIds = Object.keys(doneByOrderId).filter((o) => doneByOrderId[o] > 1);
    return {
      totalDone, totalAborted, totalAmount, doneByOrderId, amountByOrderId, chargesByOrderId, doneByBillingKey, amountByBillingKey, duplicateOrderIds,
      totalCanceled, totalPartialCanceled, totalCancelAmount, netAmount: totalAmount - totalCancelAmount, canceledAmountByOrderId,
    };
  }
}

module.exports = { Store };
