// `netacct daemon --check`: a dry run for operators and packagers. It checks
// what the daemon would need (configuration, Node.js, privileges, kernel,
// libbpf, and the kernel verifier's verdict on the BPF programs, loaded but
// never attached nor pinned) and changes nothing on the host: no socket, no
// mount, no counting.
import { printable } from '../common/printable.js';
import { type Config, groupId } from './config.js';
import { nodeVersionProblem, requiredNodeRange } from '../common/node-version.js';
import { checkPrivileges } from '../kernel/preflight.js';

export interface CheckResult {
  what: string;
  ok: boolean;
  detail: string;
}

/** Runs every check (a failed one does not stop the others) and prints one line each. */
export async function selfCheck(config: Config, configSource: string, out: NodeJS.WritableStream): Promise<boolean> {
  const results: CheckResult[] = [];
  const check = async (what: string, run: () => string | Promise<string>): Promise<void> => {
    try {
      results.push({ what, ok: true, detail: await run() });
    } catch (err) {
      results.push({ what, ok: false, detail: (err as Error).message });
    }
  };
  await check('configuration', () => `valid: ${configSource}`);
  await check('Node.js', () => {
    const problem = nodeVersionProblem(process.versions.node, requiredNodeRange());
    if (problem) throw new Error(problem);
    return `${process.versions.node} (needs ${requiredNodeRange()})`;
  });
  await check('all-processes group', () => {
    const gid = groupId(config.allProcessesGroup);
    return gid === null ? 'none (only root sees every process)' : `gid ${gid}`;
  });
  await check('privileges', () => {
    checkPrivileges();
    return 'CAP_BPF and CAP_PERFMON (or root)';
  });
  await check('libbpf', async () => {
    const { libbpfPath, native, routeLibbpfMessages } = await import('../kernel/libbpf.js'); // a missing libbpf.so.1 is this check's failure
    // Warnings only (the verifier's reasons), unless verbose: the attempts that
    // may fail, with a fallback (quietly()), say nothing.
    routeLibbpfMessages((level, message) => {
      if (level === 'warn' || config.verbose) process.stderr.write(`${printable(message)}\n`);
    });
    return `${native.majorVersion()}.${native.minorVersion()}: ${libbpfPath}`;
  });
  await check('kernel', async () => {
    // Loaded here, as kernel-counters below: it loads libbpf.so.1, and a missing one is a check's failure.
    const { chooseAttachMode, describeAttachMode, probeKernel } = await import('../kernel/attach-mode.js');
    const features = probeKernel();
    return `counting with ${describeAttachMode(chooseAttachMode(config.attachMode, features), features)}; BTF`;
  });
  await check('BPF programs', async () => {
    const { loadNetacctObject } = await import('../kernel/kernel-counters.js'); // loads libbpf.so.1: a missing one is this check's failure
    const { chooseAttachMode, probeKernel } = await import('../kernel/attach-mode.js');
    const object = loadNetacctObject({
      objectPath: config.bpfObject,
      pinDir: null,
      slots: config.slots,
      overflowCapacity: config.overflowCapacity,
      unattributedCapacity: config.unattributedCapacity,
      shares: { perUserPercent: config.mapSharePerUserPercent, othersPercent: config.mapShareOthersPercent },
      exitedCapacity: config.exitedCapacity,
      threadCapacity: config.threads ? config.threadCapacity : 0,
      threadOverflowCapacity: config.threadOverflowCapacity,
      peerCapacity: config.peers ? config.peerCapacity : 0,
      attachMode: chooseAttachMode(config.attachMode, probeKernel()),
    });
    object.close();
    return `${config.bpfObject}: accepted by the kernel's verifier (loaded, not attached)`;
  });
  await check('atop before 2.10', async () => {
    if (!config.netatopModule) return 'not served (netatopModule: false)';
    const { netatopModuleObstacle } = await import('../serve/netatop-module.js'); // loads libbpf.so.1, as above
    const obstacle = netatopModuleObstacle({ semaphoreKey: config.netatopSemaphoreKey });
    if (obstacle) return `not served: ${obstacle} (the daemon starts without it)`;
    const { NetatopSockopt } = await import('../kernel/netatop-sockopt.js');
    const hook = NetatopSockopt.check(config.netatopBpfObject);
    return `served as the netatop module and netatopd did (${config.netatopExitFile}); ${config.netatopBpfObject}: accepted by the verifier, with ${hook} on getsockopt`;
  });
  for (const { what, ok, detail } of results) out.write(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${detail}\n`);
  const passed = results.every((r) => r.ok);
  out.write(passed ? 'netacct daemon can start with this configuration\n' : 'netacct daemon would not start: see FAIL above\n');
  return passed;
}
