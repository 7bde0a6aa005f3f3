/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Binary layouts shared by the BPF programs (netacct.bpf.c) and the daemon.
 * This header is the single source of truth: daemon/layout.ts mirrors it and
 * test/layout.test.ts compiles this header with cc and checks every offset.
 */
#ifndef NETACCT_H
#define NETACCT_H

#include <linux/types.h>

/* Counter index = ((family * 2 + protocol) * 2 + direction) * 2 + kind. */
enum netacct_family { NA_IPV4 = 0, NA_IPV6 = 1 };
enum netacct_protocol { NA_TCP = 0, NA_UDP = 1 };
enum netacct_direction { NA_SEND = 0, NA_RECV = 1 };
enum netacct_kind { NA_CALLS = 0, NA_BYTES = 1 };
#define NA_COUNTERS 16

struct netacct_counters {
	__u64 v[NA_COUNTERS];
};

/* Task-local storage of a process, attached to its group leader's task_struct.
 * Every thread of the process adds to it; it dies with the task_struct, so a
 * reused PID always starts from a fresh, zeroed storage. */
struct netacct_proc {
	__u64 cgroup_id; /* cgroup v2 id the counters belong to; 0 until first set */
	struct netacct_counters c;
};

/* One process, as the task iterator writes it and as the exit program
 * stores a process's final counters in the `exited` map. */
struct netacct_proc_record {
	__u32 tgid;
	__u32 uid;      /* real uid of the group leader */
	__u64 start_ns; /* group leader's start_boottime: CLOCK_BOOTTIME ns */
	__u64 cgroup_id;
	char comm[16];
	struct netacct_counters c;
};

/* Identity of a process: a PID plus its start time never repeats. */
struct netacct_proc_id {
	__u32 tgid;
	__u32 pad;
	__u64 start_ns;
};

/* Counters a process accumulated in a cgroup it has since left. */
struct netacct_moved_key {
	__u32 tgid;
	__u32 pad;
	__u64 start_ns;
	__u64 cgroup_id;
};

/* Per-CPU counters of what could not be recorded (never silently lost). */
enum netacct_stat {
	NA_STAT_NO_STORAGE = 0,  /* events dropped: no task storage could be had */
	NA_STAT_MOVED_FULL = 1,  /* migrations whose old-cgroup counters stayed with the new cgroup */
	NA_STAT_EXITED_FULL = 2, /* exits whose final counters found the exited map full */
	NA_STATS = 3,
};

#endif
