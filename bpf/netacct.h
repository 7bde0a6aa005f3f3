/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Binary layouts shared by the BPF programs (netacct.bpf.c) and the daemon.
 * This header is the single source of truth: daemon/kernel/layout.ts mirrors it and
 * test/layout.test.ts compiles this header with cc and checks every offset.
 */
#ifndef NETACCT_H
#define NETACCT_H

#include <linux/types.h>

/* Bumped whenever a map's key or value layout changes: pinned maps live in
 * <pin dir>/v<NA_LAYOUT_VERSION>, so an upgrade never reads another layout. */
#define NA_LAYOUT_VERSION 4

/*
 * Kernel maps a user fills by what its processes do, where each user other
 * than root holds at most a share, and all of them together leave room for
 * root: past its share, a user's calls go to its own coarser row, never
 * anyone else's (netacct_unattributed_key).
 */
enum netacct_share {
	NA_SHARE_OVERFLOW = 0,      /* overflow entries (processes whose slot is taken) */
	NA_SHARE_UNATTRIBUTED = 1,  /* (uid, cgroup) rows */
	NA_SHARE_PEERS = 2,         /* (process, peer) pairs */
	NA_SHARE_PEER_OVERFLOW = 3, /* processes' peer overflow rows */
	NA_SHARE_EXITED = 4,        /* exit records between two drains */
	NA_SHARES = 5,
};

/* Entries held per share: share_created (added to by the programs as they
 * create entries) less share_released (written by the daemon only, as it
 * deletes them), per uid; the key NA_OTHERS_UID counts every user but root. */
struct netacct_held {
	__u64 n[NA_SHARES];
};
#define NA_OTHERS_UID 0xfffffffeu

/*
 * Settings the daemon writes into .rodata before loading (a const volatile
 * global): the verifier sees them as constants and removes the code they
 * switch off, so per-thread counting costs nothing per event when off.
 */
struct netacct_settings {
	__u32 slot_mask;     /* slot count - 1 (a power of two - 1) */
	__u32 count_threads; /* 1: also count per thread */
	__u32 thread_mask;   /* thread slot count - 1 (a power of two - 1) */
	__u32 count_peers;   /* 1: also count per process and remote peer */
	__u16 ephemeral_low; /* net.ipv4.ip_local_port_range, for which port of a peer to keep */
	__u16 ephemeral_high;
	__u32 user_share[NA_SHARES];   /* entries one user other than root may hold */
	__u32 others_share[NA_SHARES]; /* entries all users but root may hold together */
	__u32 generation;              /* these programs count while control[0] holds it */
};

/*
 * Counting goes on while no daemon runs: the programs' links are pinned
 * beside the maps. A daemon that starts loads its own programs as a new
 * generation, attaches them (they count nothing yet), then writes their
 * generation into control[0], the one switch every generation reads: from
 * that store on, the new programs count and the old ones stop, with no call
 * missed or counted twice; it then removes the old links.
 */
struct netacct_control {
	__u32 generation; /* the generation that counts */
};

/* Counter index = ((family * 2 + protocol) * 2 + direction) * 2 + kind. */
enum netacct_family { NA_IPV4 = 0, NA_IPV6 = 1 };
enum netacct_protocol { NA_TCP = 0, NA_UDP = 1 };
enum netacct_direction { NA_SEND = 0, NA_RECV = 1 };
enum netacct_kind { NA_CALLS = 0, NA_BYTES = 1 };
#define NA_COUNTERS 16

struct netacct_counters {
	__u64 v[NA_COUNTERS];
};

/*
 * owners[i] (a __u64) says who slots[i] belongs to: tgid | state << 32, or 0
 * when free. Slot i serves the process whose tgid & slot_mask == i. Only BPF
 * programs claim a free slot; only the daemon frees one, after reading it.
 * The state values are single bits so that no partial write of one state can
 * look like NA_SLOT_ACTIVE.
 */
enum netacct_slot_state {
	NA_SLOT_ACTIVE = 1,   /* counting */
	NA_SLOT_EXITED = 2,   /* the process exited: final counters, to be read and freed */
	NA_SLOT_MOVED = 4,    /* the process left slot->cgroup_id: read and free */
	NA_SLOT_CLAIMING = 8, /* being set up by the claiming program */
};

struct netacct_slot {
	__u32 tgid;
	__u32 uid;       /* real uid when the slot was claimed */
	__u64 start_ns;  /* group leader's start_boottime (CLOCK_BOOTTIME ns) */
	__u64 cgroup_id; /* cgroup v2 id the counters belong to */
	char comm[16];   /* group leader's name when the slot was claimed */
	struct netacct_counters c;
};

/* Counters of a process in one cgroup that did not fit a slot (uid: the
 * calling thread's real uid, whose share the entry is counted in). */
struct netacct_part_key {
	__u32 tgid;
	__u32 uid;
	__u64 start_ns;
	__u64 cgroup_id;
};

/*
 * Where a call lands when no row of its process can take it (its slot is
 * taken and the overflow map is full): the row of its (real uid, cgroup v2),
 * or, when the `unattributed` map is full too, the host's row (uid
 * NA_HOST_UID, cgroup 0), which the daemon creates before counting starts and
 * never deletes. A user past its share of this map (netacct_share) counts in
 * its own row (uid, cgroup 0). Per-process detail degrades; the user's, the
 * cgroup's and the host's sums stay exact: no call is ever lost.
 */
struct netacct_unattributed_key {
	__u32 uid;
	__u32 pad;
	__u64 cgroup_id;
};
#define NA_HOST_UID 0xffffffffu

/* Identity of a process: a PID plus its start time never repeats. */
struct netacct_proc_id {
	__u32 tgid;
	__u32 pad;
	__u64 start_ns;
};

/* Who a process is: written by the task iterator for live processes and by
 * the exit program (into the `exited` map) for processes that exited. */
struct netacct_proc_info {
	__u32 tgid;
	__u32 uid; /* real uid of the group leader */
	__u64 start_ns;
	__u64 cgroup_id; /* cgroup v2 id now, or at the exit */
	char comm[16];
};

/*
 * Per-thread counting (opt-in) follows the scheme of processes: a thread owns
 * slot tid & thread_mask of thread_owners[] (tag tid | state << 32, states
 * NA_SLOT_ACTIVE, _EXITED, _CLAIMING) and thread_slots[]; a thread whose slot
 * is taken is counted in the `threads` hash instead, for its whole life. Only
 * the daemon frees a slot or deletes an entry, after reading it as exited.
 */
struct netacct_thread_key {
	__u32 tid;
	__u32 tgid;
	__u64 start_ns; /* the thread's start_boottime */
};

enum netacct_thread_state { NA_THREAD_LIVE = 0, NA_THREAD_EXITED = 1 };

/* A thread's counters: the value of thread_slots[] and of the `threads` hash. */
struct netacct_thread {
	__u32 tid;
	__u32 tgid;
	__u64 start_ns;         /* the thread's start_boottime */
	__u64 process_start_ns; /* the group leader's start_boottime */
	char comm[16];          /* the thread's name at its first counted call */
	__u32 state;            /* in the hash: enum netacct_thread_state (slots use their owner tag) */
	__u32 pad;
	struct netacct_counters c;
};

/*
 * Per-peer counting (opt-in): a process's counters per remote peer, in the
 * `peers` hash. The address is IPv6, IPv4 as ::ffff:a.b.c.d; all zero when
 * the call's peer is not known (an unconnected UDP socket whose datagram's
 * address the program cannot see). Of the two ports, an ephemeral one is not
 * kept (0) when the other is not ephemeral: a client's own port, a service's
 * client's port; so a service has one entry per client address, not per
 * connection. A process whose entry does not fit is counted in
 * `peer_overflow` under its netacct_proc_id instead.
 */
struct netacct_peer_key {
	__u32 tgid;
	__u16 remote_port; /* host order; 0: not kept, or not known */
	__u16 local_port;  /* host order; 0: not kept */
	__u64 start_ns;
	__u8 addr[16];
	__u32 uid; /* the calling thread's real uid: whose share the entry is counted in */
	__u32 pad;
};

/* Key of `peer_overflow`: a process's row, in its caller's share. */
struct netacct_peer_overflow_key {
	__u32 tgid;
	__u32 uid;
	__u64 start_ns;
};

/* Per-CPU counters of what could not be recorded (never silently lost). */
enum netacct_stat {
	NA_STAT_OVERFLOW_FULL = 0, /* events counted in `unattributed`: the overflow map was full */
	NA_STAT_EXITED_FULL = 1,   /* exits not recorded: the exited map was full */
	NA_STAT_NO_STORAGE = 2,    /* processes not marked for their exit (no task storage) */
	NA_STAT_SLOTS_RETIRED = 3, /* slots marked EXITED or MOVED: tells the daemon to read them */
	NA_STAT_THREADS_FULL = 4,   /* thread calls not counted per thread: the threads map was full */
	NA_STAT_THREADS_EXITED = 5, /* threads marked exited: tells the daemon to read and delete them */
	NA_STAT_PEERS_FULL = 6,     /* peer calls counted in peer_overflow: the peers map was full */
	NA_STAT_PEERS_LOST = 7,     /* peer calls not counted per peer at all: peer_overflow was full too */
	NA_STAT_UNATTRIBUTED_FULL = 8, /* events counted in the host's row: `unattributed` was full */
	NA_STAT_LOST = 9,           /* events not counted at all: the host's row was missing (a bug) */
	NA_STAT_OVER_SHARE = 10,    /* entries not created: their user held its share of the map */
	NA_STATS = 11,
};

/*
 * The netatop kernel module's getsockopt interface (atop before 2.10), served
 * by netatop-sockopt.bpf.c: getsockopt(raw IPv4 socket, SOL_IP, command).
 */
enum netatop_command {
	NETATOP_PROBE = 15661,       /* is the module there? */
	NETATOP_FORCE_GC = 15662,    /* make finished processes available (to netatopd) */
	NETATOP_EMPTY_EXIT = 15663,  /* wait until netatopd read every finished process */
	NETATOP_GETCNT_EXIT = 15664, /* netatopd's own: next finished process */
	NETATOP_GETCNT_TGID = 15665, /* counters of process `id` */
	NETATOP_GETCNT_PID = 15666,  /* counters of thread `id` */
};
#define NETATOP_COMMANDS 6

/* atop's struct netpertask (x86_64): what GETCNT_* copy to the caller. */
struct netatop_task {
	__s32 id; /* tgid, or tid */
	__u32 pad;
	__u64 btime; /* start, seconds since the epoch */
	char command[16];
	__u64 counters[8]; /* tcp snd/rcv calls/bytes, then udp */
};

/* Key of netatop_answers: NETATOP_KIND_PROCESS or _THREAD << 32 | id. */
enum netatop_kind { NETATOP_KIND_PROCESS = 1, NETATOP_KIND_THREAD = 2 };

/* A value of netatop_answers, published by the daemon. */
struct netatop_answer {
	struct netatop_task task;
	__u32 uid; /* whose process: other users get no answer */
	__u32 pad;
};

/* netatop_settings[0], written by the daemon. */
struct netatop_settings {
	__u32 all_gid; /* callers with this real gid see every process (allProcessesGroup); ~0: none */
	__u32 pad;
};

#endif
