// Owns the shape of Toss response objects: the Billing object returned by
// billing-key issuance, the Payment object (API version 2022-11-16) returned
// by billing approval, cancel and lookups — including vat math and what a
// cancel does to the amounts — and the Transaction object of GET /v1/transactions.
'use strict';

const clock = require('./clock');
const ids = require('./ids');

const API_VERSION = '2022-11-16';

function billingObject(rec) {
  if (rec.transfer) {
    return {
      mId: rec.mId,
      customerKey: rec.customerKey,
      authenticatedAt: clock.kst(rec.authenticatedAt),
      method: '계좌이체',
      billingKey: rec.billingKey,
      card: null,
      cardCompany: null,
      cardNumber: null,
      transfers: [{ bankName: rec.transfer.bankName, bankAccountNumber: rec.transfer.masked }],
      easyPay: null,
    };
  }
  return {
    mId: rec.mId,
    customerKey: rec.customerKey,
    authenticatedAt: clock.kst(rec.authenticatedAt),
    method: '카드',
    billingKey: rec.billingKey,
    card: {
      issuerCode: rec.card.issuerCode,
      acquirerCode: rec.card.acquirerCode,
      number: rec.card.masked,
      cardType: rec.card.cardType,
      ownerType: rec.card.ownerType,
    },
    cardCompany: rec.card.cardCompany,
    cardNumber: rec.card.masked,
    transfers: null,
    easyPay: null,
  };
}

/** vat = round((amount - taxFree) / 11); supplied = amount - taxFree - vat. */
function amounts(amount, taxFreeAmount) {
  const vat = Math.round((amount - taxFreeAmount) / 11);
  return { vat, suppliedAmount: amount - taxFreeAmount - vat };
}

/**
 * Build a billing Payment. `failure` = Toss error value for an ABORTED payment, else null (DONE).
 * ctx: {baseUrl, paymentKey, billing (billing-key record), body (validated approve body), requestedAt (ms), approvedAt (ms), lang}
 */
function paymentObject({ baseUrl, paymentKey, billing, body, requestedAt, approvedAt, failure, lang }) {
  const amount = body.amount;
  const taxFreeAmount = body.taxFreeAmount || 0;
  const taxExemptionAmount = body.taxExemptionAmount || 0;
  const { vat, suppliedAmount } = amounts(amount, taxFreeAmount);
  const done = !failure;
  const requested = clock.kst(requestedAt);
  return {
    mId: billing.mId,
    version: API_VERSION,
    paymentKey,
    status: done ? 'DONE' : 'ABORTED',
    lastTransactionKey: done ? ids.transactionKey() : null,
    orderId: body.orderId,
    orderName: body.orderName,
    requestedAt: requested,
    approvedAt: done ? clock.kst(approvedAt === undefined ? clock.now() : approvedAt) : null,
    useEscrow: false,
    cultureExpense: false,
    card: billing.card ? {
      issuerCode: billing.card.issuerCode,
      acquirerCode: billing.card.acquirerCode,
      number: billing.card.masked,
      installmentPlanMonths: body.cardInstallmentPlan || 0,
      isInterestFree: false,
      interestPayer: null,
      approveNo: done ? ids.approveNo() : null,
      useCardPoint: false,
      cardType: billing.card.cardType,
      ownerType: billing.card.ownerType,
      acquireStatus: 'READY',
      amount,
    } : null,
    virtualAccount: null,
    transfer: billing.transfer ? { bankCode: billing.transfer.bankCode, settlementStatus: 'INCOMPLETED' } : null,
    mobilePhone: null,
    giftCertificate: null,
    cashReceipt: null,
    cashReceipts: null,
    discount: null,
    cancels: null,
    secret: ids.paymentSecret(),
    type: 'BILLING',
    easyPay: null,
    country: 'KR',
    failure: done ? null : { code: failure.code, message: lang === 'en' ? failure.en : failure.ko },
    isPartialCancelable: true,
    receipt: { url: `${baseUrl}/sales-slip?paymentKey=${encodeURIComponent(paymentKey)}` },
    checkout: { url: `${baseUrl}/v1/payments/${encodeURIComponent(paymentKey)}/checkout` },
    currency: 'KRW',
    totalAmount: amount,
    balanceAmount: amount,
    suppliedAmount,
    vat,
    taxFreeAmount,
    metadata: null,
    taxExemptionAmount,
    method: billing.transfer ? '계좌이체' : '카드',
  };
}

/**
 * Apply a cancel to a DONE / PARTIAL_CANCELED payment (already validated).
 * c: {cancelAmount, cancelReason, taxFreeAmount, at (ms)}. Returns the cancel item.
 * The first cancel that takes the whole balance makes the payment CANCELED; any
 * other cancel (a partial one, or the rest after a partial one) leaves it
 * PARTIAL_CANCELED. vat, suppliedAmount, taxFreeAmount and taxExemptionAmount
 * follow the remaining balance.
 */
function applyCancel(p, c) {
  const first = !p.cancels || p.cancels.length === 0;
  p.balanceAmount -= c.cancelAmount;
  p.taxFreeAmount -= c.taxFreeAmount;
  const taxExemptionAmount = p.balanceAmount === 0 ? p.taxExemptionAmount : 0;
  p.taxExemptionAmount -= taxExemptionAmount;
  const { vat, suppliedAmount } = amounts(p.balanceAmount, p.taxFreeAmount);
  p.vat = vat;
  p.suppliedAmount = suppliedAmount;
  const item = {
    transactionKey: ids.transactionKey(),
    cancelReason: c.cancelReason,
    taxExemptionAmount,
    canceledAt: clock.kst(c.at),
    transferDiscountAmount: 0,
    easyPayDiscountAmount: 0,
    receiptKey: null,
    cancelAmount: c.cancelAmount,
    taxFreeAmount: c.taxFreeAmount,
    refundableAmount: p.balanceAmount,
    cardDiscountAmount: 0,
    cancelStatus: 'DONE',
    cancelRequestId: null,
  };
  p.cancels = first ? [item] : [...p.cancels, item];
  p.status = first && p.balanceAmount === 0 ? 'CANCELED' : 'PARTIAL_CANCELED';
  p.lastTransactionKey = item.transactionKey;
  return item;
}

/** A Transaction (GET /v1/transactions) for an approval or a cancel of payment record `rec`. */
function transactionObject(rec, { transactionKey, status, transactionAt, amount }) {
  const p = rec.payment;
  return {
    mId: rec.mId,
    transactionKey,
    paymentKey: p.paymentKey,
    orderId: p.orderId,
    method: p.method,
    customerKey: rec.customerKey,
    useEscrow: p.useEscrow,
    receiptUrl: p.receipt.url,
    status,
    transactionAt,
    currency: p.currency,
    amount,
  };
}

module.exports = { billingObject, paymentObject, amounts, applyCancel, transactionObject, API_VERSION };
