// Owns the test-card table (loaded from ../cards.json): card registration
// rules (number, expiry, birth date), card masking, what each card does when
// it is charged, and when the card company deletes its billing key.
'use strict';

const data = require('../cards.json');
const { tossError, statusOf } = require('./errors');
const clock = require('./clock');

const OUTCOMES = ['approve', 'decline', 'failFirst', 'approveThenDelete'];
const byNumber = new Map();
for (const c of data.cards) {
  if (!OUTCOMES.includes(c.charge.outcome)) throw new Error(`cards.json: ${c.number}: unknown outcome ${c.charge.outcome}`);
  if (c.charge.code && statusOf(c.charge.code) !== c.charge.status) {
    throw new Error(`cards.json: ${c.number} ${c.charge.code} status ${c.charge.status} disagrees with the error catalog`);
  }
  byNumber.set(c.number, c);
}

function luhn(num) {
  let sum = 0;
  let dbl = false;
  for (let i = num.length - 1; i >= 0; i--) {
    let d = num.charCodeAt(i) - 48;
    if (dbl) { d *= 2; if (d > 9) d -= 9; }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 === 0;
}

/** Toss masking, e.g. 4330121234567890 → `43301212****789*`. */
function mask(num) {
  return num.slice(0, 8) + '****' + num.slice(12, num.length - 1) + '*';
}

function profileFor(num) {
  const listed = byNumber.get(num);
  if (listed) return listed;
  if (num.length >= 13 && num.length <= 19 && luhn(num)) return data.default;
  return null;
}

function validExpiry(yy, mm, nowMs) {
  if (!/^\d{2}$/.test(yy) || !/^\d{1,2}$/.test(mm)) return false;
  const month = Number(mm);
  if (month < 1 || month > 12) return false;
  const year = 2000 + Number(yy);
  const now = clock.kstYearMonth(nowMs);
  return year > now.year || (year === now.year && month >= now.month);
}

function validIdentity(s) {
  if (/^\d{10}$/.test(s)) return true; // business registration number
  if (!/^\d{6}$/.test(s)) return false;
  const mm = Number(s.slice(2, 4));
  const dd = Number(s.slice(4, 6));
  return mm >= 1 && mm <= 12 && dd >= 1 && dd <= 31;
}

/**
 * Register a card (what the card window does before handing out an authKey).
 * input: {cardNumber, cardExpirationYear?, cardExpirationMonth?, customerIdentityNumber?}
 * Expiry and identity are checked only when given. Returns {card} or {error}.
 */
function register(input) {
  const raw = typeof input.cardNumber === 'string' ? input.cardNumber.replace(/[\s-]/g, '') : '';
  if (!/^\d{1,20}$/.test(raw)) return { error: tossError('INVALID_CARD_NUMBER') };
  const profile = profileFor(raw);
  if (!profile) return { error: tossError('INVALID_CARD_NUMBER') };
  const yy = input.cardExpirationYear;
  const mm = input.cardExpirationMonth;
  if ((yy !== undefined && yy !== '') || (mm !== undefined && mm !== '')) {
    if (!validExpiry(String(yy || ''), String(mm || ''), clock.now())) return { error: tossError('INVALID_CARD_EXPIRATION') };
  }
  const ident = input.customerIdentityNumber;
  if (ident !== undefined && ident !== '' && !validIdentity(String(ident))) {
    return { error: tossError('INVALID_BIRTH_DAY_FORMAT') };
  }
  return {
    card: {
      number: raw,
      masked: mask(raw),
      issuerCode: profile.issuerCode,
      acquirerCode: profile.acquirerCode,
      cardCompany: profile.cardCompany,
      cardType: profile.cardType,
      ownerType: profile.ownerType,
      charge: profile.charge,
    },
  };
}

/**
 * Outcome of the `attempt`-th (1-based) charge of a billing key (record with .card):
 * null when it is approved, else a Toss error value.
 */
function chargeOutcome(billing, attempt) {
  if (!billing.card) return null; // account (계좌이체) billing keys are always approved
  const c = billing.card.charge;
  if (c.outcome === 'decline') return tossError(c.code, null, c.status);
  if (c.outcome === 'failFirst' && attempt <= c.failCount) return tossError(c.code, null, c.status);
  return null;
}

/** The reason the card company deletes the key after the `charges`-th successful charge, else null. */
function deletionAfterCharge(card, charges) {
  if (!card) return null;
  const c = card.charge;
  if (c.outcome === 'approveThenDelete' && charges >= c.deleteAfterCharges) return c.reason || DEFAULT_DELETE_REASON;
  return null;
}

// Banks of the account (계좌이체) billing window: Toss's bank codes.
const BANKS = [
  ['088', '신한'], ['004', 'KB국민'], ['020', '우리'], ['081', '하나'], ['011', 'NH농협'], ['003', 'IBK기업'],
  ['090', '카카오뱅크'], ['092', '토스뱅크'], ['089', '케이뱅크'],
];
const BANK_BY_CODE = new Map(BANKS);

/**
 * Register a bank account for account billing (what the window does for method TRANSFER).
 * input: {bankCode, accountNumber}. Returns {transfer} or {error}.
 */
function registerAccount(input) {
  const bankCode = typeof input.bankCode === 'string' ? input.bankCode : '';
  const number = typeof input.accountNumber === 'string' ? input.accountNumber.replace(/[\s-]/g, '') : '';
  if (!BANK_BY_CODE.has(bankCode)) return { error: tossError('INVALID_BANK') };
  if (!/^\d{10,14}$/.test(number)) return { error: tossError('INVALID_ACCOUNT_INFO_RE_REGISTER') };
  const masked = number.slice(0, 3) + '*'.repeat(number.length - 6) + number.slice(-3);
  return { transfer: { bankCode, bankName: BANK_BY_CODE.get(bankCode), number, masked } };
}

const DEFAULT_DELETE_REASON = '카드사 요청에 의해 빌링키가 삭제되었습니다.';

module.exports = { register, registerAccount, BANKS, chargeOutcome, deletionAfterCharge, DEFAULT_DELETE_REASON, mask, luhn, defaultCard: data.defaultCard, table: data };
