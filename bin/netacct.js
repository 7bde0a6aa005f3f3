#!/usr/bin/env -S node --max-semi-space-size=1 --optimize-for-size
// Entry point of the `netacct` command: runs the compiled CLI from dist/.
// A 1 MiB young generation keeps the daemon's memory small (measured in
// bench/daemon-resources: with 16 MiB, V8 held 30 MiB more for 10,000
// processes); --optimize-for-size saves ~1 MiB more, answers no slower.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write("netacct: not built yet: run 'npm run build' in the package directory\n");
  process.exit(1);
}
// Before anything else: an older Node.js would fail later in obscure ways.
const { nodeVersionProblem, requiredNodeRange } = await import(new URL('../dist/daemon/common/node-version.js', import.meta.url).href);
const problem = nodeVersionProblem(process.versions.node, requiredNodeRange());
if (problem) {
  process.stderr.write(`netacct: ${problem}\n`);
  process.exit(1);
}
const { main } = await import(cli.href);
process.exit(await main(process.argv.slice(2)));
