// Owns request-body validation for the billing endpoints (field presence,
// types, lengths, orderId charset, amount rules, installments), in the order
// the emulator checks them. Each check returns a Toss error value or null.
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

module.exports = { checkIssueBody, checkApproveBody, CUSTOMER_KEY_MAX };
