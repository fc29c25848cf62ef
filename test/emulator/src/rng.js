// Owns the emulator's seedable pseudo-random generator (mulberry32). Rate
// faults and latency jitter draw from it, so a run started with the same
// seed makes the same choices for the same sequence of requests.
'use strict';

const crypto = require('node:crypto');

class Rng {
  constructor(seed) {
    this.reseed(seed);
  }

  /** Reseed; without a seed (null/undefined) a random 32-bit seed is drawn. */
  reseed(seed) {
    this.seed = seed === undefined || seed === null ? crypto.randomBytes(4).readUInt32LE(0) : seed >>> 0;
    this.state = this.seed;
  }

  /** Uniform in [0, 1). */
  next() {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

module.exports = { Rng };
