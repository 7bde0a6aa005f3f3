// The live web page in a real headless Chromium (Debian's, driven by
// playwright-core): the row of a process that makes traffic appears, its
// rate rises, columns sort, nothing is loaded from outside the daemon, and
// a screenshot is kept in test-artifacts/.
import fs from 'node:fs';
import path from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { TestDaemon } from './helpers/daemon.js';
import { fixture, scratchDir } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(import.meta.dirname, '..', 'test-artifacts');

describeWithBpf('live web page (real daemon, real Chromium)', () => {
  let daemon: TestDaemon;
  let browser: Browser;
  beforeAll(async () => {
    expect(fs.existsSync(CHROMIUM), `${CHROMIUM} (Debian package chromium) must be installed`).toBe(true);
    daemon = await TestDaemon.start(['--listen', '127.0.0.1:0', '--peers']);
    // Flags for a machine without network: no background connections to Google.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  test('the row of a process making traffic appears and its rate rises; columns sort; nothing from outside', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const origin = `http://127.0.0.1:${daemon.tcpPort}`;
    const foreign: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(origin) && !request.url().startsWith(`ws://127.0.0.1:${daemon.tcpPort}`)) foreign.push(request.url());
    });
    const problems: string[] = [];
    page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
    page.on('pageerror', (err) => problems.push(err.message));

    const response = await page.goto(`${origin}/`);
    expect(response!.status()).toBe(200);
    expect(response!.headers()['content-security-policy']).toContain("connect-src 'self'");
    await expect.poll(() => page.textContent('#status'), { timeout: 10_000 }).toMatch(/^live/);

    // About 1,000 UDP datagrams of 100 bytes a second, sent and received.
    const busy = await TrafficChild.start('interactive');
    let sending = true;
    const load = (async () => {
      while (sending) {
        await busy.exchange(100);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    try {
      const row = page.locator(`tr[data-pid="${busy.pid}"]`);
      await row.waitFor({ timeout: 10_000 });
      const sendRate = async (): Promise<number> => Number(await row.locator('td.send-rate').getAttribute('data-value'));
      // At most 100,000 B/s (less with the time the exchanges take): rising from nothing.
      await expect.poll(sendRate, { timeout: 10_000 }).toBeGreaterThan(30_000);
      expect(await sendRate()).toBeLessThanOrEqual(110_000);
      expect(await row.locator('td').nth(1).textContent()).toBe('traffic');

      // Sorting: by PID ascending, then descending.
      await page.click('th[data-column="pid"]');
      const pids = async (): Promise<number[]> => (await page.locator('tr[data-pid]').evaluateAll((rows) => rows.map((r) => Number((r as HTMLElement).dataset.pid))));
      const descending = await pids();
      expect(descending).toEqual([...descending].sort((a, b) => b - a));
      await page.click('th[data-column="pid"]');
      const ascending = await pids();
      expect(ascending).toEqual([...ascending].sort((a, b) => a - b));
      await page.click('th[data-column="sendRate"]');

      // The chart has had a few points by now; keep a picture for people.
      await page.waitForTimeout(3000);
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'web-page-processes.png') });
      await page.click('button[data-view="cgroups"]');
      await expect.poll(() => page.locator('tbody tr').count()).toBeGreaterThan(0);
      expect(await page.locator('th').first().textContent()).toBe('Cgroup');
      await page.screenshot({ path: path.join(ARTIFACTS, 'web-page-cgroups.png') });
    } finally {
      sending = false;
      await load;
      await busy.finish();
    }
    expect(foreign).toEqual([]);
    expect(problems).toEqual([]);
  });

  test("a click on a process shows its peers, live: host:port, the local port where kept, bytes", async () => {
    const child = await TrafficChild.start('peers');
    try {
      const [p1] = child.announced.find((line) => line.startsWith('ports '))!.split(' ').slice(1).map(Number);
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      await page.goto(`http://127.0.0.1:${daemon.tcpPort}/`);
      const row = page.locator(`tr[data-pid="${child.pid}"]`);
      await row.waitFor({ timeout: 10_000 });
      await row.click();
      await expect.poll(() => page.textContent('#peers-title')).toBe(`Peers of traffic (PID ${child.pid})`);
      await expect.poll(() => page.locator('#peer-rows tbody tr').count(), { timeout: 10_000 }).toBe(9); // the scenario's rows (test/peers.test.ts)
      const cells = async (peer: string) => page.locator('#peer-rows tbody tr', { has: page.locator('td:first-child', { hasText: peer }) }).first().locator('td').allTextContents();
      expect(await cells(`127.0.0.2:${p1}`)).toEqual([`127.0.0.2:${p1}`, '–', '3.0 KiB', '1000 B', '0 B', '0 B']); // 3000 + 123 (IPv6) sent
      expect((await cells('127.0.0.3'))[1]).toBe(String(p1));
      await expect.poll(() => page.locator('tr.selected').getAttribute('data-pid')).toBe(String(child.pid));
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'web-page-peers.png'), fullPage: true });
    } finally {
      await child.finish();
    }
  });

  test('a process named like HTML is shown as text, never run as HTML', async () => {
    // A process's name is what its executable is called: anyone can choose it.
    const dir = scratchDir('web');
    const evil = path.join(dir, '<em>evil');
    fs.symlinkSync(fixture('traffic'), evil);
    const child = await TrafficChild.startFrom(evil, 'interactive');
    try {
      await child.exchange(3);
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${daemon.tcpPort}/`);
      const row = page.locator(`tr[data-pid="${child.pid}"]`);
      await row.waitFor({ timeout: 10_000 });
      expect(await row.locator('td').nth(1).textContent()).toBe('<em>evil');
      expect(await page.locator('tbody em').count()).toBe(0);
    } finally {
      await child.finish();
      fs.rmSync(dir, { recursive: true });
    }
  });
});
