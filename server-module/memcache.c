// SPDX-License-Identifier: GPL-2.0
/*
 * memcached's ASCII protocol over UDP (memcached's doc/protocol.txt), on
 * memcached_port, on the same table as the text protocol: a key set here is
 * found by "lookup", and the other way round (with flags 0).
 *
 * Every datagram starts with memcached's 8-byte frame header: request ID,
 * sequence number, number of datagrams in the message, and 0; big-endian.
 * A request is one datagram (sequence 0 of 1) holding one command:
 *
 *   get|gets KEY...      VALUE KEY FLAGS BYTES [CAS]\r\nDATA\r\n ... END\r\n
 *   set|add|replace KEY FLAGS EXPTIME BYTES [noreply]\r\nDATA\r\n
 *                        STORED or NOT_STORED
 *   delete KEY [noreply] DELETED or NOT_FOUND
 *   version              VERSION kernel-udp
 *
 * Any other command gets ERROR, a malformed one CLIENT_ERROR, and a store
 * the table cannot take SERVER_ERROR, as memcached answers them. FLAGS are
 * kept and returned; EXPTIME is honoured (seconds from now up to 30 days,
 * a Unix time beyond, negative for already expired). The table keeps
 * lines, so a value must be 1..KUDP_MAX_VALUE bytes without "\r", "\n" or
 * NUL, and a key likewise (other control bytes are allowed here). The
 * reply is cut into datagrams of at most KUDP_MC_DATAGRAM bytes, header
 * included, each with the request's ID, its own number and the count.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/net.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/uio.h>

#include "kudp_protocol.h"
#include "udp_server.h"

#define MC_HEADER		8
/* memcached's UDP_MAX_PAYLOAD_SIZE: a datagram, its header included. */
#define KUDP_MC_DATAGRAM	1400
/* An EXPTIME up to this many seconds is relative, above it a Unix time. */
#define MC_RELATIVE_MAX		(60 * 60 * 24 * 30)
/* Room kept for a "VALUE KEY FLAGS BYTES CAS\r\n" line. */
#define MC_VALUE_LINE_MAX	(KUDP_MAX_KEY + 64)

/* The frame header's fields are big-endian 16-bit numbers. */
static u16 mc_get16(const char *p)
{
	return (u8)p[0] << 8 | (u8)p[1];
}

static void mc_put16(char *p, u16 value)
{
	p[0] = value >> 8;
	p[1] = value & 0xff;
}

static void mc_header(char *header, u16 id, u16 seq, u16 count)
{
	mc_put16(header, id);
	mc_put16(header + 2, seq);
	mc_put16(header + 4, count);
	mc_put16(header + 6, 0);
}

/* The reply being built, in the worker's reply buffer after the header. */
struct mc_reply {
	char *buf;
	size_t len;
	size_t room;
	bool overflow;	/* it would not fit: answered with SERVER_ERROR */
	bool quiet;	/* noreply */
	bool malformed;	/* the request was: rate-limited (ratelimit.c) */
	u64 seq;	/* the change it answers, for durable=1 */
};

static void mc_add(struct mc_reply *r, const void *p, size_t n)
{
	if (r->overflow || r->len + n > r->room) {
		r->overflow = true;
		return;
	}
	memcpy(r->buf + r->len, p, n);
	r->len += n;
}

static void mc_line(struct mc_reply *r, const char *line)
{
	mc_add(r, line, strlen(line));
	mc_add(r, "\r\n", 2);
}

static void mc_error(struct mc_reply *r, const char *line)
{
	kudp_count(errors);
	mc_line(r, line);
}

/* The error reply to a request that is not a well-formed command. */
static void mc_malformed(struct mc_reply *r, const char *line)
{
	r->malformed = true;
	mc_error(r, line);
}

/*
 * The table keeps lines ("KEY VALUE" in /proc/hashtable, the journal and
 * the backup), so no key or value may break one. memcached's own rule is
 * looser than the text protocol's: memaslap's keys start with bytes 0x10.
 */
static bool mc_breaks_line(const char *p, size_t n)
{
	return memchr(p, '\n', n) || memchr(p, '\r', n) || memchr(p, '\0', n);
}

static bool mc_key_ok(const struct kudp_span *key)
{
	return key->n && key->n <= KUDP_MAX_KEY &&
	       !mc_breaks_line(key->p, key->n);
}

/* A decimal number that fits in a long; false for anything else. */
static bool mc_number(const struct kudp_span *word, long *value)
{
	char text[24];

	if (!word->n || word->n >= sizeof(text))
		return false;
	memcpy(text, word->p, word->n);
	text[word->n] = '\0';
	return !kstrtol(text, 10, value);
}

/* memcached's EXPTIME as kv_now() seconds: 0 never expires. */
static u32 mc_expires(long exptime)
{
	u32 now = kv_now() ?: 1;

	if (!exptime)
		return 0;
	if (exptime > MC_RELATIVE_MAX)
		exptime -= ktime_get_real_seconds();
	if (exptime <= 0)
		return now;	/* already expired */
	return now + (u32)min_t(long, exptime, U32_MAX / 2);
}

/* get KEY... and gets KEY...: every key found, then END. */
static void mc_get(struct kudp_span rest, bool with_cas, struct mc_reply *r)
{
	struct kudp_span key;
	struct kv_meta meta;
	char *value;
	int vlen, n;

	for (key = kudp_next_word(&rest); key.n; key = kudp_next_word(&rest)) {
		if (!mc_key_ok(&key)) {
			mc_malformed(r, "CLIENT_ERROR bad command line format");
			return;
		}
		if (r->len + MC_VALUE_LINE_MAX + KUDP_MAX_VALUE + 2 > r->room) {
			r->overflow = true;
			return;
		}
		/* The value goes after room for its VALUE line, then moves up. */
		value = r->buf + r->len + MC_VALUE_LINE_MAX;
		vlen = kv_get(key.p, key.n, value, KUDP_MAX_VALUE, &meta);
		if (vlen < 0) {
			kudp_count(misses);
			continue;
		}
		kudp_count(hits);
		if (with_cas)
			n = scnprintf(r->buf + r->len, MC_VALUE_LINE_MAX,
				      "VALUE %.*s %u %d %u\r\n", (int)key.n,
				      key.p, meta.flags, vlen, meta.cas);
		else
			n = scnprintf(r->buf + r->len, MC_VALUE_LINE_MAX,
				      "VALUE %.*s %u %d\r\n", (int)key.n, key.p,
				      meta.flags, vlen);
		memmove(r->buf + r->len + n, value, vlen);
		r->len += n + vlen;
		mc_add(r, "\r\n", 2);
	}
	mc_line(r, "END");
}

/* set|add|replace KEY FLAGS EXPTIME BYTES [noreply], then the data block. */
static void mc_store(struct kudp_span rest, struct kudp_span data,
		     enum kv_mode mode, struct mc_reply *r)
{
	struct kudp_span key = kudp_next_word(&rest);
	struct kudp_span flags = kudp_next_word(&rest);
	struct kudp_span exptime = kudp_next_word(&rest);
	struct kudp_span bytes = kudp_next_word(&rest);
	struct kudp_span noreply = kudp_next_word(&rest);
	long f, e, b;
	struct kv_meta meta;
	int ret;

	if (!mc_key_ok(&key) || !mc_number(&flags, &f) || f < 0 ||
	    f > U32_MAX || !mc_number(&exptime, &e) || !mc_number(&bytes, &b) ||
	    b < 0 || kudp_next_word(&rest).n ||
	    (noreply.n && !kudp_span_is(&noreply, "noreply"))) {
		mc_malformed(r, "CLIENT_ERROR bad command line format");
		return;
	}
	r->quiet = noreply.n;
	if (b > KUDP_MAX_VALUE) {
		mc_error(r, "SERVER_ERROR object too large for cache");
		return;
	}
	/* The data block, exactly BYTES long, then "\r\n". */
	if (data.n != b + 2 || memcmp(data.p + b, "\r\n", 2)) {
		mc_malformed(r, "CLIENT_ERROR bad data chunk");
		return;
	}
	if (!b || mc_breaks_line(data.p, b)) {
		mc_error(r, "SERVER_ERROR the table keeps values of 1 or more bytes, in one line");
		return;
	}
	meta.flags = f;
	meta.expires = mc_expires(e);
	ret = kudp_store(key.p, key.n, data.p, b, &meta, mode, &r->seq);
	switch (ret) {
	case 0:
		mc_line(r, "STORED");
		break;
	case -EEXIST:
	case -ENOENT:
		mc_line(r, "NOT_STORED");
		break;
	case -ENOLINK:
		mc_error(r, "SERVER_ERROR no backup daemon (durable=1)");
		break;
	default:
		mc_error(r, "SERVER_ERROR out of memory storing object");
		break;
	}
}

static void mc_delete(struct kudp_span rest, struct mc_reply *r)
{
	struct kudp_span key = kudp_next_word(&rest);
	struct kudp_span noreply = kudp_next_word(&rest);
	int ret;

	if (!mc_key_ok(&key) || kudp_next_word(&rest).n ||
	    (noreply.n && !kudp_span_is(&noreply, "noreply"))) {
		mc_malformed(r, "CLIENT_ERROR bad command line format");
		return;
	}
	r->quiet = noreply.n;
	ret = kudp_delete(key.p, key.n, &r->seq);
	if (!ret)
		mc_line(r, "DELETED");
	else if (ret == -ENOENT)
		mc_line(r, "NOT_FOUND");
	else
		mc_error(r, "SERVER_ERROR no backup daemon (durable=1)");
}

/* One command: its line (without the line end), then what follows it. */
static void mc_execute(struct kudp_span line, struct kudp_span data,
		       struct mc_reply *r)
{
	struct kudp_span command = kudp_next_word(&line);

	if (kudp_span_is(&command, "get"))
		mc_get(line, false, r);
	else if (kudp_span_is(&command, "gets"))
		mc_get(line, true, r);
	else if (kudp_span_is(&command, "set"))
		mc_store(line, data, KV_SET, r);
	else if (kudp_span_is(&command, "add"))
		mc_store(line, data, KV_ADD, r);
	else if (kudp_span_is(&command, "replace"))
		mc_store(line, data, KV_REPLACE, r);
	else if (kudp_span_is(&command, "delete"))
		mc_delete(line, r);
	else if (kudp_span_is(&command, "version"))
		mc_line(r, "VERSION kernel-udp");
	else
		mc_malformed(r, "ERROR");
}

/* The datagrams a reply of @len bytes takes, each with its header. */
static unsigned int mc_datagrams(size_t len)
{
	return max_t(unsigned int, 1,
		     DIV_ROUND_UP(len, KUDP_MC_DATAGRAM - MC_HEADER));
}

/*
 * Sends the reply as datagrams of at most KUDP_MC_DATAGRAM bytes, each after
 * a header of its own. A one-datagram reply goes through kudp_reply_to()
 * (limits, and durable=1's wait); a longer one, only ever to a read, asks
 * the limits once for all its bytes.
 */
static void mc_send(struct kudp_worker *w, const struct kudp_peer *peer,
		    u16 id, struct mc_reply *r)
{
	const size_t payload = KUDP_MC_DATAGRAM - MC_HEADER;
	unsigned int count = mc_datagrams(r->len);
	char *header = r->buf - MC_HEADER;
	struct sockaddr_in to = peer->addr;
	unsigned int i;

	if (count == 1) {
		mc_header(header, id, 0, 1);
		kudp_reply_to(w, peer, header, MC_HEADER + r->len, r->seq,
			      r->malformed);
		return;
	}
	if (!kudp_reply_allowed(peer, r->len + count * MC_HEADER,
				r->malformed)) {
		kudp_count(drops);
		return;
	}
	for (i = 0; i < count; i++) {
		size_t start = i * payload;
		size_t n = min_t(size_t, payload, r->len - start);
		char frame[MC_HEADER];
		struct kvec iov[2] = {
			{ .iov_base = frame, .iov_len = MC_HEADER },
			{ .iov_base = r->buf + start, .iov_len = n },
		};
		struct msghdr msg = {
			.msg_name = &to,
			.msg_namelen = sizeof(to),
			.msg_flags = MSG_DONTWAIT,
		};

		mc_header(frame, id, i, count);
		if (kernel_sendmsg(w->sock, &msg, iov, 2, MC_HEADER + n) < 0)
			kudp_count(drops);
	}
}

/*
 * To a sender not on this host, a reply is at most KUDP_REFLECT_RATIO
 * times the request, or one datagram (main.c's bound_reflection() for the
 * text protocol): a short "get" of many keys must not draw a long reply
 * onto a forged source. A longer reply is replaced by an error naming the
 * size to pad the request to (spaces before its line end).
 */
static void mc_bound_reflection(const struct kudp_peer *peer, size_t size,
				struct mc_reply *r)
{
	size_t wire = r->len + mc_datagrams(r->len) * MC_HEADER;
	size_t limit = max_t(size_t, size * KUDP_REFLECT_RATIO,
			     KUDP_MC_DATAGRAM);
	char line[64];

	if (wire <= limit || peer->local)
		return;
	r->len = 0;
	r->quiet = false;
	scnprintf(line, sizeof(line), "SERVER_ERROR reply too long: pad to %zu",
		  DIV_ROUND_UP(wire, KUDP_REFLECT_RATIO));
	mc_error(r, line);
}

/**
 * kudp_mc_serve() - answer one memcached datagram
 * @w: the worker that received it, in w->request
 * @peer: the sender, where the reply goes
 * @size: the datagram's full length, which may be more than was received
 *
 * Datagrams too short for a header are dropped, as memcached drops them;
 * so are replies of either protocol (ratelimit.c) and datagrams from port 0.
 */
void kudp_mc_serve(struct kudp_worker *w, const struct kudp_peer *peer,
		   size_t size)
{
	struct mc_reply r = {
		.buf = w->reply + MC_HEADER,
		.room = KUDP_MC_REPLY_MAX - MC_HEADER,
	};
	struct kudp_span line, data;
	const char *end;
	u16 id;

	kudp_count(requests);
	if (size < MC_HEADER || !peer->addr.sin_port ||
	    kudp_is_reply(w->request,
			  min_t(size_t, size, KUDP_MC_REQUEST_MAX + 1))) {
		kudp_count(drops);
		return;
	}
	id = mc_get16(w->request);
	if (mc_get16(w->request + 2) != 0 || mc_get16(w->request + 4) != 1) {
		mc_malformed(&r, "SERVER_ERROR multi-packet request not supported");
	} else if (size > KUDP_MC_REQUEST_MAX) {
		mc_malformed(&r, "SERVER_ERROR object too large for cache");
	} else {
		line.p = w->request + MC_HEADER;
		end = memchr(line.p, '\n', size - MC_HEADER);
		if (!end) {
			mc_malformed(&r, "CLIENT_ERROR line without an end");
		} else {
			line.n = end - line.p;
			if (line.n && line.p[line.n - 1] == '\r')
				line.n--;
			data.p = end + 1;
			data.n = w->request + size - data.p;
			mc_execute(line, data, &r);
		}
	}
	if (r.overflow) {
		r.len = 0;
		r.overflow = false;
		r.quiet = false;
		mc_error(&r, "SERVER_ERROR out of memory writing get response");
	}
	mc_bound_reflection(peer, size, &r);
	if (!r.quiet)
		mc_send(w, peer, id, &r);
}
