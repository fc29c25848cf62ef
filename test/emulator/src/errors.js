// Owns the Toss error catalog: every error code the emulator can answer with,
// its HTTP status (from the reference tables) and its Korean / English message,
// plus helpers to build and render `{code, message}` error bodies.
'use strict';

// code: [httpStatus, korean message, english message]
const CATALOG = {
  // ---- 400: request, limits ----
  INVALID_REQUEST: [400, '잘못된 요청입니다.', 'The request is invalid.'],
  INVALID_API_KEY: [400, '잘못된 시크릿키 연동 정보 입니다.', 'Incorrect secret key information.'],
  ALREADY_PROCESSED_PAYMENT: [400, '이미 처리된 결제 입니다.', 'The payment has already been processed.'],
  UNAPPROVED_ORDER_ID: [400, '아직 승인되지 않은 주문번호입니다.', 'The order ID has not been approved yet.'],
  BELOW_MINIMUM_AMOUNT: [400, '신용카드는 결제금액이 100원 이상, 계좌는 200원이상부터 결제가 가능합니다.', 'Card payments require at least 100 KRW and account transfers at least 200 KRW.'],
  EXCEED_MAX_AMOUNT: [400, '거래금액 한도를 초과했습니다.', 'The transaction amount limit was exceeded.'],
  EXCEED_MAX_DAILY_PAYMENT_COUNT: [400, '하루 결제 가능 횟수를 초과했습니다.', 'The number of payments allowed per day was exceeded.'],
  EXCEED_MAX_PAYMENT_AMOUNT: [400, '하루 결제 가능 금액을 초과했습니다.', 'The payment amount allowed per day was exceeded.'],
  EXCEED_MAX_MONTHLY_PAYMENT_AMOUNT: [400, '당월 결제 가능금액인 1,000,000원을 초과 하셨습니다.', 'The payment amount allowed this month was exceeded.'],
  INVALID_DATE: [400, '날짜 데이터가 잘못 되었습니다.', 'The date is invalid.'],
  INVALID_IDEMPOTENCY_KEY: [400, '멱등키는 300자 이하로 입력해주세요.', 'The idempotency key must be at most 300 characters.'],
  // ---- 400: card and installments ----
  INVALID_CARD_NUMBER: [400, '카드번호를 다시 확인해주세요.', 'Please check the card number again.'],
  INVALID_STOPPED_CARD: [400, '정지된 카드 입니다.', 'This card has been suspended.'],
  INVALID_CARD_EXPIRATION: [400, '카드 정보를 다시 확인해주세요. (유효기간)', 'Please check the card information again. (expiration date)'],
  INVALID_REJECT_CARD: [400, '카드 사용이 거절되었습니다. 카드사 문의가 필요합니다.', 'The card was refused. Please contact the card company.'],
  INVALID_CARD_LOST_OR_STOLEN: [400, '분실 혹은 도난 카드입니다.', 'This card has been reported lost or stolen.'],
  EXCEED_MAX_CARD_INSTALLMENT_PLAN: [400, '설정 가능한 최대 할부 개월 수를 초과했습니다.', 'The maximum number of installment months was exceeded.'],
  NOT_ALLOWED_POINT_USE: [400, '포인트 사용이 불가한 카드로 카드 포인트 결제에 실패했습니다.', 'Card points cannot be used with this card.'],
  NOT_SUPPORTED_INSTALLMENT_PLAN_CARD_OR_MERCHANT: [400, '할부가 지원되지 않는 카드 또는 가맹점 입니다.', 'Installments are not supported for this card or merchant.'],
  INVALID_CARD_INSTALLMENT_PLAN: [400, '할부 개월 정보가 잘못되었습니다.', 'The installment plan is invalid.'],
  NOT_SUPPORTED_MONTHLY_INSTALLMENT_PLAN: [400, '할부가 지원되지 않는 카드입니다.', 'Monthly installments are not supported for this card.'],
  // ---- 400: merchant, account, auth ----
  NOT_FOUND_TERMINAL_ID: [400, '단말기번호(Terminal Id)가 없습니다. 토스페이먼츠로 문의 바랍니다.', 'There is no terminal ID. Please contact Toss Payments.'],
  INVALID_AUTHORIZE_AUTH: [400, '유효하지 않은 인증 방식입니다.', 'Invalid authorization method.'],
  RESTRICTED_TRANSFER_ACCOUNT: [400, '계좌는 등록 후 12시간 뒤부터 결제할 수 있습니다.', 'An account can be used for payments 12 hours after registration.'],
  INVALID_UNREGISTERED_SUBMALL: [400, '등록되지 않은 서브몰입니다.', 'This sub-mall is not registered.'],
  NOT_REGISTERED_BUSINESS: [400, '등록되지 않은 사업자 번호입니다.', 'This business registration number is not registered.'],
  EXCEED_MAX_ONE_DAY_WITHDRAW_AMOUNT: [400, '1일 출금 한도를 초과했습니다.', 'The one-day withdrawal limit was exceeded.'],
  EXCEED_MAX_ONE_TIME_WITHDRAW_AMOUNT: [400, '1회 출금 한도를 초과했습니다.', 'The one-time withdrawal limit was exceeded.'],
  INVALID_ACCOUNT_INFO_RE_REGISTER: [400, '유효하지 않은 계좌입니다. 계좌 재등록 후 시도해주세요.', 'Invalid account. Please register the account again.'],
  NOT_AVAILABLE_PAYMENT: [400, '결제가 불가능한 시간대입니다.', 'Payments are not available at this time.'],
  // ---- 400: transient ----
  PROVIDER_ERROR: [400, '일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.', 'A temporary error occurred. Please try again in a moment.'],
  CARD_PROCESSING_ERROR: [400, '카드사에서 오류가 발생했습니다.', 'An error occurred at the card company.'],
  // ---- 400: billing ----
  INVALID_BILL_KEY_REQUEST: [400, '빌링키 요청이 유효하지 않습니다.', 'The billing key request is invalid.'],
  INVALID_BILLING_AUTH: [400, '유효하지 않은 빌링 인증입니다.', 'Invalid billing authorization.'],
  BILLING_KEY_NOT_FOUND: [400, '빌링키를 찾을 수 없습니다.', 'The billing key was not found.'],
  ALREADY_REMOVED_BILLING_KEY: [400, '이미 삭제된 빌링키입니다.', 'The billing key has already been removed.'],
  NOT_MATCHES_CUSTOMER_KEY: [400, '빌링 인증 고객키와 결제 요청 고객키가 일치하지 않습니다.', 'The customer key does not match the one of the billing authorization.'],
  DUPLICATED_ORDER_ID: [400, '이미 승인 및 취소가 진행된 중복된 주문번호 입니다. 다른 주문번호로 진행해주세요.', 'This order ID has already been approved or canceled. Please use a different order ID.'],
  NOT_SUPPORTED_METHOD: [400, '지원되지 않는 결제 수단입니다.', 'This payment method is not supported.'],
  NOT_SUPPORTED_CARD_TYPE: [400, '지원되지 않는 카드 종류입니다.', 'This card type is not supported.'],
  NOT_REGISTERED_CARD_COMPANY: [400, '등록되지 않은 카드사입니다.', 'This card company is not registered.'],
  INVALID_CARD_PASSWORD: [400, '카드 비밀번호를 다시 확인해주세요.', 'Please check the card password again.'],
  INVALID_CARD_IDENTITY: [400, '입력하신 주민번호/사업자번호가 카드 소유주 정보와 일치하지 않습니다.', 'The identity number does not match the card owner.'],
  INVALID_BIRTH_DAY_FORMAT: [400, '생년월일 정보는 6자리의 yyMMdd 형식이어야 합니다.', 'The birth date must be 6 digits in yyMMdd format.'],
  INVALID_EMAIL: [400, '유효하지 않은 이메일 주소 형식입니다.', 'Invalid email address format.'],
  // ---- 400: cancel table (test codes only) ----
  ALREADY_CANCELED_PAYMENT: [400, '이미 취소된 결제 입니다.', 'The payment has already been canceled.'],
  INVALID_REFUND_ACCOUNT_INFO: [400, '환불 계좌번호와 예금주명이 일치하지 않습니다.', 'The refund account number and holder do not match.'],
  EXCEED_CANCEL_AMOUNT_DISCOUNT_AMOUNT: [400, '즉시할인금액보다 적은 금액은 부분취소가 불가능합니다.', 'A partial cancel below the instant discount amount is not possible.'],
  INVALID_REFUND_ACCOUNT_NUMBER: [400, '잘못된 환불 계좌번호입니다.', 'Invalid refund account number.'],
  INVALID_BANK: [400, '유효하지 않은 은행입니다.', 'Invalid bank.'],
  NOT_MATCHES_REFUNDABLE_AMOUNT: [400, '잔액 결과가 일치하지 않습니다.', 'The refundable amount does not match.'],
  REFUND_REJECTED: [400, '환불이 거절됐습니다. 결제사에 문의 부탁드립니다.', 'The refund was rejected. Please contact the payment provider.'],
  ALREADY_REFUND_PAYMENT: [400, '이미 환불된 결제입니다.', 'The payment has already been refunded.'],
  FORBIDDEN_BANK_REFUND_REQUEST: [400, '고객 계좌가 입금이 되지 않는 상태입니다.', 'The customer account cannot receive deposits.'],
  // ---- 401 ----
  UNAUTHORIZED_KEY: [401, '인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.', 'Unauthorized secret key or client key.'],
  // ---- 403 ----
  REJECT_CARD_PAYMENT: [403, '한도초과 혹은 잔액부족으로 결제에 실패했습니다.', 'The payment failed: limit exceeded or insufficient balance.'],
  REJECT_CARD_COMPANY: [403, '결제 승인이 거절되었습니다.', 'The payment approval was refused.'],
  FORBIDDEN_REQUEST: [403, '허용되지 않은 요청입니다.', 'This request is not allowed.'],
  REJECT_ACCOUNT_PAYMENT: [403, '잔액부족으로 결제에 실패했습니다.', 'The payment failed: insufficient balance.'],
  REJECT_TOSSPAY_INVALID_ACCOUNT: [403, '선택하신 출금 계좌가 출금이체 등록이 되어 있지 않아요.', 'The selected account is not registered for withdrawals.'],
  EXCEED_MAX_AUTH_COUNT: [403, '최대 인증 횟수를 초과했습니다.', 'The maximum number of authentications was exceeded.'],
  EXCEED_MAX_ONE_DAY_AMOUNT: [403, '일일 한도를 초과했습니다.', 'The daily limit was exceeded.'],
  NOT_AVAILABLE_BANK: [403, '은행 서비스 시간이 아닙니다.', 'Outside bank service hours.'],
  INVALID_PASSWORD: [403, '결제 비밀번호가 일치하지 않습니다.', 'The payment password does not match.'],
  INCORRECT_BASIC_AUTH_FORMAT: [403, "잘못된 요청입니다. ':' 를 포함해 인코딩해주세요.", "Incorrect request. Please encode including ':'."],
  FDS_ERROR: [403, '[토스페이먼츠] 위험거래가 감지되어 결제가 제한됩니다. 발송된 문자에 포함된 링크를 통해 본인인증 후 결제가 가능합니다.', '[Toss Payments] A risky transaction was detected and the payment is restricted. Verify your identity through the link in the text message to pay.'],
  FORBIDDEN_CONSECUTIVE_REQUEST: [403, '반복적인 요청은 허용되지 않습니다. 잠시 후 다시 시도해주세요.', 'Repeated requests are not allowed. Please try again later.'],
  NOT_CANCELABLE_AMOUNT: [403, '취소 할 수 없는 금액 입니다.', 'This amount cannot be canceled.'],
  NOT_CANCELABLE_PAYMENT: [403, '취소 할 수 없는 결제 입니다.', 'This payment cannot be canceled.'],
  EXCEED_MAX_REFUND_DUE: [403, '환불 가능한 기간이 지났습니다.', 'The refund period has passed.'],
  NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT: [403, '입금 대기중인 결제는 부분 환불이 불가합니다.', 'Partial refunds are not allowed while waiting for a deposit.'],
  NOT_ALLOWED_PARTIAL_REFUND: [403, '에스크로 주문, 현금 카드 결제일 때는 부분 환불이 불가합니다.', 'Partial refunds are not allowed for this payment.'],
  NOT_CANCELABLE_PAYMENT_FOR_DORMANT_USER: [403, '휴면 처리된 회원의 결제는 취소할 수 없습니다.', 'Payments of dormant users cannot be canceled.'],
  INSECURE_KEY_USAGE: [403, '안전하지 않은 키 사용입니다.', 'Insecure key usage.'],
  // ---- 404 ----
  NOT_FOUND_PAYMENT: [404, '존재하지 않는 결제 정보 입니다.', 'The payment does not exist.'],
  NOT_FOUND_PAYMENT_SESSION: [404, '결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.', 'The payment session expired and no payment data exists.'],
  NOT_FOUND: [404, '존재하지 않는 정보 입니다.', 'The information does not exist.'],
  NOT_FOUND_BILLING: [404, '존재하지 않는 빌링 정보입니다.', 'The billing information does not exist.'],
  NOT_FOUND_HTTP_METHOD: [404, '요청한 HTTP 메서드 또는 API를 찾을 수 없습니다.', 'The requested HTTP method or API was not found.'],
  // ---- 409 ----
  IDEMPOTENT_REQUEST_PROCESSING: [409, '이전 멱등 요청이 처리중 입니다. 잠시 후 다시 요청해서 확인해주세요.', 'The previous idempotent request is still being processed. Please request again later to check.'],
  // ---- 429 ----
  TOO_MANY_REQUESTS: [429, '요청량이 많아 처리할 수 없습니다. 잠시 후 다시 시도해주세요.', 'Too many requests. Please try again later.'],
  // ---- 500 ----
  FAILED_INTERNAL_SYSTEM_PROCESSING: [500, '내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요.', 'Internal system processing failed. Please try again later.'],
  FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING: [500, '결제가 완료되지 않았어요. 다시 시도해주세요.', 'The payment was not completed. Please try again.'],
  UNKNOWN_PAYMENT_ERROR: [500, '결제에 실패했어요. 같은 문제가 반복된다면 은행이나 카드사로 문의해주세요.', 'The payment failed. If this repeats, contact your bank or card company.'],
  FAILED_DB_PROCESSING: [500, '잘못된 요청 값으로 처리 중 DB 에러가 발생했습니다.', 'A DB error occurred while processing an invalid request value.'],
  FAILED_CARD_COMPANY_RESPONSE: [500, '카드사에서 에러가 발생했습니다. 잠시 후 다시 시도해 주세요.', 'The card company returned an error. Please try again later.'],
  FAILED_BILL_KEY_AUTH_CREATION: [500, '빌링키 인증 생성에 실패했습니다.', 'Failed to create the billing key authorization.'],
  FAILED_BILLING_AUTO_CANCEL: [500, '빌링 자동 취소에 실패했습니다.', 'Automatic billing cancellation failed.'],
  FAILED_REFUND_PROCESS: [500, '은행 응답시간 지연이나 일시적인 오류로 환불요청에 실패했습니다.', 'The refund failed because of a bank delay or a temporary error.'],
  FAILED_METHOD_HANDLING_CANCEL: [500, '취소 중 결제 시 사용한 결제 수단 처리과정에서 일시적인 에러가 발생했습니다.', 'A temporary error occurred while handling the payment method during cancellation.'],
  FAILED_PARTIAL_REFUND: [500, '은행 점검, 해약 계좌 등의 사유로 부분 환불이 실패했습니다.', 'The partial refund failed (bank maintenance, closed account, ...).'],
  COMMON_ERROR: [500, '일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.', 'A temporary error occurred. Please try again later.'],
};

// Codes that only appear in the card registration window's failUrl (client side, no HTTP status).
const WINDOW_CODES = {
  PAY_PROCESS_CANCELED: ['사용자에 의해 결제가 취소되었습니다.', 'The payment was canceled by the user.'],
  INVALID_CUSTOMER_KEY: ['customerKey는 2자 이상 50자 이하의 영문 대소문자, 숫자, 특수문자(-, _, =, ., @)만 사용할 수 있습니다.', 'customerKey must be 2-50 characters of letters, digits and - _ = . @'],
};

function isKnown(code) {
  return Object.prototype.hasOwnProperty.call(CATALOG, code);
}

function statusOf(code) {
  return isKnown(code) ? CATALOG[code][0] : null;
}

/**
 * A Toss error value. `detail` optionally overrides the catalog message
 * with a more specific {ko, en} pair (Toss does this for INVALID_REQUEST).
 */
function tossError(code, detail, status) {
  const entry = CATALOG[code] || WINDOW_CODES[code];
  if (!entry && !detail) throw new Error(`unknown Toss error code ${code}`);
  const base = CATALOG[code] ? { status: entry[0], ko: entry[1], en: entry[2] }
    : entry ? { status: 400, ko: entry[0], en: entry[1] } : { status: 400 };
  return {
    tossError: true,
    code,
    status: status || base.status,
    ko: (detail && detail.ko) || base.ko,
    en: (detail && detail.en) || (detail && detail.ko) || base.en,
  };
}

function messageOf(err, lang) {
  return lang === 'en' ? err.en : err.ko;
}

function errorBody(err, lang) {
  return { code: err.code, message: messageOf(err, lang) };
}

/** 'en' when the first Accept-Language tag is English, else 'ko' (Toss's default). */
function languageOf(acceptLanguage) {
  if (typeof acceptLanguage !== 'string') return 'ko';
  const first = acceptLanguage.split(',')[0].trim().toLowerCase();
  return first === 'en' || first.startsWith('en-') ? 'en' : 'ko';
}

module.exports = { CATALOG, isKnown, statusOf, tossError, messageOf, errorBody, languageOf };
