// SPDX-License-Identifier: GPL-2.0-only
/*
 * netacct kernel side: counts socket send/recv calls and bytes per process
 * and cgroup v2, TCP and UDP, IPv4 and IPv6.
 *
 * Design (measured in bench/bpf-cost): the hot path is one task-local storage
 * lookup on the calling thread's group leader plus two atomic adds. No hash
 * of (tgid, cgroup) is touched per event, and the cgroup id is read only when
 * a process's storage is created; migrations between cgroups are caught on
 * cgroup:cgroup_attach_task, which moves the counters gathered so far into
 * the `moved` map under the old cgroup. The daemon reads live processes with
 * a task iterator and exited ones from the `exited` map.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "netacct.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_UDPLITE 136
#define IPPROTO_MPTCP 262
#define MSG_PEEK 2
#define DEFAULT_HIERARCHY_ID 0 /* cgroup v2; v1 hierarchies have ids >= 1 */

/* Only the kernel fields we read. preserve_access_index makes libbpf
 * relocate their offsets against the running kernel's BTF (CO-RE). */
struct sock_common {
	unsigned short skc_family;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live; /* threads not yet exited; 0 once the last one is in do_exit */
} __attribute__((preserve_access_index));

typedef struct {
	unsigned int val;
} kuid_t;

struct cred {
	kuid_t uid;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *group_leader;
	__u64 start_boottime;
	char comm[16];
	const struct cred *cred;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup_root {
	int hierarchy_id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
	struct cgroup_root *root;
} __attribute__((preserve_access_index));

struct seq_file;
struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct netacct_proc);
} procs SEC(".maps");

/* Capacities are defaults; the daemon sets them from its configuration. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct netacct_moved_key);
	__type(value, struct netacct_counters);
} moved SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct netacct_proc_id);
	__type(value, struct netacct_proc_record);
} exited SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NA_STATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_add(__u32 which, __u64 n)
{
	__u64 *slot = bpf_map_lookup_elem(&stats, &which);

	if (slot)
		*slot += n; /* per-CPU slot: no other writer */
}

static __always_inline int count_call(struct sock *sk, int ret, int flags, int direction)
{
	if (ret < 0) /* failed call, EAGAIN included */
		return 0;
	if (direction == NA_RECV && (flags & MSG_PEEK)) /* read again later */
		return 0;

	int family;
	__u16 sk_family = sk->__sk_common.skc_family;
	if (sk_family == AF_INET)
		family = NA_IPV4;
	else if (sk_family == AF_INET6)
		family = NA_IPV6;
	else
		return 0;

	int protocol;
	__u16 sk_protocol = sk->sk_protocol;
	if (sk_protocol == IPPROTO_TCP || sk_protocol == IPPROTO_MPTCP) {
		if (ret == 0) /* EOF or nothing moved: not a call that carried data */
			return 0;
		protocol = NA_TCP;
	} else if (sk_protocol == IPPROTO_UDP || sk_protocol == IPPROTO_UDPLITE) {
		protocol = NA_UDP; /* a zero-length datagram is a call of 0 bytes */
	} else {
		return 0;
	}

	struct task_struct *leader = bpf_get_current_task_btf()->group_leader;
	struct netacct_proc *proc =
		bpf_task_storage_get(&procs, leader, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!proc) {
		stat_add(NA_STAT_NO_STORAGE, 1);
		return 0;
	}
	if (!proc->cgroup_id) /* fresh storage: later changes come from on_cgroup_attach */
		proc->cgroup_id = bpf_get_current_cgroup_id();

	__u64 *calls = &proc->c.v[((family * 2 + protocol) * 2 + direction) * 2 + NA_CALLS];
	__sync_fetch_and_add(calls, 1);
	__sync_fetch_and_add(calls + 1, (__u64)ret);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
	return count_call(sk, ret, flags, NA_SEND);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags)
{
	return count_call(sk, ret, flags, NA_RECV);
}

/* A process (or a thread: with threaded cgroups the whole process follows
 * the moved thread) changes cgroup: keep what it counted under the old one. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(on_cgroup_attach, struct cgroup *dst, const char *path, struct task_struct *task,
	     _Bool threadgroup)
{
	if (dst->root->hierarchy_id != DEFAULT_HIERARCHY_ID)
		return 0;
	struct task_struct *leader = task->group_leader;
	struct netacct_proc *proc = bpf_task_storage_get(&procs, leader, 0, 0);
	if (!proc)
		return 0;
	__u64 old_cgroup = proc->cgroup_id;
	__u64 new_cgroup = dst->kn->id;
	if (old_cgroup == new_cgroup)
		return 0;
	proc->cgroup_id = new_cgroup;
	if (!old_cgroup)
		return 0;

	/* Take the counters with atomic exchanges so that no concurrent add is
	 * lost; an add racing with the move may land on the new cgroup. */
	struct netacct_counters taken;
	__u64 any = 0;
	for (int i = 0; i < NA_COUNTERS; i++) {
		taken.v[i] = __sync_lock_test_and_set(&proc->c.v[i], 0);
		any |= taken.v[i];
	}
	if (!any)
		return 0;

	struct netacct_moved_key key = {
		.tgid = leader->tgid,
		.start_ns = leader->start_boottime,
		.cgroup_id = old_cgroup,
	};
	struct netacct_counters *earlier = bpf_map_lookup_elem(&moved, &key);
	if (!earlier && bpf_map_update_elem(&moved, &key, &taken, BPF_NOEXIST) == 0)
		return 0;
	if (!earlier)
		earlier = bpf_map_lookup_elem(&moved, &key); /* lost a race to insert it */
	struct netacct_counters *into = earlier ? earlier : &proc->c;
	if (!earlier) /* map full: keep the counts, lose only their old cgroup */
		stat_add(NA_STAT_MOVED_FULL, 1);
	for (int i = 0; i < NA_COUNTERS; i++)
		__sync_fetch_and_add(&into->v[i], taken.v[i]);
	return 0;
}

static __always_inline void fill_record(struct netacct_proc_record *rec, struct task_struct *leader,
					struct netacct_proc *proc)
{
	rec->tgid = leader->tgid;
	rec->uid = leader->cred->uid.val;
	rec->start_ns = leader->start_boottime;
	rec->cgroup_id = proc->cgroup_id;
	bpf_probe_read_kernel(rec->comm, sizeof(rec->comm), leader->comm);
	for (int i = 0; i < NA_COUNTERS; i++)
		rec->c.v[i] = proc->c.v[i];
}

/* The last thread of a process exits: save its final counters for the daemon,
 * keyed by (tgid, start time) so a reused PID can never add to them. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_process_exit)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->signal->live.counter) /* decremented before this tracepoint */
		return 0;
	struct task_struct *leader = task->group_leader;
	struct netacct_proc *proc = bpf_task_storage_get(&procs, leader, 0, 0);
	if (!proc)
		return 0; /* never sent or received */

	struct netacct_proc_record rec = {};
	fill_record(&rec, leader, proc);
	struct netacct_proc_id id = { .tgid = rec.tgid, .start_ns = rec.start_ns };
	if (bpf_map_update_elem(&exited, &id, &rec, BPF_ANY))
		stat_add(NA_STAT_EXITED_FULL, 1);
	return 0;
}

/* One record per live process that has counters, read in one pass. */
SEC("iter/task")
int dump_processes(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task || task->pid != task->tgid)
		return 0;
	if (!task->signal->live.counter) /* exited: on_process_exit reports it */
		return 0;
	struct netacct_proc *proc = bpf_task_storage_get(&procs, task, 0, 0);
	if (!proc)
		return 0;

	struct netacct_proc_record rec = {};
	fill_record(&rec, task, proc);
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
