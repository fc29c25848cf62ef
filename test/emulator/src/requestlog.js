// Owns the request log: a bounded ring buffer of recent Toss API requests
// for the admin API. The Authorization header is never stored; only the
// merchant id (mId) it resolved to.
'use strict';

class RequestLog {
  constructor(capacity = 10000) {
    this.capacity = capacity;
    this.clear();
  }

  clear() {
    this.buf = new Array(this.capacity);
    this.next = 0;
    this.size = 0;
  }

  /** Add an entry (fields filled in later as the request completes) and return it. */
  add(entry) {
    this.buf[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
    return entry;
  }

  /** Most recent first. */
  recent(limit) {
    const n = Math.min(limit, this.size);
    const out = [];
    for (let i = 1; i <= n; i++) out.push(this.buf[(this.next - i + this.capacity) % this.capacity]);
    return out;
  }
}

module.exports = { RequestLog };
