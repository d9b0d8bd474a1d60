// SPDX-License-Identifier: GPL-2.0
/*
 * The executor of udp_server: one parsed request (request.h), whichever
 * protocol it came in, run against the store: lookups under RCU only,
 * stores and deletes under the key's stripe with their history line and
 * their journal line, so that both see a key's changes in the order they
 * were made. Also the counters of "stats", and the word scanner both
 * parsers share.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "request.h"

#define CREATE_TRACE_POINTS
#include "trace_request.h"

DEFINE_PER_CPU(struct kudp_stats, kudp_stats);

/* Counts a dropped datagram (or reply) in stats, and traces why. */
void kudp_drop(enum kudp_drop reason)
{
	kudp_count(drops);
	trace_drop(reason);
}

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
 * The change itself, under the key's stripe: the table, the history line
 * and the journal line, each allocated before the stripe is taken. An
 * entry with an expiry time is a cache entry,
 * which the backup does not keep: its journal line deletes the key from
 * the backup, so that no older value of it comes back after a reload.
 */
static int store_locked(const char *key, size_t klen, const char *value,
			size_t vlen, const struct kudp_meta *meta,
			enum kudp_mode mode, u64 *seq)
{
	spinlock_t *lock = kudp_kv_key_lock(key, klen);
	struct kudp_journal_line *journal;
	struct kudp_entry *entry;
	struct kudp_line *line;
	int ret;

	/* Everything allocated first: nothing sleeps under the stripe. */
	entry = kudp_kv_entry_new(key, klen, value, vlen, meta);
	if (!entry)
		return -ENOMEM;
	line = kudp_line_new(key, klen, value, vlen);
	if (meta->expires)
		journal = kudp_journal_line_new("delete %.*s", (int)klen, key);
	else
		journal = kudp_journal_line_new("insert %.*s %.*s", (int)klen,
						key, (int)vlen, value);
	spin_lock_bh(lock);
	ret = kudp_kv_store(entry, mode, kudp_line_cost(line));
	if (!ret) {
		if (line)
			kudp_history_add(line);
		*seq = kudp_journal_add(journal);
	}
	spin_unlock_bh(lock);
	if (ret) {
		kfree(line);
		kfree(journal);
	}
	return ret;
}

/**
 * store_value() - make a store, with its history line and its journal line
 * @key: the key, @klen bytes
 * @klen: 1..KUDP_MAX_KEY
 * @value: the value, @vlen bytes
 * @vlen: 1..KUDP_MAX_VALUE
 * @meta: what memcached keeps with it
 * @mode: see kudp_kv_store()
 * @seq: gets the change's number (journal.c)
 *
 * Both protocols change the table through here and delete_key(), under
 * the key's stripe lock (kv.c), so that the history and the journal see the
 * changes to a key in the order they were made. The history line is charged
 * with the entry, so that the two together stay within max_bytes; a line
 * that cannot be allocated is left out. A full table first gives up its
 * expired entries, and their memory (in the receive softirq, where that
 * cannot be waited for, a worker reaps them and the answer is -EBUSY). With
 * durable=1 a change is only made while the backup daemon is there to save
 * it.
 *
 * Return: 0, -ENOLINK (durable=1 and no daemon), -ENOMEM, or
 * kudp_kv_store()'s error.
 */
static int store_value(const char *key, size_t klen, const char *value,
		       size_t vlen, const struct kudp_meta *meta,
		       enum kudp_mode mode, u64 *seq)
{
	int ret;

	if (!kudp_backup_ready())
		return -ENOLINK;
	ret = store_locked(key, klen, value, vlen, meta, mode, seq);
	if (ret != -ENOSPC)
		return ret;
	if (!in_task())	/* the receive softirq: a worker reaps, the client retries */
		return kudp_kv_reap_soon() ? -EBUSY : ret;
	if (kudp_kv_reap_expired()) {
		kudp_kv_reclaim();	/* their memory, after its grace period */
		ret = store_locked(key, klen, value, vlen, meta, mode, seq);
	}
	return ret;
}

/**
 * delete_key() - remove a key, with its history line and its journal line
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
static int delete_key(const char *key, size_t klen, u64 *seq)
{
	spinlock_t *lock = kudp_kv_key_lock(key, klen);
	struct kudp_journal_line *journal;
	struct kudp_line *line;
	int ret;

	if (!kudp_backup_ready())
		return -ENOLINK;
	/* Everything allocated first: nothing sleeps under the stripe. */
	line = kudp_line_new(key, klen, NULL, 0);
	if (line && kudp_mem_reserve(kudp_line_cost(line))) {
		kfree(line);
		line = NULL;
	}
	journal = kudp_journal_line_new("delete %.*s", (int)klen, key);
	spin_lock_bh(lock);
	ret = kudp_kv_delete(key, klen);
	if (!ret) {
		if (line)
			kudp_history_add(line);
		*seq = kudp_journal_add(journal);
	}
	spin_unlock_bh(lock);
	if (ret) {
		if (line)
			kudp_mem_release(kudp_line_cost(line));
		kfree(line);
		kfree(journal);
	}
	return ret;
}

/**
 * kudp_run() - run one request against the table
 * @req: the parsed request; LOOKUP, STORE and DELETE touch the table, the
 *       other operations are the protocol's own business (each protocol
 *       still runs them here, so that every request is traced: INVALID
 *       gives -EINVAL)
 * @out: where a LOOKUP copies the value
 * @room: the bytes @out can take; a longer value is not copied (its
 *        length is still given)
 * @res: gets the outcome
 *
 * The udp_server:request tracepoint sees each request with its outcome and
 * the time taken here; the clock is read only while it is enabled.
 *
 * Context: any: a worker thread or /proc/ht, or the receive softirq for a
 * request that cannot sleep (kudp_op_may_sleep(): not a change with
 * durable=1). LOOKUP takes RCU only and allocates nothing.
 */
void kudp_run(const struct kudp_request *req, char *out, size_t room,
	      struct kudp_result *res)
{
	const struct kudp_span *key = &req->key;
	bool traced = trace_request_enabled();
	u64 start = traced ? ktime_get_ns() : 0;

	res->status = 0;
	res->vlen = 0;
	res->seq = 0;
	switch (req->op) {
	case KUDP_OP_LOOKUP:
		res->vlen = kudp_kv_get(key->p, key->n, out, room, &res->meta);
		if (res->vlen < 0) {
			res->status = res->vlen;
			res->vlen = 0;
			kudp_count(misses);
		} else {
			kudp_count(hits);
		}
		break;
	case KUDP_OP_STORE:
		res->status = store_value(key->p, key->n, req->value.p,
					  req->value.n, &req->meta, req->mode,
					  &res->seq);
		break;
	case KUDP_OP_DELETE:
		res->status = delete_key(key->p, key->n, &res->seq);
		break;
	case KUDP_OP_INVALID:
		res->status = -EINVAL;
		break;
	default:
		break;
	}
	if (traced)
		trace_request(req, res, ktime_get_ns() - start);
}
