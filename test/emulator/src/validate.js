// Owns request validation for the Toss endpoints — billing issue (authKey and
// key-in), approval (field presence, types, lengths, orderId charset, amount
// rules, installments), cancel, and the transactions query — in the order the
// emulator checks them. Each check returns a Toss error value or null.
'use strict';

const { tossError } = require('./errors');

const ORDER_ID = /^[A-Za-z0-9_-]{6,64}$/;
const CUSTOMER_KEY_MAX = 300;
const INSTALLMENT_MIN_AMOUNT = 50000;

function invalid(ko, en) {
  return tossError('INVALID_REQUEST', { ko, en });
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function optionalString(body, field, max) {
  const v = body[field];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') return invalid(`${field}는 문자열이어야 합니다.`, `${field} must be a string.`);
  if (v.length > max) return invalid(`${field}는 ${max}자 이하여야 합니다.`, `${field} must be at most ${max} characters.`);
  return null;
}

/** customerKey: required string; over 300 chars Toss answers 500 FAILED_DB_PROCESSING. */
function checkCustomerKey(body) {
  const v = body.customerKey;
  if (typeof v !== 'string' || v === '') return invalid('customerKey는 필수 값입니다.', 'customerKey is required.');
  if (v.length > CUSTOMER_KEY_MAX) return tossError('FAILED_DB_PROCESSING');
  return null;
}

function optionalAmount(body, field, amount) {
  const v = body[field];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    return invalid(`${field}는 0 이상의 정수여야 합니다.`, `${field} must be an integer >= 0.`);
  }
  if (v > amount) return invalid(`${field}는 결제 금액보다 클 수 없습니다.`, `${field} cannot exceed the amount.`);
  return null;
}

/** POST /v1/billing/authorizations/issue */
function checkIssueBody(body) {
  if (!isObject(body)) return invalid('요청 본문이 올바른 JSON 객체가 아닙니다.', 'The request body must be a JSON object.');
  if (typeof body.authKey !== 'string' || body.authKey === '') return invalid('authKey는 필수 값입니다.', 'authKey is required.');
  if (body.authKey.length > 300) return invalid('authKey는 300자 이하여야 합니다.', 'authKey must be at most 300 characters.');
  return checkCustomerKey(body);
}

/** POST /v1/billing/{billingKey}: every field rule, before the billing key is looked up. */
function checkApproveBody(body) {
  if (!isObject(body)) return invalid('요청 본문이 올바른 JSON 객체가 아닙니다.', 'The request body must be a JSON object.');
  const ck = checkCustomerKey(body);
  if (ck) return ck;

  const amount = body.amount;
  if (amount === undefined || amount === null) return invalid('amount는 필수 값입니다.', 'amount is required.');
  if (typeof amount !== 'number' || !Number.isSafeInteger(amount)) {
    return invalid('amount는 정수여야 합니다.', 'amount must be an integer.');
  }
  if (amount < 100) return tossError('BELOW_MINIMUM_AMOUNT');

  if (typeof body.orderId !== 'string' || !ORDER_ID.test(body.orderId)) {
    return invalid('orderId는 영문 대소문자, 숫자, 특수문자(-, _)로 이루어진 6자 이상 64자 이하의 문자열이어야 합니다.',
      'orderId must be 6-64 characters of letters, digits, - and _.');
  }
  if (typeof body.orderName !== 'string' || body.orderName.trim() === '') {
    return invalid('orderName은 필수 값입니다.', 'orderName is required.');
  }
  if (body.orderName.length > 100) return invalid('orderName은 100자 이하여야 합니다.', 'orderName must be at most 100 characters.');

  const err = optionalString(body, 'customerEmail', 100) || optionalString(body, 'customerName', 100) ||
    optionalString(body, 'customerIp', 100) ||
    optionalAmount(body, 'taxFreeAmount', amount) || optionalAmount(body, 'taxExemptionAmount', amount);
  if (err) return err;

  const phone = body.customerMobilePhone;
  if (phone !== undefined && phone !== null && (typeof phone !== 'string' || !/^\d{8,15}$/.test(phone))) {
    return invalid('customerMobilePhone은 숫자만 입력해야 합니다.', 'customerMobilePhone must contain digits only.');
  }

  const plan = body.cardInstallmentPlan;
  if (plan !== undefined && plan !== null && plan !== 0) {
    if (!Number.isInteger(plan) || plan < 2 || plan > 12) return tossError('INVALID_CARD_INSTALLMENT_PLAN');
    if (amount < INSTALLMENT_MIN_AMOUNT) {
      return tossError('INVALID_CARD_INSTALLMENT_PLAN', {
        ko: '할부는 50,000원 이상 결제부터 가능합니다.', en: 'Installments require an amount of at least 50,000 KRW.' });
    }
  }
  return null;
}

const EMAIL = /^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$/;
const KEY_IN_REQUIRED = ['cardNumber', 'cardExpirationYear', 'cardExpirationMonth', 'customerIdentityNumber'];

/** POST /v1/billing/authorizations/card: field rules before the card itself is checked. */
function checkKeyInBody(body) {
  if (!isObject(body)) return invalid('요청 본문이 올바른 JSON 객체가 아닙니다.', 'The request body must be a JSON object.');
  const ck = checkCustomerKey(body);
  if (ck) return ck;
  for (const f of KEY_IN_REQUIRED) {
    if (typeof body[f] !== 'string' || body[f] === '') return invalid(`${f}는 필수 값입니다.`, `${f} is required.`);
  }
  if (!/^\d{1,20}$/.test(body.cardNumber)) return tossError('INVALID_CARD_NUMBER');
  if (!/^\d{2}$/.test(body.cardExpirationYear) || !/^\d{1,2}$/.test(body.cardExpirationMonth)) return tossError('INVALID_CARD_EXPIRATION');
  if (!/^(\d{6}|\d{10})$/.test(body.customerIdentityNumber)) return tossError('INVALID_BIRTH_DAY_FORMAT');
  const pw = body.cardPassword;
  if (pw !== undefined && pw !== null && (typeof pw !== 'string' || !/^\d{2}$/.test(pw))) return tossError('INVALID_CARD_PASSWORD');
  const name = optionalString(body, 'customerName', 100);
  if (name) return name;
  const email = body.customerEmail;
  if (email !== undefined && email !== null && (typeof email !== 'string' || email.length > 100 || !EMAIL.test(email))) {
    return tossError('INVALID_EMAIL');
  }
  return null;
}

function optionalInteger(body, field, min) {
  const v = body[field];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    return invalid(`${field}는 ${min} 이상의 정수여야 합니다.`, `${field} must be an integer >= ${min}.`);
  }
  return null;
}

/** POST /v1/payments/{paymentKey}/cancel: field rules before the payment is looked up. */
function checkCancelBody(body) {
  if (!isObject(body)) return invalid('요청 본문이 올바른 JSON 객체가 아닙니다.', 'The request body must be a JSON object.');
  const r = body.cancelReason;
  if (typeof r !== 'string' || r.trim() === '') return invalid('cancelReason은 필수 값입니다.', 'cancelReason is required.');
  if (r.length > 200) return invalid('cancelReason은 200자 이하여야 합니다.', 'cancelReason must be at most 200 characters.');
  return optionalInteger(body, 'cancelAmount', 1) || optionalInteger(body, 'taxFreeAmount', 0) ||
    optionalInteger(body, 'refundableAmount', 0);
}

const KST_OFFSET_MS = 9 * 60 * 60 * 1000;
const LOCAL_DATE = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?$/;

/** A Korea-time local date-time without offset (`2024-01-01T00:00:00`, or a date alone = 00:00:00) → epoch ms, else null. */
function parseLocalDate(s) {
  const m = LOCAL_DATE.exec(s);
  if (!m) return null;
  const [y, mo, d, h = 0, mi = 0, sec = 0] = m.slice(1, 7).map((x) => (x === undefined ? 0 : Number(x)));
  const frac = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  const t = Date.UTC(y, mo - 1, d, h, mi, sec, frac);
  const back = new Date(t);
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23 || mi > 59 || sec > 59) return null;
  return t - KST_OFFSET_MS;
}

const TRANSACTIONS_MAX_LIMIT = 5000;

/** GET /v1/transactions query → {fromMs, toMs, startingAfter, limit} or {error}. */
function checkTransactionsQuery(q) {
  for (const f of ['startDate', 'endDate']) {
    if (typeof q[f] !== 'string' || q[f] === '') return { error: invalid(`${f}는 필수 값입니다.`, `${f} is required.`) };
  }
  const fromMs = parseLocalDate(q.startDate);
  const toMs = parseLocalDate(q.endDate);
  if (fromMs === null || toMs === null) {
    return { error: tossError('INVALID_DATE', { ko: '날짜 데이터가 잘못 되었습니다. 시간대(Z, +09:00) 없이 yyyy-MM-ddTHH:mm:ss 형식으로 입력해주세요.',
      en: 'The date is invalid. Use yyyy-MM-ddTHH:mm:ss without a time zone (no Z or offset).' }) };
  }
  if (fromMs > toMs) return { error: tossError('INVALID_DATE', { ko: 'startDate는 endDate보다 늦을 수 없습니다.', en: 'startDate cannot be after endDate.' }) };
  let limit = 100;
  if (q.limit !== undefined && q.limit !== '') {
    if (!/^\d+$/.test(q.limit) || Number(q.limit) < 1 || Number(q.limit) > TRANSACTIONS_MAX_LIMIT) {
      return { error: invalid(`limit은 1 이상 ${TRANSACTIONS_MAX_LIMIT} 이하의 정수여야 합니다.`, `limit must be an integer from 1 to ${TRANSACTIONS_MAX_LIMIT}.`) };
    }
    limit = Number(q.limit);
  }
  const startingAfter = typeof q.startingAfter === 'string' && q.startingAfter !== '' ? q.startingAfter : null;
  return { fromMs, toMs, startingAfter, limit };
}

module.exports = {
  checkIssueBody, checkApproveBody, checkKeyInBody, checkCancelBody, checkTransactionsQuery, parseLocalDate,
  CUSTOMER_KEY_MAX, TRANSACTIONS_MAX_LIMIT,
};
