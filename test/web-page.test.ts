// The live web page in a real headless Chromium (Debian's, driven by
// playwright-core): the row of a process that makes traffic appears, its
// rate rises, columns sort, nothing is loaded from outside the daemon, and
// a screenshot is kept in test-artifacts/. The History section: the top
// talkers of the last hour from /v1/history, a band and a legend entry per
// group with its exact bytes, a click showing one group alone, checked on a
// screenshot's pixels.
import fs from 'node:fs';
import path from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { tcpGet } from './helpers/api-client.js';
import { TestDaemon } from './helpers/daemon.js';
import { fixture, scratchDir } from './helpers/fixtures.js';
import { decodePng, hexColour, pixelsOf } from './helpers/png.js';
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

  test('History: the last hour stacked by command, a band and exact bytes per group; a click shows one group alone', { timeout: 120_000 }, async () => {
    // A daemon of its own, with 1-second buckets for the last hour, whose history starts empty.
    const history = await TestDaemon.start(['--listen', '127.0.0.1:0', '--history-tiers', '1s:1h,10s:1d,60s:7d']);
    const dir = scratchDir('web-history');
    const children: TrafficChild[] = [];
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const problems: string[] = [];
    page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
    page.on('pageerror', (err) => problems.push(err.message));
    try {
      // Two commands (the second named like HTML), each N UDP/IPv4 exchanges of 100 bytes: 200 N bytes, sent and received.
      const made = [
        { command: 'nahist-alpha', exchanges: 3000 },
        { command: '<i>nahist-b', exchanges: 1500 },
      ].map((group) => ({ ...group, bytes: group.exchanges * 200 }));
      for (const group of made) {
        const executable = path.join(dir, group.command);
        fs.symlinkSync(fixture('traffic'), executable);
        const child = await TrafficChild.startFrom(executable, 'interactive');
        children.push(child);
        await child.exchange(group.exchanges);
      }
      // Until the history holds all of it (each second's bucket is written after it ends).
      const recorded = async (): Promise<number[]> => {
        const answer = await tcpGet(history.tcpPort, '/v1/history?from=-1h&by=command&limit=1000');
        expect(answer.status).toBe(200);
        const groups = JSON.parse(answer.text).groups as Array<{ command: string; total: { bytes: number } }>;
        return made.map((group) => groups.find((g) => g.command === group.command)?.total.bytes ?? 0);
      };
      await expect.poll(recorded, { timeout: 20_000, interval: 500 }).toEqual(made.map((group) => group.bytes));

      await page.goto(`http://127.0.0.1:${history.tcpPort}/`);
      // Another range first, then the last hour.
      await page.click('#history button[data-range="7d"]');
      await expect.poll(() => page.textContent('#history-status'), { timeout: 10_000 }).toMatch(/^(No traffic recorded in the last week yet\. )?Last week by command, bytes per 56 min step/);
      await page.click('#history button[data-range="1h"]');
      expect(await page.getAttribute('#history button[data-range="1h"]', 'aria-pressed')).toBe('true');
      await expect.poll(() => page.textContent('#history-status'), { timeout: 10_000 }).toMatch(/^Last hour by command, bytes per 20 s step \(the 10s tier\)/);

      const legend = async () =>
        page.locator('#history-legend li').evaluateAll((items) =>
          items.map((li) => ({
            index: (li as HTMLElement).dataset.index,
            name: li.querySelector('.name')!.textContent,
            total: li.querySelector('.bytes')!.textContent,
            bytes: Number((li.querySelector('.bytes') as HTMLElement).dataset.bytes),
            dimmed: li.classList.contains('dimmed'),
          })),
        );
      const bands = async () =>
        page.locator('#history-chart path.band').evaluateAll((paths) =>
          paths.map((band) => ({ index: band.getAttribute('data-index'), name: band.getAttribute('data-name'), fill: band.getAttribute('fill')! })),
        );
      await expect.poll(async () => (await legend()).map((entry) => entry.name), { timeout: 10_000 }).toEqual(expect.arrayContaining(made.map((group) => group.command)));
      const entries = await legend();
      const drawn = await bands();
      expect(drawn.length).toBe(entries.length); // a band per legend entry, at most 8 and the rest
      expect(entries.length).toBeLessThanOrEqual(9);
      const ours = made.map((group) => {
        const entry = entries.find((e) => e.name === group.command)!;
        // The legend's total is the exact bytes made, written out.
        expect(entry.bytes).toBe(group.bytes);
        expect(entry.total).toBe(`${group.bytes.toLocaleString('en-US')} B`);
        const band = drawn.filter((b) => b.name === group.command);
        expect(band).toHaveLength(1);
        expect(band[0]!.index).toBe(entry.index);
        return { ...group, index: entry.index!, fill: band[0]!.fill };
      });
      expect(ours[0]!.fill).not.toBe(ours[1]!.fill);
      // Names are text: the HTML-like command made no element.
      expect(await page.locator('#history i').count()).toBe(0);
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'web-history-page.png') });

      // The picture: each group's colour fills pixels of the chart, and those pixels are its band.
      const chart = page.locator('#history-chart');
      const bounds = (await chart.boundingBox())!;
      // An element's screenshot starts at the whole pixel at or before its box.
      const box = { x: Math.floor(bounds.x), y: Math.floor(bounds.y) };
      const shoot = async (name: string) => {
        const file = path.join(dir, name);
        const png = await chart.screenshot({ path: file });
        fs.mkdirSync(ARTIFACTS, { recursive: true });
        fs.copyFileSync(file, path.join(ARTIFACTS, name));
        return decodePng(png);
      };
      /** The band under a pixel of the picture (CSS pixels: the page's scale is 1). */
      const bandAt = (x: number, y: number) =>
        page.evaluate(([px, py]) => document.elementFromPoint(px!, py!)?.getAttribute('data-name') ?? null, [box.x + x + 0.5, box.y + y + 0.5]);
      const all = await shoot('web-history-all.png');
      expect(Math.abs(all.width - bounds.width)).toBeLessThanOrEqual(1);
      expect(Math.abs(all.height - bounds.height)).toBeLessThanOrEqual(1);
      const where: Array<[number, number]> = [];
      for (const group of ours) {
        const { count, points } = pixelsOf(all, hexColour(group.fill));
        expect(count, `pixels of ${group.command}'s colour ${group.fill}`).toBeGreaterThan(20);
        const middle = points[Math.floor(points.length / 2)]!;
        expect(await bandAt(...middle)).toBe(group.command);
        where.push(middle);
      }

      // A click on the first group's legend entry: its band alone.
      await page.click(`#history-legend li[data-index="${ours[0]!.index}"] button`);
      await expect.poll(async () => (await bands()).map((b) => b.name)).toEqual([ours[0]!.command]);
      expect(await page.isVisible('#history-show-all')).toBe(true);
      expect((await legend()).filter((e) => !e.dimmed).map((e) => e.name)).toEqual([ours[0]!.command]);
      const alone = await shoot('web-history-alone.png');
      expect(pixelsOf(alone, hexColour(ours[0]!.fill)).count).toBeGreaterThan(20);
      expect(pixelsOf(alone, hexColour(ours[1]!.fill)).count).toBe(0);
      // "Show all" brings every band back.
      await page.click('#history-show-all');
      await expect.poll(async () => (await bands()).length).toBe(entries.length);
      expect(await page.isVisible('#history-show-all')).toBe(false);

      // A click on the second group's band (where its colour was): it alone; a click on it again: all.
      await page.mouse.click(box.x + where[1]![0] + 0.5, box.y + where[1]![1] + 0.5);
      await expect.poll(async () => (await bands()).map((b) => b.name)).toEqual([ours[1]!.command]);
      const [x, y] = pixelsOf(await shoot('web-history-second.png'), hexColour(ours[1]!.fill)).points[0] ?? [-1, -1];
      expect(x).toBeGreaterThanOrEqual(0);
      await page.mouse.click(box.x + x + 0.5, box.y + y + 0.5);
      await expect.poll(async () => (await bands()).length).toBe(entries.length);

      // By cgroup: asked again, drawn again (both processes in one cgroup or two: at least their bytes).
      await page.selectOption('#history-by', 'cgroup');
      await expect.poll(() => page.textContent('#history-status'), { timeout: 10_000 }).toMatch(/^Last hour by cgroup, /);
      const byCgroup = await legend();
      expect(byCgroup.length).toBeGreaterThan(0);
      expect(byCgroup.reduce((sum, entry) => sum + entry.bytes, 0)).toBeGreaterThanOrEqual(made[0]!.bytes + made[1]!.bytes);
      expect(await page.locator('#history-chart path.band').count()).toBe(byCgroup.length);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
      for (const child of children) await child.finish();
      expect(await history.stop()).toBe(0);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('History: off (404) or paused (503) is a line in the section', async () => {
    const off = await TestDaemon.start(['--listen', '127.0.0.1:0', '--no-history']);
    const page = await browser.newPage();
    try {
      await page.goto(`http://127.0.0.1:${off.tcpPort}/`);
      await expect.poll(() => page.textContent('#history-status'), { timeout: 10_000 }).toMatch(/^History is off on this daemon \(history is off/);
      expect(await page.getAttribute('#history-status', 'class')).toContain('error');
      expect(await page.locator('#history-chart path.band').count()).toBe(0);
      // A paused history (its file cannot be written: a full disk) answers 503, here played by the browser.
      await page.route('**/v1/history?**', (route) =>
        route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: 'history cannot be read now: history is paused: <b>disk</b> full' }) }),
      );
      await page.click('#history button[data-range="1d"]');
      await expect.poll(() => page.textContent('#history-status'), { timeout: 10_000 }).toBe('History is paused (history cannot be read now: history is paused: <b>disk</b> full).');
      expect(await page.locator('#history-status b').count()).toBe(0);
    } finally {
      await page.close();
      expect(await off.stop()).toBe(0);
    }
  });
});
