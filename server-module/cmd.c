// SPDX-License-Identifier: GPL-2.0
/*
 * The request parser of udp_server: one request in, one reply line out
 * (PROTOCOL.md).
 *
 * The same parser serves UDP datagrams and writes to /proc/ht. It never
 * writes more than len bytes of reply (main.c bounds replies to remote
 * senders further), and it never reads past the request: nothing here relies
 * on a terminating NUL.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "kudp_protocol.h"
#include "udp_server.h"

struct kudp_stats kudp_stats;

/* A piece of the request: not NUL-terminated. */
struct span {
	const char *p;
	size_t n;
};

static bool span_is(const struct span *s, const char *word)
{
	return s->n == strlen(word) && !memcmp(s->p, word, s->n);
}

/* Skips spaces, then returns the word that follows (n == 0 at the end). */
static struct span next_word(struct span *rest)
{
	struct span word;

	while (rest->n && *rest->p == ' ') {
		rest->p++;
		rest->n--;
	}
	word.p = rest->p;
	while (rest->n && *rest->p != ' ') {
		rest->p++;
		rest->n--;
	}
	word.n = rest->p - word.p;
	return word;
}

static void skip_spaces_in(struct span *rest)
{
	while (rest->n && *rest->p == ' ') {
		rest->p++;
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
 * kudp_reply_error() - answer "ERR reason" and count an error
 * @reply: where the line goes
 * @status: the errno that stands for the reason (PROTOCOL.md)
 * @fmt: printf-style format of the reason, without "ERR " and "\n"
 */
void kudp_reply_error(struct kudp_reply *reply, int status,
		      const char *fmt, ...)
{
	char reason[48];
	va_list args;

	va_start(args, fmt);
	vscnprintf(reason, sizeof(reason), fmt, args);
	va_end(args);
	atomic_long_inc(&kudp_stats.errors);
	reply->greeting = false;
	reply_line(reply, status, KUDP_ERR " %s\n", reason);
}

/* The reason, and the errno of PROTOCOL.md, for a failed change. */
static void reply_change_failed(struct kudp_reply *reply, int err)
{
	switch (err) {
	case -ENOSPC:
		kudp_reply_error(reply, err, KUDP_ERR_FULL);
		break;
	case -ENOMEM:
		kudp_reply_error(reply, err, KUDP_ERR_NOMEM);
		break;
	default:	/* -EBUSY: a resize, or memory about to be freed */
		kudp_reply_error(reply, -EBUSY, KUDP_ERR_BUSY);
		break;
	}
}

/* "OK entries=.. bytes=..": as many whole fields as fit in len. */
static void reply_stats(struct kudp_reply *reply)
{
	const struct {
		const char *name;
		unsigned long value;
	} fields[] = {
		{ "entries", kv_entries() },
		{ "bytes", kv_mem_charged() },
		{ "requests", atomic_long_read(&kudp_stats.requests) },
		{ "hits", atomic_long_read(&kudp_stats.hits) },
		{ "misses", atomic_long_read(&kudp_stats.misses) },
		{ "errors", atomic_long_read(&kudp_stats.errors) },
		{ "drops", atomic_long_read(&kudp_stats.drops) },
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

static void do_lookup(const struct span *key, struct kudp_reply *reply)
{
	/* The reply is "OK " + value + "\n", and must fit in len. */
	size_t room = kudp_len - 4;
	char *buf = reply->buf;
	int vlen = kv_lookup(key->p, key->n, buf + 3, room);

	if (vlen == -ENOENT) {
		atomic_long_inc(&kudp_stats.misses);
		reply_line(reply, -ENOENT, "%s\n", KUDP_NOT_FOUND);
		return;
	}
	atomic_long_inc(&kudp_stats.hits);
	if (vlen > room) {	/* stored under a larger len */
		kudp_reply_error(reply, -EMSGSIZE, KUDP_ERR_TOO_LONG);
		return;
	}
	memcpy(buf, KUDP_OK " ", 3);
	buf[3 + vlen] = '\n';
	buf[4 + vlen] = '\0';
	reply->size = 4 + vlen;
	reply->status = 0;
}

/*
 * With durable=1 a change is only made while the backup daemon is there to
 * save it; its reply then waits for the daemon (main.c, proc.c).
 */
static bool refuse_undurable(struct kudp_reply *reply)
{
	if (kudp_daemon_registered() || !kudp_durable)
		return false;
	kudp_reply_error(reply, -ENOLINK, KUDP_ERR_NO_BACKUP);
	return true;
}

/*
 * The history line is charged with the entry, so that the two together stay
 * within max_bytes; a line that cannot be allocated is left out.
 */
static void do_insert(const struct span *key, const struct span *value,
		      struct kudp_reply *reply)
{
	struct kudp_line *line;
	int ret;

	mutex_lock(&kv_mutex);
	if (refuse_undurable(reply)) {
		mutex_unlock(&kv_mutex);
		return;
	}
	line = kudp_line_new("insert %.*s %.*s", (int)key->n, key->p,
			     (int)value->n, value->p);
	ret = kv_insert(key->p, key->n, value->p, value->n,
			kudp_line_cost(line));
	if (!ret && line)
		kudp_history_add(line);
	else
		kfree(line);
	if (!ret)
		reply->seq = kudp_journal_add("insert %.*s %.*s", (int)key->n,
					      key->p, (int)value->n, value->p);
	mutex_unlock(&kv_mutex);

	if (ret) {
		reply_change_failed(reply, ret);
		return;
	}
	reply_line(reply, 0, "%s\n", KUDP_OK);
}

/*
 * A delete always happens; its history line is left out when it does not
 * fit in max_bytes (the deleted entry's memory comes back only after a
 * grace period).
 */
static void do_delete(const struct span *key, struct kudp_reply *reply)
{
	struct kudp_line *line;
	int ret;

	mutex_lock(&kv_mutex);
	if (refuse_undurable(reply)) {
		mutex_unlock(&kv_mutex);
		return;
	}
	ret = kv_delete(key->p, key->n);
	if (!ret) {
		line = kudp_line_new("delete %.*s", (int)key->n, key->p);
		if (line && !kv_mem_reserve(kudp_line_cost(line)))
			kudp_history_add(line);
		else
			kfree(line);
		reply->seq = kudp_journal_add("delete %.*s", (int)key->n,
					      key->p);
	}
	mutex_unlock(&kv_mutex);

	if (ret) {
		reply_line(reply, -ENOENT, "%s\n", KUDP_NOT_FOUND);
		return;
	}
	reply_line(reply, 0, "%s\n", KUDP_OK);
}

/*
 * Parses a request of at most len bytes and runs it. A command that runs
 * writes its own reply; a malformed request gets none here.
 *
 * Return: NULL, or the reason for an "ERR" reply (PROTOCOL.md, in the order
 * the checks are listed there).
 */
static const char *parse_and_run(struct span rest, struct kudp_reply *reply)
{
	struct span command, key;

	/* netcat ends its line with "\n"; some tools send "\r\n". */
	if (rest.n && rest.p[rest.n - 1] == '\n') {
		rest.n--;
		if (rest.n && rest.p[rest.n - 1] == '\r')
			rest.n--;
	}
	if (!rest.n)
		return KUDP_ERR_EMPTY;
	if (has_control_bytes(rest.p, rest.n))
		return KUDP_ERR_CONTROL;

	command = next_word(&rest);
	if (span_is(&command, KUDP_HELLO)) {
		if (next_word(&rest).n)
			return KUDP_ERR_EXTRA;
		reply->greeting = true;
		reply_line(reply, 0, "%s\n", KUDP_GOT_IT);
		return NULL;
	}
	if (span_is(&command, KUDP_CMD_STATS)) {
		if (next_word(&rest).n)
			return KUDP_ERR_EXTRA;
		reply_stats(reply);
		return NULL;
	}
	if (!span_is(&command, KUDP_CMD_INSERT) &&
	    !span_is(&command, KUDP_CMD_LOOKUP) &&
	    !span_is(&command, KUDP_CMD_DELETE))
		return KUDP_ERR_UNKNOWN;

	key = next_word(&rest);
	if (!key.n)
		return KUDP_ERR_NO_KEY;
	if (key.n > KUDP_MAX_KEY)
		return KUDP_ERR_KEY_LONG;

	if (span_is(&command, KUDP_CMD_INSERT)) {
		/* The value is the rest of the line, inner spaces and all. */
		skip_spaces_in(&rest);
		if (!rest.n)
			return KUDP_ERR_NO_VALUE;
		if (rest.n > KUDP_MAX_VALUE)
			return KUDP_ERR_VALUE_LONG;
		do_insert(&key, &rest, reply);
		return NULL;
	}

	if (next_word(&rest).n)
		return KUDP_ERR_EXTRA;
	if (span_is(&command, KUDP_CMD_LOOKUP))
		do_lookup(&key, reply);
	else
		do_delete(&key, reply);
	return NULL;
}

/**
 * kudp_execute() - run one request and write its reply line
 * @req: the request, not NUL-terminated; may be NULL when @size > len
 * @size: the request's full length; one longer than len is refused whole
 *        and never read
 * @reply: gets the reply (see struct kudp_reply)
 *
 * Every request is counted in stats, whatever its fate.
 */
void kudp_execute(const char *req, size_t size, struct kudp_reply *reply)
{
	struct span request = { .p = req, .n = size };
	const char *reason;

	atomic_long_inc(&kudp_stats.requests);
	reply->greeting = false;
	reply->seq = 0;
	if (size > kudp_len) {
		kudp_reply_error(reply, -EMSGSIZE, KUDP_ERR_TOO_LONG);
		return;
	}
	reason = parse_and_run(request, reply);
	if (reason)
		kudp_reply_error(reply, -EINVAL, "%s", reason);
}
