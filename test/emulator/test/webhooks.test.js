// Tests: outbound webhooks — PAYMENT_STATUS_CHANGED on cancel (full Payment
// as data), BILLING_DELETED when the card company deletes a key (admin action
// and the auto-deleting test card), the headers, Toss's retry schedule
// (1, 4, 16, 64, 256, 1024, 4096 minutes on the emulator clock, divided by
// the time scale), timeouts, and the admin list of deliveries.
'use strict';

const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { startEmulator, startReceiver, until, TossClient } = require('../support/harness');

let emu;
let c;
const receivers = [];
before(async () => {
  emu = await startEmulator();
  c = emu.client();
});
after(async () => {
  await emu.stop();
  for (const r of receivers) await r.close();
});
afterEach(async () => {
  await emu.admin('DELETE', '/__emulator/webhooks');
  await emu.admin('POST', '/__emulator/clock', { reset: true });
  await emu.admin('POST', '/__emulator/config', { webhookUrl: null, webhookTimeScale: 1, webhookTimeoutMs: 10000 });
});

async function receiver(answer) {
  const r = await startReceiver(answer);
  receivers.push(r);
  await emu.admin('POST', '/__emulator/config', { webhookUrl: r.url });
  return r;
}
const deliveries = async (q = '') => (await emu.admin('GET', `/__emulator/webhooks${q}`)).json;

test('a cancel POSTs PAYMENT_STATUS_CHANGED with the Payment as data; approvals send nothing', async () => {
  const r = await receiver();
  const p = await c.paid({ amount: 8000 });
  const canceled = (await c.cancel(p.paymentKey, { cancelReason: 'x', cancelAmount: 1000 })).json;
  await r.waitFor(1);
  const hit = r.hits[0];
  assert.equal(hit.method, 'POST');
  assert.equal(hit.url, '/toss/webhook');
  assert.match(hit.headers['content-type'], /^application\/json/);
  assert.deepEqual(Object.keys(hit.body), ['eventType', 'createdAt', 'data']);
  assert.equal(hit.body.eventType, 'PAYMENT_STATUS_CHANGED');
  assert.match(hit.body.createdAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/);
  assert.deepEqual(hit.body.data, canceled);
  assert.equal(hit.body.data.status, 'PARTIAL_CANCELED');
  assert.match(hit.headers['tosspayments-webhook-transmission-id'], /^[0-9a-f-]{36}$/);
  assert.match(hit.headers['tosspayments-webhook-transmission-time'], /\+09:00$/);
  assert.equal(hit.headers['tosspayments-webhook-transmission-retried-count'], '0');
  assert.equal(hit.headers['tosspayments-webhook-signature'], undefined, 'payment webhooks are not signed');
  const full = (await c.cancel(p.paymentKey, { cancelReason: 'rest' })).json;
  await r.waitFor(2);
  assert.deepEqual(r.hits[1].body.data, full);
  assert.equal(r.hits.length, 2, 'the approval itself sent nothing');
  const list = await deliveries();
  assert.deepEqual(list.map((d) => [d.eventType, d.status, d.attempts.length, d.attempts[0].status]),
    [['PAYMENT_STATUS_CHANGED', 'delivered', 1, 200], ['PAYMENT_STATUS_CHANGED', 'delivered', 1, 200]]);
  assert.equal(list[0].mId, p.mId);
  assert.equal(list[0].url, r.url);
  assert.deepEqual(list[0].payload, hit.body);
});

test('the card company deleting a key (admin action) sends BILLING_DELETED {billingKey, reason}; the key is then refused', async () => {
  const r = await receiver();
  const b = await c.billing();
  const del = await emu.admin('DELETE', `/__emulator/billing-keys/${encodeURIComponent(b.billingKey)}?reason=${encodeURIComponent('카드 해지')}`);
  assert.equal(del.status, 200);
  assert.equal(del.json.alreadyDeleted, false);
  await r.waitFor(1);
  assert.equal(r.hits[0].body.eventType, 'BILLING_DELETED');
  assert.deepEqual(r.hits[0].body.data, { billingKey: b.billingKey, reason: '카드 해지' });
  assert.equal((await deliveries()).find((d) => d.id === del.json.webhookId).status, 'delivered');
  const charge = await c.approve(b.billingKey, TossClient.charge(b));
  assert.deepEqual([charge.status, charge.json.code], [400, 'ALREADY_REMOVED_BILLING_KEY']);
  // Deleting again sends nothing more; a default reason is used without one.
  assert.equal((await emu.admin('DELETE', `/__emulator/billing-keys/${encodeURIComponent(b.billingKey)}`)).json.alreadyDeleted, true);
  const b2 = await c.billing();
  await emu.admin('DELETE', `/__emulator/billing-keys/${encodeURIComponent(b2.billingKey)}`);
  await r.waitFor(2);
  assert.equal(r.hits.length, 2);
  assert.equal(typeof r.hits[1].body.data.reason, 'string');
  assert.ok(r.hits[1].body.data.reason.length > 0);
  // A merchant's own DELETE /v1/billing/{key} sends no webhook.
  const b3 = await c.billing();
  assert.equal((await c.deleteBillingKey(b3.billingKey)).status, 200);
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(r.hits.length, 2);
});

test('test card 4111111111118001: the first charge succeeds, then the card company deletes the key (BILLING_DELETED)', async () => {
  const r = await receiver();
  const b = await c.billing({ cardNumber: '4111111111118001' });
  const first = await c.approve(b.billingKey, TossClient.charge(b));
  assert.equal(first.status, 200);
  await r.waitFor(1);
  assert.deepEqual(r.hits[0].body.data, { billingKey: b.billingKey, reason: '카드사 요청에 의해 빌링키가 삭제되었습니다.' });
  const second = await c.approve(b.billingKey, TossClient.charge(b));
  assert.deepEqual([second.status, second.json.code], [400, 'ALREADY_REMOVED_BILLING_KEY']);
  assert.equal((await c.order(first.json.orderId)).json.status, 'DONE');
});

test('failed deliveries are retried on the time-scaled schedule with the same transmission id', async () => {
  const r = await receiver((hit, n) => (n < 3 ? 500 + n : 200));
  await emu.admin('POST', '/__emulator/config', { webhookTimeScale: 6000 }); // 1 min → 10 ms, 4 min → 40 ms
  const p = await c.paid();
  await c.cancel(p.paymentKey, { cancelReason: 'x' });
  await r.waitFor(3);
  const ids = r.hits.map((h) => h.headers['tosspayments-webhook-transmission-id']);
  assert.equal(new Set(ids).size, 1);
  assert.deepEqual(r.hits.map((h) => h.headers['tosspayments-webhook-transmission-retried-count']), ['0', '1', '2']);
  assert.ok(r.hits[1].at - r.hits[0].at >= 8, `first retry after ~10 ms (${r.hits[1].at - r.hits[0].at})`);
  assert.ok(r.hits[2].at - r.hits[1].at >= 35, `second retry after ~40 ms (${r.hits[2].at - r.hits[1].at})`);
  const d = await until(async () => (await deliveries()).find((x) => x.status === 'delivered'));
  assert.deepEqual(d.attempts.map((a) => a.status), [501, 502, 200]);
  assert.deepEqual(d.attempts.map((a) => a.n), [1, 2, 3]);
});

test('the full schedule on the emulator clock: 1, 4, 16, 64, 256, 1024, 4096 minutes, then failed', async () => {
  const r = await receiver(() => 500);
  const p = await c.paid();
  await c.cancel(p.paymentKey, { cancelReason: 'x' });
  const minutes = [1, 4, 16, 64, 256, 1024, 4096];
  for (let i = 0; i < minutes.length; i++) {
    await r.waitFor(i + 1);
    const d = await until(async () => (await deliveries()).find((x) => x.attempts.length === i + 1 && x.attempts[i].status === 500 && x.nextAttemptAt));
    const gap = Date.parse(d.nextAttemptAt) - Date.parse(d.attempts[i].at);
    assert.ok(gap >= minutes[i] * 60000 && gap < minutes[i] * 60000 + 1000, `retry ${i + 1} after ${gap} ms`);
    assert.equal(d.status, 'pending');
    // Not before it is due …
    await emu.admin('POST', '/__emulator/clock', { advanceMs: minutes[i] * 60000 - 5000 });
    await new Promise((res) => setTimeout(res, 30));
    assert.equal(r.hits.length, i + 1, `retry ${i + 1} not yet due`);
    // … and at once when the clock reaches it.
    await emu.admin('POST', '/__emulator/clock', { advanceMs: 6000 });
  }
  await r.waitFor(8);
  const d = await until(async () => (await deliveries()).find((x) => x.status === 'failed'));
  assert.equal(d.attempts.length, 8);
  assert.equal(d.nextAttemptAt, null);
  await emu.admin('POST', '/__emulator/clock', { advanceMs: 10 * 24 * 3600 * 1000 });
  await new Promise((res) => setTimeout(res, 50));
  assert.equal(r.hits.length, 8, 'no ninth attempt');
});

test('a receiver that does not answer in time (webhookTimeoutMs) or cannot be reached counts as a failure', async () => {
  const r = await receiver((hit, n) => (n === 1 ? null : 200));
  await emu.admin('POST', '/__emulator/config', { webhookTimeoutMs: 200, webhookTimeScale: 60000 });
  const p = await c.paid();
  await c.cancel(p.paymentKey, { cancelReason: 'x' });
  const d = await until(async () => (await deliveries()).find((x) => x.status === 'delivered'));
  assert.match(d.attempts[0].error, /timeout/);
  assert.equal(d.attempts[0].status, null);
  assert.ok(d.attempts[0].durationMs >= 190);
  assert.equal(d.attempts[1].status, 200);

  const closed = await new Promise((res) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const port = s.address().port; s.close(() => res(port)); }); });
  await emu.admin('POST', '/__emulator/config', { webhookUrl: `http://127.0.0.1:${closed}/hook`, webhookTimeScale: 1 });
  const q = await c.paid();
  await c.cancel(q.paymentKey, { cancelReason: 'x' });
  const e = await until(async () => (await deliveries('?status=pending')).find((x) => x.attempts.length === 1 && x.attempts[0].error));
  assert.match(e.attempts[0].error, /ECONNREFUSED/);
});

test('without a webhook URL events are still recorded (status noEndpoint); the list filters by eventType and status', async () => {
  const p = await c.paid();
  await c.cancel(p.paymentKey, { cancelReason: 'x' });
  const b = await c.billing();
  await emu.admin('DELETE', `/__emulator/billing-keys/${encodeURIComponent(b.billingKey)}`);
  const all = await deliveries();
  assert.deepEqual(all.map((d) => [d.eventType, d.status, d.url, d.attempts.length]),
    [['PAYMENT_STATUS_CHANGED', 'noEndpoint', null, 0], ['BILLING_DELETED', 'noEndpoint', null, 0]]);
  assert.equal((await deliveries('?eventType=BILLING_DELETED')).length, 1);
  assert.equal((await deliveries('?status=delivered')).length, 0);
  assert.deepEqual((await emu.admin('DELETE', '/__emulator/webhooks')).json, { deleted: 'all' });
  assert.deepEqual(await deliveries(), []);
});

test('the webhook URL must be an http URL on the loopback interface', async () => {
  for (const webhookUrl of ['http://example.org/hook', 'https://127.0.0.1/hook', 'not a url', 'http://10.0.0.1/x', 5]) {
    const r = await emu.admin('POST', '/__emulator/config', { webhookUrl });
    assert.equal(r.status, 400, String(webhookUrl));
  }
  for (const webhookUrl of ['http://localhost:9/x', 'http://127.0.0.1:9/x', 'http://[::1]:9/x', null]) {
    assert.equal((await emu.admin('POST', '/__emulator/config', { webhookUrl })).status, 200, String(webhookUrl));
  }
  for (const bad of [{ webhookTimeScale: 0 }, { webhookTimeScale: -1 }, { webhookTimeoutMs: 0 }]) {
    assert.equal((await emu.admin('POST', '/__emulator/config', bad)).status, 400, JSON.stringify(bad));
  }
});
