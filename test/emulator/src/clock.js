// Owns the emulator clock: real time plus an adjustable offset (so tests can
// jump ahead, e.g. past the 15-day idempotency window) and Toss's timestamp
// format (ISO 8601 in Korea time, `yyyy-MM-ddTHH:mm:ss+09:00`).
'use strict';

const KST_OFFSET_MS = 9 * 60 * 60 * 1000;
let offsetMs = 0;

function now() {
  return Date.now() + offsetMs;
}

function advance(ms) {
  offsetMs += ms;
  return now();
}

function set(ms) {
  offsetMs = ms - Date.now();
  return now();
}

function reset() {
  offsetMs = 0;
}

/** Toss-style timestamp: `2022-06-08T15:40:09+09:00`. */
function kst(ms) {
  return new Date(ms + KST_OFFSET_MS).toISOString().slice(0, 19) + '+09:00';
}

/** {year, month} (1-12) of an instant in Korea time. */
function kstYearMonth(ms) {
  const d = new Date(ms + KST_OFFSET_MS);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1 };
}

module.exports = { now, advance, set, reset, kst, kstYearMonth, offset: () => offsetMs };
