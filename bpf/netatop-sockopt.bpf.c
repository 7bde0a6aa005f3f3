// SPDX-License-Identifier: GPL-2.0-only
/*
 * The netatop kernel module's interface without the module: atop before 2.10
 * asks for a process's counters with getsockopt(raw socket, SOL_IP,
 * NETATOP_GETCNT_TGID, &task, &len), task.id naming the process. The kernel
 * has no such option and fails the call with ENOPROTOOPT; a cgroup/getsockopt
 * program on the root cgroup runs after that and may replace the result.
 *
 * It cannot see the caller's input, though (the kernel copies the caller's
 * buffer in only when its own handler succeeded), so a program on the
 * getsockopt system call's entry (fentry, else a kprobe, else its tracepoint:
 * the daemon takes the first that loads and attaches) notes the requested id
 * first, keyed by the calling thread. The answers themselves are published by the daemon into
 * netatop_answers; these programs only look them up.
 *
 * These programs see every getsockopt on the host: their common path is a
 * compare and a return (bench/getsockopt-cost measures it).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "netacct.h"

#define SOL_IP 0
#define AF_INET 2
#define SOCK_RAW 3
#define ESRCH 3
#define EINVAL 22

/* The system call's own registers (x86_64 syscall wrappers take one pointer to them). */
struct pt_regs {
	unsigned long di, si, dx, r10;
} __attribute__((preserve_access_index));

/* Requested ids, between the system call's entry and the cgroup program. LRU:
 * a thread killed in between leaves an entry that is pushed out, never a leak. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* pid_tgid of the caller */
	__type(value, __u32);
} netatop_requests SEC(".maps");

/* Capacity set by the daemon (processes, plus threads when counted); not
 * preallocated: it holds entries only while an atop follows. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct netatop_answer);
} netatop_answers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netatop_settings);
} netatop_settings SEC(".maps");

/* Calls answered, per command (index command - NETATOP_PROBE), and one more for refused ones. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NETATOP_COMMANDS + 1);
	__type(key, __u32);
	__type(value, __u64);
} netatop_calls SEC(".maps");

static __always_inline int is_counter_command(long level, long optname)
{
	return level == SOL_IP && (optname == NETATOP_GETCNT_TGID || optname == NETATOP_GETCNT_PID);
}

static __always_inline void note_request(void *optval)
{
	__u32 id = 0;
	__u64 caller = bpf_get_current_pid_tgid();
	if (bpf_probe_read_user(&id, sizeof(id), optval) == 0)
		bpf_map_update_elem(&netatop_requests, &caller, &id, BPF_ANY);
}

/* The first choice: costs only getsockopt calls, and attaches as a BPF link
 * (no perf event, which some kernels refuse to a daemon without CAP_SYS_ADMIN). */
SEC("fentry/__x64_sys_getsockopt")
int BPF_PROG(netatop_request_fentry, struct pt_regs *regs)
{
	if (is_counter_command(BPF_CORE_READ(regs, si), BPF_CORE_READ(regs, dx)))
		note_request((void *)BPF_CORE_READ(regs, r10));
	return 0;
}

/* Where fentry cannot load: costs only getsockopt calls too. */
SEC("ksyscall/getsockopt")
int netatop_request_kprobe(struct pt_regs *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->di;
	if (is_counter_command(BPF_CORE_READ(regs, si), BPF_CORE_READ(regs, dx)))
		note_request((void *)BPF_CORE_READ(regs, r10));
	return 0;
}

/* The system call's tracepoint (syscalls/sys_enter_getsockopt/format). */
struct sys_enter_getsockopt {
	__u64 common;
	long syscall_nr;
	long fd, level, optname;
	void *optval;
	void *optlen;
};

/* The last resort. Any syscall tracepoint in use sends every
 * system call through the kernel's tracing path: a few ns each (measured by
 * bench/getsockopt-cost), so it is the second choice. */
SEC("tracepoint/syscalls/sys_enter_getsockopt")
int netatop_request_tp(struct sys_enter_getsockopt *ctx)
{
	if (is_counter_command(ctx->level, ctx->optname))
		note_request(ctx->optval);
	return 0;
}

static __always_inline void count(__u32 index)
{
	__u64 *calls = bpf_map_lookup_elem(&netatop_calls, &index);
	if (calls)
		__sync_fetch_and_add(calls, 1);
}

static __always_inline int visible(const struct netatop_answer *answer)
{
	__u64 uid_gid = bpf_get_current_uid_gid();
	__u32 uid = (__u32)uid_gid, gid = uid_gid >> 32, zero = 0;
	if (uid == 0 || uid == answer->uid)
		return 1;
	struct netatop_settings *settings = bpf_map_lookup_elem(&netatop_settings, &zero);
	return settings && gid == settings->all_gid;
}

/* ctx->retval is written alone: clang would merge it with optlen into one
 * 8-byte store, which the verifier refuses. */
static __always_inline void succeed(struct bpf_sockopt *ctx)
{
	asm volatile("" ::: "memory");
	ctx->retval = 0;
}

static __noinline int answer_counters(struct bpf_sockopt *ctx, __u64 kind)
{
	__u64 caller = bpf_get_current_pid_tgid();
	__u32 *id = bpf_map_lookup_elem(&netatop_requests, &caller);
	if (!id)
		goto refuse;
	__u64 key = kind << 32 | *id;
	bpf_map_delete_elem(&netatop_requests, &caller);
	struct netatop_answer *answer = bpf_map_lookup_elem(&netatop_answers, &key);
	if (!answer || !visible(answer))
		goto refuse;
	struct netatop_task *out = ctx->optval;
	if ((void *)(out + 1) > ctx->optval_end) {
		ctx->retval = -EINVAL;
		count(NETATOP_COMMANDS);
		return 1;
	}
	__builtin_memcpy(out, &answer->task, sizeof(*out));
	ctx->optlen = sizeof(*out);
	succeed(ctx);
	return 1;
refuse: /* what the module answers for a process it does not know */
	ctx->retval = -ESRCH;
	count(NETATOP_COMMANDS);
	return 1;
}

SEC("cgroup/getsockopt")
int netatop_answer(struct bpf_sockopt *ctx)
{
	if (ctx->level != SOL_IP || (__u32)(ctx->optname - NETATOP_PROBE) >= NETATOP_COMMANDS)
		return 1;
	/* Answered already (a netatop module is loaded), or not atop's raw socket. */
	struct bpf_sock *sk = ctx->sk;
	if (ctx->retval == 0 || !sk || sk->family != AF_INET || sk->type != SOCK_RAW)
		return 1;
	__u32 command = ctx->optname;
	switch (command) {
	case NETATOP_PROBE:
	case NETATOP_FORCE_GC:
	case NETATOP_EMPTY_EXIT: /* the daemon writes exits as they happen: nothing to wait for */
		count(command - NETATOP_PROBE);
		succeed(ctx);
		return 1;
	case NETATOP_GETCNT_TGID:
		count(command - NETATOP_PROBE);
		return answer_counters(ctx, NETATOP_KIND_PROCESS);
	case NETATOP_GETCNT_PID:
		count(command - NETATOP_PROBE);
		return answer_counters(ctx, NETATOP_KIND_THREAD);
	default: /* NETATOP_GETCNT_EXIT is netatopd's, and netacct is netatopd */
		return 1;
	}
}

char LICENSE[] SEC("license") = "GPL";
