// SPDX-License-Identifier: GPL-2.0
/*
 * The history of udp_server: the last `history` commands that changed the
 * table, for /proc/ht to show (proc.c). The executor (request.c) adds a
 * line with each change, under the key's stripe lock. A line keeps the
 * change's key and value as they came; it is formatted as a command only
 * when /proc/ht is read, so a change costs a copy, not a printf.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/spinlock.h>

#include "store.h"

/*
 * One line of the history, and the bytes it is charged against max_bytes:
 * "insert KEY VALUE" (@vlen > 0) or "delete KEY" (@vlen 0), the key and the
 * value in @data.
 */
struct kudp_line {
	size_t cost;
	u32 klen;
	u32 vlen;
	char data[];
};

/*
 * The history: a ring of the last `history` changing commands. Line number
 * n (counting from 0 since load) lives in ring[n % history]. ring_lock
 * guards the ring, so a reader never sees a line being replaced; a writer
 * adds its line under the key's stripe lock, so the lines of one key are in
 * the order the table changed. The ring and its lines are charged against
 * max_bytes like the table.
 */
static struct kudp_line **ring;
static size_t ring_cost;
static u64 ring_added;	/* lines added since load; the next one's number */
static DEFINE_SPINLOCK(ring_lock);

static struct kudp_line **ring_slot(u64 n)
{
	u32 slot;

	div_u64_rem(n, kudp_history, &slot);
	return &ring[slot];
}

/**
 * kudp_line_new() - a line for the history
 * @key: the key changed
 * @klen: its length
 * @value: the value stored, or NULL for a delete
 * @vlen: its length (0 for a delete)
 *
 * The line is not charged yet: the caller charges kudp_line_cost() with the
 * change it records, then hands the line to kudp_history_add(), or kfree()s
 * it.
 *
 * Return: the line, or NULL when there is no memory for it (the history is
 * best effort; the table is not).
 */
struct kudp_line *kudp_line_new(const char *key, size_t klen,
				const char *value, size_t vlen)
{
	size_t size = struct_size_t(struct kudp_line, data, klen + vlen);
	struct kudp_line *line;

	line = kmalloc(size, kudp_gfp());
	if (!line)
		return NULL;
	line->cost = kudp_mem_cost(size) + KUDP_MEMCG_COST;
	line->klen = klen;
	line->vlen = vlen;
	memcpy(line->data, key, klen);
	if (vlen)
		memcpy(line->data + klen, value, vlen);
	return line;
}

size_t kudp_line_cost(const struct kudp_line *line)
{
	return line ? line->cost : 0;
}

/**
 * kudp_history_add() - remember a command that changed the table
 * @line: from kudp_line_new(), its cost already charged
 *
 * The oldest line makes room when the ring is full; its charge goes back.
 *
 * Context: any; the ring's lock is taken with bottom halves off, as a
 * change may be made in the receive softirq.
 */
void kudp_history_add(struct kudp_line *line)
{
	struct kudp_line **slot, *old;

	spin_lock_bh(&ring_lock);
	slot = ring_slot(ring_added);
	old = *slot;
	*slot = line;
	ring_added++;
	spin_unlock_bh(&ring_lock);
	if (old) {
		kudp_mem_release(old->cost);
		kfree(old);
	}
}

/*
 * /proc/ht reads: *pos is a line number. ring_lock is held from start to
 * stop, which seq_file never sleeps between; between two read()s the ring
 * may move on, and a reader that fell behind skips to the oldest line kept.
 */
static void *history_start(struct seq_file *m, loff_t *pos)
	__acquires(&ring_lock)
{
	u64 oldest;

	spin_lock_bh(&ring_lock);
	oldest = ring_added > kudp_history ? ring_added - kudp_history : 0;
	if (*pos < oldest)
		*pos = oldest;
	return *pos < ring_added ? *ring_slot(*pos) : NULL;
}

static void *history_next(struct seq_file *m, void *v, loff_t *pos)
{
	++*pos;
	return *pos < ring_added ? *ring_slot(*pos) : NULL;
}

static void history_stop(struct seq_file *m, void *v)
	__releases(&ring_lock)
{
	spin_unlock_bh(&ring_lock);
}

static int history_show(struct seq_file *m, void *v)
{
	const struct kudp_line *line = v;

	if (line->vlen)
		seq_printf(m, "insert %.*s %.*s\n", (int)line->klen,
			   line->data, (int)line->vlen, line->data + line->klen);
	else
		seq_printf(m, "delete %.*s\n", (int)line->klen, line->data);
	return 0;
}

const struct seq_operations kudp_history_seq_ops = {
	.start = history_start,
	.next = history_next,
	.stop = history_stop,
	.show = history_show,
};

/*
 * The ring is charged against max_bytes first: a history too large for the
 * budget is refused at load time rather than leaving no room for the table.
 */
int kudp_history_init(void)
{
	int ret;

	ring_cost = kudp_mem_cost(array_size(kudp_history, sizeof(*ring)));
	ret = kudp_mem_reserve(ring_cost);
	if (ret) {
		pr_err("history=%u needs %zu bytes, more than max_bytes=%u\n",
		       kudp_history, ring_cost, kudp_max_bytes);
		return -EINVAL;
	}
	ring = kvcalloc(kudp_history, sizeof(*ring), GFP_KERNEL_ACCOUNT);
	if (!ring) {
		kudp_mem_release(ring_cost);
		return -ENOMEM;
	}
	return 0;
}

/* Once /proc/ht is gone: nobody reads the ring or adds to it. */
void kudp_history_exit(void)
{
	unsigned int i;

	for (i = 0; i < kudp_history; i++) {
		if (ring[i]) {
			kudp_mem_release(ring[i]->cost);
			kfree(ring[i]);
		}
	}
	kvfree(ring);
	kudp_mem_release(ring_cost);
}
