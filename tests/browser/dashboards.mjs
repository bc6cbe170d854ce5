// Drives the ordersaga dashboards in headless Chromium (Debian's `chromium`, through playwright-core)
// against a running server that holds the data described by the expectations.
//
//   node tests/browser/dashboards.mjs <base-url> <screenshot-dir> '<expectations JSON>'
//
// expectations: {"failed":[orderId…],"confirmed":[orderId…],"stuck":orderId,"deadLetterReason":"…",
//                "sku":"SKU-…"}
// Checks that every page renders with the test's data, that filters narrow the tables, that the CSV link
// downloads the audit, that live refresh updates a value without reloading the page, and that no page
// logs a console error. Prints one line per check; exits 1 if any failed.

import { mkdtemp, readFile, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, outDir, expectationsJson] = process.argv.slice(2);
if (!base || !outDir || !expectationsJson) {
  console.error('usage: node dashboards.mjs <base-url> <screenshot-dir> <expectations-json>');
  process.exit(2);
}
const expected = JSON.parse(expectationsJson);
const executablePath = process.env.ORDERSAGA_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 15_000;

const failures = [];
let passed = 0;
function check(condition, what) {
  if (condition) {
    passed += 1;
    console.log(`ok    ${what}`);
  } else {
    failures.push(what);
    console.log(`FAIL  ${what}`);
  }
}

const consoleErrors = [];
const userDataDir = await mkdtemp(join(tmpdir(), 'ordersaga-chromium-'));
await mkdir(outDir, { recursive: true });
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: 1360, height: 900 },
  deviceScaleFactor: 1,
  acceptDownloads: true,
  colorScheme: 'light',
  timezoneId: 'UTC',
});
context.setDefaultTimeout(TIMEOUT);

const page = context.pages()[0] ?? (await context.newPage());
page.on('console', (message) => {
  if (message.type() === 'error') {
    consoleErrors.push(`${page.url()}: ${message.text()}`);
  }
});
page.on('pageerror', (error) => consoleErrors.push(`${page.url()}: uncaught ${error.message}`));
page.on('requestfailed', (request) => {
  // A download the page hands to the browser is not a failure.
  if (!request.url().includes('/export')) {
    consoleErrors.push(`request failed: ${request.url()} ${request.failure()?.errorText}`);
  }
});

async function open(path) {
  const response = await page.goto(base + path, { waitUntil: 'load' });
  check(response && response.status() === 200, `GET ${path} answers 200`);
}

async function rowIds(tableId) {
  return page.$$eval(`#${tableId} tbody tr[data-order-id]`, (rows) => rows.map((r) => r.getAttribute('data-order-id')));
}

async function shot(name) {
  const path = join(outDir, name);
  await page.screenshot({ path, fullPage: true });
  console.log(`shot  ${path}`);
}

async function placeOrder() {
  const token = await fetch(`${base}/api/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ userId: 'u-browser', roles: ['buyer'] }),
  }).then((r) => r.json());
  const response = await fetch(`${base}/api/orders`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${token.accessToken}`,
      'idempotency-key': `browser-${Date.now()}`,
    },
    body: JSON.stringify({ userId: 'u-browser', items: [{ skuId: expected.sku, quantity: 1, price: 1.5 }] }),
  });
  return response.status;
}

try {
  // The release audit: every failed order, none of the confirmed ones, charts, then filters.
  await open('/dashboard?refresh=0');
  let ids = await rowIds('releases');
  check(expected.failed.every((id) => ids.includes(id)), 'the audit lists every failed order');
  check(expected.confirmed.every((id) => !ids.includes(id)), 'the audit lists no confirmed order');
  check((await page.locator('svg.chart').count()) === 3, 'the audit draws three charts');
  check((await page.locator('svg.chart rect.bar').count()) > 0, 'the charts have bars');
  await shot('dashboard-release-audit.png');

  const [firstFailed] = expected.failed;
  await page.fill('input[name="orderId"]', firstFailed);
  await Promise.all([page.waitForURL(/orderId=/), page.click('#filters button[type="submit"]')]);
  ids = await rowIds('releases');
  check(ids.length === 1 && ids[0] === firstFailed, 'filtering by order id leaves that order only');

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  check(download.suggestedFilename() === 'inventory-release-events.csv', 'the CSV link downloads inventory-release-events.csv');
  const csv = await readFile(await download.path(), 'utf8');
  const lines = csv.trimEnd().split('\r\n');
  check(lines[0] === 'releaseId,orderId,reservationId,reason,releasedItems,traceId,createdAt', 'the CSV starts with its header row');
  check(lines.length === 2 && lines[1].includes(firstFailed), 'the CSV holds the filtered order');

  await page.fill('input[name="orderId"]', '');
  const future = new Date(Date.now() + 3_600_000).toISOString().slice(0, 19);
  await page.fill('input[name="from"]', future);
  await Promise.all([page.waitForURL(/from=/), page.click('#filters button[type="submit"]')]);
  check((await rowIds('releases')).length === 0, 'a time range after every release empties the table');
  await Promise.all([page.waitForURL(/\/dashboard$/), page.click('#clear-filters')]);
  check((await rowIds('releases')).length === expected.failed.length, 'clearing the filters brings every release back');

  // One failed order, reached from the audit: why it failed and when its stock came back.
  await Promise.all([page.waitForURL(/\/dashboard\/sagas\//), page.click(`#releases a[href="/dashboard/sagas/${firstFailed}"]`)]);
  const story = await page.textContent('#story');
  check(/failed with PAYMENT_FAILED/.test(story), 'the saga page says why the order failed');
  check(/stock came back at/.test(story), 'the saga page says when the stock came back');
  check((await page.locator('#steps tbody tr').count()) >= 4, 'the timeline has every step');
  check((await page.textContent('#saga-state')).trim() === 'COMPENSATED', 'the saga is COMPENSATED');
  check((await page.locator('svg.chart circle').count()) >= 4, 'the waterfall marks every step');
  await shot('dashboard-saga.png');

  // The saga overview: counts, the stuck saga highlighted, search.
  await open('/dashboard/sagas?refresh=0');
  const total = Number((await page.textContent('#count-total')).replace(/\D/g, ''));
  check(total === expected.failed.length + expected.confirmed.length + 1, 'the overview counts every saga');
  check((await page.locator(`#sagas tr.stuck[data-order-id="${expected.stuck}"]`).count()) === 1, 'the stuck saga is highlighted');
  check((await page.locator('#saga-stuck.alarm').count()) === 1, 'the stuck panel raises the alarm');
  await shot('dashboard-sagas.png');
  const wanted = expected.failed[1];
  await page.fill('input[name="q"]', wanted.slice(0, 13));
  await Promise.all([page.waitForURL(/q=/), page.click('#search button[type="submit"]')]);
  ids = await rowIds('sagas');
  check(ids.length === 1 && ids[0] === wanted, 'searching a part of an order id finds that saga');
  await page.selectOption('select[name="state"]', 'COMPLETED');
  await page.fill('input[name="q"]', '');
  await Promise.all([page.waitForURL(/state=COMPLETED/), page.click('#search button[type="submit"]')]);
  ids = await rowIds('sagas');
  check(ids.length === expected.confirmed.length && expected.confirmed.every((id) => ids.includes(id)), 'the state filter lists the confirmed orders');

  // Dead letters.
  await open('/dashboard/dead-letters?refresh=0');
  const letters = await page.textContent('#dead-letters');
  check(letters.includes(expected.deadLetterReason), 'the dead letter and its reason are listed');
  check((await page.locator(`#dead-letters a[href="/dashboard/sagas/${expected.failed[0]}"]`).count()) === 1, 'the dead letter links to its order');
  await shot('dashboard-dead-letters.png');
  await page.selectOption('select[name="status"]', 'REPLAYED');
  await Promise.all([page.waitForURL(/status=REPLAYED/), page.click('#dl-filters button[type="submit"]')]);
  check(!(await page.textContent('#dead-letters')).includes(expected.deadLetterReason), 'the status filter hides DEAD letters');

  // Live refresh: a new order shows up in the counts without a reload.
  await open('/dashboard/sagas?refresh=1');
  const before = Number((await page.textContent('#count-total')).replace(/\D/g, ''));
  await page.evaluate(() => { window.sameDocument = true; });
  check((await placeOrder()) === 201, 'a new order is placed');
  const updated = await page
    .waitForFunction((n) => Number(document.getElementById('count-total').textContent.replace(/\D/g, '')) === n, before + 1, { timeout: TIMEOUT })
    .then(() => true, () => false);
  check(updated, 'live refresh shows the new saga in the counts');
  check(await page.evaluate(() => window.sameDocument === true), 'live refresh did not reload the page');
  check(Number(await page.getAttribute('body', 'data-live-refreshes')) >= 1, 'live refresh swapped the live parts');
  check(/Live · updated/.test(await page.textContent('#live-status')), 'the header says when it was updated');
  await page.click('#live-toggle');
  check(/paused/.test(await page.textContent('#live-status')), 'live refresh can be paused');

  check(consoleErrors.length === 0, `no console errors${consoleErrors.length ? `: ${consoleErrors.join(' | ')}` : ''}`);
} catch (error) {
  failures.push(`the run stopped: ${error.stack || error}`);
  console.log(`FAIL  the run stopped: ${error.stack || error}`);
  if (consoleErrors.length) {
    console.log(`console errors: ${consoleErrors.join(' | ')}`);
  }
} finally {
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}

console.log(`${passed} checks passed, ${failures.length} failed`);
process.exit(failures.length === 0 ? 0 : 1);
