// SPDX-License-Identifier: GPL-2.0
/*
 * loadgen: the benchmark's load generator (bench/kv-bench.ts compiles it on
 * the host and runs it inside the lab guest, over the shared filesystem).
 *
 * CLIENTS closed-loop clients, each a connected UDP socket to 127.0.0.1:PORT
 * (or one to each server of a pool, -s below) with up to WINDOW requests in
 * flight. THREADS threads share the clients (epoll); each sends a client's
 * free window in one sendmmsg() (one per socket in a pool) and reads what
 * has arrived in one recvmmsg(). Latency is per request, from the
 * CLOCK_MONOTONIC reading taken just before the sendmmsg() that carried it
 * to the one taken after the recvmmsg() that carried its reply. (Not after
 * the send returns: the kernel may deliver the request, and a server in
 * the receive softirq or a woken thread may queue its reply, before
 * sendmmsg() comes back, and that time would be left out.)
 *
 *   loadgen run [WORKLOAD] PORT PROTO MIX CLIENTS WINDOW SECONDS [THREADS]
 *       PROTO: text (our protocol), mc (memcached's UDP frames), echo
 *       (text requests, any reply counts); MIX: rw (50/50 insert/lookup),
 *       r (lookup), w (insert), rNN (NN% lookups, the rest inserts).
 *   loadgen preload [WORKLOAD] PORT PROTO insert every key once
 *   loadgen probe [WORKLOAD] PORT PROTO SECONDS   wait until the server answers
 *   loadgen stats [WORKLOAD] PORT PROTO   print the server's stats reply
 *   loadgen exec CMD [ARG...]             run CMD, measure it as a generator
 *   loadgen watch IFACE SECONDS RUN       the server's side of a run of RUN
 *                                         seconds from another guest (below)
 *   loadgen zipf KEYS THETA DRAWS         print how often the sampler picks
 *                                         the 10 hottest keys (for the tests)
 *   loadgen ketama LIST < KEYS            print the index in LIST of each
 *                                         key's ketama server (for the tests)
 *
 * PORT: the server's UDP port; with -s LIST (a pool, below) it is left out.
 *
 * WORKLOAD: -k KEYS (default 1000; keys key00000, key00001, ..., at least
 * 5 digits), -z THETA (keys drawn with Zipf(THETA) by rank, key00000 the
 * hottest; default 0, uniform), -v MIN-MAX (each key's value has a length
 * of MIN to MAX bytes, the same for a key every time; default: 9-byte
 * values "valNNNNNN"), -a ADDR (the server's IPv4 address; default
 * 127.0.0.1), -P (pad each text lookup with spaces to a third of its
 * reply's length: udp_server answers a sender on another host with at most
 * 3 times the request, PROTOCOL.md "Reflection and loops"; memcached-port
 * replies here fit its one-datagram floor and are never padded).
 *
 * Pool: -s HOST:PORT,HOST:PORT,... (IPv4 addresses, at most MAX_SERVERS)
 * takes the place of PORT and -a: each request goes to the server that
 * libmemcached's ketama (MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED) gives its key,
 * exactly as kvclient --servers places it (user-client/ketama.ts; the hosts
 * are hashed as written, so give the same list). Each client then has one
 * socket per server and tracks the requests in flight on each (its WINDOW,
 * or MAX_SLOTS in the open loop, counts them all); preload inserts each
 * key on its server, probe waits for every server, stats prints each
 * server's after a line "server HOST:PORT". Each key's server is computed
 * once at the start.
 *
 * run and exec print one JSON line on stdout (exec after CMD's own output,
 * prefixed "LOADGEN "): the requests answered, lost and refused (error
 * replies), the text replies that came out of order (reordered: counted
 * as answered; UDP keeps no order), the latency percentiles in microseconds, the generator's CPU seconds
 * (getrusage) and the whole guest's busy and total CPU seconds over the
 * same interval (total: vCPUs times wall time; busy: total less the idle
 * time of /proc/stat). With LOADGEN_SERVER=NAME in the environment it also
 * prints the CPU seconds the server's own threads ran over the interval:
 * every task of each process whose name starts with NAME (a kernel thread
 * is a process of its own, "udp_server/0").
 *
 * Open loop (-r RATE): requests leave at RATE a second in all, with
 * exponential gaps (Poisson arrivals) drawn by each thread for its share of
 * the rate, whether or not replies have come; each goes to the thread's
 * next client in turn (up to MAX_SLOTS in flight on one client; a request
 * that finds every client of its thread full counts as lost). Latency runs
 * from the time the request was due, not the time it left, so a generator
 * that falls behind its schedule shows as latency too. WINDOW is ignored.
 * After SECONDS no more requests are sent; those in flight get LOST_AFTER
 * seconds to be answered, then count as lost.
 *
 * watch (in the server's guest while a generator in another guest runs):
 * prints "ready", then samples every WATCH_INTERVAL the guest's idle time,
 * the datagrams IFACE received and sent (/proc/net/dev) and the CPU time
 * of the LOADGEN_SERVER threads. The run is the span of the samples in which
 * datagrams arrived; watch ends QUIET_AFTER seconds after the last one, once
 * datagrams have come for most of RUN seconds (a pause of the generator waiting for
 * lost requests does not end it early), or after SECONDS, and prints the guest's busy and total CPU seconds over
 * that span, its own CPU seconds (to be left out), the server threads' CPU
 * seconds, the datagrams received and sent, and whether datagrams were
 * already arriving when it started (then its figures miss the start).
 *
 * Matching replies: memcached frames carry a request ID. Our text protocol
 * does not, but each client's socket is served in order by one server
 * thread, so a text reply answers the oldest request in flight on that
 * socket (in a pool, requests are numbered and matched per socket). A request
 * unanswered for LOST_AFTER seconds counts as lost; for text every request
 * in flight is then written off and the client gets a new socket, so a
 * late reply can never be taken for another one.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WINDOW 64
/* Requests in flight on one client in the open loop (a second of them at 16 000 a second, below the 16-bit IDs of memcached frames). */
#define MAX_SLOTS 16384
/* The longest request: "insert KEY VALUE" or a memcached set, 1000-byte values at most. */
#define MAX_VALUE 1000
#define MAX_MSG (MAX_VALUE + 64)
/* Replies: the value and the protocol's framing. */
#define MAX_REPLY (MAX_VALUE + 128)
#define LOST_AFTER 1.0
/* Latency histogram: 1 us buckets up to 1 s, the last bucket holds the rest. */
#define HIST_US 1000000

enum proto { TEXT, MC, ECHO };
enum mix { RW, READ, WRITE };

struct slot {
	double sent;
	int busy;
	int insert;
};

/* One socket to one server, and the requests in flight on it. */
struct conn {
	int fd;
	uint32_t next_rid;	/* the next request's number */
	uint32_t oldest;	/* the oldest request in flight, or next_rid */
	struct slot slots[MAX_SLOTS];
};

struct client {
	unsigned int id;
	/* nr_conns of them: one per server of the pool (-s), in its order, or the one server's. */
	struct conn *conns;
	uint64_t rng;
};

struct worker {
	pthread_t thread;
	struct client *clients;
	unsigned int n;
	uint64_t answered, lost, refused, reordered, misses, sent;
	double latency_sum;
	/* Open loop: this thread's share of the rate, its draws for the gaps, the next client. */
	double rate;
	uint64_t rng;
	unsigned int turn;
	uint32_t *hist;
};

static int port, window;
static double seconds;
/* Open loop: requests a second, in all; 0: closed loop. */
static double rate;
static enum proto proto;
static enum mix mix;
/* MIX rNN: the share of lookups, in percent (rw: 50). */
static unsigned int read_percent = 50;
/* The workload: how many keys, how they are drawn, how long their values are. */
static unsigned int keys = 1000, key_width = 5;
static double theta;
static double *zipf_cdf;
static unsigned int value_min, value_max;
static char value_pattern[MAX_VALUE + 26];
static double deadline;
static const char *refusal_example;
/* -a: the server's address (network byte order); -P: pad text lookups for the reflection bound. */
static in_addr_t server_addr;
static int pad_lookups;

/* -s: a pool of servers, each key on the one ketama gives it (nr_servers 0: the one server at PORT). */
#define MAX_SERVERS 64
struct server {
	char host[64];	/* as written: ketama hashes it */
	int port;
	struct sockaddr_in addr;
};
static struct server servers[MAX_SERVERS];
static unsigned int nr_servers;
/* Sockets a client has: one per server, or 1 without a pool. */
static unsigned int nr_conns = 1;
/* Each key's server, computed once. */
static uint8_t *key_server;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* A socket connected to server `server` of the pool, or to the one server. */
static int open_socket(unsigned int server)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval timeout = { .tv_usec = 100000 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	to.sin_addr.s_addr = server_addr ? server_addr : htonl(INADDR_LOOPBACK);
	if (nr_servers)
		to = servers[server].addr;
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) < 0)
		die("loadgen: socket");
	return fd;
}

static uint64_t next_random(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

/* A uniform double in [0, 1). */
static double uniform(uint64_t *state)
{
	return (next_random(state) >> 11) * 0x1.0p-53;
}

/*
 * MD5 (RFC 1321), for ketama: the digest as its four little-endian 32-bit
 * words, which are ketama's four points (and word 0 a key's hash).
 */
static const uint32_t md5_sines[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
	0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
	0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
	0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
	0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
	0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
	0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
	0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};
static const uint8_t md5_shifts[16] = { 7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21 };

static void md5_block(uint32_t h[4], const uint8_t *block)
{
	uint32_t m[16], a = h[0], b = h[1], c = h[2], d = h[3];
	unsigned int i;

	for (i = 0; i < 16; i++)
		m[i] = block[4 * i] | block[4 * i + 1] << 8 | block[4 * i + 2] << 16 | (uint32_t)block[4 * i + 3] << 24;
	for (i = 0; i < 64; i++) {
		uint32_t f, g, shift = md5_shifts[i / 16 * 4 + i % 4];

		if (i < 16) {
			f = (b & c) | (~b & d);
			g = i;
		} else if (i < 32) {
			f = (d & b) | (~d & c);
			g = (5 * i + 1) % 16;
		} else if (i < 48) {
			f = b ^ c ^ d;
			g = (3 * i + 5) % 16;
		} else {
			f = c ^ (b | ~d);
			g = 7 * i % 16;
		}
		f += a + md5_sines[i] + m[g];
		a = d;
		d = c;
		c = b;
		b += f << shift | f >> (32 - shift);
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
}

static void md5(const void *data, size_t len, uint32_t h[4])
{
	const uint8_t *p = data;
	uint8_t tail[128] = { 0 };
	uint64_t bits = (uint64_t)len * 8;
	size_t rest, end, i;

	h[0] = 0x67452301;
	h[1] = 0xefcdab89;
	h[2] = 0x98badcfe;
	h[3] = 0x10325476;
	for (; len >= 64; p += 64, len -= 64)
		md5_block(h, p);
	/* The last bytes, 0x80, zeros up to 8 bytes short of a block, the length in bits. */
	rest = len;
	memcpy(tail, p, rest);
	tail[rest] = 0x80;
	end = rest < 56 ? 64 : 128;
	for (i = 0; i < 8; i++)
		tail[end - 8 + i] = bits >> (8 * i);
	md5_block(h, tail);
	if (end == 128)
		md5_block(h, tail + 64);
}

/*
 * Ketama as libmemcached places keys (MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED,
 * equal weights), exactly as user-client/ketama.ts: each server gets
 * floor(1/n * 160 / 4 * n + 1e-10) * 4 points, computed in floats (so 156
 * for 25 servers), 4 from each MD5 of "HOST:PORT-N" ("HOST-N" on port
 * 11211), N from 0; a key goes to the first point at or after the first 4
 * bytes of its MD5, little-endian, wrapping to the first; points of equal
 * value in the servers' order.
 */
#define MEMCACHED_DEFAULT_PORT 11211
#define POINTS_PER_SERVER 160

struct point {
	uint32_t value;
	unsigned int server;
};

static struct point *points;
static unsigned int nr_points;

static int point_order(const void *a, const void *b)
{
	const struct point *x = a, *y = b;

	if (x->value != y->value)
		return x->value < y->value ? -1 : 1;
	return x->server < y->server ? -1 : x->server > y->server;
}

static void ketama_setup(void)
{
	float pct = 1.0f / (float)nr_servers;
	unsigned int per = (unsigned int)floorf(pct * POINTS_PER_SERVER / 4 * (float)nr_servers + 1e-10f) * 4;
	unsigned int server, n, i;

	points = malloc((size_t)nr_servers * per * sizeof(*points));
	if (!points)
		die("loadgen: malloc");
	nr_points = 0;
	for (server = 0; server < nr_servers; server++) {
		for (n = 0; n < per / 4; n++) {
			struct server *s = &servers[server];
			char name[96];
			uint32_t h[4];
			int len;

			if (s->port == MEMCACHED_DEFAULT_PORT)
				len = snprintf(name, sizeof(name), "%s-%u", s->host, n);
			else
				len = snprintf(name, sizeof(name), "%s:%d-%u", s->host, s->port, n);
			md5(name, len, h);
			for (i = 0; i < 4; i++)
				points[nr_points++] = (struct point){ h[i], server };
		}
	}
	qsort(points, nr_points, sizeof(*points), point_order);
}

/* The server ketama gives a key of `len` bytes. */
static unsigned int ketama_server(const char *key, size_t len)
{
	unsigned int low = 0, high = nr_points;
	uint32_t h[4];

	if (nr_servers == 1)
		return 0;
	md5(key, len, h);
	while (low < high) {
		unsigned int middle = low + (high - low) / 2;

		if (points[middle].value < h[0])
			low = middle + 1;
		else
			high = middle;
	}
	return points[high < nr_points ? high : 0].server;
}

/*
 * Parses -s HOST:PORT,HOST:PORT,... into servers[]. HOST is an IPv4
 * address when `need_addr` (the sockets connect to it); the ketama
 * subcommand only hashes it, so any name does there.
 */
static void parse_servers(const char *list, int need_addr)
{
	const char *p = list;

	nr_servers = 0;
	while (*p) {
		struct server *s = &servers[nr_servers];
		const char *comma = strchr(p, ','), *colon;
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		unsigned int i;
		char *end;
		long n;

		colon = memrchr(p, ':', len);
		if (nr_servers == MAX_SERVERS || !colon || colon == p || (size_t)(colon - p) >= sizeof(s->host)) {
			fprintf(stderr, "loadgen: -s %s: each server HOST:PORT, at most %d of them\n", list, MAX_SERVERS);
			exit(2);
		}
		memcpy(s->host, p, colon - p);
		s->host[colon - p] = '\0';
		n = strtol(colon + 1, &end, 10);
		if (end != p + len || n < 1 || n > 65535) {
			fprintf(stderr, "loadgen: -s %s: %.*s has no port from 1 to 65535\n", list, (int)len, p);
			exit(2);
		}
		s->port = n;
		s->addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(n) };
		if (need_addr && inet_pton(AF_INET, s->host, &s->addr.sin_addr) != 1) {
			fprintf(stderr, "loadgen: -s: %s is not an IPv4 address\n", s->host);
			exit(2);
		}
		for (i = 0; i < nr_servers; i++) {
			if (servers[i].port == s->port && !strcmp(servers[i].host, s->host)) {
				fprintf(stderr, "loadgen: -s: %s:%d is listed twice\n", s->host, s->port);
				exit(2);
			}
		}
		nr_servers++;
		p += len + !!comma;
		if (comma && !*p) {
			fprintf(stderr, "loadgen: -s %s ends in a comma\n", list);
			exit(2);
		}
	}
	if (!nr_servers) {
		fprintf(stderr, "loadgen: -s needs HOST:PORT,HOST:PORT,...\n");
		exit(2);
	}
	nr_conns = nr_servers;
	ketama_setup();
}

/*
 * Zipf(theta) over the ranks 0..keys-1: P(rank r) is proportional to
 * 1 / (r + 1)^theta. The cumulative distribution is computed once; a draw
 * is a binary search for a uniform number in it.
 */
static void zipf_setup(void)
{
	double sum = 0;
	unsigned int r;

	zipf_cdf = malloc(keys * sizeof(*zipf_cdf));
	if (!zipf_cdf)
		die("loadgen: malloc");
	for (r = 0; r < keys; r++) {
		sum += 1.0 / pow(r + 1, theta);
		zipf_cdf[r] = sum;
	}
	for (r = 0; r < keys; r++)
		zipf_cdf[r] /= sum;
}

static unsigned int pick_key(uint64_t *state)
{
	unsigned int low = 0, high = keys - 1;
	double u;

	if (!zipf_cdf)
		return next_random(state) % keys;
	u = uniform(state);
	while (low < high) {
		unsigned int middle = low + (high - low) / 2;

		if (zipf_cdf[middle] > u)
			high = middle;
		else
			low = middle + 1;
	}
	return low;
}

/* A key's value: its length and bytes depend on the key alone, so every set of it stores the same. */
static const char *key_value(unsigned int key, unsigned int *len)
{
	uint64_t h = key * 0x9e3779b97f4a7c15ULL + 1;

	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	*len = value_min + h % (value_max - value_min + 1);
	return value_pattern + key % 26;
}

/* Reflection bound (PROTOCOL.md): to another host a reply is at most 3x its request, or 32 bytes. */
#define REFLECT_RATIO 3
#define REFLECT_FLOOR 32

/*
 * With -P, pads a text lookup of `key` (n bytes in buf) with spaces so that
 * its reply, "OK " + value + "\n", is within the reflection bound; returns
 * the new length. A miss's reply is short: the padding is then wasted, not
 * wrong.
 */
static int pad_lookup(char *buf, int n, unsigned int key)
{
	unsigned int vlen = 9, reply, want;

	if (!pad_lookups)
		return n;
	if (value_max)
		key_value(key, &vlen);
	reply = 3 + vlen + 1;
	if (reply <= REFLECT_FLOOR)
		return n;
	want = (reply + REFLECT_RATIO - 1) / REFLECT_RATIO;
	if (want > MAX_MSG)
		want = MAX_MSG;
	while ((unsigned int)n < want)
		buf[n++] = ' ';
	return n;
}

/* One request into buf; returns its length. */
static int format_request(char *buf, uint32_t rid, int insert, unsigned int key, unsigned int value)
{
	char fixed[16];
	const char *data = fixed;
	unsigned int len = 9;

	if (insert) {
		if (value_max)
			data = key_value(key, &len);
		else
			snprintf(fixed, sizeof(fixed), "val%06u", value % 1000000);
	}
	if (proto == MC) {
		uint16_t header[4] = { htons(rid & 0xffff), 0, htons(1), 0 };
		int n;

		memcpy(buf, header, 8);
		if (insert)
			n = snprintf(buf + 8, MAX_MSG - 8, "set key%0*u 0 0 %u\r\n%.*s\r\n", key_width, key, len,
				     (int)len, data);
		else
			n = snprintf(buf + 8, MAX_MSG - 8, "get key%0*u\r\n", key_width, key);
		return n + 8;
	}
	if (insert)
		return snprintf(buf, MAX_MSG, "insert key%0*u %.*s", key_width, key, (int)len, data);
	return pad_lookup(buf, snprintf(buf, MAX_MSG, "lookup key%0*u", key_width, key), key);
}

static int pick_insert(struct client *c)
{
	if (mix == READ)
		return 0;
	if (mix == WRITE)
		return 1;
	return next_random(&c->rng) % 100 >= read_percent;
}

/* The server of the pool that holds `key` (0 without a pool). */
static unsigned int server_of(unsigned int key)
{
	return nr_servers ? key_server[key] : 0;
}

/* The client's requests in flight, on all its sockets. */
static uint32_t in_flight(const struct client *c)
{
	uint32_t busy = 0;
	unsigned int i;

	for (i = 0; i < nr_conns; i++)
		busy += c->conns[i].next_rid - c->conns[i].oldest;
	return busy;
}

/*
 * Sends the client's free window: one sendmmsg() per socket, which is one
 * in all without a pool. In a pool each request goes to its key's server,
 * numbered in that socket's order.
 */
static void fill_window(struct worker *w, struct client *c)
{
	static __thread char bufs[MAX_WINDOW][MAX_MSG];
	struct mmsghdr msgs[MAX_WINDOW], batch[MAX_WINDOW];
	struct iovec iovs[MAX_WINDOW];
	int inserts[MAX_WINDOW], which[MAX_WINDOW];
	unsigned int to[MAX_WINDOW], queued[MAX_SERVERS] = { 0 }, server;
	uint32_t busy = in_flight(c);
	int k = 0, sent, i, n;
	double t;

	while (busy + k < (uint32_t)window) {
		unsigned int key;
		uint32_t rid;

		inserts[k] = pick_insert(c);
		key = pick_key(&c->rng);
		to[k] = server_of(key);
		rid = c->conns[to[k]].next_rid + queued[to[k]]++;
		iovs[k].iov_base = bufs[k];
		iovs[k].iov_len = format_request(bufs[k], rid, inserts[k], key, rid);
		memset(&msgs[k], 0, sizeof(msgs[k]));
		msgs[k].msg_hdr.msg_iov = &iovs[k];
		msgs[k].msg_hdr.msg_iovlen = 1;
		k++;
	}
	for (server = 0; server < nr_conns; server++) {
		struct conn *cn = &c->conns[server];

		for (i = 0, n = 0; i < k; i++) {
			if (to[i] == server) {
				batch[n] = msgs[i];
				which[n++] = i;
			}
		}
		if (!n)
			continue;
		/* Before the send: its delivery (and maybe the reply) happens inside it. */
		t = now();
		sent = sendmmsg(cn->fd, batch, n, 0);
		if (sent < 0) {
			if (errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED)
				continue;	/* tried again on the next turn */
			die("loadgen: sendmmsg");
		}
		for (i = 0; i < sent; i++) {
			struct slot *s = &cn->slots[(cn->next_rid + i) % window];

			s->sent = t;
			s->busy = 1;
			s->insert = inserts[which[i]];
		}
		cn->next_rid += sent;
		w->sent += sent;
	}
}

static void record(struct worker *w, double latency)
{
	uint64_t us = latency * 1e6;

	w->hist[us < HIST_US ? us : HIST_US]++;
	w->latency_sum += latency;
	w->answered++;
}

/*
 * Whether a reply is an error: ERR (text), ERROR, CLIENT_ERROR or
 * SERVER_ERROR (memcached).
 */
static int reply_error(const char *data, int n)
{
	const char *body = proto == MC ? data + 8 : data;
	int len = proto == MC ? n - 8 : n;

	if (proto == TEXT)
		return len >= 3 && !memcmp(body, "ERR", 3);
	if (proto == MC)
		return (len >= 5 && !memcmp(body, "ERROR", 5)) ||
		       (len >= 12 && !memcmp(body, "CLIENT_ERROR", 12)) ||
		       (len >= 12 && !memcmp(body, "SERVER_ERROR", 12));
	return 0;
}

/* Whether a reply is the answer to a request of this kind (and not an error). */
static int reply_ok(const char *data, int n, int insert, struct worker *w)
{
	const char *body = proto == MC ? data + 8 : data;
	int len = proto == MC ? n - 8 : n;

	if (proto == ECHO)
		return 1;
	if (len < 3)
		return 0;
	if (proto == TEXT) {
		if (insert)
			return len == 3 && !memcmp(body, "OK\n", 3);
		if (len >= 10 && !memcmp(body, "NOT FOUND\n", 10)) {
			w->misses++;
			return 1;
		}
		return !memcmp(body, "OK ", 3);
	}
	if (insert)
		return len >= 8 && !memcmp(body, "STORED\r\n", 8);
	if (len >= 5 && !memcmp(body, "END\r\n", 5)) {
		w->misses++;
		return 1;
	}
	return len >= 6 && !memcmp(body, "VALUE ", 6);
}

static void refused(struct worker *w, const char *data, int n)
{
	static char example[128];

	w->refused++;
	if (!refusal_example) {
		int off = proto == MC ? 8 : 0;

		snprintf(example, sizeof(example), "%.*s", n > off ? n - off : 0, data + off);
		refusal_example = example;
	}
}

/* Moves `oldest` past the requests that are answered. */
static void advance(struct conn *c)
{
	while (c->oldest != c->next_rid && !c->slots[c->oldest % window].busy)
		c->oldest++;
}

static void receive(struct worker *w, struct conn *c)
{
	static __thread char bufs[MAX_WINDOW][MAX_REPLY];
	struct mmsghdr msgs[MAX_WINDOW];
	struct iovec iovs[MAX_WINDOW];
	int got, i;
	double t;

	for (i = 0; i < window && i < MAX_WINDOW; i++) {
		iovs[i].iov_base = bufs[i];
		iovs[i].iov_len = sizeof(bufs[i]);
		memset(&msgs[i], 0, sizeof(msgs[i]));
		msgs[i].msg_hdr.msg_iov = &iovs[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	got = recvmmsg(c->fd, msgs, window < MAX_WINDOW ? window : MAX_WINDOW, MSG_DONTWAIT, NULL);
	if (got < 0) {
		if (errno == EAGAIN || errno == ECONNREFUSED)
			return;
		die("loadgen: recvmmsg");
	}
	t = now();
	for (i = 0; i < got; i++) {
		int n = msgs[i].msg_len;
		struct slot *s;
		uint32_t rid;

		if (proto == MC) {
			uint16_t id;

			if (n < 8)
				continue;
			memcpy(&id, bufs[i], 2);
			/* The one request in flight with these low 16 bits. */
			rid = c->oldest + (uint16_t)(ntohs(id) - (c->oldest & 0xffff));
			if (rid - c->oldest >= c->next_rid - c->oldest)
				continue;	/* written off already */
		} else {
			if (c->oldest == c->next_rid)
				continue;
			rid = c->oldest;
		}
		s = &c->slots[rid % window];
		if (!s->busy)
			continue;
		s->busy = 0;
		/*
		 * A text reply is matched by its order on the socket. A good
		 * answer to a request of the other kind is a reply that came
		 * in out of order (UDP keeps no order: loopback's per-CPU
		 * backlogs, a NIC's queues); it is counted apart, not as an
		 * error, and stands for an answer.
		 */
		if (reply_ok(bufs[i], n, s->insert, w)) {
			record(w, t - s->sent);
		} else if (proto == TEXT && !reply_error(bufs[i], n) &&
			   reply_ok(bufs[i], n, !s->insert, w)) {
			w->reordered++;
			record(w, t - s->sent);
		} else {
			refused(w, bufs[i], n);
		}
		advance(c);
	}
}

/* Writes off requests unanswered for LOST_AFTER seconds on the socket to server `server`. */
static void expire(struct worker *w, struct conn *c, unsigned int server, double t)
{
	if (c->oldest == c->next_rid || t - c->slots[c->oldest % window].sent < LOST_AFTER)
		return;
	if (proto != MC) {
		/* No IDs: start over on a new socket, so late replies cannot mislead. */
		for (; c->oldest != c->next_rid; c->oldest++) {
			if (c->slots[c->oldest % window].busy)
				w->lost++;
			c->slots[c->oldest % window].busy = 0;
		}
		close(c->fd);
		c->fd = open_socket(server);
		return;
	}
	while (c->oldest != c->next_rid && t - c->slots[c->oldest % window].sent >= LOST_AFTER) {
		c->slots[c->oldest % window].busy = 0;
		w->lost++;
		advance(c);
	}
}

/* Sends one request that was due at `due` on the thread's next client with room for it. */
static void send_due(struct worker *w, double due)
{
	char buf[MAX_MSG];
	unsigned int tries;

	for (tries = 0; tries < w->n; tries++) {
		struct client *c = &w->clients[w->turn++ % w->n];
		unsigned int key;
		struct conn *cn;
		int insert, n;
		struct slot *s;

		if (in_flight(c) >= (uint32_t)window)
			continue;
		insert = pick_insert(c);
		key = pick_key(&c->rng);
		cn = &c->conns[server_of(key)];
		n = format_request(buf, cn->next_rid, insert, key, cn->next_rid);
		if (send(cn->fd, buf, n, 0) != n) {
			if (errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED)
				break;	/* it did not leave: lost */
			die("loadgen: send");
		}
		s = &cn->slots[cn->next_rid % window];
		s->sent = due;
		s->busy = 1;
		s->insert = insert;
		cn->next_rid++;
		w->sent++;
		return;
	}
	w->lost++;
}

/* The gap to the next arrival of a Poisson process of this rate. */
static double next_gap(struct worker *w)
{
	return -log(1 - uniform(&w->rng)) / w->rate;
}

/* Adds client i's socket to server `server` to the epoll set, as i * nr_conns + server. */
static void watch(int ep, struct worker *w, unsigned int i, unsigned int server)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i * nr_conns + server };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, w->clients[i].conns[server].fd, &ev) < 0)
		die("loadgen: epoll_ctl");
}

/* Reads the replies on the socket an epoll event is for. */
static void receive_event(struct worker *w, const struct epoll_event *ev)
{
	receive(w, &w->clients[ev->data.u32 / nr_conns].conns[ev->data.u32 % nr_conns]);
}

/* Waits for replies until `until` at the latest, and reads them. */
static void wait_replies(int ep, struct worker *w, double until)
{
	struct epoll_event events[64];
	double wait = until - now();
	struct timespec timeout;
	int ready, j;

	if (wait < 0)
		wait = 0;
	if (wait > 0.1)
		wait = 0.1;
	timeout.tv_sec = 0;
	timeout.tv_nsec = wait * 1e9;
	ready = epoll_pwait2(ep, events, 64, &timeout, NULL);
	if (ready < 0 && errno != EINTR)
		die("loadgen: epoll_pwait2");
	for (j = 0; j < ready; j++)
		receive_event(w, &events[j]);
}

/* Writes off what expired on client i's sockets, watching a new socket where expire() opened one. */
static void expire_client(int ep, struct worker *w, unsigned int i, double t)
{
	unsigned int server;

	for (server = 0; server < nr_conns; server++) {
		struct conn *cn = &w->clients[i].conns[server];
		int fd = cn->fd;

		expire(w, cn, server, t);
		if (cn->fd != fd)
			watch(ep, w, i, server);
	}
}

/* Writes off what expired, on every client. */
static void expire_all(int ep, struct worker *w, double t)
{
	unsigned int i;

	for (i = 0; i < w->n; i++)
		expire_client(ep, w, i, t);
}

/* The open loop: requests leave on their schedule; replies are read in between. */
static void open_loop(int ep, struct worker *w)
{
	double due = now() + next_gap(w);
	unsigned int i;

	for (;;) {
		double t = now();
		int sent = 0;

		if (t >= deadline)
			break;
		expire_all(ep, w, t);
		while (due <= t && due < deadline && sent++ < MAX_WINDOW) {
			send_due(w, due);
			due += next_gap(w);
		}
		wait_replies(ep, w, due);
	}
	/* Drain: what is still in flight gets LOST_AFTER seconds. */
	for (;;) {
		int waiting = 0;

		for (i = 0; i < w->n; i++)
			waiting |= in_flight(&w->clients[i]) != 0;
		if (!waiting || now() >= deadline + LOST_AFTER)
			break;
		wait_replies(ep, w, now() + 0.01);
	}
	for (i = 0; i < w->n * nr_conns; i++) {
		struct conn *c = &w->clients[i / nr_conns].conns[i % nr_conns];

		for (; c->oldest != c->next_rid; c->oldest++)
			w->lost += c->slots[c->oldest % window].busy;
	}
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[64];
	unsigned int i;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		die("loadgen: epoll_create1");
	for (i = 0; i < w->n * nr_conns; i++)
		watch(ep, w, i / nr_conns, i % nr_conns);
	if (rate > 0) {
		open_loop(ep, w);
		close(ep);
		return NULL;
	}
	for (;;) {
		double t = now();
		int ready, j;

		if (t >= deadline)
			break;
		for (i = 0; i < w->n; i++) {
			expire_client(ep, w, i, t);
			fill_window(w, &w->clients[i]);
		}
		ready = epoll_wait(ep, events, 64, 100);
		if (ready < 0 && errno != EINTR)
			die("loadgen: epoll_wait");
		for (j = 0; j < ready; j++)
			receive_event(w, &events[j]);
	}
	close(ep);
	return NULL;
}

struct cpu {
	double idle, at, server;
};

/*
 * The CPU seconds run so far by the threads of the processes named
 * `prefix`*: the first field of /proc/PID/task/TID/schedstat, which the
 * scheduler keeps in nanoseconds (not tick samples). Softirq work is
 * charged to the task it interrupted (no IRQ_TIME_ACCOUNTING), so the
 * server's threads also carry the loopback delivery of the replies they
 * send.
 */
/*
 * Calls @fn with the path of /proc/PID/task/TID/schedstat of every thread of
 * the processes named @prefix*, until it returns nonzero. Returns -1 when
 * /proc cannot be read.
 */
static int for_each_thread_of(const char *prefix, int (*fn)(const char *schedstat, void *arg), void *arg)
{
	struct dirent *p, *t;
	char path[600], comm[64];
	DIR *procs, *tasks;
	FILE *f;
	int stop = 0;

	procs = opendir("/proc");
	if (!procs)
		return -1;
	while (!stop && (p = readdir(procs))) {
		if (!isdigit((unsigned char)p->d_name[0]))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", p->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = '\0';
		fclose(f);
		if (strncmp(comm, prefix, strlen(prefix)))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/task", p->d_name);
		tasks = opendir(path);
		if (!tasks)
			continue;
		while (!stop && (t = readdir(tasks))) {
			if (!isdigit((unsigned char)t->d_name[0]))
				continue;
			snprintf(path, sizeof(path), "/proc/%s/task/%s/schedstat", p->d_name, t->d_name);
			stop = fn(path, arg);
		}
		closedir(tasks);
	}
	closedir(procs);
	return 0;
}

static int add_schedstat(const char *schedstat, void *arg)
{
	unsigned long long *total = arg, ns;
	FILE *f = fopen(schedstat, "r");

	if (!f)
		return 0;
	if (fscanf(f, "%llu", &ns) == 1)
		*total += ns;
	fclose(f);
	return 0;
}

static double server_seconds(const char *prefix)
{
	unsigned long long total = 0;

	if (!prefix || !*prefix)
		return 0;
	if (for_each_thread_of(prefix, add_schedstat, &total) < 0)
		die("loadgen: /proc");
	return total / 1e9;
}

/*
 * The whole guest's idle time so far (idle and iowait, the first line of
 * /proc/stat) and when it was read. Busy time is the wall time of every CPU
 * less the idle time: the kernel measures idle time exactly (NO_HZ), while
 * its user, system and softirq columns are samples taken at each 4 ms tick,
 * too coarse and too uneven under emulation to set against getrusage().
 */
static struct cpu guest_cpu(void)
{
	unsigned long long v[5] = { 0 };
	struct cpu cpu;
	FILE *f = fopen("/proc/stat", "r");

	if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4]) != 5)
		die("loadgen: /proc/stat");
	fclose(f);
	cpu.idle = (v[3] + v[4]) / (double)sysconf(_SC_CLK_TCK);
	cpu.at = now();
	cpu.server = server_seconds(getenv("LOADGEN_SERVER"));
	return cpu;
}

static double rusage_seconds(int who)
{
	struct rusage ru;

	if (getrusage(who, &ru) < 0)
		die("loadgen: getrusage");
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void print_cpu(double gen, struct cpu a, struct cpu b)
{
	double total = (b.at - a.at) * sysconf(_SC_NPROCESSORS_ONLN);

	printf("\"gen_cpu_s\":%.3f,\"guest_busy_s\":%.3f,\"guest_total_s\":%.3f,\"server_cpu_s\":%.4f}\n", gen,
	       total - (b.idle - a.idle), total, b.server - a.server);
}

/* Each key's server in the pool, once: the MD5 of "keyNNNNN" on every request would be the generator's time. */
static void place_keys(void)
{
	char name[32];
	unsigned int key;

	key_server = malloc(keys);
	if (!key_server)
		die("loadgen: malloc");
	for (key = 0; key < keys; key++)
		key_server[key] = ketama_server(name, snprintf(name, sizeof(name), "key%0*u", key_width, key));
}

/*
 * The WORKLOAD options after the subcommand (-k KEYS, -z THETA, -v MIN-MAX,
 * -s LIST, ...); returns the index of the first positional argument, which
 * is PORT unless -s gave a pool.
 */
static int parse_workload(int argc, char **argv)
{
	unsigned int i;
	int opt;

	optind = 2;
	while ((opt = getopt(argc, argv, "+k:z:v:r:a:Ps:")) != -1) {
		switch (opt) {
		case 's':
			parse_servers(optarg, 1);
			break;
		case 'a':
			if (inet_pton(AF_INET, optarg, &server_addr) != 1) {
				fprintf(stderr, "loadgen: -a %s is not an IPv4 address\n", optarg);
				exit(2);
			}
			break;
		case 'P':
			pad_lookups = 1;
			break;
		case 'r':
			rate = atof(optarg);
			break;
		case 'k':
			keys = strtoul(optarg, NULL, 10);
			break;
		case 'z':
			theta = atof(optarg);
			break;
		case 'v':
			if (sscanf(optarg, "%u-%u", &value_min, &value_max) != 2)
				value_max = 0;
			break;
		default:
			exit(2);
		}
	}
	if (nr_servers && server_addr) {
		fprintf(stderr, "loadgen: -s names the servers' addresses: no -a with it\n");
		exit(2);
	}
	if (!keys || keys > 100000000 || theta < 0 || rate < 0 ||
	    (value_max && (value_min < 1 || value_min > value_max || value_max > MAX_VALUE))) {
		fprintf(stderr, "loadgen: bad workload (-k 1..1e8, -z >= 0, -v MIN-MAX within 1-%d)\n", MAX_VALUE);
		exit(2);
	}
	for (key_width = 5; key_width < 9 && keys - 1 >= (unsigned int)pow(10, key_width); key_width++)
		;
	for (i = 0; i < sizeof(value_pattern); i++)
		value_pattern[i] = 'a' + i % 26;
	if (theta > 0)
		zipf_setup();
	if (nr_servers)
		place_keys();
	return optind;
}

/* PORT, the first positional argument at argv[arg], unless -s gave a pool; returns the next one's index. */
static int parse_port(int argc, char **argv, int arg)
{
	if (nr_servers || arg >= argc)
		return arg;
	port = atoi(argv[arg]);
	return arg + 1;
}

/* How the messages name server `server`: "port PORT" without a pool. */
static const char *server_name(unsigned int server)
{
	static char name[96];

	if (nr_servers)
		snprintf(name, sizeof(name), "%s:%d", servers[server].host, servers[server].port);
	else
		snprintf(name, sizeof(name), "port %d", port);
	return name;
}

static int parse_proto(const char *s)
{
	if (!strcmp(s, "text"))
		return TEXT;
	if (!strcmp(s, "mc"))
		return MC;
	if (!strcmp(s, "echo"))
		return ECHO;
	fprintf(stderr, "loadgen: protocol %s is not text, mc or echo\n", s);
	exit(2);
}

/*
 * Inserts every key once, so that lookups hit: PRELOAD_BATCH requests at a
 * time, the batch sent again until as many replies saying stored came back
 * (an insert done twice does no harm; an error reply, such as udp_server's
 * "ERR busy" while its table resizes, does not count). In a pool, each
 * server its own keys, one server after the other.
 */
#define PRELOAD_BATCH 32
static int preload_server(unsigned int server)
{
	char req[MAX_MSG], reply[MAX_REPLY];
	unsigned int next = 0;
	int fd = open_socket(server);
	ssize_t len;

	while (next < keys) {
		unsigned int batch[PRELOAD_BATCH], count = 0, i;
		int tries;

		for (; next < keys && count < PRELOAD_BATCH; next++)
			if (server_of(next) == server)
				batch[count++] = next;
		for (tries = 0; tries < 20 && count; tries++) {
			unsigned int got = 0;

			for (i = 0; i < count; i++) {
				int n = format_request(req, batch[i], 1, batch[i], batch[i]);

				if (send(fd, req, n, 0) != n)
					break;
			}
			while (got < count && (len = recv(fd, reply, sizeof(reply), 0)) > 0)
				if (reply_ok(reply, len, 1, NULL))
					got++;
			if (got == count)
				break;
		}
		if (tries == 20) {
			fprintf(stderr, "loadgen: no answer from %s while inserting the keys\n", server_name(server));
			return 1;
		}
	}
	close(fd);
	return 0;
}

static int preload(int argc, char **argv)
{
	unsigned int server;
	int arg = parse_port(argc, argv, parse_workload(argc, argv));

	if (argc - arg != 1) {
		fprintf(stderr, "usage: loadgen preload [WORKLOAD] PORT|-s LIST PROTO\n");
		return 2;
	}
	proto = parse_proto(argv[arg]);
	for (server = 0; server < nr_conns; server++)
		if (preload_server(server))
			return 1;
	return 0;
}

static int run(int argc, char **argv)
{
	unsigned int clients, threads, i, c;
	struct worker *workers;
	uint64_t answered = 0, lost = 0, refusals = 0, reordered = 0, misses = 0, sent = 0, seen = 0;
	uint64_t p50 = 0, p99 = 0, p999 = 0;
	double sum = 0, started, elapsed, gen0;
	struct cpu cpu0, cpu1;
	uint32_t *hist;
	long nproc = sysconf(_SC_NPROCESSORS_ONLN);
	int arg = parse_port(argc, argv, parse_workload(argc, argv));

	if (argc - arg < 5) {
		fprintf(stderr, "usage: loadgen run [WORKLOAD] PORT|-s LIST PROTO MIX CLIENTS WINDOW SECONDS [THREADS]\n");
		return 2;
	}
	/* PROTO to argv[3] (argv[2] was PORT). */
	argv += arg - 3;
	argc -= arg - 3;
	proto = parse_proto(argv[3]);
	mix = !strcmp(argv[4], "r") ? READ : !strcmp(argv[4], "w") ? WRITE : RW;
	if (argv[4][0] == 'r' && isdigit((unsigned char)argv[4][1])) {
		read_percent = atoi(argv[4] + 1);
		mix = read_percent >= 100 ? READ : RW;
	}
	clients = atoi(argv[5]);
	window = atoi(argv[6]);
	seconds = atof(argv[7]);
	threads = argc > 8 ? (unsigned int)atoi(argv[8]) : (clients < nproc ? clients : nproc);
	if (rate > 0 && window >= 1)
		window = MAX_SLOTS;	/* the open loop: every slot of the ring */
	if (!clients || window < 1 || (window > MAX_WINDOW && !rate) || seconds <= 0 || !threads || threads > clients) {
		fprintf(stderr, "loadgen: bad arguments (WINDOW is 1 to %d, THREADS 1 to CLIENTS)\n", MAX_WINDOW);
		return 2;
	}
	workers = calloc(threads, sizeof(*workers));
	hist = calloc(HIST_US + 1, sizeof(*hist));
	if (!workers || !hist)
		die("loadgen: calloc");
	for (i = 0, c = 0; i < threads; i++) {
		struct worker *w = &workers[i];
		unsigned int j;

		w->n = clients / threads + (i < clients % threads);
		w->clients = calloc(w->n, sizeof(*w->clients));
		w->hist = calloc(HIST_US + 1, sizeof(*w->hist));
		if (!w->clients || !w->hist)
			die("loadgen: calloc");
		for (j = 0; j < w->n; j++, c++) {
			unsigned int server;

			w->clients[j].conns = calloc(nr_conns, sizeof(*w->clients[j].conns));
			if (!w->clients[j].conns)
				die("loadgen: calloc");
			for (server = 0; server < nr_conns; server++)
				w->clients[j].conns[server].fd = open_socket(server);
			w->clients[j].id = c;
			w->clients[j].rng = 0x9e3779b97f4a7c15ULL * (c + 1) + getpid();
		}
		w->rate = rate / threads;
		w->rng = 0xd1b54a32d192ed03ULL * (i + 1) + getpid();
	}
	/* The open loop's timed waits: wake when asked, not up to 50 us later. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	cpu0 = guest_cpu();
	gen0 = rusage_seconds(RUSAGE_SELF);
	started = now();
	deadline = started + seconds;
	for (i = 0; i < threads; i++)
		if (pthread_create(&workers[i].thread, NULL, work, &workers[i]))
			die("loadgen: pthread_create");
	for (i = 0; i < threads; i++)
		pthread_join(workers[i].thread, NULL);
	elapsed = now() - started;
	if (rate > 0)
		elapsed = seconds;	/* the open loop sent for SECONDS; the drain after it sends nothing */
	cpu1 = guest_cpu();
	gen0 = rusage_seconds(RUSAGE_SELF) - gen0;
	for (i = 0; i < threads; i++) {
		struct worker *w = &workers[i];
		unsigned int j;

		answered += w->answered;
		lost += w->lost;
		refusals += w->refused;
		reordered += w->reordered;
		misses += w->misses;
		sent += w->sent;
		sum += w->latency_sum;
		for (j = 0; j <= HIST_US; j++)
			hist[j] += w->hist[j];
		/* Requests still in flight at the deadline are neither answered nor lost. */
	}
	for (i = 0; i <= HIST_US && answered; i++) {
		seen += hist[i];
		if (!p50 && seen * 2 >= answered)
			p50 = i + 1;
		if (!p99 && seen * 100 >= answered * 99)
			p99 = i + 1;
		if (!p999 && seen * 1000 >= answered * 999)
			p999 = i + 1;
	}
	if (refusal_example)
		fprintf(stderr, "loadgen: %llu replies were refusals, e.g. \"%s\"\n", (unsigned long long)refusals,
			refusal_example);
	printf("{\"offered\":%.1f,", rate);
	printf("\"answered\":%llu,\"sent\":%llu,\"lost\":%llu,\"refused\":%llu,\"reordered\":%llu,\"misses\":%llu,\"seconds\":%.3f,",
	       (unsigned long long)answered, (unsigned long long)sent, (unsigned long long)lost,
	       (unsigned long long)refusals, (unsigned long long)reordered, (unsigned long long)misses, elapsed);
	printf("\"mean_us\":%.1f,\"p50_us\":%llu,\"p99_us\":%llu,\"p999_us\":%llu,", answered ? sum / answered * 1e6 : 0,
	       (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)p999);
	print_cpu(gen0, cpu0, cpu1);
	return 0;
}

/* Sends one request every 100 ms until one is answered; in a pool, to each server in turn, within the same SECONDS. */
static int probe(int argc, char **argv)
{
	char req[MAX_MSG], reply[MAX_REPLY];
	unsigned int server;
	double end;
	int fd, arg = parse_port(argc, argv, parse_workload(argc, argv));

	if (argc - arg != 2) {
		fprintf(stderr, "usage: loadgen probe [WORKLOAD] PORT|-s LIST PROTO SECONDS\n");
		return 2;
	}
	proto = parse_proto(argv[arg]);
	end = now() + atof(argv[arg + 1]);
	for (server = 0; server < nr_conns; server++) {
		int answered = 0;

		fd = open_socket(server);
		while (!answered && now() < end) {
			int n = format_request(req, 0, 0, 0, 0);

			if (send(fd, req, n, 0) == n && recv(fd, reply, sizeof(reply), 0) > 0)
				answered = 1;
			else
				usleep(100000);
		}
		close(fd);
		if (!answered) {
			fprintf(stderr, "loadgen: nothing answers on %s\n", server_name(server));
			return 1;
		}
	}
	return 0;
}

/*
 * Sends "stats" and prints the reply: udp_server's one line, or memcached's
 * "STAT name value" lines, which may take several datagrams (frame headers
 * left out), up to its "END". In a pool, each server's, after a line
 * "server HOST:PORT".
 */
static int stats_server(unsigned int server)
{
	char reply[65536];
	int n, fd = open_socket(server);

	if (nr_servers)
		printf("server %s\n", server_name(server));
	if (proto == MC) {
		static const char req[] = "\0\0\0\0\0\1\0\0stats\r\n";

		if (send(fd, req, sizeof(req) - 1, 0) < 0)
			die("loadgen: send");
		while ((n = recv(fd, reply, sizeof(reply) - 1, 0)) > 8) {
			reply[n] = '\0';
			fputs(reply + 8, stdout);
			if (n >= 13 && !memcmp(reply + n - 5, "END\r\n", 5)) {
				close(fd);
				return 0;
			}
		}
	} else {
		if (send(fd, "stats", 5, 0) < 0)
			die("loadgen: send");
		n = recv(fd, reply, sizeof(reply) - 1, 0);
		if (n > 0) {
			reply[n] = '\0';
			fputs(reply, stdout);
			close(fd);
			return 0;
		}
	}
	fprintf(stderr, "loadgen: no stats from %s\n", server_name(server));
	return 1;
}

static int stats(int argc, char **argv)
{
	unsigned int server;
	int arg = parse_port(argc, argv, parse_workload(argc, argv));

	if (argc - arg != 1) {
		fprintf(stderr, "usage: loadgen stats [WORKLOAD] PORT|-s LIST PROTO\n");
		return 2;
	}
	proto = parse_proto(argv[arg]);
	for (server = 0; server < nr_conns; server++)
		if (stats_server(server))
			return 1;
	return 0;
}

/* Coarse on purpose: the sampler's own CPU competes with the server's (its edges are idle time, which does not count as busy). */
#define WATCH_INTERVAL 0.1
#define QUIET_AFTER 0.5
/* Datagrams in one interval that make it part of the run (ARP and the like stay below). */
#define WATCH_ACTIVE 4
#define MAX_WATCHED 256

/* The schedstat files of the LOADGEN_SERVER threads, found once. */
static char *watched[MAX_WATCHED];
static unsigned int nr_watched;

static int watch_thread(const char *schedstat, void *arg)
{
	(void)arg;
	watched[nr_watched++] = strdup(schedstat);
	return nr_watched == MAX_WATCHED;
}

static void find_server_threads(const char *prefix)
{
	if (prefix && *prefix)
		for_each_thread_of(prefix, watch_thread, NULL);
}

struct sample {
	double at, idle, server, own;
	unsigned long long rx, tx;
};

static struct sample take_sample(const char *iface)
{
	struct sample s = { 0 };
	unsigned long long v[5] = { 0 }, ns, skip;
	char line[512], name[64];
	unsigned int i;
	FILE *f = fopen("/proc/stat", "r");

	if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4]) != 5)
		die("loadgen: /proc/stat");
	fclose(f);
	s.at = now();
	s.idle = (v[3] + v[4]) / (double)sysconf(_SC_CLK_TCK);
	s.own = rusage_seconds(RUSAGE_SELF);
	f = fopen("/proc/net/dev", "r");
	if (!f)
		die("loadgen: /proc/net/dev");
	while (fgets(line, sizeof(line), f)) {
		/* "  eth1: rx_bytes rx_packets 6 more  tx_bytes tx_packets ..." */
		if (sscanf(line, " %63[^:]: %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", name, &skip, &s.rx, &skip,
			   &skip, &skip, &skip, &skip, &skip, &skip, &s.tx) == 11 &&
		    !strcmp(name, iface))
			break;
	}
	fclose(f);
	for (i = 0; i < nr_watched; i++) {
		f = fopen(watched[i], "r");
		if (!f)
			continue;
		if (fscanf(f, "%llu", &ns) == 1)
			s.server += ns / 1e9;
		fclose(f);
	}
	return s;
}

static int watch_server(int argc, char **argv)
{
	struct sample prev, cur, first = { 0 }, last = { 0 };
	double end, quiet_since = 0, run_for;
	int active = 0, late = 0, samples = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: loadgen watch IFACE SECONDS RUN\n");
		return 2;
	}
	run_for = atof(argv[4]);
	find_server_threads(getenv("LOADGEN_SERVER"));
	prev = take_sample(argv[2]);
	end = prev.at + atof(argv[3]);
	printf("ready\n");
	for (;;) {
		usleep(WATCH_INTERVAL * 1e6);
		cur = take_sample(argv[2]);
		samples++;
		if (cur.rx - prev.rx >= WATCH_ACTIVE) {
			if (!active) {
				first = prev;
				/* Datagrams before the first interval was over: the run began before "ready". */
				late = samples == 1;
			}
			active = 1;
			last = cur;
			quiet_since = cur.at;
		} else if (active && cur.at - quiet_since >= QUIET_AFTER && quiet_since - first.at >= 0.8 * run_for) {
			break;
		}
		if (cur.at >= end)
			break;
		prev = cur;
	}
	if (!active)
		first = last = cur;
	{
		double total = (last.at - first.at) * sysconf(_SC_NPROCESSORS_ONLN);

		printf("{\"busy_s\":%.4f,\"total_s\":%.4f,\"watch_cpu_s\":%.4f,\"server_cpu_s\":%.4f,"
		       "\"rx\":%llu,\"tx\":%llu,\"late\":%s}\n",
		       total - (last.idle - first.idle), total, last.own - first.own, last.server - first.server, last.rx - first.rx,
		       last.tx - first.tx, late ? "true" : "false");
	}
	return 0;
}

/* How often Zipf(THETA) draws each of the 10 hottest of KEYS keys, out of DRAWS: the tests check the sampler. */
static int zipf_counts(int argc, char **argv)
{
	unsigned long long counts[10] = { 0 }, draws, i;
	uint64_t rng = 0x9e3779b97f4a7c15ULL;

	if (argc != 5) {
		fprintf(stderr, "usage: loadgen zipf KEYS THETA DRAWS\n");
		return 2;
	}
	keys = strtoul(argv[2], NULL, 10);
	theta = atof(argv[3]);
	draws = strtoull(argv[4], NULL, 10);
	if (!keys || theta <= 0) {
		fprintf(stderr, "loadgen: KEYS above 0, THETA above 0\n");
		return 2;
	}
	zipf_setup();
	for (i = 0; i < draws; i++) {
		unsigned int key = pick_key(&rng);

		if (key < 10)
			counts[key]++;
	}
	printf("{\"keys\":%u,\"theta\":%g,\"draws\":%llu,\"counts\":[", keys, theta, draws);
	for (i = 0; i < 10; i++)
		printf("%s%llu", i ? "," : "", counts[i]);
	printf("]}\n");
	return 0;
}

/* The index in LIST of the server ketama gives each key, a line of stdin each: the tests check the placement. */
static int ketama_places(int argc, char **argv)
{
	char *line = NULL;
	size_t size = 0;
	ssize_t len;

	if (argc != 3) {
		fprintf(stderr, "usage: loadgen ketama HOST:PORT,HOST:PORT,... < KEYS\n");
		return 2;
	}
	parse_servers(argv[2], 0);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	while ((len = getline(&line, &size, stdin)) >= 0) {
		if (len && line[len - 1] == '\n')
			len--;
		printf("%u\n", ketama_server(line, len));
	}
	free(line);
	return 0;
}

/* Runs a command (another generator) and measures it as run measures itself. */
static int exec_command(int argc, char **argv)
{
	struct cpu cpu0, cpu1;
	double started, gen;
	int status;
	pid_t pid;

	if (argc < 3) {
		fprintf(stderr, "usage: loadgen exec CMD [ARG...]\n");
		return 2;
	}
	cpu0 = guest_cpu();
	started = now();
	pid = fork();
	if (pid < 0)
		die("loadgen: fork");
	if (!pid) {
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		die("loadgen: waitpid");
	cpu1 = guest_cpu();
	gen = rusage_seconds(RUSAGE_CHILDREN);
	fflush(stdout);
	printf("LOADGEN {\"exit\":%d,\"seconds\":%.3f,", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
	       now() - started);
	print_cpu(gen, cpu0, cpu1);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "run"))
		return run(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "preload"))
		return preload(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "probe"))
		return probe(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "exec"))
		return exec_command(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "stats"))
		return stats(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "watch"))
		return watch_server(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "zipf"))
		return zipf_counts(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "ketama"))
		return ketama_places(argc, argv);
	fprintf(stderr, "usage: loadgen run|probe|exec ... (see the comment at the top of bench/loadgen.c)\n");
	return 2;
}
