// SPDX-License-Identifier: GPL-2.0
/*
 * The request parser of udp_server: one request in, one reply line out
 * (PROTOCOL.md).
 *
 * The same parser serves UDP datagrams and writes to /proc/ht. It never
 * writes more than `len` bytes of reply, so a small request cannot be turned
 * into a large reflected one, and it never reads past the request: nothing
 * here relies on a terminating NUL.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/errno.h>
#include <linux/kernel.h>
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

/* The reply buffer has room for len bytes plus a NUL. */
static size_t reply_line(char *reply, int *status, int err, const char *fmt,
			 const char *text)
{
	*status = err;
	return scnprintf(reply, len + 1, fmt, text);
}

static size_t reply_error(char *reply, int *status, int err,
			  const char *reason)
{
	atomic_long_inc(&kudp_stats.errors);
	return reply_line(reply, status, err, KUDP_ERR " %s\n", reason);
}

/* "OK entries=.. bytes=..": as many whole fields as fit in len. */
static size_t reply_stats(char *reply, int *status)
{
	const struct {
		const char *name;
		unsigned long value;
	} fields[] = {
		{ "entries", kv_entries() },
		{ "bytes", kv_bytes() },
		{ "requests", atomic_long_read(&kudp_stats.requests) },
		{ "hits", atomic_long_read(&kudp_stats.hits) },
		{ "misses", atomic_long_read(&kudp_stats.misses) },
		{ "errors", atomic_long_read(&kudp_stats.errors) },
		{ "drops", atomic_long_read(&kudp_stats.drops) },
	};
	char field[48];
	size_t n = strscpy(reply, KUDP_OK, len + 1);
	size_t i, f;

	for (i = 0; i < ARRAY_SIZE(fields); i++) {
		f = scnprintf(field, sizeof(field), " %s=%lu",
			      fields[i].name, fields[i].value);
		if (n + f + 1 > len)	/* keep room for the "\n" */
			break;
		memcpy(reply + n, field, f);
		n += f;
	}
	reply[n++] = '\n';
	reply[n] = '\0';
	*status = 0;
	return n;
}

static size_t do_lookup(const struct span *key, char *reply, int *status)
{
	/* The reply is "OK " + value + "\n", and must fit in len. */
	size_t room = len - 4;
	int vlen = kv_lookup(key->p, key->n, reply + 3, room);

	if (vlen == -ENOENT) {
		atomic_long_inc(&kudp_stats.misses);
		return reply_line(reply, status, -ENOENT, "%s\n", KUDP_NOT_FOUND);
	}
	atomic_long_inc(&kudp_stats.hits);
	if (vlen > room)	/* stored under a larger len */
		return reply_error(reply, status, -EMSGSIZE, KUDP_ERR_TOO_LONG);
	memcpy(reply, KUDP_OK " ", 3);
	reply[3 + vlen] = '\n';
	reply[4 + vlen] = '\0';
	*status = 0;
	return 4 + vlen;
}

static size_t do_insert(const struct span *key, const struct span *value,
			char *reply, int *status)
{
	int ret;

	mutex_lock(&kv_mutex);
	ret = kv_insert(key->p, key->n, value->p, value->n);
	if (!ret)
		kudp_history_add("insert %.*s %.*s", (int)key->n, key->p,
				 (int)value->n, value->p);
	mutex_unlock(&kv_mutex);

	if (ret)
		return reply_error(reply, status, -ENOSPC, KUDP_ERR_FULL);
	kudp_notify_daemon();
	return reply_line(reply, status, 0, "%s\n", KUDP_OK);
}

static size_t do_delete(const struct span *key, char *reply, int *status)
{
	int ret;

	mutex_lock(&kv_mutex);
	ret = kv_delete(key->p, key->n);
	if (!ret)
		kudp_history_add("delete %.*s", (int)key->n, key->p);
	mutex_unlock(&kv_mutex);

	if (ret)
		return reply_line(reply, status, -ENOENT, "%s\n", KUDP_NOT_FOUND);
	kudp_notify_daemon();
	return reply_line(reply, status, 0, "%s\n", KUDP_OK);
}

/**
 * kudp_execute() - run one request and write its reply line
 * @req: the request, not NUL-terminated
 * @size: its length, at most len (longer requests are refused by the caller)
 * @reply: room for len + 1 bytes; gets the reply line and a NUL
 * @status: 0 for OK / GOT IT, -ENOENT for NOT FOUND, -ENOSPC for ERR full,
 *          -EMSGSIZE for ERR too long, -EINVAL for the other ERR replies
 *
 * Return: the reply's length, "\n" included, NUL excluded; never above len.
 */
size_t kudp_execute(const char *req, size_t size, char *reply, int *status)
{
	struct span rest = { .p = req, .n = size };
	struct span command, key, extra;

	atomic_long_inc(&kudp_stats.requests);

	/* netcat ends its line with "\n"; some tools send "\r\n". */
	if (rest.n && rest.p[rest.n - 1] == '\n') {
		rest.n--;
		if (rest.n && rest.p[rest.n - 1] == '\r')
			rest.n--;
	}
	if (!rest.n)
		return reply_error(reply, status, -EINVAL, KUDP_ERR_EMPTY);
	if (has_control_bytes(rest.p, rest.n))
		return reply_error(reply, status, -EINVAL, KUDP_ERR_CONTROL);

	command = next_word(&rest);
	if (span_is(&command, KUDP_HELLO) || span_is(&command, KUDP_CMD_STATS)) {
		extra = next_word(&rest);
		if (extra.n)
			return reply_error(reply, status, -EINVAL, KUDP_ERR_EXTRA);
		if (span_is(&command, KUDP_CMD_STATS))
			return reply_stats(reply, status);
		return reply_line(reply, status, 0, "%s\n", KUDP_GOT_IT);
	}
	if (!span_is(&command, KUDP_CMD_INSERT) &&
	    !span_is(&command, KUDP_CMD_LOOKUP) &&
	    !span_is(&command, KUDP_CMD_DELETE))
		return reply_error(reply, status, -EINVAL, KUDP_ERR_UNKNOWN);

	key = next_word(&rest);
	if (!key.n)
		return reply_error(reply, status, -EINVAL, KUDP_ERR_NO_KEY);
	if (key.n > KUDP_MAX_KEY)
		return reply_error(reply, status, -EINVAL, KUDP_ERR_KEY_LONG);

	if (span_is(&command, KUDP_CMD_INSERT)) {
		/* The value is the rest of the line, inner spaces and all. */
		skip_spaces_in(&rest);
		if (!rest.n)
			return reply_error(reply, status, -EINVAL,
					   KUDP_ERR_NO_VALUE);
		if (rest.n > KUDP_MAX_VALUE)
			return reply_error(reply, status, -EINVAL,
					   KUDP_ERR_VALUE_LONG);
		return do_insert(&key, &rest, reply, status);
	}

	extra = next_word(&rest);
	if (extra.n)
		return reply_error(reply, status, -EINVAL, KUDP_ERR_EXTRA);
	if (span_is(&command, KUDP_CMD_LOOKUP))
		return do_lookup(&key, reply, status);
	return do_delete(&key, reply, status);
}
