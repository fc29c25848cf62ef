// Tests: the merchant registry — --merchant, --merchants FILE, the admin API
// (POST/GET/DELETE /__emulator/merchants), conflicts, reset, the opt-in
// permissive mode (--permissive-keys, config permissiveKeys), and the keys the
// project's scripts register (test/scripts/merchants.json).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { startEmulator, basic, TossClient } = require('../support/harness');

const RUN = path.join(__dirname, '..', 'run');
const PROJECT_MERCHANTS = path.join(__dirname, '..', '..', 'scripts', 'merchants.json');

async function withEmulator(args, fn) {
  const emu = await startEmulator(['--port', '0', ...args]);
  try {
    return await fn(emu);
  } finally {
    await emu.stop();
  }
}

const probe = (emu, key) => emu.request({ path: '/v1/payments/none', headers: { Authorization: basic(key) } });

test('--merchant SECRET[,CLIENT[,MID[,NAME]]] registers merchants; unknown secret keys get 401 UNAUTHORIZED_KEY', async () => {
  await withEmulator(['--merchant', 'test_sk_flagOne', '--merchant', 'test_sk_flagTwo,test_ck_otherClient,shop2mid,두 번째 상점, 본점'], async (emu) => {
    assert.equal((await probe(emu, 'test_sk_flagOne')).status, 404);
    assert.equal((await probe(emu, 'test_sk_flagTwo')).status, 404);
    const typo = await probe(emu, 'test_sk_flagOnee');
    assert.deepEqual([typo.status, typo.json.code], [401, 'UNAUTHORIZED_KEY']);
    const list = (await emu.admin('GET', '/__emulator/merchants')).json;
    const two = list.find((m) => m.secretKey === 'test_sk_flagTwo');
    assert.deepEqual(two, { secretKey: 'test_sk_flagTwo', clientKey: 'test_ck_otherClient', mId: 'shop2mid', name: '두 번째 상점, 본점', source: 'startup' });
    const one = list.find((m) => m.secretKey === 'test_sk_flagOne');
    assert.equal(one.clientKey, 'test_ck_flagOne', 'the client key defaults to the _ck_ twin');
    assert.match(one.mId, /^test[0-9a-z]{10}$/);
    // The mId shows in the objects.
    const b = await new TossClient(emu, 'test_sk_flagTwo', { register: false }).billing();
    assert.equal(b.mId, 'shop2mid');
    // A client key where a secret key belongs is still 400 INVALID_API_KEY; a malformed key 401.
    assert.equal((await probe(emu, 'test_ck_otherClient')).json.code, 'INVALID_API_KEY');
    assert.equal((await probe(emu, 'zz_not_a_toss_key_0000004')).json.code, 'UNAUTHORIZED_KEY');
  });
});

test('--merchants FILE (a JSON array or {merchants: [...]}); the project file registers every key the scripts use', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emu-merchants-'));
  const file = path.join(dir, 'm.json');
  fs.writeFileSync(file, JSON.stringify([{ secretKey: 'live_sk_fileOne', name: '라이브 상점' }]));
  await withEmulator(['--merchants', file, '--merchants', PROJECT_MERCHANTS], async (emu) => {
    assert.equal((await probe(emu, 'live_sk_fileOne')).status, 404);
    for (const key of ['test_sk_regress0000000000000001', 'test_sk_regressOther00000002', 'test_sk_tap000000000000000001',
      'test_sk_tossBillingDemo0000000001', 'test_sk_bench0000000000000001', 'test_sk_benchEmulator0000000001']) {
      assert.equal((await probe(emu, key)).status, 404, key);
    }
    // The regression suite's deliberately bad keys keep their answers.
    assert.equal((await probe(emu, 'test_ck_regressClient0000003')).json.code, 'INVALID_API_KEY');
    assert.equal((await probe(emu, 'zz_not_a_toss_key_0000004')).json.code, 'UNAUTHORIZED_KEY');
    // The demo's client key opens the window for the demo's merchant.
    const q = new URLSearchParams({ clientKey: 'test_ck_tossBillingDemo0000000001', customerKey: 'demo-1', successUrl: 'https://shop.example/ok', failUrl: 'https://shop.example/fail' });
    const page = await emu.request({ path: `/billing-auth?${q}` });
    assert.equal(page.status, 200);
    assert.ok(page.text.includes('토스 프라임 (데모)'));
  });
  fs.writeFileSync(file, JSON.stringify({ merchants: [{ secretKey: 'test_ck_notSecret' }] }));
  const bad = spawnSync(process.execPath, [RUN, '--port', '0', '--merchants', file], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /merchant 1: secretKey "test_ck_notSecret" is not/);
  const missing = spawnSync(process.execPath, [RUN, '--port', '0', '--merchants', path.join(dir, 'nope.json')], { encoding: 'utf8' });
  assert.equal(missing.status, 2);
  const conflict = spawnSync(process.execPath, [RUN, '--port', '0', '--merchant', 'test_sk_a,test_ck_same', '--merchant', 'test_sk_b,test_ck_same'], { encoding: 'utf8' });
  assert.equal(conflict.status, 2);
  assert.match(conflict.stderr, /clientKey test_ck_same already belongs to test_sk_a/);
  fs.rmSync(dir, { recursive: true });
});

test('POST /__emulator/merchants registers (one or an array, idempotent), refuses conflicts, DELETE forgets; reset keeps startup ones', async () => {
  await withEmulator(['--merchant', 'test_sk_boot'], async (emu) => {
    const r = await emu.admin('POST', '/__emulator/merchants', { secretKey: 'test_sk_adm1', clientKey: 'test_ck_adm1client', mId: 'adm1', name: '관리 상점' });
    assert.deepEqual(r.json, { secretKey: 'test_sk_adm1', clientKey: 'test_ck_adm1client', mId: 'adm1', name: '관리 상점', source: 'admin', created: true });
    assert.equal((await emu.admin('POST', '/__emulator/merchants', { secretKey: 'test_sk_adm1', clientKey: 'test_ck_adm1client', mId: 'adm1', name: '관리 상점' })).json.created, false);
    const many = await emu.admin('POST', '/__emulator/merchants', [{ secretKey: 'test_sk_adm2' }, { secretKey: 'test_sk_adm3' }]);
    assert.deepEqual(many.json.map((m) => m.created), [true, true]);
    for (const [body, status] of [[{ secretKey: 'test_sk_adm1', name: '다른 이름' }, 409], [{ secretKey: 'test_sk_adm4', clientKey: 'test_ck_adm1client' }, 409],
      [{ secretKey: 'test_sk_adm5', mId: 'adm1' }, 409], [{ secretKey: 'test_ck_x' }, 400], [{ secretKey: 'test_sk_x', clientKey: 'live_ck_x' }, 400],
      [{ secretKey: 'test_sk_x', mId: 'way-too-long-mid-000' }, 400], [{ secretKey: 'test_sk_x', bogus: 1 }, 400]]) {
      assert.equal((await emu.admin('POST', '/__emulator/merchants', body)).status, status, JSON.stringify(body));
    }
    assert.equal((await probe(emu, 'test_sk_adm2')).status, 404);
    assert.deepEqual((await emu.admin('DELETE', '/__emulator/merchants/test_sk_adm2')).json, { deleted: 'test_sk_adm2' });
    assert.equal((await probe(emu, 'test_sk_adm2')).status, 401);
    assert.equal((await emu.admin('DELETE', '/__emulator/merchants/test_sk_adm2')).status, 404);
    await emu.reset();
    assert.deepEqual((await emu.admin('GET', '/__emulator/merchants')).json.map((m) => [m.secretKey, m.source]),
      [['test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R', 'builtin'], ['test_sk_boot', 'startup']]);
    assert.equal((await probe(emu, 'test_sk_adm1')).status, 401);
    assert.equal((await probe(emu, 'test_sk_boot')).status, 404);
  });
});

test('the window and the auth-key shortcut use the registry: the registered client key, not a derived one', async () => {
  await withEmulator(['--merchant', 'test_sk_win,test_ck_winClient,winmid,창 상점'], async (emu) => {
    const form = (clientKey) => new URLSearchParams({ clientKey, customerKey: 'c-1', successUrl: 'https://s.example/ok', failUrl: 'https://s.example/fail', cardNumber: '9410001234567890' }).toString();
    const post = (clientKey) => emu.request({ method: 'POST', path: '/billing-auth', body: form(clientKey), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    const ok = new URL((await post('test_ck_winClient')).headers.location);
    assert.ok(ok.searchParams.get('authKey'));
    const derivedTwin = new URL((await post('test_ck_win')).headers.location);
    assert.equal(derivedTwin.searchParams.get('code'), 'UNAUTHORIZED_KEY');
    const issued = await new TossClient(emu, 'test_sk_win', { register: false }).issue(ok.searchParams.get('authKey'), 'c-1');
    assert.equal(issued.json.mId, 'winmid');
    const ak = await emu.admin('POST', '/__emulator/auth-keys', { secretKey: 'test_sk_unknownShop', customerKey: 'c' });
    assert.deepEqual([ak.status, ak.json.code], [400, 'UNAUTHORIZED_KEY']);
  });
});

test('--permissive-keys (opt-in) makes every well-formed secret key its own merchant; config permissiveKeys switches it at run time', async () => {
  await withEmulator(['--permissive-keys'], async (emu) => {
    assert.equal((await probe(emu, 'test_sk_anything')).status, 404);
    assert.equal((await probe(emu, 'test_ck_anything')).json.code, 'INVALID_API_KEY');
    assert.equal((await probe(emu, 'garbage')).json.code, 'UNAUTHORIZED_KEY');
    const c = new TossClient(emu, 'test_sk_perm1', { register: false });
    const b = await c.billing();
    assert.equal((await c.approve(b.billingKey, TossClient.charge(b))).status, 200);
    // In permissive mode the window pairs test_ck_X with test_sk_X.
    const body = new URLSearchParams({ clientKey: 'test_ck_perm2', customerKey: 'c-2', successUrl: 'https://s.example/ok', failUrl: 'https://s.example/f', cardNumber: '9410001234567890' }).toString();
    const w = await emu.request({ method: 'POST', path: '/billing-auth', body, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    const authKey = new URL(w.headers.location).searchParams.get('authKey');
    assert.equal((await new TossClient(emu, 'test_sk_perm2', { register: false }).issue(authKey, 'c-2')).status, 200);
    assert.equal((await emu.admin('GET', '/__emulator/config')).json.permissiveKeys, true);
    await emu.admin('POST', '/__emulator/config', { permissiveKeys: false });
    assert.equal((await probe(emu, 'test_sk_anything')).status, 401);
    await emu.reset();
    assert.equal((await probe(emu, 'test_sk_anything')).status, 404, 'reset restores the startup setting');
  });
  await withEmulator([], async (emu) => {
    assert.equal((await emu.admin('GET', '/__emulator/config')).json.permissiveKeys, false, 'strict by default');
    assert.equal((await emu.admin('POST', '/__emulator/config', { permissiveKeys: 'yes' })).status, 400);
    await emu.admin('POST', '/__emulator/config', { permissiveKeys: true });
    assert.equal((await probe(emu, 'test_sk_anything')).status, 404);
  });
});
