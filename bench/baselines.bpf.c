// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reference programs for bench/bpf-cost: attached to the same tracepoints as
 * netacct at the same time, they see exactly the same events.
 *  - empty_btf_*: an empty tp_btf program, netacct's attach type;
 *  - empty_tp_*: an empty classic tracepoint program;
 *  - original_*: counting as the original netatop-bpf does, written from its
 *    description: a classic tracepoint, a per-CPU hash keyed by the 64-bit
 *    tgid, lookup (insert on a miss) then increment.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct sock;

/* sock:sock_send_length / sock_recv_length record after the common header. */
struct sock_length_args {
	__u64 common;
	void *sk;
	__u16 family;
	__u16 protocol;
	int ret;
	int flags;
};

struct original_counters {
	__u64 tcpsndpacks, tcpsndbytes, tcprcvpacks, tcprcvbytes;
	__u64 udpsndpacks, udpsndbytes, udprcvpacks, udprcvbytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct original_counters);
} original_table SEC(".maps");

SEC("tp_btf/sock_send_length")
int BPF_PROG(empty_btf_send, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(empty_btf_recv, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tracepoint/sock/sock_send_length")
int empty_tp_send(struct sock_length_args *args)
{
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int empty_tp_recv(struct sock_length_args *args)
{
	return 0;
}

/* Lookup (insert on a miss) then increment, as the original does. */
static __always_inline int original_count(struct sock_length_args *args, int recv)
{
	__u64 tgid = bpf_get_current_pid_tgid() >> 32;
	struct original_counters *c = bpf_map_lookup_elem(&original_table, &tgid);
	if (!c) {
		struct original_counters zero = {};
		bpf_map_update_elem(&original_table, &tgid, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&original_table, &tgid);
		if (!c)
			return 0;
	}
	__u64 *packs; /* the bytes counter follows its packs counter */
	if (args->protocol == 6)
		packs = recv ? &c->tcprcvpacks : &c->tcpsndpacks;
	else if (args->protocol == 17)
		packs = recv ? &c->udprcvpacks : &c->udpsndpacks;
	else
		return 0;
	packs[0]++;
	packs[1] += args->ret;
	return 0;
}

SEC("tracepoint/sock/sock_send_length")
int original_send(struct sock_length_args *args)
{
	return original_count(args, 0);
}

SEC("tracepoint/sock/sock_recv_length")
int original_recv(struct sock_length_args *args)
{
	return original_count(args, 1);
}

/* Empty fexit programs on the fallback's attach points (kernels without the tracepoints). */
SEC("fexit/inet_sendmsg")
int BPF_PROG(empty_fexit_send, void *sock, void *msg, __u64 size, int ret)
{
	return 0;
}

SEC("fexit/inet_recvmsg")
int BPF_PROG(empty_fexit_recv, void *sock, void *msg, __u64 size, int flags, int ret)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
