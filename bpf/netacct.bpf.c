// SPDX-License-Identifier: GPL-2.0-only
/*
 * netacct kernel side: counts socket send/recv calls and bytes per process
 * and cgroup v2, TCP and UDP, IPv4 and IPv6.
 *
 * Design (measured with bench/bpf-cost): the hot path calls no map helper.
 * A process owns the slot tgid & slot_mask of two arrays, which the verifier
 * inlines: owners[] says whose slot it is, slots[] holds the counters. An
 * event checks owners[idx] == tgid | ACTIVE and does two atomic adds. Only
 * when that fails (first event, a colliding PID, a process that moved to
 * another cgroup, a reused PID whose old slot is not yet read) does the slow
 * path run: claim the free slot, or add to the `overflow` hash under
 * (tgid, start time, cgroup).
 *
 * A slot never changes hands behind the daemon's back: the exit of the
 * process (always before its PID can be reused) marks it EXITED, a cgroup
 * move marks it MOVED, and only the daemon frees it, after reading it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "netacct.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_UDPLITE 136
#define IPPROTO_MPTCP 262
#define MSG_PEEK 2
#define DEFAULT_HIERARCHY_ID 0 /* cgroup v2; v1 hierarchies have ids >= 1 */

/* Set by the daemon before loading. */
const volatile struct netacct_settings settings = {};

/* Only the kernel fields we read. preserve_access_index makes libbpf
 * relocate their offsets against the running kernel's BTF (CO-RE). */
struct proto {
	void *sendpage; /* gone in 6.5, with sock_sendpage: read only where that exists */
} __attribute__((preserve_access_index));

struct in6_addr {
	union {
		__u32 u6_addr32[4];
	} in6_u;
} __attribute__((preserve_access_index));

/* skc_daddr, skc_dport and skc_num are in anonymous unions in the kernel:
 * CO-RE finds them by name. */
struct sock_common {
	__u32 skc_daddr;  /* IPv4 peer, network order */
	__u16 skc_dport;  /* peer port, network order */
	__u16 skc_num;    /* local port, host order */
	unsigned short skc_family;
	struct proto *skc_prot; /* the kernel's sk->sk_prot */
	struct in6_addr skc_v6_daddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct file {
	void *private_data; /* a socket's file: its struct socket */
} __attribute__((preserve_access_index));

/* The kernel's copy of the caller's message: msg_name is the datagram's
 * address (sendto, sendmsg), filled in by recvfrom and recvmsg. */
struct msghdr {
	void *msg_name;
	int msg_namelen;
} __attribute__((preserve_access_index));

/* struct sockaddr_in and sockaddr_in6, as far as netacct reads them. */
struct sockaddr_peer {
	__u16 family;
	__u16 port; /* network order */
	__u32 v4_or_flowinfo;
	__u32 v6[4];
};

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

struct cgroup;
struct css_set {
	struct cgroup *dfl_cgrp; /* the task's cgroup v2 */
} __attribute__((preserve_access_index));

struct files_struct;
struct task_struct {
	int pid;
	int tgid;
	struct task_struct *group_leader;
	__u64 start_boottime;
	char comm[16];
	const struct cred *cred;
	struct signal_struct *signal;
	struct css_set *cgroups;
	struct files_struct *files;
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

/* Capacities are defaults; the daemon sets them from its configuration.
 * The daemon maps both arrays into its memory and reads them in place. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, __u64);
} owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct netacct_slot);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct netacct_part_key);
	__type(value, struct netacct_counters);
} overflow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct netacct_proc_id);
	__type(value, struct netacct_proc_info);
} exited SEC(".maps");

/* Marks processes whose counters may live outside a slot: those with
 * overflow entries, and those that moved cgroup (their slot is read and freed
 * while they may stay idle). The iterator lists them and their exit is
 * recorded, so that a live process is never taken for gone. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} tracked SEC(".maps");

/* Calls no process row could take, per (uid, cgroup), and the host's row
 * (netacct.h). Only the daemon deletes an entry: of a removed cgroup, after
 * reading it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct netacct_unattributed_key);
	__type(value, struct netacct_counters);
} unattributed SEC(".maps");

/* Per-thread counters (see netacct.h); sized 1 by the daemon when off. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} thread_owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct netacct_thread);
} thread_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct netacct_thread_key);
	__type(value, struct netacct_thread);
} threads SEC(".maps");

/* Per-peer counters (netacct.h); sized 1 by the daemon when off. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct netacct_peer_key);
	__type(value, struct netacct_counters);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct netacct_peer_overflow_key);
	__type(value, struct netacct_counters);
} peer_overflow SEC(".maps");

/* Entries each user holds in the maps it can fill (netacct.h: netacct_share);
 * one entry per uid that ever created one, never deleted: a user cannot make
 * new uids (a full map only refuses users it does not know yet). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct netacct_held);
} share_created SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct netacct_held);
} share_released SEC(".maps");

/* Written by the daemon only, never by a program: per cgroup id, the counters
 * of processes the daemon has forgotten (key 0: cgroups removed since), kept
 * here so that cgroup totals survive a daemon restart as the slots do. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct netacct_counters);
} cgroup_totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NA_STATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Which generation of programs counts (netacct.h); pinned with the maps. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netacct_control);
} control SEC(".maps");

/* Whether these programs are the generation that counts: an inlined array lookup, one load and a compare. */
static __always_inline int counting_generation(void)
{
	__u32 zero = 0;
	struct netacct_control *control_now = bpf_map_lookup_elem(&control, &zero);
	return control_now && control_now->generation == settings.generation;
}

static __always_inline __u64 owner_tag(__u32 tgid, __u64 state)
{
	return tgid | state << 32;
}

static __always_inline void stat_add(__u32 which)
{
	__u64 *slot = bpf_map_lookup_elem(&stats, &which);

	if (slot)
		*slot += 1; /* per-CPU slot: no other writer */
}

/* ACTIVE -> `state` (EXITED, MOVED) for the daemon's last read, counted in
 * `stat` so that the daemon knows to read; 0 if it was not ACTIVE. */
static __always_inline int retire_owner(__u64 *owner, __u32 id, __u64 state, __u32 stat)
{
	if (__sync_val_compare_and_swap(owner, owner_tag(id, NA_SLOT_ACTIVE), owner_tag(id, state)) !=
	    owner_tag(id, NA_SLOT_ACTIVE))
		return 0;
	stat_add(stat);
	return 1;
}

static __always_inline void add_call(struct netacct_counters *c, __u32 calls_index, int ret)
{
	if (calls_index >= NA_COUNTERS - 1) /* for the verifier: calls_index + 1 is in bounds */
		return;
	__sync_fetch_and_add(&c->v[calls_index], 1);
	__sync_fetch_and_add(&c->v[calls_index + 1], (__u64)ret);
}

/* The first event of a process whose slot is free: make the slot its own. */
static __noinline int claim_slot(__u64 *owner, __u32 tgid, struct task_struct *leader,
				 __u32 calls_index, int ret)
{
	__u32 idx = tgid & settings.slot_mask;

	if (__sync_val_compare_and_swap(owner, 0, owner_tag(tgid, NA_SLOT_CLAIMING)) != 0)
		return -1; /* another thread of the process claimed it first */
	struct netacct_slot *slot = bpf_map_lookup_elem(&slots, &idx);
	if (!slot) {
		*owner = 0;
		return -1;
	}
	slot->tgid = tgid;
	slot->uid = (__u32)bpf_get_current_uid_gid();
	slot->start_ns = leader->start_boottime;
	slot->cgroup_id = bpf_get_current_cgroup_id();
	bpf_probe_read_kernel(slot->comm, sizeof(slot->comm), leader->comm);
	for (int i = 0; i < NA_COUNTERS; i++)
		slot->c.v[i] = 0;
	add_call(&slot->c, calls_index, ret);
	/* An atomic exchange orders the stores above before the slot goes live. */
	__sync_lock_test_and_set(owner, owner_tag(tgid, NA_SLOT_ACTIVE));
	return 0;
}

/* Takes one of `key`'s (a uid, or NA_OTHERS_UID) `limit` entries of `kind`:
 * counted first, atomically, then checked, and given back when over, so that
 * CPUs creating at once never take more than the share between them. */
static __always_inline int take_share(__u32 key, __u32 kind, __u64 limit)
{
	struct netacct_held *created = bpf_map_lookup_elem(&share_created, &key);
	if (!created) {
		struct netacct_held zero = {};
		bpf_map_update_elem(&share_created, &key, &zero, BPF_NOEXIST);
		created = bpf_map_lookup_elem(&share_created, &key);
		if (!created)
			return 0; /* no room to count it: only users already counted create entries */
	}
	if (kind >= NA_SHARES) /* for the verifier */
		return 0;
	struct netacct_held *released = bpf_map_lookup_elem(&share_released, &key);
	__u64 before = __sync_fetch_and_add(&created->n[kind], 1);
	__u64 held = before - (released ? released->n[kind] : 0);
	if ((__s64)held < (__s64)limit)
		return 1;
	__sync_fetch_and_add(&created->n[kind], -1);
	return 0;
}

/* Gives back one of `key`'s entries of `kind` taken by take_share (the entry was not made after all). */
static __always_inline void give_back_share(__u32 key, __u32 kind)
{
	struct netacct_held *created = bpf_map_lookup_elem(&share_created, &key);
	if (created && kind < NA_SHARES)
		__sync_fetch_and_add(&created->n[kind], -1);
}

/* Takes one more entry of `kind` for the caller's user: root always (not
 * counted); another user while it, and every user but root together, hold
 * less than their shares. Only on the way to creating an entry, never per call. */
static __noinline int take_shares(__u32 uid, __u32 kind)
{
	if (uid == 0)
		return 1;
	if (kind >= NA_SHARES)
		return 0;
	if (take_share(uid, kind, settings.user_share[kind])) {
		if (take_share(NA_OTHERS_UID, kind, settings.others_share[kind]))
			return 1;
		give_back_share(uid, kind);
	}
	stat_add(NA_STAT_OVER_SHARE);
	return 0;
}

/* The entry take_shares took for was not made: both shares given back. */
static __noinline int give_back_shares(__u32 uid, __u32 kind)
{
	if (uid == 0 || kind >= NA_SHARES)
		return 0;
	give_back_share(uid, kind);
	give_back_share(NA_OTHERS_UID, kind);
	return 0;
}

/* An entry of `kind` was created for `uid` (not root) outside take_shares: counted in its own share. */
static __noinline int count_held(__u32 uid, __u32 kind)
{
	struct netacct_held *created = bpf_map_lookup_elem(&share_created, &uid);
	if (created && kind < NA_SHARES)
		__sync_fetch_and_add(&created->n[kind], 1);
	return 0;
}

/* Creates `key` with `value` in `map` when `uid` may hold one more entry of
 * `kind`, counted in its share; 0 when created. */
static __always_inline int create_shared(void *map, void *key, void *value, __u32 uid, __u32 kind)
{
	if (!take_shares(uid, kind))
		return -1;
	if (bpf_map_update_elem(map, key, value, BPF_NOEXIST)) {
		give_back_shares(uid, kind);
		return -1;
	}
	return 0;
}

/* Looks `key` up in `map`, creating it (zero) when `uid` may hold one more
 * entry of `kind`; NULL when it may not or the map is full. */
static __always_inline struct netacct_counters *shared_counters(void *map, void *key, __u32 uid, __u32 kind)
{
	struct netacct_counters *c = bpf_map_lookup_elem(map, key);
	if (c)
		return c;
	struct netacct_counters zero = {};
	create_shared(map, key, &zero, uid, kind);
	return bpf_map_lookup_elem(map, key); /* made here, or by another CPU just now */
}

static __always_inline void mark_tracked(struct task_struct *leader)
{
	if (!bpf_task_storage_get(&tracked, leader, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		stat_add(NA_STAT_NO_STORAGE);
}

/* The overflow map is full, or the user's share of it: the call goes to its
 * (uid, cgroup) row, created when new and within the user's share; past it,
 * to the user's own row (uid, cgroup 0); else to the host's row, which
 * always exists (netacct.h). */
static __noinline int count_unattributed(__u32 uid, __u64 cgroup_id, __u32 calls_index, int ret)
{
	struct netacct_unattributed_key key = { .uid = uid, .cgroup_id = cgroup_id };

	stat_add(NA_STAT_OVERFLOW_FULL);
	struct netacct_counters *row = shared_counters(&unattributed, &key, uid, NA_SHARE_UNATTRIBUTED);
	if (!row) {
		/* The user's own row: one per uid, within what all users but root may hold
		 * together (user namespaces give a user many uids), and never deleted. */
		key.cgroup_id = 0;
		row = bpf_map_lookup_elem(&unattributed, &key);
		if (!row && (uid == 0 || take_share(NA_OTHERS_UID, NA_SHARE_UNATTRIBUTED, settings.others_share[NA_SHARE_UNATTRIBUTED]))) {
			struct netacct_counters zero = {};
			if (bpf_map_update_elem(&unattributed, &key, &zero, BPF_NOEXIST) == 0) {
				if (uid != 0)
					count_held(uid, NA_SHARE_UNATTRIBUTED);
			} else if (uid != 0) {
				give_back_share(NA_OTHERS_UID, NA_SHARE_UNATTRIBUTED);
			}
			row = bpf_map_lookup_elem(&unattributed, &key);
		}
	}
	if (!row) {
		struct netacct_unattributed_key host = { .uid = NA_HOST_UID };
		stat_add(NA_STAT_UNATTRIBUTED_FULL);
		row = bpf_map_lookup_elem(&unattributed, &host);
		if (!row) {
			stat_add(NA_STAT_LOST);
			return 0;
		}
	}
	add_call(row, calls_index, ret);
	return 0;
}

static __noinline int count_slow(__u64 *owner, __u32 tgid, __u32 calls_index, int ret)
{
	struct task_struct *leader = bpf_get_current_task_btf()->group_leader;

	if (*owner == 0 && claim_slot(owner, tgid, leader, calls_index, ret) == 0)
		return 0;

	struct netacct_part_key key = {
		.tgid = tgid,
		.uid = (__u32)bpf_get_current_uid_gid(),
		.start_ns = leader->start_boottime,
		.cgroup_id = bpf_get_current_cgroup_id(),
	};
	struct netacct_counters *part = bpf_map_lookup_elem(&overflow, &key);
	if (!part) {
		part = shared_counters(&overflow, &key, key.uid, NA_SHARE_OVERFLOW);
		if (!part)
			return count_unattributed(key.uid, key.cgroup_id, calls_index, ret);
		mark_tracked(leader);
	}
	add_call(part, calls_index, ret);
	return 0;
}

static __always_inline void fill_thread(struct netacct_thread *thread, struct task_struct *task)
{
	thread->tid = task->pid;
	thread->tgid = task->tgid;
	thread->start_ns = task->start_boottime;
	thread->process_start_ns = task->group_leader->start_boottime;
	bpf_get_current_comm(thread->comm, sizeof(thread->comm));
}

/* A thread's first call when its slot is free: make the slot its own. */
static __noinline int claim_thread_slot(__u64 *owner, __u32 idx, struct task_struct *task,
					__u32 calls_index, int ret)
{
	__u32 tid = task->pid;

	if (__sync_val_compare_and_swap(owner, 0, owner_tag(tid, NA_SLOT_CLAIMING)) != 0)
		return -1;
	struct netacct_thread *thread = bpf_map_lookup_elem(&thread_slots, &idx);
	if (!thread) {
		*owner = 0;
		return -1;
	}
	fill_thread(thread, task);
	for (int i = 0; i < NA_COUNTERS; i++)
		thread->c.v[i] = 0;
	add_call(&thread->c, calls_index, ret);
	/* An atomic exchange orders the stores above before the slot goes live. */
	__sync_lock_test_and_set(owner, owner_tag(tid, NA_SLOT_ACTIVE));
	return 0;
}

/* A thread's call that its slot does not take: its hash entry if it has one
 * (a thread stays where it started), else the free slot, else a new entry. */
static __noinline int count_thread_slow(__u64 *owner, __u32 idx, __u32 calls_index, int ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct netacct_thread_key key = { .tid = task->pid, .tgid = task->tgid, .start_ns = task->start_boottime };
	struct netacct_thread *thread = bpf_map_lookup_elem(&threads, &key);
	if (!thread) {
		if (*owner == 0 && claim_thread_slot(owner, idx, task, calls_index, ret) == 0)
			return 0;
		struct netacct_thread fresh = {};
		fill_thread(&fresh, task);
		bpf_map_update_elem(&threads, &key, &fresh, BPF_NOEXIST);
		thread = bpf_map_lookup_elem(&threads, &key);
		if (!thread) {
			stat_add(NA_STAT_THREADS_FULL);
			return 0;
		}
	}
	add_call(&thread->c, calls_index, ret);
	return 0;
}

/* The same fast path as a process's: an owner-tag compare, two atomic adds. */
static __always_inline void count_thread(__u32 tid, __u32 calls_index, int ret)
{
	__u32 idx = tid & settings.thread_mask;
	__u64 *owner = bpf_map_lookup_elem(&thread_owners, &idx);
	if (!owner)
		return;
	if (*owner == owner_tag(tid, NA_SLOT_ACTIVE)) {
		struct netacct_thread *thread = bpf_map_lookup_elem(&thread_slots, &idx);
		if (thread)
			add_call(&thread->c, calls_index, ret);
		return;
	}
	count_thread_slow(owner, idx, calls_index, ret);
}

/* A thread exits: its slot or hash entry is marked for the daemon's last read. */
static __always_inline void mark_thread_exited(struct task_struct *task)
{
	__u32 tid = task->pid;
	__u32 idx = tid & settings.thread_mask;
	__u64 *owner = bpf_map_lookup_elem(&thread_owners, &idx);
	if (owner && *owner == owner_tag(tid, NA_SLOT_ACTIVE)) {
		struct netacct_thread *slot = bpf_map_lookup_elem(&thread_slots, &idx);
		if (slot && slot->start_ns == task->start_boottime &&
		    retire_owner(owner, tid, NA_SLOT_EXITED, NA_STAT_THREADS_EXITED))
			return;
	}
	struct netacct_thread_key key = { .tid = tid, .tgid = task->tgid, .start_ns = task->start_boottime };
	struct netacct_thread *thread = bpf_map_lookup_elem(&threads, &key);
	if (thread) {
		thread->state = NA_THREAD_EXITED;
		stat_add(NA_STAT_THREADS_EXITED);
	}
}

static __always_inline int ephemeral(__u16 port)
{
	return port >= settings.ephemeral_low && port <= settings.ephemeral_high;
}

/*
 * Adds the call under (process, `peer`): the datagram's address, or the
 * socket's peer (count_call fills it), with `local` the socket's own port;
 * or to the process's peer_overflow entry when the peers map is full.
 */
static __noinline int count_peer(struct sockaddr_peer *peer, __u16 local, __u32 tgid, __u32 calls_index,
				 int ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	/* The real uid as bpf_get_current_uid_gid gives it, read through the task: no helper call per event. */
	struct netacct_peer_key key = { .tgid = tgid, .start_ns = task->group_leader->start_boottime, .uid = task->cred->uid.val };

	if (peer->family == AF_INET && peer->v4_or_flowinfo) {
		key.addr[10] = key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &peer->v4_or_flowinfo, 4);
	} else if (peer->family == AF_INET6) {
		__builtin_memcpy(key.addr, peer->v6, 16);
	}
	__u16 remote = bpf_ntohs(peer->port);
	key.remote_port = remote;
	key.local_port = local;
	if (ephemeral(local) && !ephemeral(remote))
		key.local_port = 0; /* a client: the service's port is what matters */
	else if (ephemeral(remote) && !ephemeral(local))
		key.remote_port = 0; /* a service: its own port, not its clients' */

	struct netacct_counters *c = bpf_map_lookup_elem(&peers, &key);
	if (!c) {
		struct netacct_counters zero = {};
		/* Marked when it gets a row: a process whose own calls all went to
		 * unattributed rows holds nothing else in the kernel, yet the
		 * iterator must list it for its rows to stay. */
		if (create_shared(&peers, &key, &zero, key.uid, NA_SHARE_PEERS) == 0)
			mark_tracked(task->group_leader);
		c = bpf_map_lookup_elem(&peers, &key);
	}
	if (!c) {
		struct netacct_peer_overflow_key row = { .tgid = tgid, .uid = key.uid, .start_ns = key.start_ns };
		stat_add(NA_STAT_PEERS_FULL);
		c = shared_counters(&peer_overflow, &row, key.uid, NA_SHARE_PEER_OVERFLOW);
		if (!c) {
			stat_add(NA_STAT_PEERS_LOST);
			return 0;
		}
	}
	add_call(c, calls_index, ret);
	return 0;
}

/* Whether a call that returned `ret` with `flags` moved data to count. */
static __always_inline int moved_data(int ret, int flags, int direction)
{
	if (ret < 0) /* failed call, EAGAIN included */
		return 0;
	if (direction == NA_RECV && (flags & MSG_PEEK)) /* read again later */
		return 0;
	return 1;
}

/* A call that moved data (moved_data) on a socket of `sk_family` and `sk_protocol`;
 * `peer` and `local`: its peer and own port, read only when peers are counted. */
static __always_inline int count_socket_call(__u16 sk_family, __u16 sk_protocol, int ret, int direction,
					     struct sockaddr_peer *peer, __u16 local)
{
	int family;
	if (sk_family == AF_INET)
		family = NA_IPV4;
	else if (sk_family == AF_INET6)
		family = NA_IPV6;
	else
		return 0;

	int protocol;
	if (sk_protocol == IPPROTO_TCP || sk_protocol == IPPROTO_MPTCP) {
		if (ret == 0) /* EOF or nothing moved: not a call that carried data */
			return 0;
		protocol = NA_TCP;
	} else if (sk_protocol == IPPROTO_UDP || sk_protocol == IPPROTO_UDPLITE) {
		protocol = NA_UDP; /* a zero-length datagram is a call of 0 bytes */
	} else {
		return 0;
	}

	__u32 calls_index = ((family * 2 + protocol) * 2 + direction) * 2 + NA_CALLS;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (settings.count_threads) /* a constant for the verifier: no cost when off */
		count_thread((__u32)pid_tgid, calls_index, ret);
	__u32 tgid = pid_tgid >> 32;
	if (settings.count_peers) /* likewise */
		count_peer(peer, local, tgid, calls_index, ret);
	__u32 idx = tgid & settings.slot_mask;
	__u64 *owner = bpf_map_lookup_elem(&owners, &idx);
	if (!owner)
		return 0;
	if (*owner == owner_tag(tgid, NA_SLOT_ACTIVE)) {
		struct netacct_slot *slot = bpf_map_lookup_elem(&slots, &idx);
		if (slot)
			add_call(&slot->c, calls_index, ret);
		return 0;
	}
	return count_slow(owner, tgid, calls_index, ret);
}

/* `name`: the datagram's address where the program sees one (fexit), else NULL. */
static __always_inline int count_call(struct sock *sk, int ret, int flags, int direction,
				      struct sockaddr_peer *name)
{
	if (!moved_data(ret, flags, direction)) /* before touching the socket: most calls that fail stop here */
		return 0;
	if (!counting_generation())
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	struct sockaddr_peer peer; /* filled, and read, only when peers are counted */
	__u16 local = 0;
	if (settings.count_peers) {
		if (name) {
			peer = *name;
		} else {
			/* Plain loads: sk is a BTF pointer here. */
			peer.family = family;
			peer.port = sk->__sk_common.skc_dport;
			peer.v4_or_flowinfo = sk->__sk_common.skc_daddr;
			peer.v6[0] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[0];
			peer.v6[1] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[1];
			peer.v6[2] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[2];
			peer.v6[3] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[3];
		}
		local = sk->__sk_common.skc_num;
	}
	return count_socket_call(family, sk->sk_protocol, ret, direction, &peer, local);
}

/* The tracepoints do not pass the message: a UDP datagram's own address is
 * not seen there, and unconnected UDP counts under the "not known" peer. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
	return count_call(sk, ret, flags, NA_SEND, 0);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags)
{
	return count_call(sk, ret, flags, NA_RECV, 0);
}

/*
 * fexit sees the message: a UDP datagram's address, given to sendto or
 * sendmsg, or filled in for recvfrom or recvmsg (after the call, hence
 * fexit). Read only when peers are counted, for UDP, and when there is one.
 */
static __always_inline int count_message(struct socket *sock, struct msghdr *msg, int ret, int flags,
					 int direction)
{
	struct sock *sk = sock->sk;
	struct sockaddr_peer name; /* zeroed only when read: nothing on the path when peers are off */
	struct sockaddr_peer *named = 0;

	if (settings.count_peers && ret >= 0 &&
	    (sk->sk_protocol == IPPROTO_UDP || sk->sk_protocol == IPPROTO_UDPLITE)) {
		__builtin_memset(&name, 0, sizeof(name));
		void *address = msg->msg_name;
		int length = msg->msg_namelen;
		if (address && length >= 8 && !bpf_probe_read_kernel(&name, length < (int)sizeof(name) ? 8 : sizeof(name), address) &&
		    (name.family == AF_INET || (name.family == AF_INET6 && length >= (int)sizeof(name))))
			named = &name;
	}
	return count_call(sk, ret, flags, direction, named);
}

/*
 * Where the tracepoints are missing (before 6.3), the same counting on the
 * functions their call sites reach: the indirect calls of sock_sendmsg_nosec
 * and sock_recvmsg_nosec always land in these four for TCP, MPTCP, UDP and
 * UDP-Lite over IPv4 and IPv6 (send flags are 0, as in the tracepoint). The
 * daemon loads either these or the tracepoint programs, never both.
 */
SEC("fexit/inet_sendmsg")
int BPF_PROG(on_inet_send, struct socket *sock, struct msghdr *msg, __u64 size, int ret)
{
	return count_message(sock, msg, ret, 0, NA_SEND);
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(on_inet6_send, struct socket *sock, struct msghdr *msg, __u64 size, int ret)
{
	return count_message(sock, msg, ret, 0, NA_SEND);
}

SEC("fexit/inet_recvmsg")
int BPF_PROG(on_inet_recv, struct socket *sock, struct msghdr *msg, __u64 size, int flags, int ret)
{
	return count_message(sock, msg, ret, flags, NA_RECV);
}

SEC("fexit/inet6_recvmsg")
int BPF_PROG(on_inet6_recv, struct socket *sock, struct msghdr *msg, __u64 size, int flags, int ret)
{
	return count_message(sock, msg, ret, flags, NA_RECV);
}

/* A call that moved data on `sk`, a socket the verifier has no BTF type for
 * (reached through a void pointer, or noted by the splice program): read with CO-RE. */
static __always_inline int count_read_socket(struct sock *sk, __u16 family, __u16 protocol, int ret, int direction)
{
	struct sockaddr_peer peer = { .family = family };
	__u16 local = 0;
	if (settings.count_peers) {
		peer.port = BPF_CORE_READ(sk, __sk_common.skc_dport);
		peer.v4_or_flowinfo = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		bpf_core_read(peer.v6, sizeof(peer.v6), &sk->__sk_common.skc_v6_daddr);
		local = BPF_CORE_READ(sk, __sk_common.skc_num);
	}
	return count_socket_call(family, protocol, ret, direction, &peer, local);
}

/* sendfile and splice into a socket on kernels that still have sock_sendpage
 * (<= 6.4): they never pass inet*_sendmsg, except where the protocol has no
 * sendpage of its own (UDP over IPv6, MPTCP), whose fallback goes through
 * kernel_sendmsg and inet*_sendmsg: those are counted there, not twice. */
SEC("fexit/sock_sendpage")
int BPF_PROG(on_sendpage, struct file *file, void *page, int offset, __u64 size, void *ppos, int more, long ret)
{
	/* private_data is a void pointer to the verifier: read through it. */
	if (!moved_data((int)ret, 0, NA_SEND))
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 protocol = BPF_CORE_READ(sk, sk_protocol);
	if (!BPF_CORE_READ(sk, __sk_common.skc_prot, sendpage))
		return 0;
	if (family == AF_INET6 && (protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE))
		return 0;
	if (!counting_generation())
		return 0;
	return count_read_socket(sk, family, protocol, (int)ret, NA_SEND);
}

/*
 * splice(2) from a TCP socket into a pipe (HAProxy's splice forwarding)
 * reaches tcp_splice_read, which takes the data without any recvmsg: neither
 * the tracepoints nor the fexit programs see it (other protocols' splice
 * reads go through recvmsg and are counted there). The splice system call's
 * own tracepoints see it on every kernel, kprobes or fexit or not: the entry
 * notes the TCP socket spliced from, for the calling task; the exit counts
 * what was moved. (io_uring's IORING_OP_SPLICE skips the system call, and
 * 32-bit programs' splice has no such tracepoint on x86-64: not seen.)
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} splicing SEC(".maps");

/* events/syscalls/sys_enter_splice/format and sys_exit_splice/format (each argument in 8 bytes). */
struct sys_enter_splice {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 fd_in;
	__u64 off_in;
	__u64 fd_out;
	__u64 off_out;
	__u64 len;
	__u64 flags;
};

struct sys_exit_splice {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

#define S_IFMT 00170000
#define S_IFSOCK 0140000

struct inode {
	unsigned short i_mode;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct file___splice {
	struct inode *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct socket___splice {
	short type;
	struct sock *sk;
} __attribute__((preserve_access_index));

#define SOCK_STREAM 1

/* The TCP stream socket that file descriptor `fd` of the calling task is, or NULL. */
static __always_inline struct sock *tcp_socket_of(__s32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (fd < 0 || !fdt || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **files = BPF_CORE_READ(fdt, fd);
	struct file___splice *file = 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &files[fd]) || !file)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket___splice *sock = BPF_CORE_READ(file, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sock, type) != SOCK_STREAM || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0; /* a raw socket of protocol TCP reads through recvmsg */
	return sk;
}

/* Only the generation that counts notes a splice, and the note is taken
 * whole at its end by whichever program comes first (the map is pinned, so
 * a splice that spans a daemon's take-over is counted once by either). */
SEC("tracepoint/syscalls/sys_enter_splice")
int on_splice_enter(struct sys_enter_splice *ctx)
{
	if (!counting_generation())
		return 0; /* never touches the note of the generation that counts */
	struct task_struct *task = bpf_get_current_task_btf();
	/* The system call takes an int: the register's upper half is not the descriptor's. */
	struct sock *sk = tcp_socket_of((__s32)ctx->fd_in);
	__u64 *noted = bpf_task_storage_get(&splicing, task, 0, sk ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	if (noted)
		*noted = (__u64)sk; /* 0 for another file: no stale note for a later splice */
	else if (sk)
		stat_add(NA_STAT_NO_STORAGE);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_splice")
int on_splice_exit(struct sys_exit_splice *ctx)
{
	__u64 *noted = bpf_task_storage_get(&splicing, bpf_get_current_task_btf(), 0, 0);
	if (!noted)
		return 0;
	struct sock *sk = (struct sock *)__sync_lock_test_and_set(noted, 0);
	if (!sk || !moved_data((int)ctx->ret, 0, NA_RECV))
		return 0;
	return count_read_socket(sk, BPF_CORE_READ(sk, __sk_common.skc_family), IPPROTO_TCP, (int)ctx->ret, NA_RECV);
}

/* The process's slot, if it owns one in one of `states`. */
static __always_inline __u64 *owned_slot(struct task_struct *leader, __u64 states,
					 struct netacct_slot **slot_out)
{
	__u32 tgid = leader->tgid;
	__u32 idx = tgid & settings.slot_mask;
	__u64 *owner = bpf_map_lookup_elem(&owners, &idx);
	if (!owner)
		return 0;
	__u64 tag = *owner;
	if ((__u32)tag != tgid || !((tag >> 32) & states))
		return 0;
	struct netacct_slot *slot = bpf_map_lookup_elem(&slots, &idx);
	if (!slot || slot->start_ns != leader->start_boottime)
		return 0;
	*slot_out = slot;
	return owner;
}

/* A process (or, with threaded cgroups, one of its threads: then the whole
 * process follows it) changes cgroup: its slot keeps the old cgroup's counts
 * for the daemon, later events go to the overflow map under the new cgroup
 * until the daemon frees the slot and the process claims it again. It is
 * marked tracked: idle after the daemon freed its slot, it holds nothing in
 * the kernel, yet the iterator must still list it and its exit be recorded. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(on_cgroup_attach, struct cgroup *dst, const char *path, struct task_struct *task,
	     _Bool threadgroup)
{
	if (dst->root->hierarchy_id != DEFAULT_HIERARCHY_ID)
		return 0;
	struct task_struct *leader = task->group_leader;
	struct netacct_slot *slot;
	__u64 *owner = owned_slot(leader, NA_SLOT_ACTIVE, &slot);
	if (!owner || slot->cgroup_id == dst->kn->id)
		return 0;
	mark_tracked(leader);
	retire_owner(owner, leader->tgid, NA_SLOT_MOVED, NA_STAT_SLOTS_RETIRED);
	return 0;
}

static __always_inline void fill_info(struct netacct_proc_info *info, struct task_struct *leader)
{
	info->tgid = leader->tgid;
	info->uid = leader->cred->uid.val;
	info->start_ns = leader->start_boottime;
	info->cgroup_id = leader->cgroups->dfl_cgrp->kn->id;
	bpf_probe_read_kernel(info->comm, sizeof(info->comm), leader->comm);
}

/*
 * A thread other than the leader execs: it takes the leader's PID and start
 * time (de_thread), the leader's task is freed, and the thread never exits
 * as the thread it was. So its thread slot is retired here (else a later
 * thread with its tid, of any process, would add to it), and the tracked
 * mark, which was on the old leader's task, is set again (else the exit of a
 * process with overflow entries would go unrecorded). A thread counted in the
 * `threads` hash keeps its entry until the process exits (its key's start
 * time is gone with the exec).
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *task, int old_pid, void *bprm)
{
	if (old_pid == task->pid)
		return 0; /* the leader: nothing changes hands */
	if (settings.count_threads) {
		__u32 tid = old_pid;
		__u32 idx = tid & settings.thread_mask;
		__u64 *owner = bpf_map_lookup_elem(&thread_owners, &idx);
		struct netacct_thread *slot = bpf_map_lookup_elem(&thread_slots, &idx);
		if (owner && slot && *owner == owner_tag(tid, NA_SLOT_ACTIVE) && slot->tgid == (__u32)task->tgid)
			retire_owner(owner, tid, NA_SLOT_EXITED, NA_STAT_THREADS_EXITED);
	}
	/* Rare: marked whether or not it has entries (in any cgroup, under any uid). */
	mark_tracked(task);
	return 0;
}

/* The last thread of a process exits: freeze its slot and record who it was.
 * This runs before the PID can be given to a new process. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_process_exit)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (settings.count_threads)
		mark_thread_exited(task);
	if (task->signal->live.counter) /* decremented before this tracepoint */
		return 0;
	struct task_struct *leader = task->group_leader;
	struct netacct_slot *slot = 0;
	__u64 *owner = owned_slot(leader, NA_SLOT_ACTIVE | NA_SLOT_MOVED, &slot);
	if (owner)
		retire_owner(owner, leader->tgid, NA_SLOT_EXITED, NA_STAT_SLOTS_RETIRED);
	if (!owner && !bpf_task_storage_get(&tracked, leader, 0, 0))
		return 0; /* never sent or received */

	struct netacct_proc_info info = {};
	fill_info(&info, leader);
	struct netacct_proc_id id = { .tgid = info.tgid, .start_ns = info.start_ns };
	/* Within its user's share: a user's churn between two drains cannot crowd out others' exits.
	 * Refused, the exit is still known from the slot (EXITED), or from the live reads. */
	if (bpf_map_lookup_elem(&exited, &id))
		return 0; /* recorded by the other generation's program, both attached for a moment */
	if (create_shared(&exited, &id, &info, info.uid, NA_SHARE_EXITED))
		stat_add(NA_STAT_EXITED_FULL);
	return 0;
}

/* Who every live process with counters is, in one pass. Slots already say
 * who claimed them; the daemon runs this now and then, to follow renames
 * (exec) and to name processes that only have overflow entries. */
SEC("iter/task")
int dump_processes(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task || task->pid != task->tgid)
		return 0;
	if (!task->signal->live.counter) /* exited: on_process_exit reports it */
		return 0;
	struct netacct_slot *slot = 0;
	if (!owned_slot(task, NA_SLOT_ACTIVE | NA_SLOT_MOVED, &slot) &&
	    !bpf_task_storage_get(&tracked, task, 0, 0))
		return 0;

	struct netacct_proc_info info = {};
	fill_info(&info, task);
	bpf_seq_write(ctx->meta->seq, &info, sizeof(info));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
