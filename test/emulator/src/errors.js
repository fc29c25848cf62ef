// Owns the Toss error catalog: every error code the emulator can answer with,
// its HTTP status (from the reference tables) and its Korean / English message,
// plus helpers to build and render `{code, message}` error bodies.
'use strict';

// code: [httpStatus, korean message, english message]
const CATALOG = {
  // Messages come from Toss's error-codes page: the per-API tables (결제 승인, 결제 조회/취소, 카드 자동결제 빌링키
  // 발급/승인) first, else the page's full list. Codes marked `// guess` have no published message (README "Guesses").
  // ---- 400: request, limits ----
  INVALID_REQUEST: [400, '잘못된 요청입니다.', 'The bad request.'],
  INVALID_API_KEY: [400, '잘못된 시크릿키 연동 정보 입니다.', 'Incorrect secret key.'],
  ALREADY_PROCESSED_PAYMENT: [400, '이미 처리된 결제 입니다.', 'This is a payment that has already been processed.'],
  UNAPPROVED_ORDER_ID: [400, '아직 승인되지 않은 주문번호입니다.', 'This order id has not been approved for payment.'],
  BELOW_MINIMUM_AMOUNT: [400, '신용카드는 결제금액이 100원 이상, 계좌는 200원이상부터 결제가 가능합니다.', 'Payment can be made from 100 won or more by credit card, and 200 won or more for account.'],
  EXCEED_MAX_AMOUNT: [400, '거래금액 한도를 초과했습니다.', 'The transaction amount limit has been exceeded.'],
  EXCEED_MAX_DAILY_PAYMENT_COUNT: [400, '하루 결제 가능 횟수를 초과했습니다.', 'You have exceeded the number of daily payments.'],
  EXCEED_MAX_PAYMENT_AMOUNT: [400, '하루 결제 가능 금액을 초과했습니다.', 'You have exceeded the amount you can pay per day.'],
  EXCEED_MAX_MONTHLY_PAYMENT_AMOUNT: [400, '당월 결제 가능금액인 1,000,000원을 초과 하셨습니다.', 'You have exceeded the allowed monthly payment amount of 1,000,000 KRW.'],
  INVALID_DATE: [400, '날짜 데이터가 잘못 되었습니다.', 'The date data is invalid.'],
  INVALID_IDEMPOTENCY_KEY: [400, '멱등키는 300자 이하로 입력해주세요.', 'The idempotency key must be at most 300 characters.'], // guess
  INVALID_TEST_CODE: [400, '유효하지 않은 테스트 코드입니다.', 'Invalid test code'],
  // ---- 400: card and installments ----
  INVALID_CARD_NUMBER: [400, '카드번호를 다시 확인해주세요.', 'Please check your card number again.'],
  INVALID_STOPPED_CARD: [400, '정지된 카드 입니다.', 'This is a suspended card.'],
  INVALID_CARD_EXPIRATION: [400, '카드 정보를 다시 확인해주세요. (유효기간)', 'Please check the card expiration date information again.'],
  INVALID_REJECT_CARD: [400, '카드 사용이 거절되었습니다. 카드사 문의가 필요합니다.', 'Refer to card issuer/decline.'],
  INVALID_CARD_LOST_OR_STOLEN: [400, '분실 혹은 도난 카드입니다.', 'This is a lost or stolen card.'],
  EXCEED_MAX_CARD_INSTALLMENT_PLAN: [400, '설정 가능한 최대 할부 개월 수를 초과했습니다.', 'Maximum number of installment months exceeded. (`installmentPlanMonths`)'],
  NOT_ALLOWED_POINT_USE: [400, '포인트 사용이 불가한 카드로 카드 포인트 결제에 실패했습니다.', 'Card point payment failed because the card cannot be used points.'],
  NOT_SUPPORTED_INSTALLMENT_PLAN_CARD_OR_MERCHANT: [400, '할부가 지원되지 않는 카드 또는 가맹점 입니다.', 'This card or merchant does not support installment.'],
  INVALID_CARD_INSTALLMENT_PLAN: [400, '할부 개월 정보가 잘못되었습니다.', 'The installment month information is incorrect.'],
  NOT_SUPPORTED_MONTHLY_INSTALLMENT_PLAN: [400, '할부가 지원되지 않는 카드입니다.', 'This card does not support installment.'],
  // ---- 400: merchant, account, auth ----
  NOT_FOUND_TERMINAL_ID: [400, '단말기번호(Terminal Id)가 없습니다. 토스페이먼츠로 문의 바랍니다.', 'There is no Terminal Id. Please contact Toss Payments.'],
  INVALID_AUTHORIZE_AUTH: [400, '유효하지 않은 인증 방식입니다.', 'Invalid authentication.'],
  RESTRICTED_TRANSFER_ACCOUNT: [400, '계좌는 등록 후 12시간 뒤부터 결제할 수 있습니다. 관련 정책은 해당 은행으로 문의해주세요.', 'You can withdraw from this bank account after 12 hours from initial register. For related policies, please contact your bank.'],
  INVALID_UNREGISTERED_SUBMALL: [400, '미등록된 PG 하위몰 이거나 단독가맹점은 안심클릭/ISP 결제가 필요합니다.', 'Not registered PG sub-mall business number.'],
  NOT_REGISTERED_BUSINESS: [400, '등록되지 않은 사업자 번호입니다.', 'Unregistered business registration number.'],
  EXCEED_MAX_ONE_DAY_WITHDRAW_AMOUNT: [400, '1일 출금 한도를 초과했습니다.', 'You have exceeded the one-day withdrawal limit.'],
  EXCEED_MAX_ONE_TIME_WITHDRAW_AMOUNT: [400, '1회 출금 한도를 초과했습니다.', 'You have exceeded the one-time withdrawal limit.'],
  INVALID_ACCOUNT_INFO_RE_REGISTER: [400, '유효하지 않은 계좌입니다. 계좌 재등록 후 시도해주세요.', 'Invalid account. Please re-register the account and try again.'],
  NOT_AVAILABLE_PAYMENT: [400, '결제가 불가능한 시간대입니다.', 'Payment is unavailable at this time.'],
  // ---- 400: transient ----
  PROVIDER_ERROR: [400, '일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.', 'This is temporary error. Please try again in a few minutes.'],
  CARD_PROCESSING_ERROR: [400, '카드사에서 오류가 발생했습니다.', 'The card company was not able to process the request.'],
  // ---- 400: billing ----
  INVALID_BILL_KEY_REQUEST: [400, '빌링키 인증이 완료되지 않았거나 유효하지 않은 빌링 거래 건입니다.', 'Unauthorized billingKey or invalid billing transaction'],
  INVALID_BILLING_AUTH: [400, '유효하지 않은 빌링 인증입니다.', 'Invalid billing authentication.'],
  BILLING_KEY_NOT_FOUND: [400, '빌링키를 찾을 수 없습니다.', 'The billing key was not found.'], // guess
  ALREADY_REMOVED_BILLING_KEY: [400, '이미 삭제된 빌링키입니다.', 'The billing key has already been removed.'], // en: guess
  NOT_MATCHES_CUSTOMER_KEY: [400, '빌링 인증 고객키와 결제 요청 고객키가 일치하지 않습니다.', '`customerKey` between billing auth request and payment request is not matching.'],
  DUPLICATED_ORDER_ID: [400, '이미 승인 및 취소가 진행된 중복된 주문번호 입니다. 다른 주문번호로 진행해주세요.', 'This is a duplicate order id that has already been approved or canceled. Please proceed with a different order id.'],
  NOT_SUPPORTED_METHOD: [400, '지원되지 않는 결제 수단입니다.', 'This payment method is not supported.'],
  NOT_SUPPORTED_CARD_TYPE: [400, '지원되지 않는 카드 종류입니다.', 'This card type is not supported.'],
  NOT_REGISTERED_CARD_COMPANY: [400, '카드를 사용 등록 후 이용해주세요.', 'Please register the credit card before using it.'],
  INVALID_CARD_PASSWORD: [400, '카드 정보를 다시 확인해주세요. (비밀번호)', 'Please check the card information again.'],
  INVALID_CARD_IDENTITY: [400, '입력하신 주민번호/사업자번호가 카드 소유주 정보와 일치하지 않습니다.', 'The entered resident registration number/business number does not match the cardholder information.'],
  INVALID_BIRTH_DAY_FORMAT: [400, '생년월일 정보는 6자리의 `yyMMdd` 형식이어야 합니다. 사업자등록번호는 10자리의 숫자여야 합니다.', 'Birth dates must be 6 digits long and in a `yyMMdd` format. Business number must be a 10 digit number.'],
  INVALID_EMAIL: [400, '유효하지 않은 이메일 주소 형식입니다.', 'Invalid email format'],
  // ---- 400: cancel ----
  ALREADY_CANCELED_PAYMENT: [400, '이미 취소된 결제 입니다.', 'The payment has already been canceled.'],
  INVALID_REFUND_ACCOUNT_INFO: [400, '환불 계좌번호와 예금주명이 일치하지 않습니다.', '`accountNumber` and holderName is not matched.'],
  EXCEED_CANCEL_AMOUNT_DISCOUNT_AMOUNT: [400, '즉시할인금액보다 적은 금액은 부분취소가 불가능합니다.', 'The cancel amount cannot exceed discount amount.'],
  INVALID_REFUND_ACCOUNT_NUMBER: [400, '잘못된 환불 계좌번호입니다.', 'Incorrect `accountNumber`.'],
  INVALID_BANK: [400, '유효하지 않은 은행입니다.', 'It is an Invalid bank.'],
  NOT_MATCHES_REFUNDABLE_AMOUNT: [400, '잔액 결과가 일치하지 않습니다.', 'Balance results do not match.'],
  REFUND_REJECTED: [400, '환불이 거절됐습니다. 결제사에 문의 부탁드립니다.', 'The refund has been rejected. Please contact the respective payment provider.'],
  ALREADY_REFUND_PAYMENT: [400, '이미 환불된 결제입니다.', 'The payment has been refunded.'],
  FORBIDDEN_BANK_REFUND_REQUEST: [400, '고객 계좌가 입금이 되지 않는 상태입니다.', 'The customer account cannot receive deposits.'], // guess
  // ---- 401 ----
  UNAUTHORIZED_KEY: [401, '인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.', 'Unauthorized secretKey or clientKey.'],
  // ---- 403 ----
  REJECT_CARD_PAYMENT: [403, '한도초과 혹은 잔액부족으로 결제에 실패했습니다.', 'Payment failed due to limit exceeded or insufficient balance.'],
  REJECT_CARD_COMPANY: [403, '결제 승인이 거절되었습니다.', 'Payment confirm is rejected'],
  FORBIDDEN_REQUEST: [403, '허용되지 않은 요청입니다.', 'Not allowed request.'],
  REJECT_ACCOUNT_PAYMENT: [403, '잔액부족으로 결제에 실패했습니다.', 'Payment declined due to insufficient balance.'],
  REJECT_TOSSPAY_INVALID_ACCOUNT: [403, '선택하신 출금 계좌가 출금이체 등록이 되어 있지 않아요. 계좌를 다시 등록해 주세요.', 'Your account invalidated. Please register another account.'],
  EXCEED_MAX_AUTH_COUNT: [403, '최대 인증 횟수를 초과했습니다. 카드사로 문의해주세요.', 'Maximum authentication attempts exceeded.'],
  EXCEED_MAX_ONE_DAY_AMOUNT: [403, '일일 한도를 초과했습니다.', 'You have exceeded your daily limit.'],
  NOT_AVAILABLE_BANK: [403, '은행 서비스 시간이 아닙니다.', "It's not banking hour."],
  INVALID_PASSWORD: [403, '결제 비밀번호가 일치하지 않습니다.', 'Incorrect password.'],
  INCORRECT_BASIC_AUTH_FORMAT: [403, "잘못된 요청입니다. ':' 를 포함해 인코딩해주세요.", "Invalid request. Please encode including the ':' character."],
  FDS_ERROR: [403, '[토스페이먼츠] 위험거래가 감지되어 결제가 제한됩니다. 발송된 문자에 포함된 링크를 통해 본인인증 후 결제가 가능합니다. (고객센터: 1644-8051)', 'A fraudulent transaction has been detected. To complete the payment, complete the authentication process.'],
  FORBIDDEN_CONSECUTIVE_REQUEST: [403, '반복적인 요청은 허용되지 않습니다. 잠시 후 다시 시도해주세요.', 'Repetitive requests are not allowed. Please try again in a few minutes.'],
  NOT_CANCELABLE_AMOUNT: [403, '취소 할 수 없는 금액 입니다.', 'This is a non-cancelable amount.'],
  NOT_CANCELABLE_PAYMENT: [403, '취소 할 수 없는 결제 입니다.', 'This is a non-cancelable payment.'],
  EXCEED_MAX_REFUND_DUE: [403, '환불 가능한 기간이 지났습니다.', 'Refundable date has passed.'],
  NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT: [403, '입금 대기중인 결제는 부분 환불이 불가합니다.', 'Partial refund is not available while pending deposit.'],
  NOT_ALLOWED_PARTIAL_REFUND: [403, '에스크로 주문, 현금 카드 결제일 때는 부분 환불이 불가합니다. 이외 다른 결제 수단에서 부분 취소가 되지 않을 때는 토스페이먼츠에 문의해 주세요.', 'Escrow orders or debit card payments cannot be partially canceled. If you are unable to partially cancel your order with any other payment method, please contact Tosspayments.'],
  NOT_CANCELABLE_PAYMENT_FOR_DORMANT_USER: [403, '휴면 처리된 회원의 결제는 취소할 수 없습니다.', 'This is a non-cancelable payment. It is a dormant user account.'],
  INSECURE_KEY_USAGE: [403, '안전하지 않은 키 사용입니다.', 'Insecure key usage.'], // guess
  // ---- 404 ----
  NOT_FOUND_PAYMENT: [404, '존재하지 않는 결제 정보 입니다.', 'Not found payment.'],
  NOT_FOUND_PAYMENT_SESSION: [404, '결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.', 'Payment session does not exist because the session time has expired.'],
  NOT_FOUND: [404, '존재하지 않는 정보 입니다.', 'This information does not exist.'],
  NOT_FOUND_BILLING: [404, '존재하지 않는 빌링 결제 인증 정보 입니다.', 'Billing payment authentication information that does not exist.'],
  NOT_FOUND_HTTP_METHOD: [404, '존재하지 않는 HTTP 메소드 접근입니다.', 'This HTTP method does not allowed.'],
  // ---- 409 ----
  IDEMPOTENT_REQUEST_PROCESSING: [409, '이전 멱등 요청이 처리중 입니다. 잠시 후 다시 요청해서 확인해주세요.', 'The previous idempotent request is still being processed. Please request again later to check.'], // guess
  // ---- 429 (not a Toss code: the emulator's throttling answer) ----
  TOO_MANY_REQUESTS: [429, '요청량이 많아 처리할 수 없습니다. 잠시 후 다시 시도해주세요.', 'Too many requests. Please try again later.'], // guess
  // ---- 500 ----
  FAILED_INTERNAL_SYSTEM_PROCESSING: [500, '내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요.', 'Internal system processing operation has failed. Please try again in a few minutes.'],
  FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING: [500, '결제가 완료되지 않았어요. 다시 시도해주세요.', 'Payment has not been completed. please try again.'],
  UNKNOWN_PAYMENT_ERROR: [500, '결제에 실패했어요. 같은 문제가 반복된다면 은행이나 카드사로 문의해주세요.', 'Payment failed. If the same problem occurs, please contact your bank or credit card company.'],
  FAILED_DB_PROCESSING: [500, '잘못된 요청 값으로 처리 중 DB 에러가 발생했습니다.', 'A DB error occurred while processing with an invalid request value.'],
  FAILED_CARD_COMPANY_RESPONSE: [500, '카드사에서 에러가 발생했습니다. 잠시 후 다시 시도해 주세요.', 'An error occurred at the card company. Please try again in a few minutes.'],
  FAILED_BILL_KEY_AUTH_CREATION: [500, '빌링 결제 인증 중 키 생성에 실패했습니다. 잠시 후 다시 시도해주세요.', 'Key generation failed during billing payment verification. Please try again in a few minutes.'],
  FAILED_BILLING_AUTO_CANCEL: [500, '빌링 자동결제 취소에 일시적인 오류가 발생했습니다.', 'A temporary error occurred while billing auth cancellation.'],
  FAILED_REFUND_PROCESS: [500, '은행 응답시간 지연이나 일시적인 오류로 환불요청에 실패했습니다.', 'The refund request failed due to a delay in the bank response time or a temporary error.'],
  FAILED_METHOD_HANDLING_CANCEL: [500, '취소 중 결제 시 사용한 결제 수단 처리과정에서 일시적인 오류가 발생했습니다.', 'A temporary error occurred while processing cancellation.'],
  FAILED_PARTIAL_REFUND: [500, '은행 점검, 해약 계좌 등의 사유로 부분 환불이 실패했습니다.', 'Partial refund failed due to bank check, account canceled, etc.'],
  COMMON_ERROR: [500, '일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.', 'This is temporary error. Please try again in a few minutes.'],
};

// Codes the card window and the SDK shim answer on the client side (failUrl or a rejected Promise): no HTTP status.
// From the error-codes page's SDK tables; English where the page gives one, else marked `// en: guess`.
const CLIENT_CODES = {
  PAY_PROCESS_CANCELED: ['사용자에 의해 결제가 취소되었습니다.', 'Payment has been canceled by the customer.'],
  PAY_PROCESS_ABORTED: ['결제 진행 중 승인에 실패하여 결제가 중단되었습니다.', 'Payment has been canceled or has not been processed.'],
  USER_CANCEL: ['취소되었습니다.', 'Canceled.'], // en: guess
  INVALID_CUSTOMER_KEY: ['고객키는 영문 대소문자, 숫자, 특수문자 -, _, =, ., @로 2자 이상 50자 이하여야 합니다.', 'customerKey must be 2-50 characters of letters, digits and - _ = . @'], // en: guess
  INVALID_CLIENT_KEY: ['ClientKey 형태가 올바르지 않습니다.', 'Incorrect client key.'],
  INCORRECT_SUCCESS_URL_FORMAT: ['잘못된 successUrl 입니다.', 'Invalid format: `successUrl`'],
  INCORRECT_FAIL_URL_FORMAT: ['잘못된 failUrl 입니다.', 'Invalid format: `failUrl`'],
  INVALID_PARAMETERS: ['필수 파라미터를 누락하거나, 정의되지 않은 파라미터를 추가하거나, 파라미터의 타입이 올바르지 않을 때 발생합니다.', 'A required parameter is missing, an undefined parameter was added, or a parameter has the wrong type.'], // en: guess
  NOT_SUPPORTED_WIDGET_KEY: ['API 개별 연동 키의 클라이언트 키로 SDK를 연동해주세요. 결제위젯 연동 키는 지원하지 않습니다.', 'Use the client key of the API-individual keys with this SDK. Payment-widget keys are not supported.'], // en: guess
  NEED_AGREEMENT_WITH_REQUIRED_TERMS: ['필수 약관에 동의해주세요.', 'Please agree to the required terms.'], // en: guess
  INVALID_METHOD_TRANSACTION: ['이미 다른 요청을 수행하고 있어요.', 'Another request is already in progress.'], // en: guess
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
  const entry = CATALOG[code] || CLIENT_CODES[code];
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

module.exports = { CATALOG, CLIENT_CODES, isKnown, statusOf, tossError, messageOf, errorBody, languageOf };
