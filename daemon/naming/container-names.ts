// Names for the containers cgroups hold: the cgroup's path says where to look
// (cgroup-layout.ts), the runtime's own files say what it is called
// (runtimes.ts). Asked once per new cgroup (the caller caches the answer with
// the cgroup's name and drops it with the cgroup), and within a budget of
// file reads per second: a user making containers' cgroups by the thousand
// costs a bounded amount of reading; past the budget a cgroup is named
// later, when asked again.
import { cgroupLayout } from './cgroup-layout.js';
import { type ContainerName, RuntimeState, type RuntimeStateRoots } from './runtimes.js';

/** Runtime lookups (a few small files each) a second, on average… */
const LOOKUPS_PER_SECOND = 50;
/** …and at once: a node's containers named when the daemon starts. */
const LOOKUP_BURST = 500;

/** Not looked up yet: the budget was spent. Asked again, it may be. */
export const LATER = Symbol('later');

export class ContainerNames {
  private readonly state: RuntimeState;
  private tokens = LOOKUP_BURST;
  private refilledAtMs: number;

  /** `onError`: a state file that may not be read (a link, not root's, too large, not JSON); that cgroup is named from its path. */
  constructor(
    roots: RuntimeStateRoots,
    private readonly onError: (message: string) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.state = new RuntimeState(roots);
    this.refilledAtMs = now();
  }

  /**
   * The container in the cgroup at `cgroupPath`: named by its runtime; for a
   * pod's container whose runtime says nothing, its pod's uid and QoS class
   * from kubelet's layout (root's tree) alone; null for none; LATER when the
   * budget is spent.
   */
  nameOf(cgroupPath: string): ContainerName | null | typeof LATER {
    const layout = cgroupLayout(cgroupPath);
    if (!layout) return null;
    if (!this.take()) return LATER;
    let found: ContainerName | null = null;
    try {
      found = this.state.describe(layout, cgroupPath);
    } catch (err) {
      this.onError(`${cgroupPath}: ${(err as Error).message}`);
    }
    if (found || !layout.pod) return found;
    return { runtime: layout.runtime, id: layout.id, name: null, image: null, pod: null, namespace: null, podUid: layout.pod.uid, qos: layout.pod.qos };
  }

  private take(): boolean {
    const now = this.now();
    this.tokens = Math.min(LOOKUP_BURST, this.tokens + ((now - this.refilledAtMs) / 1000) * LOOKUPS_PER_SECOND);
    this.refilledAtMs = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
