// How the daemon counts on the running kernel, probed from its BTF (never
// guessed from a version number: distributions backport). With the
// sock:sock_send_length / sock_recv_length tracepoints (Linux >= 6.3): one
// program each. Without them: fexit programs on the functions the
// tracepoints' call sites reach, inet_sendmsg, inet6_sendmsg, inet_recvmsg,
// inet6_recvmsg, and sock_sendpage where the kernel still has it (<= 6.4,
// sendfile and splice). Both count by the same code (bpf/netacct.bpf.c). In
// both, the splice system call's tracepoints count splice(2) out of a TCP
// socket (tcp_splice_read), which reaches no recvmsg.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type BtfPtr, native } from './libbpf.js';
import { PreflightError, TRACEFS } from './preflight.js';

export type AttachMode = 'tracepoint' | 'fexit';

/** What the running kernel offers, from /sys/kernel/btf/vmlinux (and one probe program). */
export interface KernelFeatures {
  tracepoints: boolean;
  fexitTargets: boolean;
  sendpage: boolean;
  /** The splice system call's tracepoints (syscalls:sys_enter_splice, sys_exit_splice: CONFIG_FTRACE_SYSCALLS). */
  spliceRead: boolean;
  /** BPF compare-and-exchange (Linux 5.12), with which a process claims its slot. */
  atomics: boolean;
}

const BPF_PROG_TYPE_SOCKET_FILTER = 1;

/**
 * Whether the verifier takes an atomic compare-and-exchange: loads a
 * seven-instruction socket filter that does one on its stack, then drops it.
 * The slots' claim protocol needs it, and its floor (5.12) is above the
 * other features the object uses (task storage, bpf_get_current_task_btf: 5.11).
 */
function probeAtomics(): boolean {
  const insn = (code: number, dst: number, src: number, off: number, imm: number): Buffer => {
    const b = Buffer.alloc(8);
    b.writeUInt8(code, 0);
    b.writeUInt8(dst | (src << 4), 1);
    b.writeInt16LE(off, 2);
    b.writeInt32LE(imm, 4);
    return b;
  };
  const program = Buffer.concat([
    insn(0xb7, 1, 0, 0, 0), // r1 = 0
    insn(0x7b, 10, 1, -8, 0), // *(u64 *)(r10 - 8) = r1
    insn(0xb7, 0, 0, 0, 0), // r0 = 0
    insn(0xb7, 1, 0, 0, 1), // r1 = 1
    insn(0xdb, 10, 1, -8, 0xf1), // r0 = atomic cmpxchg((u64 *)(r10 - 8), r0, r1)
    insn(0xb7, 0, 0, 0, 0), // r0 = 0
    insn(0x95, 0, 0, 0, 0), // exit
  ]);
  const fd: number = native.progLoad(BPF_PROG_TYPE_SOCKET_FILTER, 'netacct_probe', 'GPL', program, program.length / 8, null);
  // libbpf returns -errno. EPERM is not the kernel's verdict but a refusal to load anything at
  // all: a container runtime's default seccomp profile allows bpf() only with CAP_SYS_ADMIN.
  if (fd === -EPERM) {
    throw new PreflightError(
      'loading a BPF program was refused (EPERM) although CAP_BPF and CAP_PERFMON are held: a seccomp filter refuses bpf() ' +
        "(container runtimes' default profiles allow it only with CAP_SYS_ADMIN; run the container with seccomp unconfined, as packaging/kubernetes/netacct.yaml does)",
    );
  }
  if (fd < 0) return false;
  native.closeFd(fd);
  return true;
}

const BTF_KIND_TYPEDEF = 8;
const EPERM = 1;
const BTF_KIND_FUNC = 12;
const FEXIT_TARGETS = ['inet_sendmsg', 'inet6_sendmsg', 'inet_recvmsg', 'inet6_recvmsg'];
/** The programs of bpf/netacct.bpf.c that count, by mode. */
const TRACEPOINT_PROGRAMS = ['on_send', 'on_recv'];
const FEXIT_PROGRAMS = ['on_inet_send', 'on_inet6_send', 'on_inet_recv', 'on_inet6_recv'];
const SENDPAGE_PROGRAM = 'on_sendpage';
/** Counting programs that may fail to attach, counting going on without them (kernel-counters.ts). */
export const SPLICE_READ_PROGRAMS = ['on_splice_enter', 'on_splice_exit'];
const SPLICE_TRACEPOINTS = path.join(TRACEFS, 'events/syscalls/sys_exit_splice');

let probed: KernelFeatures | null = null;

/** The running kernel's features, probed once per process (they cannot change under it). */
export function probeKernel(): KernelFeatures {
  probed ??= readKernelFeatures();
  return probed;
}

function readKernelFeatures(): KernelFeatures {
  const btf = native.loadVmlinuxBtf() as BtfPtr | null;
  if (!btf) throw new PreflightError('cannot read the kernel BTF (/sys/kernel/btf/vmlinux): netacct needs a kernel built with CONFIG_DEBUG_INFO_BTF');
  try {
    const has = (name: string, kind: number): boolean => (native.btfFindByNameKind(btf, name, kind) as number) > 0;
    return {
      // tp_btf programs attach where the kernel declares btf_trace_<tracepoint>.
      tracepoints: has('btf_trace_sock_send_length', BTF_KIND_TYPEDEF) && has('btf_trace_sock_recv_length', BTF_KIND_TYPEDEF),
      fexitTargets: FEXIT_TARGETS.every((name) => has(name, BTF_KIND_FUNC)),
      sendpage: has('sock_sendpage', BTF_KIND_FUNC),
      spliceRead: fs.existsSync(SPLICE_TRACEPOINTS),
      atomics: probeAtomics(),
    };
  } finally {
    native.btfFree(btf);
  }
}

/** The mode for the `attachMode` setting on a kernel with `features`, or a PreflightError saying why there is none. */
export function chooseAttachMode(setting: 'auto' | AttachMode, features: KernelFeatures): AttachMode {
  if (!features.atomics) {
    throw new PreflightError(
      `kernel ${os.release()} lacks BPF atomic compare-and-exchange (Linux 5.12): netacct needs Linux 5.12 or later ` +
        "(RHEL 9's 5.14, Ubuntu 22.04's 5.15 and Debian 12's 6.1 work; Debian 11's 5.10 does not)",
    );
  }
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
  const splice = features.spliceRead ? SPLICE_READ_PROGRAMS : [];
  if (mode === 'tracepoint') return [...TRACEPOINT_PROGRAMS, ...splice];
  return [...FEXIT_PROGRAMS, ...(features.sendpage ? [SENDPAGE_PROGRAM] : []), ...splice];
}

/** Every counting program of the object: those not in countingPrograms() are not even loaded. */
export const ALL_COUNTING_PROGRAMS = [...TRACEPOINT_PROGRAMS, ...FEXIT_PROGRAMS, SENDPAGE_PROGRAM, ...SPLICE_READ_PROGRAMS];

/** One line for the log, --check and /v1/stats. */
export function describeAttachMode(mode: AttachMode, features: KernelFeatures): string {
  const splice = features.spliceRead ? ', and the splice system call (splice out of TCP sockets)' : ' (splice out of TCP sockets not seen: no syscalls:sys_exit_splice tracepoint)';
  if (mode === 'tracepoint') return `tracepoints sock:sock_send_length and sock:sock_recv_length${splice}`;
  return `fexit on ${[...FEXIT_TARGETS, ...(features.sendpage ? ['sock_sendpage'] : [])].join(', ')}${splice}${features.tracepoints ? ' (forced: the kernel has the tracepoints)' : ' (the kernel has no sock:sock_send_length tracepoint)'}`;
}
