// Names for the containers cgroups hold: the cgroup's path says where to look
// (cgroup-layout.ts), the runtime's own files say what it is called
// (runtimes.ts). Asked once per new cgroup (the caller caches the answer with
// the cgroup's name and drops it with the cgroup), within a budget of reading:
// each file read costs a token per MiB begun, so containers made by the
// thousand cost a bounded amount of reading, and cgroups named like
// containers that no runtime knows cost nothing (only files that exist are
// charged). Past the budget a cgroup is named later, when asked again.
import { cgroupLayout } from './cgroup-layout.js';
import { type ContainerName, NotYet, RuntimeState, type RuntimeStateRoots } from './runtimes.js';
import { StateFileError } from './state-files.js';

/** Tokens a second, on average (a token: a state file, or a MiB of one)… */
const TOKENS_PER_SECOND = 50;
/** …and at once: a node's containers named when the daemon starts. */
const TOKEN_BURST = 500;
const MIB = 1024 * 1024;

/** Not looked up yet: the budget was spent, or the lookup failed for a reason that may pass (out of descriptors). Asked again, it may be. */
export const LATER = Symbol('later');

/** Thrown through the runtime's reader when the budget is spent: the lookup stops there. */
class BudgetSpent extends Error {}

export class ContainerNames {
  private readonly state: RuntimeState;
  private tokens = TOKEN_BURST;
  private refilledAtMs: number;

  /** `onError`: a state file that may not be read (a link, not root's, too large, not JSON) or a failed read; that cgroup is named from its path. */
  constructor(
    roots: RuntimeStateRoots,
    private readonly onError: (message: string) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.state = new RuntimeState(roots, (bytes) => this.charge(1 + Math.floor(bytes / MIB)));
    this.refilledAtMs = now();
  }

  /**
   * The container in the cgroup at `cgroupPath`: named by its runtime; for a
   * pod's container whose runtime says nothing, its pod's uid and QoS class
   * from kubelet's layout (root's tree) alone; null for none; LATER when it
   * could not be looked up now.
   */
  nameOf(cgroupPath: string): ContainerName | null | typeof LATER {
    // crun (Podman's and often CRI-O's runtime) puts the processes in a "container" cgroup inside the container's.
    const outer = cgroupPath.endsWith('/container') ? cgroupPath.slice(0, -'/container'.length) : null;
    const outerLayout = outer === null ? null : cgroupLayout(outer);
    const path = outerLayout ? outer! : cgroupPath;
    const layout = outerLayout ?? cgroupLayout(cgroupPath);
    if (!layout) return null;
    let found: ContainerName | null = null;
    try {
      found = this.state.describe(layout, path);
    } catch (err) {
      if (err instanceof BudgetSpent || err instanceof NotYet) return LATER;
      this.onError(`${cgroupPath}: ${(err as Error).message}`);
      // A file that is what it is (a link, too large, not JSON) stays so; anything else is tried again.
      if (!(err instanceof StateFileError) && !(err instanceof SyntaxError)) return LATER;
    }
    if (found || !layout.pod) return found;
    return { runtime: layout.runtime, id: layout.id, name: null, image: null, pod: null, namespace: null, podUid: layout.pod.uid, qos: layout.pod.qos };
  }

  private charge(tokens: number): void {
    const now = this.now();
    this.tokens = Math.min(TOKEN_BURST, this.tokens + ((now - this.refilledAtMs) / 1000) * TOKENS_PER_SECOND);
    this.refilledAtMs = now;
    if (this.tokens < tokens) throw new BudgetSpent();
    this.tokens -= tokens;
  }
}
