// How the daemon counts on the running kernel, probed from its BTF (never
// guessed from a version number: distributions backport). With the
// sock:sock_send_length / sock_recv_length tracepoints (Linux >= 6.3): one
// program each. Without them: fexit programs on the functions the
// tracepoints' call sites reach, inet_sendmsg, inet6_sendmsg, inet_recvmsg,
// inet6_recvmsg, and sock_sendpage where the kernel still has it (<= 6.4,
// sendfile and splice). Both count by the same code (bpf/netacct.bpf.c).
import { type BtfPtr, native } from './libbpf.js';
import { PreflightError } from './preflight.js';

export type AttachMode = 'tracepoint' | 'fexit';

/** What the running kernel offers, from /sys/kernel/btf/vmlinux. */
export interface KernelFeatures {
  tracepoints: boolean;
  fexitTargets: boolean;
  sendpage: boolean;
}

const BTF_KIND_TYPEDEF = 8;
const BTF_KIND_FUNC = 12;
const FEXIT_TARGETS = ['inet_sendmsg', 'inet6_sendmsg', 'inet_recvmsg', 'inet6_recvmsg'];
/** The programs of bpf/netacct.bpf.c that count, by mode. */
const TRACEPOINT_PROGRAMS = ['on_send', 'on_recv'];
const FEXIT_PROGRAMS = ['on_inet_send', 'on_inet6_send', 'on_inet_recv', 'on_inet6_recv'];
const SENDPAGE_PROGRAM = 'on_sendpage';

export function probeKernel(): KernelFeatures {
  const btf = native.loadVmlinuxBtf() as BtfPtr | null;
  if (!btf) throw new PreflightError('cannot read the kernel BTF (/sys/kernel/btf/vmlinux): netacct needs a kernel built with CONFIG_DEBUG_INFO_BTF');
  try {
    const has = (name: string, kind: number): boolean => (native.btfFindByNameKind(btf, name, kind) as number) > 0;
    return {
      // tp_btf programs attach where the kernel declares btf_trace_<tracepoint>.
      tracepoints: has('btf_trace_sock_send_length', BTF_KIND_TYPEDEF) && has('btf_trace_sock_recv_length', BTF_KIND_TYPEDEF),
      fexitTargets: FEXIT_TARGETS.every((name) => has(name, BTF_KIND_FUNC)),
      sendpage: has('sock_sendpage', BTF_KIND_FUNC),
    };
  } finally {
    native.btfFree(btf);
  }
}

/** The mode for the `attachMode` setting on a kernel with `features`, or a PreflightError saying why there is none. */
export function chooseAttachMode(setting: 'auto' | AttachMode, features: KernelFeatures): AttachMode {
  if (setting === 'tracepoint' && !features.tracepoints) {
    throw new PreflightError('attachMode tracepoint: this kernel has no sock:sock_send_length tracepoint (Linux 6.3 or later); use auto or fexit');
  }
  if (setting === 'fexit' && !features.fexitTargets) {
    throw new PreflightError(`attachMode fexit: this kernel's BTF lacks ${FEXIT_TARGETS.join(', ')}`);
  }
  if (setting !== 'auto') return setting;
  if (features.tracepoints) return 'tracepoint';
  if (features.fexitTargets) return 'fexit';
  throw new PreflightError(`this kernel has neither the sock:sock_send_length tracepoint nor ${FEXIT_TARGETS.join(', ')} in its BTF: netacct cannot count here`);
}

/** The counting programs to load and attach in `mode`. */
export function countingPrograms(mode: AttachMode, features: KernelFeatures): string[] {
  if (mode === 'tracepoint') return TRACEPOINT_PROGRAMS;
  return features.sendpage ? [...FEXIT_PROGRAMS, SENDPAGE_PROGRAM] : FEXIT_PROGRAMS;
}

/** Every counting program of the object: those not in countingPrograms() are not even loaded. */
export const ALL_COUNTING_PROGRAMS = [...TRACEPOINT_PROGRAMS, ...FEXIT_PROGRAMS, SENDPAGE_PROGRAM];

/** One line for the log, --check and /v1/stats. */
export function describeAttachMode(mode: AttachMode, features: KernelFeatures): string {
  if (mode === 'tracepoint') return 'tracepoints sock:sock_send_length and sock:sock_recv_length';
  return `fexit on ${[...FEXIT_TARGETS, ...(features.sendpage ? ['sock_sendpage'] : [])].join(', ')}${features.tracepoints ? ' (forced: the kernel has the tracepoints)' : ' (the kernel has no sock:sock_send_length tracepoint)'}`;
}
