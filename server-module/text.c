// SPDX-License-Identifier: GPL-2.0
/*
 * The text protocol of udp_server (PROTOCOL.md): a datagram, or a write to
 * /proc/ht, is parsed once into a request (text_parse()), run by the
 * executor (request.c), and answered with one line (text_answer()).
 *
 * It never writes more than len bytes of reply, less to a sender not on
 * this host (bound_reflection()), and it never reads past the request:
 * nothing here relies on a terminating NUL.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/ratelimit.h>
#include <linux/string.h>

#include "kudp_protocol.h"
#include "protocol.h"

/*
 * Per-datagram lines share one budget so a flood cannot fill the log. The
 * kernel's own "serve_text: N callbacks suppressed" line would carry no
 * module prefix, so it is turned off (RATELIMIT_MSG_ON_RELEASE) and the
 * server counts what it left out itself.
 */
static DEFINE_RATELIMIT_STATE(packet_log, 5 * HZ, 10);
static atomic_t packet_log_missed;

static void log_missed_greetings(void)
{
	int missed = atomic_xchg(&packet_log_missed, 0);

	if (missed)
		pr_info("%d greetings not logged (rate limit)\n", missed);
}

/* Whether to log this greeting; says how many were left out before it. */
static bool log_greeting(void)
{
	if (!__ratelimit(&packet_log)) {
		atomic_inc(&packet_log_missed);
		return false;
	}
	log_missed_greetings();
	return true;
}

/* netcat ends its line with "\n"; some tools send "\r\n". */
static void strip_line_end(struct kudp_span *rest)
{
	if (rest->n && rest->p[rest->n - 1] == '\n') {
		rest->n--;
		if (rest->n && rest->p[rest->n - 1] == '\r')
			rest->n--;
	}
}

static bool has_control_bytes(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return true;
	return false;
}

static void skip_spaces_in(struct kudp_span *rest)
{
	while (rest->n && *rest->p == ' ') {
		rest->p++;
		rest->n--;
	}
}

static __printf(3, 0) void reply_vline(struct kudp_reply *reply, int status,
					  const char *fmt, va_list args)
{
	reply->status = status;
	reply->size = vscnprintf(reply->buf, kudp_len + 1, fmt, args);
}

/* Writes a reply line; reply->buf has room for len bytes and a NUL. */
static __printf(3, 4) void reply_line(struct kudp_reply *reply, int status,
				      const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	reply_vline(reply, status, fmt, args);
	va_end(args);
}

/**
 * reply_error() - answer "ERR reason" and count an error
 * @reply: where the line goes
 * @status: the errno that stands for the reason (PROTOCOL.md)
 * @fmt: printf-style format of the reason, without "ERR " and "\n"
 */
static __printf(3, 4) void reply_error(struct kudp_reply *reply, int status,
					 const char *fmt, ...)
{
	char reason[48];
	va_list args;

	va_start(args, fmt);
	vscnprintf(reason, sizeof(reason), fmt, args);
	va_end(args);
	kudp_count(errors);
	reply->greeting = false;
	reply_line(reply, status, KUDP_ERR " %s\n", reason);
}

/* The reason, and the errno of PROTOCOL.md, for a failed change. */
static void reply_change_failed(struct kudp_reply *reply, int err)
{
	switch (err) {
	case -ENOSPC:
		reply_error(reply, err, KUDP_ERR_FULL);
		break;
	case -ENOMEM:
		reply_error(reply, err, KUDP_ERR_NOMEM);
		break;
	case -ENOLINK:
		reply_error(reply, err, KUDP_ERR_NO_BACKUP);
		break;
	default:	/* -EBUSY: a resize, or memory about to be freed */
		reply_error(reply, -EBUSY, KUDP_ERR_BUSY);
		break;
	}
}

/* "OK entries=.. bytes=..": as many whole fields as fit in len. */
static void write_stats(struct kudp_reply *reply, const struct kudp_stats *sum)
{
	const struct {
		const char *name;
		unsigned long value;
	} fields[] = {
		{ "entries", kudp_kv_entries() },
		{ "bytes", kudp_mem_charged() },
		{ "requests", sum->requests },
		{ "hits", sum->hits },
		{ "misses", sum->misses },
		{ "errors", sum->errors },
		{ "drops", sum->drops },
	};
	char *buf = reply->buf;
	char field[48];
	size_t n = strscpy(buf, KUDP_OK, kudp_len + 1);
	size_t i, f;

	for (i = 0; i < ARRAY_SIZE(fields); i++) {
		f = scnprintf(field, sizeof(field), " %s=%lu",
			      fields[i].name, fields[i].value);
		if (n + f + 1 > kudp_len)	/* keep room for the "\n" */
			break;
		memcpy(buf + n, field, f);
		n += f;
	}
	buf[n++] = '\n';
	buf[n] = '\0';
	reply->size = n;
	reply->status = 0;
}

static void reply_stats(struct kudp_reply *reply)
{
	struct kudp_stats sum;

	kudp_stats_sum(&sum);
	write_stats(reply, &sum);
}

/**
 * bound_reflection() - keep a reply from amplifying a forged request
 * @peer: the sender
 * @size: the request's size
 * @reply: the reply, replaced by "ERR pad to N" when it is too long
 *
 * A datagram's source address can be forged, so a small request must not
 * draw a large reply onto someone else (memcached's CVE-2018-1000115). To a
 * sender that is not on this host, a reply is at most KUDP_REFLECT_RATIO
 * times the request, or KUDP_MIN_LEN bytes. A sender that wants a longer
 * reply pads its request with spaces to N bytes, which the parser skips.
 * Datagrams that came in on the loopback device were sent from this host,
 * so they get every reply whole.
 */
static void bound_reflection(const struct kudp_peer *peer, size_t size,
			     struct kudp_reply *reply)
{
	size_t limit = max_t(size_t, size * KUDP_REFLECT_RATIO, KUDP_MIN_LEN);

	if (reply->size <= limit || peer->local)
		return;
	reply_error(reply, -EMSGSIZE, KUDP_ERR_PAD " %zu",
		    DIV_ROUND_UP(reply->size, KUDP_REFLECT_RATIO));
}

/*
 * The reply "OK " + value + "\n" must fit in len: a value stored while the
 * module had a larger len gets ERR too long.
 */
static void answer_lookup(const struct kudp_request *req,
			  struct kudp_reply *reply)
{
	size_t room = kudp_len - 4;
	char *buf = reply->buf;
	struct kudp_result res;

	kudp_run(req, buf + 3, room, &res);
	if (res.status == -ENOENT) {
		reply_line(reply, -ENOENT, "%s\n", KUDP_NOT_FOUND);
		return;
	}
	if (res.vlen > room) {
		reply_error(reply, -EMSGSIZE, KUDP_ERR_TOO_LONG);
		return;
	}
	memcpy(buf, KUDP_OK " ", 3);
	buf[3 + res.vlen] = '\n';
	buf[4 + res.vlen] = '\0';
	reply->size = 4 + res.vlen;
	reply->status = 0;
}

static void answer_change(const struct kudp_request *req,
			  struct kudp_reply *reply)
{
	struct kudp_result res;

	kudp_run(req, NULL, 0, &res);
	reply->seq = res.seq;
	if (res.status == -ENOENT)
		reply_line(reply, -ENOENT, "%s\n", KUDP_NOT_FOUND);
	else if (res.status)
		reply_change_failed(reply, res.status);
	else
		reply_line(reply, 0, "%s\n", KUDP_OK);
}

/*
 * The checks of PROTOCOL.md, in its order; fills in @req.
 * Return: NULL, or the reason for the request's "ERR" reply.
 */
static const char *parse(struct kudp_span rest, struct kudp_request *req)
{
	struct kudp_span command, key;

	strip_line_end(&rest);
	if (!rest.n)
		return KUDP_ERR_EMPTY;
	if (has_control_bytes(rest.p, rest.n))
		return KUDP_ERR_CONTROL;

	command = kudp_next_word(&rest);
	if (kudp_span_is(&command, KUDP_HELLO))
		req->op = KUDP_OP_HELLO;
	else if (kudp_span_is(&command, KUDP_CMD_STATS))
		req->op = KUDP_OP_STATS;
	else if (kudp_span_is(&command, KUDP_CMD_INSERT))
		req->op = KUDP_OP_STORE;
	else if (kudp_span_is(&command, KUDP_CMD_LOOKUP))
		req->op = KUDP_OP_LOOKUP;
	else if (kudp_span_is(&command, KUDP_CMD_DELETE))
		req->op = KUDP_OP_DELETE;
	else
		return KUDP_ERR_UNKNOWN;
	if (req->op == KUDP_OP_HELLO || req->op == KUDP_OP_STATS)
		return kudp_next_word(&rest).n ? KUDP_ERR_EXTRA : NULL;

	key = kudp_next_word(&rest);
	if (!key.n)
		return KUDP_ERR_NO_KEY;
	if (key.n > KUDP_MAX_KEY)
		return KUDP_ERR_KEY_LONG;
	req->key = key;
	if (req->op == KUDP_OP_STORE) {
		/* The value is the rest of the line, inner spaces and all. */
		skip_spaces_in(&rest);
		if (!rest.n)
			return KUDP_ERR_NO_VALUE;
		if (rest.n > KUDP_MAX_VALUE)
			return KUDP_ERR_VALUE_LONG;
		req->value = rest;
		return NULL;
	}
	return kudp_next_word(&rest).n ? KUDP_ERR_EXTRA : NULL;
}

/**
 * text_parse() - turn one text request into a request value
 * @p: the request, not NUL-terminated; may be NULL when @size > len
 * @size: the request's full length; one longer than len is refused whole
 *        and never read
 * @req: gets the request: an operation, or KUDP_OP_INVALID and the reason
 *       for its "ERR" reply
 */
static void text_parse(const char *p, size_t size, struct kudp_request *req)
{
	struct kudp_span rest = { .p = p, .n = size };

	memset(req, 0, sizeof(*req));
	req->proto = KUDP_PROTO_TEXT;
	req->mode = KUDP_SET;
	req->error = size > kudp_len ? KUDP_ERR_TOO_LONG : parse(rest, req);
	if (req->error)
		req->op = KUDP_OP_INVALID;
}

/*
 * Runs a parsed request and writes its reply line; counts it in stats.
 * The greeting, stats and malformed requests go through the executor too,
 * which leaves the table alone for them but traces them.
 */
static void answer(const struct kudp_request *req, struct kudp_reply *reply)
{
	struct kudp_result res;

	kudp_count(requests);
	if (!kudp_op_touches_table(req->op))
		kudp_run(req, NULL, 0, &res);
	reply->greeting = false;
	reply->malformed = false;
	reply->log_sent = false;
	reply->datagram = 0;
	reply->seq = 0;
	switch (req->op) {
	case KUDP_OP_HELLO:
		reply->greeting = true;
		reply_line(reply, 0, "%s\n", KUDP_GOT_IT);
		break;
	case KUDP_OP_STATS:
		reply_stats(reply);
		break;
	case KUDP_OP_LOOKUP:
		answer_lookup(req, reply);
		break;
	case KUDP_OP_STORE:
	case KUDP_OP_DELETE:
		answer_change(req, reply);
		break;
	default:
		reply_error(reply, strcmp(req->error, KUDP_ERR_TOO_LONG) ?
			    -EINVAL : -EMSGSIZE, "%s", req->error);
		reply->malformed = true;
		break;
	}
}

/**
 * text_answer() - run a parsed datagram and bound its reply
 * @p: the datagram (already parsed into @req)
 * @size: its full length
 * @req: from text_parse()
 * @peer: its sender
 * @reply: gets the reply; @reply->buf has room for len + 1 bytes
 *
 * Only the greeting is logged at info level, and not always; when it is,
 * so is the reply sent (@reply->log_sent).
 */
static void text_answer(const char *p, size_t size,
			const struct kudp_request *req,
			const struct kudp_peer *peer, struct kudp_reply *reply)
{
	const struct sockaddr_in *from = &peer->addr;

	answer(req, reply);
	bound_reflection(peer, size, reply);
	reply->log_sent = reply->greeting && log_greeting();
	if (reply->log_sent)
		pr_info("received " KUDP_HELLO " from %pI4:%u\n",
			&from->sin_addr, ntohs(from->sin_port));
	else
		pr_debug("%zu-byte request from %pI4:%u: status %d\n", size,
			 &from->sin_addr, ntohs(from->sin_port), reply->status);
}

const struct kudp_protocol kudp_text_protocol = {
	.proto = KUDP_PROTO_TEXT,
	.parse = text_parse,
	.answer = text_answer,
};

/**
 * kudp_text_execute() - run one command written to /proc/ht
 * @p: the command, exactly as it would arrive in a datagram; may be NULL
 *     when @size > len
 * @size: its length
 * @reply: gets the reply, which nobody else sees: no reflection bound
 */
void kudp_text_execute(const char *p, size_t size, struct kudp_reply *reply)
{
	struct kudp_request req;

	text_parse(p, size, &req);
	req.proto = KUDP_PROTO_PROC;
	answer(&req, reply);
}

void kudp_text_init(void)
{
	ratelimit_set_flags(&packet_log, RATELIMIT_MSG_ON_RELEASE);
}

/* At unload: how many greetings the rate limit left out at the end. */
void kudp_text_exit(void)
{
	log_missed_greetings();
}
