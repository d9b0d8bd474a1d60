// SPDX-License-Identifier: GPL-2.0
/*
 * kvload: closed-loop insert clients for udp_server, run inside the lab
 * guest (bench/durable.ts compiles it on the host; the guest sees the host's
 * files). Each client thread sends "insert KEY VALUE" and waits for the
 * reply before the next one, for SECONDS, over loopback.
 *
 *   kvload PORT CLIENTS SECONDS TAG
 *
 * Prints one line: "<answered OK> <not OK> <timed out> <seconds>".
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct client {
	pthread_t thread;
	int id;
	long ok, bad, lost;
};

static int port;
static double seconds;
static const char *tag;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	struct client *c = arg;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval timeout = { .tv_sec = 1 };
	char request[128], reply[256];
	double end = now() + seconds;
	long i;
	int fd;

	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) < 0) {
		perror("kvload: socket");
		exit(1);
	}
	for (i = 0; now() < end; i++) {
		int n = snprintf(request, sizeof(request), "insert %s%d-%ld v%ld", tag, c->id, i % 20000, i);
		ssize_t got;

		if (send(fd, request, n, 0) != n) {
			perror("kvload: send");
			exit(1);
		}
		got = recv(fd, reply, sizeof(reply) - 1, 0);
		if (got < 0)
			c->lost++;
		else if (got >= 3 && !memcmp(reply, "OK\n", 3))
			c->ok++;
		else
			c->bad++;
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	struct client *clients;
	long ok = 0, bad = 0, lost = 0;
	double started;
	int n, i;

	if (argc != 5) {
		fprintf(stderr, "usage: kvload PORT CLIENTS SECONDS TAG\n");
		return 2;
	}
	port = atoi(argv[1]);
	n = atoi(argv[2]);
	seconds = atof(argv[3]);
	tag = argv[4];
	clients = calloc(n, sizeof(*clients));
	if (!clients)
		return 1;
	started = now();
	for (i = 0; i < n; i++) {
		clients[i].id = i;
		if (pthread_create(&clients[i].thread, NULL, run, &clients[i])) {
			fprintf(stderr, "kvload: cannot start a client thread\n");
			return 1;
		}
	}
	for (i = 0; i < n; i++) {
		pthread_join(clients[i].thread, NULL);
		ok += clients[i].ok;
		bad += clients[i].bad;
		lost += clients[i].lost;
	}
	printf("%ld %ld %ld %.3f\n", ok, bad, lost, now() - started);
	return 0;
}
