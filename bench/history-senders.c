// Processes that send a little traffic now and then, spread over cgroups, for
// bench/history: `history-senders PERIOD_MS PER_CGROUP DIR...` starts, per
// cgroup directory DIR (index i), PER_CGROUP processes in it; each sends one
// UDP/IPv4 datagram of 50 + (37 * i) % 1400 bytes at once and then one every
// PERIOD_MS (at a random phase, so that the sends spread over the period),
// and idles in between. Prints "ready" when every process has moved into its
// cgroup and sent, and exits, with them all, when its stdin closes.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char buf[2048];

static void must(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "history-senders: %s failed: %s\n", what, strerror(errno));
		exit(1);
	}
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Sends every period_ms until stdin closes (all processes poll the same pipe). */
static void sender(int fd, int size, long period_ms, int ready_fd)
{
	srand(getpid() ^ (unsigned)now_ms());
	send(fd, buf, size, MSG_DONTWAIT); /* a full receive buffer drops it: the send still counts */
	must(write(ready_fd, "s", 1) == 1, "write");
	close(ready_fd);
	long long next = now_ms() + rand() % period_ms;
	for (;;) {
		long long wait = next - now_ms();
		struct pollfd in = { .fd = 0, .events = POLLIN };
		int ready = poll(&in, 1, wait > 0 ? (int)wait : 0);
		if (ready > 0) {
			if (read(0, buf, sizeof(buf)) <= 0)
				_exit(0);
			continue;
		}
		if (ready < 0 && errno != EINTR)
			_exit(1);
		if (now_ms() >= next) {
			send(fd, buf, size, MSG_DONTWAIT);
			next += period_ms;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: history-senders PERIOD_MS PER_CGROUP DIR...\n");
		return 2;
	}
	long period_ms = atol(argv[1]);
	int per_cgroup = atoi(argv[2]);
	int cgroups = argc - 3;
	must(period_ms > 0 && per_cgroup > 0, "arguments");
	/* Orphans (a leader's children once it has gone) are reaped here. */
	must(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "prctl");

	/* One sending socket for all (counted per process all the same) and a receiver nobody reads. */
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	int b = socket(AF_INET, SOCK_DGRAM, 0), a = socket(AF_INET, SOCK_DGRAM, 0);
	must(a >= 0 && b >= 0, "socket");
	must(bind(b, (struct sockaddr *)&addr, len) == 0, "bind");
	must(getsockname(b, (struct sockaddr *)&addr, &len) == 0, "getsockname");
	must(connect(a, (struct sockaddr *)&addr, len) == 0, "connect");

	int ready[2];
	must(pipe(ready) == 0, "pipe");
	for (int i = 0; i < cgroups; i++) {
		pid_t leader = fork();
		must(leader >= 0, "fork");
		if (leader)
			continue;
		close(ready[0]);
		char procs[4096];
		snprintf(procs, sizeof(procs), "%s/cgroup.procs", argv[3 + i]);
		int f = open(procs, O_WRONLY);
		must(f >= 0, "opening cgroup.procs");
		must(write(f, "0", 1) == 1, "moving into the cgroup");
		close(f);
		int size = 50 + (37 * i) % 1400;
		for (int j = 1; j < per_cgroup; j++) {
			pid_t child = fork();
			must(child >= 0, "fork");
			if (child == 0)
				sender(a, size, period_ms, ready[1]);
		}
		sender(a, size, period_ms, ready[1]);
	}
	close(ready[1]);
	char c;
	for (long i = 0; i < (long)cgroups * per_cgroup; i++)
		must(read(ready[0], &c, 1) == 1, "read (a sender failed)");
	printf("ready\n");
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	while (wait(NULL) > 0)
		;
	return 0;
}
