#!/usr/bin/env node
// Entry point of the `netacct` command: runs the compiled CLI from dist/.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/daemon/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write("netacct: not built yet: run 'npm run build' in the package directory\n");
  process.exit(1);
}
const { main } = await import(cli.href);
process.exit(await main(process.argv.slice(2)));
