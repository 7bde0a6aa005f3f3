// The TCP listener's web configuration (Prometheus exporter-toolkit's
// web-config.yml): a bad file is one clear error; with TLS and basic auth a
// real daemon serves /metrics only over TLS and only to a right password, a
// client certificate where asked; without it, the start says once that TCP
// clients see everything.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, expect, test } from 'vitest';
import WebSocket from 'ws';
import { readWebConfig } from '../protocol/web-config.js';
import { tcpGet } from './helpers/api-client.js';
import { TestDaemon } from './helpers/daemon.js';
import { scratchDir } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';

const dir = scratchDir('web-config');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A CA, and a certificate it signed for `name` (with 127.0.0.1 as its address). */
function certificate(name: string, ca?: { cert: string; key: string }): { cert: string; key: string } {
  const [cert, key] = [path.join(dir, `${name}.crt`), path.join(dir, `${name}.key`)];
  const subject = ['-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'];
  if (!ca) execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-keyout', key, '-out', cert, ...subject], { stdio: 'ignore' });
  else {
    const csr = path.join(dir, `${name}.csr`);
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, ...subject], { stdio: 'ignore' });
    execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-out', cert, '-copy_extensions', 'copy'], { stdio: 'ignore' });
  }
  return { cert, key };
}

function webConfig(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

const HASH = bcrypt.hashSync('s3cret', 10);

test('a bad web configuration is one line that names what is wrong', () => {
  const server = certificate('bad-config-server');
  const cases: Array<[string, RegExp]> = [
    ['tls_server_config: {cert_file: a.crt}', /tls_server_config\.key_file: /],
    ['tls_server_config: {cert_file: missing.crt, key_file: missing.key}', /tls_server_config\.cert_file: ENOENT/],
    [`tls_server_config: {cert_file: ${server.cert}, key_file: ${server.cert}}`, /tls_server_config: /],
    [`tls_server_config: {cert_file: ${server.cert}, key_file: ${server.key}, client_auth_type: RequireAndVerifyClientCert}`, /client_ca_file: needed with client_auth_type RequireAndVerifyClientCert/],
    [`tls_server_config: {cert_file: ${server.cert}, key_file: ${server.key}, min_version: TLS14}`, /min_version: /],
    [`tls_server_config: {cert_file: ${server.cert}, key_file: ${server.key}, cipher_suites: [TLS_AES_128_GCM_SHA256]}`, /tls_server_config: 'cipher_suites' is not supported by netacct/],
    ['basic_auth_users: {alice: plaintext}', /basic_auth_users\.alice: must be a bcrypt hash/],
    [`basic_auth_users: {alice: '${bcrypt.hashSync('x', 4).replace('$04$', '$03$')}'}`, /basic_auth_users\.alice: must be a bcrypt hash of cost 4 to 14/],
    [`basic_auth_users: {alice: '${bcrypt.hashSync('x', 4).replace('$04$', '$15$')}'}`, /basic_auth_users\.alice: must be a bcrypt hash of cost 4 to 14/],
    ['basic_auth_users: {}', /basic_auth_users: names no user/],
    ['http_server_config: {http2: true}', /'http_server_config' is not supported by netacct/],
    ['basic_auth_users: {a: x}\nbasic_auth_users: {b: y}', /web configuration .*: .*(unique|duplicate)/i],
    ['[1, 2', /web configuration .*: /],
  ];
  for (const [text, error] of cases) expect(() => readWebConfig(webConfig('bad.yml', text)), text).toThrow(error);
  // Paths relative to the file's directory, as the toolkit has them.
  const good = readWebConfig(webConfig('good.yml', `tls_server_config:\n  cert_file: ${path.basename(server.cert)}\n  key_file: ${path.basename(server.key)}\nbasic_auth_users:\n  alice: ${HASH}\n`));
  expect(good.tls?.server.requestCert).toBe(false);
  expect([...good.users!.keys()]).toEqual(['alice']);
});

function httpsGet(port: number, options: { ca: string; auth?: string; cert?: { cert: string; key: string } }): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = https.get(
      {
        host: '127.0.0.1',
        port,
        path: '/metrics',
        ca: fs.readFileSync(options.ca),
        cert: options.cert && fs.readFileSync(options.cert.cert),
        key: options.cert && fs.readFileSync(options.cert.key),
        headers: options.auth ? { Authorization: `Basic ${Buffer.from(options.auth).toString('base64')}` } : {},
        agent: false,
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, text }));
      },
    );
    request.on('error', reject);
  });
}

describeWithBpf('TLS and basic auth on the TCP listener (real daemon)', () => {
  let daemon: TestDaemon;
  let server: { cert: string; key: string };
  beforeAll(async () => {
    server = certificate('server');
    const file = webConfig('web.yml', `tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: ${HASH}\n`);
    daemon = await TestDaemon.start(['--listen', '127.0.0.1:0', '--web-config', file]);
  });
  afterAll(async () => {
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  test('/metrics over TLS with the right password; 401 without or with a wrong one; plain HTTP gets nothing', async () => {
    const port = daemon.tcpPort;
    const none = await httpsGet(port, { ca: server.cert });
    expect(none.status).toBe(401);
    expect((await httpsGet(port, { ca: server.cert, auth: 'prometheus:wrong' })).status).toBe(401);
    expect((await httpsGet(port, { ca: server.cert, auth: 'nobody:s3cret' })).status).toBe(401);
    const right = await httpsGet(port, { ca: server.cert, auth: 'prometheus:s3cret' });
    expect(right.status).toBe(200);
    expect(right.text).toMatch(/^netacct_build_info/m);
    await expect(tcpGet(port, '/metrics')).rejects.toThrow(); // no HTTP answer to plain text on a TLS port
    expect(daemon.log).not.toMatch(/has no basic auth/);
  });

  test('a stream needs the password too: 401 without it, 101 with it', async () => {
    const upgrade = (auth?: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://127.0.0.1:${daemon.tcpPort}/v1/stream`, {
          ca: fs.readFileSync(server.cert),
          headers: auth ? { Authorization: `Basic ${Buffer.from(auth).toString('base64')}` } : {},
        });
        ws.once('open', () => {
          ws.close();
          resolve(101);
        });
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode!));
        ws.once('error', (err) => (err.message.includes('Unexpected server response') ? undefined : reject(err)));
      });
    expect(await upgrade()).toBe(401);
    expect(await upgrade('prometheus:wrong')).toBe(401);
    expect(await upgrade('prometheus:s3cret')).toBe(101);
  });

  // A scrape whose password passed before is answered while the guessers hold loopback's one password check: remembered, no bcrypt.
  test('password guessers (20 at once, from loopback) get 401 or 429, while a scrape whose password passed is answered', async () => {
    const guesses = Array.from({ length: 20 }, (_, i) => httpsGet(daemon.tcpPort, { ca: server.cert, auth: `prometheus:guess${i}` }));
    const scrape = await httpsGet(daemon.tcpPort, { ca: server.cert, auth: 'prometheus:s3cret' });
    expect(scrape.status).toBe(200);
    const statuses = (await Promise.all(guesses)).map((answer) => answer.status);
    expect(statuses.every((status) => status === 401 || status === 429), String(statuses)).toBe(true);
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThan(10); // one check at a time for all of loopback
  });

  test('a TLS client gone before its handshake, or after its answer, gives its place back at once (not at the timeout)', async () => {
    for (let i = 0; i < 40; i++) {
      await new Promise<void>((resolve) => {
        const socket = net.connect(daemon.tcpPort, '127.0.0.1', () => socket.destroy());
        socket.once('close', () => resolve());
      });
      expect((await httpsGet(daemon.tcpPort, { ca: server.cert, auth: 'prometheus:s3cret' })).status).toBe(200); // 80 connections: more than loopback's 32
    }
  });

  test('TLS connections that open and close in a loop are charged to their client: past its share, refused before the handshake', async () => {
    // 8 loops at once (within the 32 connections loopback may hold), 400 connections each: 4.8 s of handshakes charged.
    const flap = async (): Promise<void> => {
      for (let i = 0; i < 400; i++) {
        await new Promise<void>((resolve) => {
          const socket = net.connect(daemon.tcpPort, '127.0.0.1', () => socket.destroy());
          socket.once('close', () => resolve());
          socket.once('error', () => {});
        });
      }
    };
    await Promise.all(Array.from({ length: 8 }, flap));
    await daemon.waitForLog(/refused a TLS connection of loopback: its share of the daemon's time is spent/);
    await new Promise((resolve) => setTimeout(resolve, 5000)); // the share refills (250 ms a second) for the next tests
  });

  test('SIGHUP reads the file again: a revoked password stops at once (remembered or not), a new one works; a bad file keeps the running one', async () => {
    const auth = (password: string) => httpsGet(daemon.tcpPort, { ca: server.cert, auth: `prometheus:${password}` });
    expect((await auth('s3cret')).status).toBe(200); // remembered from here on
    const hangup = async (text: string, logged: RegExp): Promise<void> => {
      webConfig('web.yml', text);
      const before = daemon.log.length;
      daemon.child.kill('SIGHUP');
      for (let i = 0; i < 50 && !logged.test(daemon.log.slice(before)); i++) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(daemon.log.slice(before)).toMatch(logged);
    };
    await hangup(`tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: ${bcrypt.hashSync('n3w', 4)}\n`, /SIGHUP: configuration reloaded/);
    expect((await auth('s3cret')).status).toBe(401);
    expect((await auth('n3w')).status).toBe(200);
    await hangup('basic_auth_users: {prometheus: plaintext}', /SIGHUP: web configuration .*must be a bcrypt hash.*; keeping the running web configuration/);
    expect((await auth('n3w')).status).toBe(200);
    // Back to the first, for the tests after this one.
    await hangup(`tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: ${HASH}\n`, /SIGHUP: configuration reloaded/);
    expect((await auth('s3cret')).status).toBe(200);
    expect(daemon.log).not.toMatch(/changes only on restart/); // settings compared by value (listenClientNetworks is a list)
  });

  test('50 scrapes one after another, each answered (the time a remembered password takes, printed)', async () => {
    const started = performance.now();
    for (let i = 0; i < 50; i++) expect((await httpsGet(daemon.tcpPort, { ca: server.cert, auth: 'prometheus:s3cret' })).status).toBe(200);
    const perScrape = (performance.now() - started) / 50;
    console.log(`a remembered password: ${perScrape.toFixed(1)} ms a scrape (a bcrypt at cost 10 is ~80 ms)`);
  });
});

describeWithBpf('client certificates (real daemon)', () => {
  test('RequireAndVerifyClientCert: a certificate the CA signed gets in, none or a stranger does not', async () => {
    const ca = certificate('ca');
    const server = certificate('mtls-server', ca);
    const client = certificate('client', ca);
    const stranger = certificate('stranger');
    const file = webConfig('mtls.yml', `tls_server_config:\n  cert_file: mtls-server.crt\n  key_file: mtls-server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n`);
    const daemon = await TestDaemon.start(['--listen', '127.0.0.1:0', '--web-config', file]);
    try {
      expect((await httpsGet(daemon.tcpPort, { ca: ca.cert, cert: client })).status).toBe(200);
      await expect(httpsGet(daemon.tcpPort, { ca: ca.cert })).rejects.toThrow();
      await expect(httpsGet(daemon.tcpPort, { ca: ca.cert, cert: stranger })).rejects.toThrow();
      expect(daemon.log).toMatch(/has no basic auth .*: whoever can connect to it sees every process/); // TLS without users: still said
    } finally {
      await daemon.stop();
    }
  });

  test('without a web configuration, the start says once that TCP clients see everything', async () => {
    const daemon = await TestDaemon.start(['--listen', '127.0.0.1:0']);
    try {
      expect(daemon.log.match(/has no basic auth/g)).toHaveLength(1);
      expect(daemon.log).toMatch(/on loopback: every local user/);
    } finally {
      await daemon.stop();
    }
  });
});
