// Tests: load behaviour — thousands of requests held at once (GET
// /__emulator/stats counts them), thousands with latency injected all
// answered, and charges over keep-alive connections each answered and
// charged once.  No wall-clock bounds: bench/emulator/run measures speed.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startEmulator, TossClient } = require('../support/harness');

let emu;
let c;
let bill;
before(async () => {
  emu = await startEmulator();
  c = emu.client();
  bill = await c.billing();
});
after(() => emu.stop());

function post(agent, p, body, auth) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port: emu.port, method: 'POST', path: p, agent,
      headers: { Authorization: auth, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end(data);
  });
}

// Polls the emulator's load stats until `ok` holds (or a generous bound,
// far beyond what any machine needs, runs out: a hang, not a slow machine).
async function statsUntil(ok) {
  const bound = Date.now() + 120000;
  for (;;) {
    const stats = (await emu.admin('GET', '/__emulator/stats')).json;
    if (ok(stats) || Date.now() > bound) return stats;
    await new Promise((r) => setTimeout(r, 20));
  }
}

// No wall-clock bound: whether 2,000 requests are sent within a latency
// depends on the machine, so the requests are held (hang) until all 2,000
// are seen in flight together, then let go.
test('2,000 concurrent charges are held in flight together, and 2,000 with 500 ms latency are all answered', async () => {
  const p = `/v1/billing/${encodeURIComponent(bill.billingKey)}`;
  await emu.admin('DELETE', '/__emulator/stats');
  await emu.admin('POST', '/__emulator/faults', { match: { method: 'POST', pathPrefix: '/v1/billing/' }, fault: { hang: true } });
  const held = new http.Agent({ keepAlive: true, maxSockets: 2000 });
  const hung = Array.from({ length: 2000 }, () => post(held, p, TossClient.charge(bill), c.auth).catch(() => 'dropped'));
  let stats;
  try {
    stats = await statsUntil((s) => s.inFlight >= 2000);
  } finally {
    held.destroy();
    await emu.admin('DELETE', '/__emulator/faults');
  }
  assert.equal(stats.inFlight, 2000, JSON.stringify(stats));
  assert.deepEqual([...new Set(await Promise.all(hung))], ['dropped']);
  assert.equal((await statsUntil((s) => s.inFlight === 0)).inFlight, 0);
  // nothing is done for a request that hangs
  assert.equal((await emu.admin('GET', '/__emulator/ledger')).json.totalDone, 0);

  await emu.admin('DELETE', '/__emulator/stats');
  await emu.admin('POST', '/__emulator/config', { latencyMs: 500 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2000 });
  try {
    const statuses = await Promise.all(Array.from({ length: 2000 }, () => post(agent, p, TossClient.charge(bill), c.auth)));
    assert.equal(statuses.filter((s) => s === 200).length, 2000);
  } finally {
    agent.destroy();
    await emu.admin('POST', '/__emulator/config', { latencyMs: 0 });
  }
  stats = await statsUntil((s) => s.inFlight === 0);
  assert.ok(stats.requests >= 2000, JSON.stringify(stats));
  assert.equal(stats.inFlight, 0);
  const ledger = (await emu.admin('GET', '/__emulator/ledger')).json;
  assert.equal(ledger.totalDone, 2000);
  assert.equal(ledger.duplicateOrderIds.length, 0);
});

// How fast is the benchmark's business (bench/emulator/run): here only that
// 4,000 charges over 16 keep-alive connections are each answered and
// charged once.  The rate is printed, not asserted: machines differ.
test('4,000 charges over 16 keep-alive connections are each answered and charged once', async () => {
  const before = (await emu.admin('GET', '/__emulator/ledger')).json.totalDone;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const p = `/v1/billing/${encodeURIComponent(bill.billingKey)}`;
  const n = 4000;
  let next = 0;
  let ok = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < n) {
      next++;
      if ((await post(agent, p, TossClient.charge(bill), c.auth)) === 200) ok++;
    }
  }));
  const perS = ok / (Number(process.hrtime.bigint() - t0) / 1e9);
  agent.destroy();
  console.log(`${Math.round(perS)} charges/s over 16 keep-alive connections (printed, not a bound)`);
  assert.equal(ok, n);
  const ledger = (await emu.admin('GET', '/__emulator/ledger')).json;
  assert.equal(ledger.totalDone - before, n);
  assert.equal(ledger.duplicateOrderIds.length, 0);
});
