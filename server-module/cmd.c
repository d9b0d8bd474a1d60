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
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "kudp_protocol.h"
#include "udp_server.h"

DEFINE_PER_CPU(struct kudp_stats, kudp_stats);

/* The counters of every CPU, added up (a snapshot, not atomic). */
void kudp_stats_sum(struct kudp_stats *sum)
{
	int cpu;

	memset(sum, 0, sizeof(*sum));
	for_each_possible_cpu(cpu) {
		const struct kudp_stats *s = per_cpu_ptr(&kudp_stats, cpu);

		sum->requests += READ_ONCE(s->requests);
		sum->hits += READ_ONCE(s->hits);
		sum->misses += READ_ONCE(s->misses);
		sum->errors += READ_ONCE(s->errors);
		sum->drops += READ_ONCE(s->drops);
	}
}

/* Whether the span is exactly @word. */
bool kudp_span_is(const struct kudp_span *s, const char *word)
{
	return s->n == strlen(word) && !memcmp(s->p, word, s->n);
}

/* Skips spaces, then returns the word that follows (n == 0 at the end). */
struct kudp_span kudp_next_word(struct kudp_span *rest)
{
	struct kudp_span word;

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

/*
 * Words that begin a reply: the text protocol's (kudp_protocol.h; "GOT IT"
 * and "NOT FOUND" by their first word) and memcached's. No request of
 * either protocol starts with one.
 */
static const char *const reply_words[] = {
	KUDP_OK, KUDP_ERR, "GOT", "NOT",
	"VALUE", "END", "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND",
	"DELETED", "TOUCHED", "ERROR", "CLIENT_ERROR", "SERVER_ERROR",
	"VERSION", "STAT",
};

/* Whether @p starts with a reply word, followed by a space, a line end or nothing. */
static bool starts_with_reply_word(const char *p, size_t n)
{
	size_t len = 0;
	unsigned int i;

	while (len < n && p[len] != ' ' && p[len] != '\r' && p[len] != '\n')
		len++;
	for (i = 0; i < ARRAY_SIZE(reply_words); i++)
		if (len == strlen(reply_words[i]) &&
		    !memcmp(p, reply_words[i], len))
			return true;
	return false;
}

/* memcached's frame header: ID, sequence, count (at least 1), then 0. */
#define KUDP_MC_HEADER	8

/**
 * kudp_is_reply() - whether a datagram is a reply of either protocol
 * @p: its first bytes
 * @n: how many
 *
 * A server that answers replies can be made to bounce one forged datagram
 * with another server (or between its own two ports) for ever. Both ports
 * ask this of every datagram and answer none that is a reply: a text
 * protocol reply, or a memcached reply with or without its frame header.
 *
 * Return: true for a reply, which gets no answer.
 */
bool kudp_is_reply(const char *p, size_t n)
{
	if (starts_with_reply_word(p, n))
		return true;
	return n > KUDP_MC_HEADER && (p[4] || p[5]) && !p[6] && !p[7] &&
	       starts_with_reply_word(p + KUDP_MC_HEADER, n - KUDP_MC_HEADER);
}

static void skip_spaces_in(struct kudp_span *rest)
{
	while (rest->n && *rest->p == ' ') {
		rest->p++;
		rest->n--;
	}
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
	kudp_count(errors);
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
	case -ENOLINK:
		kudp_reply_error(reply, err, KUDP_ERR_NO_BACKUP);
		break;
	default:	/* -EBUSY: a resize, or memory about to be freed */
		kudp_reply_error(reply, -EBUSY, KUDP_ERR_BUSY);
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
		{ "entries", kv_entries() },
		{ "bytes", kv_mem_charged() },
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

static void do_lookup(const struct kudp_span *key, struct kudp_reply *reply)
{
	/* The reply is "OK " + value + "\n", and must fit in len. */
	size_t room = kudp_len - 4;
	char *buf = reply->buf;
	int vlen = kv_lookup(key->p, key->n, buf + 3, room);

	if (vlen == -ENOENT) {
		kudp_count(misses);
		reply_line(reply, -ENOENT, "%s\n", KUDP_NOT_FOUND);
		return;
	}
	kudp_count(hits);
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
 * The change itself, under the key's stripe: the table, the history line
 * and the journal line. An entry with an expiry time is a cache entry,
 * which the backup does not keep: its journal line deletes the key from
 * the backup, so that no older value of it comes back after a reload.
 */
static int store_locked(const char *key, size_t klen, const char *value,
			size_t vlen, const struct kv_meta *meta,
			enum kv_mode mode, u64 *seq)
{
	struct mutex *lock = kv_key_lock(key, klen);
	struct kudp_line *line;
	int ret;

	line = kudp_line_new("insert %.*s %.*s", (int)klen, key, (int)vlen,
			     value);
	mutex_lock(lock);
	ret = kv_store(key, klen, value, vlen, meta, mode,
		       kudp_line_cost(line));
	if (!ret && line)
		kudp_history_add(line);
	else
		kfree(line);
	if (!ret && meta && meta->expires)
		*seq = kudp_journal_add("delete %.*s", (int)klen, key);
	else if (!ret)
		*seq = kudp_journal_add("insert %.*s %.*s", (int)klen, key,
					(int)vlen, value);
	mutex_unlock(lock);
	return ret;
}

/**
 * kudp_store() - make a store, with its history line and its journal line
 * @key: the key, @klen bytes
 * @klen: 1..KUDP_MAX_KEY
 * @value: the value, @vlen bytes
 * @vlen: 1..KUDP_MAX_VALUE
 * @meta: what memcached keeps with it (NULL: nothing)
 * @mode: see kv_store()
 * @seq: gets the change's number (journal.c)
 *
 * Both protocols change the table through here and kudp_delete(), under
 * the key's stripe lock (kv.c), so that the history and the journal see the
 * changes to a key in the order they were made. The history line is charged
 * with the entry, so that the two together stay within max_bytes; a line
 * that cannot be allocated is left out. A full table first gives up its
 * expired entries, and their memory. With durable=1 a change is only made
 * while the backup daemon is there to save it.
 *
 * Return: 0, -ENOLINK (durable=1 and no daemon), or kv_store()'s error.
 */
int kudp_store(const char *key, size_t klen, const char *value, size_t vlen,
	       const struct kv_meta *meta, enum kv_mode mode, u64 *seq)
{
	int ret;

	if (!kudp_backup_ready())
		return -ENOLINK;
	ret = store_locked(key, klen, value, vlen, meta, mode, seq);
	if (ret == -ENOSPC && kv_reap_expired()) {
		rcu_barrier();	/* their memory, after its grace period */
		ret = store_locked(key, klen, value, vlen, meta, mode, seq);
	}
	return ret;
}

/**
 * kudp_delete() - remove a key, with its history line and its journal line
 * @key: the key, @klen bytes
 * @klen: its length
 * @seq: gets the change's number
 *
 * A delete always happens; its history line is left out when it does not
 * fit in max_bytes (the deleted entry's memory comes back only after a
 * grace period).
 *
 * Return: 0, -ENOENT when the key is not there, or -ENOLINK (durable=1 and
 * no daemon).
 */
int kudp_delete(const char *key, size_t klen, u64 *seq)
{
	struct mutex *lock = kv_key_lock(key, klen);
	struct kudp_line *line;
	int ret;

	if (!kudp_backup_ready())
		return -ENOLINK;
	mutex_lock(lock);
	ret = kv_delete(key, klen);
	if (!ret) {
		line = kudp_line_new("delete %.*s", (int)klen, key);
		if (line && !kv_mem_reserve(kudp_line_cost(line)))
			kudp_history_add(line);
		else
			kfree(line);
		*seq = kudp_journal_add("delete %.*s", (int)klen, key);
	}
	mutex_unlock(lock);
	return ret;
}

static void do_insert(const struct kudp_span *key, const struct kudp_span *value,
		      struct kudp_reply *reply)
{
	int ret;

	ret = kudp_store(key->p, key->n, value->p, value->n, NULL, KV_SET,
			 &reply->seq);
	if (ret)
		reply_change_failed(reply, ret);
	else
		reply_line(reply, 0, "%s\n", KUDP_OK);
}

static void do_delete(const struct kudp_span *key, struct kudp_reply *reply)
{
	int ret;

	ret = kudp_delete(key->p, key->n, &reply->seq);
	if (ret == -ENOENT)
		reply_line(reply, -ENOENT, "%s\n", KUDP_NOT_FOUND);
	else if (ret)
		reply_change_failed(reply, ret);
	else
		reply_line(reply, 0, "%s\n", KUDP_OK);
}

/*
 * Parses a request of at most len bytes and runs it. A command that runs
 * writes its own reply; a malformed request gets none here.
 *
 * Return: NULL, or the reason for an "ERR" reply (PROTOCOL.md, in the order
 * the checks are listed there).
 */
static const char *parse_and_run(struct kudp_span rest, struct kudp_reply *reply)
{
	struct kudp_span command, key;

	strip_line_end(&rest);
	if (!rest.n)
		return KUDP_ERR_EMPTY;
	if (has_control_bytes(rest.p, rest.n))
		return KUDP_ERR_CONTROL;

	command = kudp_next_word(&rest);
	if (kudp_span_is(&command, KUDP_HELLO)) {
		if (kudp_next_word(&rest).n)
			return KUDP_ERR_EXTRA;
		reply->greeting = true;
		reply_line(reply, 0, "%s\n", KUDP_GOT_IT);
		return NULL;
	}
	if (kudp_span_is(&command, KUDP_CMD_STATS)) {
		if (kudp_next_word(&rest).n)
			return KUDP_ERR_EXTRA;
		reply_stats(reply);
		return NULL;
	}
	if (!kudp_span_is(&command, KUDP_CMD_INSERT) &&
	    !kudp_span_is(&command, KUDP_CMD_LOOKUP) &&
	    !kudp_span_is(&command, KUDP_CMD_DELETE))
		return KUDP_ERR_UNKNOWN;

	key = kudp_next_word(&rest);
	if (!key.n)
		return KUDP_ERR_NO_KEY;
	if (key.n > KUDP_MAX_KEY)
		return KUDP_ERR_KEY_LONG;

	if (kudp_span_is(&command, KUDP_CMD_INSERT)) {
		/* The value is the rest of the line, inner spaces and all. */
		skip_spaces_in(&rest);
		if (!rest.n)
			return KUDP_ERR_NO_VALUE;
		if (rest.n > KUDP_MAX_VALUE)
			return KUDP_ERR_VALUE_LONG;
		do_insert(&key, &rest, reply);
		return NULL;
	}

	if (kudp_next_word(&rest).n)
		return KUDP_ERR_EXTRA;
	if (kudp_span_is(&command, KUDP_CMD_LOOKUP))
		do_lookup(&key, reply);
	else
		do_delete(&key, reply);
	return NULL;
}

/**
 * kudp_is_change() - whether a request would change the table
 * @req: the request, not NUL-terminated
 * @size: its length
 *
 * Only insert and delete change the table, and only they may sleep (the
 * key's stripe lock, allocations); any other request, well-formed or not,
 * can be answered in softirq context (fastpath.c).
 */
bool kudp_is_change(const char *req, size_t size)
{
	struct kudp_span rest = { .p = req, .n = size };
	struct kudp_span command;

	strip_line_end(&rest);
	command = kudp_next_word(&rest);
	return kudp_span_is(&command, KUDP_CMD_INSERT) ||
	       kudp_span_is(&command, KUDP_CMD_DELETE);
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
	struct kudp_span request = { .p = req, .n = size };
	const char *reason;

	kudp_count(requests);
	reply->greeting = false;
	reply->malformed = false;
	reply->seq = 0;
	if (size > kudp_len) {
		kudp_reply_error(reply, -EMSGSIZE, KUDP_ERR_TOO_LONG);
		reply->malformed = true;
		return;
	}
	reason = parse_and_run(request, reply);
	if (reason) {
		kudp_reply_error(reply, -EINVAL, "%s", reason);
		reply->malformed = true;
	}
}
