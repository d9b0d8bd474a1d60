// SPDX-License-Identifier: GPL-2.0
/*
 * commitloop: the floor of a durable group commit, for bench/durable.ts.
 * Not a backup daemon: it keeps no table and no base, and ignores
 * "snapshot" lines. It registers with udp_server as kvd does and then does
 * only what a durable commit cannot avoid, on one thread, blocking:
 *
 *   read /proc/kvjournal → write(LOG) → fdatasync(LOG) → write "N" back
 *
 * so that the benchmark can tell the time kvd's own work costs (Node, its
 * event loop and thread pool) from the time the hand-offs and the flush
 * cost, with the log on virtiofs or on a virtio-blk disk.
 *
 *   commitloop LOG        until the journal reads end of file (unload)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_MAX (1 << 20)

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* The number of the last whole line in buf[0..n): lines are "N op ...\n". */
static unsigned long long last_number(const char *buf, size_t n)
{
	const char *line = buf;
	const char *end = buf + n;
	const char *next;
	unsigned long long last = 0;

	while (line < end && (next = memchr(line, '\n', end - line))) {
		last = strtoull(line, NULL, 10);
		line = next + 1;
	}
	return last;
}

int main(int argc, char **argv)
{
	static char buf[READ_MAX];
	char number[24];
	int journal, confirm, log, pidfile;
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: commitloop LOG\n");
		return 2;
	}
	log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600);
	if (log < 0)
		die(argv[1]);
	pidfile = open("/proc/daemonpid", O_WRONLY);
	if (pidfile < 0)
		die("/proc/daemonpid");
	n = snprintf(number, sizeof(number), "%d\n", getpid());
	if (write(pidfile, number, n) != n)
		die("register");
	close(pidfile);
	journal = open("/proc/kvjournal", O_RDONLY);
	confirm = open("/proc/kvjournal", O_WRONLY);
	if (journal < 0 || confirm < 0)
		die("/proc/kvjournal");
	/* Ready: the benchmark starts its clients once it reads this line. */
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		n = read(journal, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0 && errno == EIO)
			n = 0;
		if (n < 0)
			die("read /proc/kvjournal");
		if (n == 0)
			return 0;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(log, buf + off, n - off);

			if (w < 0)
				die("write LOG");
			off += w;
		}
		if (fdatasync(log))
			die("fdatasync LOG");
		n = snprintf(number, sizeof(number), "%llu", last_number(buf, n));
		if (write(confirm, number, n) != n && errno != EIO)
			die("confirm");
	}
}
