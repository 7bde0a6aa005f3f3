// The TCP listener's web configuration file, in the format of the Prometheus
// exporters (prometheus/exporter-toolkit's web-config.yml), so that a fleet
// scrapes /metrics over the network the way it scrapes node_exporter: TLS
// (tls_server_config) and basic auth with bcrypt hashes (basic_auth_users).
// Paths are relative to the file's directory, as the toolkit has them. Keys
// netacct does not implement are errors that name them, never ignored: a
// setting that silently does nothing is a hole.
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const TLS_VERSIONS = { TLS10: 'TLSv1', TLS11: 'TLSv1.1', TLS12: 'TLSv1.2', TLS13: 'TLSv1.3' } as const;
const CLIENT_AUTH_TYPES = ['NoClientCert', 'RequestClientCert', 'RequireAnyClientCert', 'VerifyClientCertIfGiven', 'RequireAndVerifyClientCert'] as const;
/**
 * bcrypt's modular crypt format: $2a$, $2b$ or $2y$, the cost, 53 characters
 * of salt and hash. Costs 4 to 14: each step doubles a check's time, and 14
 * already takes over a second (10 is usual), in the one thread that checks.
 */
const BCRYPT = /^\$2[aby]\$(0[4-9]|1[0-4])\$[./A-Za-z0-9]{53}$/;

const TlsServerConfig = z.strictObject({
  cert_file: z.string().min(1),
  key_file: z.string().min(1),
  client_auth_type: z.enum(CLIENT_AUTH_TYPES).default('NoClientCert'),
  client_ca_file: z.string().min(1).optional(),
  min_version: z.enum(Object.keys(TLS_VERSIONS) as [keyof typeof TLS_VERSIONS]).default('TLS12'),
  max_version: z.enum(Object.keys(TLS_VERSIONS) as [keyof typeof TLS_VERSIONS]).default('TLS13'),
});

const WebConfigSchema = z.strictObject({
  tls_server_config: TlsServerConfig.optional(),
  basic_auth_users: z.record(z.string().min(1).regex(/^[^:]+$/, 'a user name has no colon'), z.string().regex(BCRYPT, 'must be a bcrypt hash of cost 4 to 14 ($2y$10$…): htpasswd -nBC 10 USER'))
    .refine((users) => Object.keys(users).length > 0, 'names no user (leave it out for no basic auth)')
    .optional(),
});

/** How TLS clients are taken (Node's TLS server options), and what is checked after the handshake. */
export interface TlsSettings {
  /** With requestCert and rejectUnauthorized (RequireAndVerifyClientCert: the handshake fails without a certificate the CA vouches for). */
  server: tls.TlsOptions;
  /** A client without a certificate is closed after the handshake (RequireAnyClientCert). */
  requireCert: boolean;
  /** A client whose certificate the CA does not vouch for is closed (VerifyClientCertIfGiven). */
  verifyIfGiven: boolean;
}

export interface WebConfig {
  tls: TlsSettings | null;
  /** User name to bcrypt hash; null: no basic auth. */
  users: Map<string, string> | null;
}

export class WebConfigError extends Error {}

export function readWebConfig(file: string): WebConfig {
  const where = `web configuration ${file}`;
  let document: unknown;
  try {
    document = parseYaml(fs.readFileSync(file, 'utf8'), { uniqueKeys: true, prettyErrors: false }) ?? {};
  } catch (err) {
    throw new WebConfigError(`${where}: ${(err as Error).message.split('\n')[0]}`);
  }
  const parsed = WebConfigSchema.safeParse(document);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path.join('.');
    if (issue.code === 'unrecognized_keys') throw new WebConfigError(`${where}: ${key ? `${key}: ` : ''}'${issue.keys.join("', '")}' is not supported by netacct`);
    throw new WebConfigError(`${where}: ${key || '(top level)'}: ${issue.message}`);
  }
  const { tls_server_config: tlsConfig, basic_auth_users: users } = parsed.data;
  const relative = (name: string): string => path.resolve(path.dirname(file), name);
  const read = (name: string, key: string): Buffer => {
    try {
      return fs.readFileSync(relative(name));
    } catch (err) {
      throw new WebConfigError(`${where}: tls_server_config.${key}: ${(err as Error).message}`);
    }
  };
  let settings: TlsSettings | null = null;
  if (tlsConfig) {
    const type = tlsConfig.client_auth_type;
    const verifies = type === 'VerifyClientCertIfGiven' || type === 'RequireAndVerifyClientCert';
    if (verifies && !tlsConfig.client_ca_file) throw new WebConfigError(`${where}: tls_server_config.client_ca_file: needed with client_auth_type ${type}`);
    if (!verifies && tlsConfig.client_ca_file) throw new WebConfigError(`${where}: tls_server_config.client_ca_file: only used with client_auth_type VerifyClientCertIfGiven or RequireAndVerifyClientCert`);
    const server: tls.TlsOptions = {
      cert: read(tlsConfig.cert_file, 'cert_file'),
      key: read(tlsConfig.key_file, 'key_file'),
      ca: tlsConfig.client_ca_file ? read(tlsConfig.client_ca_file, 'client_ca_file') : undefined,
      minVersion: TLS_VERSIONS[tlsConfig.min_version],
      maxVersion: TLS_VERSIONS[tlsConfig.max_version],
      requestCert: type !== 'NoClientCert',
      rejectUnauthorized: type === 'RequireAndVerifyClientCert',
    };
    try {
      tls.createSecureContext(server); // a key that is not the certificate's, a file that is no PEM: said now, not at the first client
    } catch (err) {
      throw new WebConfigError(`${where}: tls_server_config: ${(err as Error).message}`);
    }
    settings = {
      server,
      requireCert: type === 'RequireAnyClientCert',
      verifyIfGiven: type === 'VerifyClientCertIfGiven',
    };
  }
  return { tls: settings, users: users ? new Map(Object.entries(users)) : null };
}
