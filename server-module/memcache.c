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
 * included, each with the request's ID, its own number and the count: the
 * transport sends them as they are laid out here.
 *
 * Each datagram is parsed once into a request (request.h) and run by the
 * executor, as the text protocol's are; a "get" of several keys runs one
 * lookup per key.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/string.h>
#include <linux/timekeeping.h>

#include "kudp_protocol.h"
#include "protocol.h"

#define MC_HEADER		8
/* An EXPTIME up to this many seconds is relative, above it a Unix time. */
#define MC_RELATIVE_MAX		(60 * 60 * 24 * 30)
/* Room kept for a "VALUE KEY FLAGS BYTES CAS\r\n" line. */
#define MC_VALUE_LINE_MAX	(KUDP_MAX_KEY + 64)
/* A datagram's text, and the room a reply's text has beside the headers. */
#define MC_PAYLOAD		(KUDP_MC_DATAGRAM - MC_HEADER)
#define MC_MAX_DATAGRAMS	DIV_ROUND_UP(KUDP_MC_REPLY_MAX, MC_PAYLOAD)
#define MC_ROOM			(KUDP_MC_REPLY_MAX - MC_HEADER * MC_MAX_DATAGRAMS)

#define MC_BAD_LINE		"CLIENT_ERROR bad command line format"

/*
 * Errors of the frame rather than the command: malformed, though their
 * wording is memcached's SERVER_ERROR (mc_is_malformed()).
 */
static const char mc_multi_packet[] =
	"SERVER_ERROR multi-packet request not supported";
static const char mc_too_large[] = "SERVER_ERROR object too large for cache";

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

/* The reply being built, in the reply buffer after room for one header. */
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

/* memcached's EXPTIME as kudp_kv_now() seconds: 0 never expires. */
static u32 mc_expires(long exptime)
{
	u32 now = kudp_kv_now() ?: 1;

	if (!exptime)
		return 0;
	if (exptime > MC_RELATIVE_MAX)
		exptime -= ktime_get_real_seconds();
	if (exptime <= 0)
		return now;	/* already expired */
	return now + (u32)min_t(long, exptime, U32_MAX / 2);
}

/* get|gets KEY...: every key checked here, looked up by answer_get(). */
static const char *parse_get(struct kudp_span rest, struct kudp_request *req)
{
	struct kudp_span keys = rest;
	struct kudp_span key;

	req->op = KUDP_OP_LOOKUP;
	req->key = kudp_next_word(&rest);
	req->more_keys = rest;
	for (key = kudp_next_word(&keys); key.n; key = kudp_next_word(&keys))
		if (!mc_key_ok(&key))
			return MC_BAD_LINE;
	return NULL;
}

/* set|add|replace KEY FLAGS EXPTIME BYTES [noreply], then the data block. */
static const char *parse_store(struct kudp_span rest, struct kudp_span data,
			       struct kudp_request *req)
{
	struct kudp_span key = kudp_next_word(&rest);
	struct kudp_span flags = kudp_next_word(&rest);
	struct kudp_span exptime = kudp_next_word(&rest);
	struct kudp_span bytes = kudp_next_word(&rest);
	struct kudp_span noreply = kudp_next_word(&rest);
	long f, e, b;

	if (!mc_key_ok(&key) || !mc_number(&flags, &f) || f < 0 ||
	    f > U32_MAX || !mc_number(&exptime, &e) || !mc_number(&bytes, &b) ||
	    b < 0 || kudp_next_word(&rest).n ||
	    (noreply.n && !kudp_span_is(&noreply, "noreply")))
		return MC_BAD_LINE;
	req->noreply = noreply.n;
	if (b > KUDP_MAX_VALUE)
		return "SERVER_ERROR object too large for cache";
	/* The data block, exactly BYTES long, then "\r\n". */
	if (data.n != b + 2 || memcmp(data.p + b, "\r\n", 2))
		return "CLIENT_ERROR bad data chunk";
	if (!b || mc_breaks_line(data.p, b))
		return "SERVER_ERROR the table keeps values of 1 or more bytes, in one line";
	req->op = KUDP_OP_STORE;
	req->key = key;
	req->value.p = data.p;
	req->value.n = b;
	req->meta.flags = f;
	req->meta.expires = mc_expires(e);
	return NULL;
}

static const char *parse_delete(struct kudp_span rest,
				struct kudp_request *req)
{
	struct kudp_span key = kudp_next_word(&rest);
	struct kudp_span noreply = kudp_next_word(&rest);

	if (!mc_key_ok(&key) || kudp_next_word(&rest).n ||
	    (noreply.n && !kudp_span_is(&noreply, "noreply")))
		return MC_BAD_LINE;
	req->noreply = noreply.n;
	req->op = KUDP_OP_DELETE;
	req->key = key;
	return NULL;
}

/*
 * One command: its line (without the line end), then what follows it.
 * Return: NULL, or the error line for the reply.
 */
static const char *parse(struct kudp_span line, struct kudp_span data,
			 struct kudp_request *req)
{
	struct kudp_span command = kudp_next_word(&line);

	if (kudp_span_is(&command, "get"))
		return parse_get(line, req);
	if (kudp_span_is(&command, "gets")) {
		req->with_cas = true;
		return parse_get(line, req);
	}
	if (kudp_span_is(&command, "set"))
		req->mode = KUDP_SET;
	else if (kudp_span_is(&command, "add"))
		req->mode = KUDP_ADD;
	else if (kudp_span_is(&command, "replace"))
		req->mode = KUDP_REPLACE;
	else if (kudp_span_is(&command, "delete"))
		return parse_delete(line, req);
	else if (kudp_span_is(&command, "version"))
		req->op = KUDP_OP_VERSION;
	else
		return "ERROR";
	return req->op == KUDP_OP_VERSION ? NULL : parse_store(line, data, req);
}

/* Every key found, then END; the keys were checked by parse_get(). */
static void answer_get(const struct kudp_request *req, struct mc_reply *r)
{
	struct kudp_span rest = req->more_keys;
	struct kudp_request one = *req;
	struct kudp_result res;
	char *value;
	int n;

	for (; one.key.n; one.key = kudp_next_word(&rest)) {
		if (r->len + MC_VALUE_LINE_MAX + KUDP_MAX_VALUE + 2 > r->room) {
			r->overflow = true;
			return;
		}
		/* The value goes after room for its VALUE line, then moves up. */
		value = r->buf + r->len + MC_VALUE_LINE_MAX;
		kudp_run(&one, value, KUDP_MAX_VALUE, &res);
		if (res.status)
			continue;
		if (req->with_cas)
			n = scnprintf(r->buf + r->len, MC_VALUE_LINE_MAX,
				      "VALUE %.*s %u %d %u\r\n", (int)one.key.n,
				      one.key.p, res.meta.flags, res.vlen,
				      res.meta.cas);
		else
			n = scnprintf(r->buf + r->len, MC_VALUE_LINE_MAX,
				      "VALUE %.*s %u %d\r\n", (int)one.key.n,
				      one.key.p, res.meta.flags, res.vlen);
		memmove(r->buf + r->len + n, value, res.vlen);
		r->len += n + res.vlen;
		mc_add(r, "\r\n", 2);
	}
	mc_line(r, "END");
}

static void answer_change(const struct kudp_request *req, struct mc_reply *r)
{
	struct kudp_result res;

	kudp_run(req, NULL, 0, &res);
	r->seq = res.seq;
	switch (res.status) {
	case 0:
		mc_line(r, req->op == KUDP_OP_STORE ? "STORED" : "DELETED");
		break;
	case -EEXIST:
		mc_line(r, "NOT_STORED");
		break;
	case -ENOENT:
		mc_line(r, req->op == KUDP_OP_STORE ? "NOT_STORED" : "NOT_FOUND");
		break;
	case -ENOLINK:
		mc_error(r, "SERVER_ERROR no backup daemon (durable=1)");
		break;
	default:
		mc_error(r, "SERVER_ERROR out of memory storing object");
		break;
	}
}

/*
 * A request that is not a well-formed command, rate-limited as such: any
 * error but the SERVER_ERROR of a well-formed store the table cannot take.
 */
static bool mc_is_malformed(const char *error)
{
	return strncmp(error, "SERVER_ERROR", 12) || error == mc_multi_packet ||
	       error == mc_too_large;
}

/* Runs a parsed request and writes its reply's text. */
static void answer(const struct kudp_request *req, struct mc_reply *r)
{
	struct kudp_result res;

	if (req->op == KUDP_OP_INVALID) {
		kudp_run(req, NULL, 0, &res);	/* traced, nothing else */
		if (mc_is_malformed(req->error))
			mc_malformed(r, req->error);
		else
			mc_error(r, req->error);
		return;
	}
	r->quiet = req->noreply;
	if (req->op == KUDP_OP_LOOKUP) {
		answer_get(req, r);
	} else if (req->op == KUDP_OP_VERSION) {
		kudp_run(req, NULL, 0, &res);	/* traced, nothing else */
		mc_line(r, "VERSION kernel-udp");
	} else {
		answer_change(req, r);
	}
}

/* The datagrams a reply of @len bytes takes, each with its header. */
static unsigned int mc_datagrams(size_t len)
{
	return max_t(unsigned int, 1,
		     DIV_ROUND_UP(len, KUDP_MC_DATAGRAM - MC_HEADER));
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

/*
 * Lays the reply out as the datagrams it is sent in, each after a frame
 * header of its own: the text was built after one header's room, so each
 * later piece moves up by the headers before it (the last one first).
 */
static void mc_frame(struct kudp_reply *reply, u16 id, const struct mc_reply *r)
{
	unsigned int count = mc_datagrams(r->len);
	unsigned int i;

	for (i = count - 1; i > 0; i--)
		memmove(reply->buf + i * KUDP_MC_DATAGRAM + MC_HEADER,
			r->buf + i * MC_PAYLOAD,
			min_t(size_t, MC_PAYLOAD, r->len - i * MC_PAYLOAD));
	for (i = 0; i < count; i++)
		mc_header(reply->buf + i * KUDP_MC_DATAGRAM, id, i, count);
	reply->size = r->len + count * MC_HEADER;
	reply->datagram = count > 1 ? KUDP_MC_DATAGRAM : 0;
	reply->seq = r->seq;
	reply->malformed = r->malformed;
}

/**
 * mc_parse() - turn one memcached datagram into a request value
 * @p: the datagram: its first min(@size, KUDP_MC_REQUEST_MAX + 1) bytes
 * @size: its full length, which may be more than was received
 * @req: gets the request: an operation, or KUDP_OP_INVALID and the error
 *       line to answer; no error line for a datagram too short for a
 *       frame header, which gets no answer (memcached drops it too)
 */
static void mc_parse(const char *p, size_t size, struct kudp_request *req)
{
	struct kudp_span line, data;
	const char *error;
	const char *end;

	memset(req, 0, sizeof(*req));
	req->proto = KUDP_PROTO_MEMCACHED;
	if (size < MC_HEADER) {
		req->op = KUDP_OP_INVALID;
		return;
	}
	if (mc_get16(p + 2) != 0 || mc_get16(p + 4) != 1) {
		error = mc_multi_packet;
	} else if (size > KUDP_MC_REQUEST_MAX) {
		error = mc_too_large;
	} else {
		line.p = p + MC_HEADER;
		end = memchr(line.p, '\n', size - MC_HEADER);
		if (!end) {
			error = "CLIENT_ERROR line without an end";
		} else {
			line.n = end - line.p;
			if (line.n && line.p[line.n - 1] == '\r')
				line.n--;
			data.p = end + 1;
			data.n = p + size - data.p;
			error = parse(line, data, req);
		}
	}
	if (error) {
		req->op = KUDP_OP_INVALID;
		req->error = error;
	}
}

/**
 * mc_answer() - answer one parsed memcached datagram
 * @p: the datagram (its frame header gives the reply's request ID)
 * @size: its full length
 * @req: from mc_parse()
 * @peer: the sender
 * @reply: gets the reply datagrams, laid out in @reply->buf (room for
 *         KUDP_MC_REPLY_MAX bytes); a size of 0 when there is none
 */
static void mc_answer(const char *p, size_t size,
		      const struct kudp_request *req,
		      const struct kudp_peer *peer, struct kudp_reply *reply)
{
	struct mc_reply r = { .buf = reply->buf + MC_HEADER, .room = MC_ROOM };

	reply->size = 0;
	reply->datagram = 0;
	reply->status = 0;
	reply->greeting = false;
	reply->malformed = false;
	reply->log_sent = false;
	reply->seq = 0;
	kudp_count(requests);
	if (req->op == KUDP_OP_INVALID && !req->error) {
		kudp_drop(KUDP_DROP_SHORT);
		return;
	}
	answer(req, &r);
	if (r.overflow) {
		r.len = 0;
		r.overflow = false;
		r.quiet = false;
		mc_error(&r, "SERVER_ERROR out of memory writing get response");
	}
	mc_bound_reflection(peer, size, &r);
	if (!r.quiet)
		mc_frame(reply, mc_get16(p), &r);
}

const struct kudp_protocol kudp_mc_protocol = {
	.proto = KUDP_PROTO_MEMCACHED,
	.parse = mc_parse,
	.answer = mc_answer,
};
