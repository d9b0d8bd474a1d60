/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The bottom layer of udp_server: what holds the data.
 *
 *   kv.c       the key-value table (rhashtable, RCU lookups, entries from
 *              size-class slab caches), the memory budget max_bytes that
 *              the table and the history share, and the memory cgroup
 *              allocations are charged to
 *   history.c  the ring of the last changing commands (/proc/ht reads it)
 *   journal.c  the change journal the backup daemon kvd follows
 *              (/proc/kvjournal) and the daemon's registration
 *   restore.c  /proc/kvrestore: the daemon puts a backup back
 *
 * Nothing here calls a layer above (request.h, protocol.h, transport.h,
 * procfs.h); the one thing the transport must hear of, a change on disk,
 * comes to it through kudp_journal_watch().
 */
#ifndef KUDP_STORE_H
#define KUDP_STORE_H

#include <linux/atomic.h>
#include <linux/gfp.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/preempt.h>
#include <linux/seq_file.h>
#include <linux/spinlock.h>
#include <linux/types.h>

/*
 * Defaults of the server-only parameters. Plain literals, because
 * KUDP_RANGE() (kudp_params.h) pastes them into the parameter
 * descriptions that modinfo shows and ./run parses.
 */
#define KUDP_DEFAULT_MAX_ENTRIES	131072
#define KUDP_DEFAULT_MAX_BYTES		16777216
#define KUDP_MIN_MAX_BYTES		16384
#define KUDP_DEFAULT_HISTORY		128

/* Module parameters this layer reads (defined in main.c). */
extern unsigned int kudp_max_entries;
extern unsigned int kudp_max_bytes;
extern unsigned int kudp_history;
extern bool kudp_durable;

/*
 * Memory that requests make the server allocate: charged to the memory
 * cgroup of whoever loaded the module (see kudp_memcg_enter()). Any sender
 * can make it fail, so a failure is answered, not logged (__GFP_NOWARN), and
 * never worth hard reclaim or the OOM killer (__GFP_NORETRY).
 */
#define KUDP_GFP	(GFP_KERNEL_ACCOUNT | __GFP_NORETRY | __GFP_NOWARN)
/* The same in the receive softirq (fastpath.c): no sleep, no reserves. */
#define KUDP_GFP_ATOMIC	(GFP_NOWAIT | __GFP_ACCOUNT | __GFP_NOWARN)

/*
 * A change is made by a worker thread or /proc/ht (process context), or in
 * the receive softirq (softirq=1): what its allocations may do.
 */
static inline gfp_t kudp_gfp(void)
{
	return in_task() ? KUDP_GFP : KUDP_GFP_ATOMIC;
}

struct mem_cgroup *kudp_memcg_enter(void);
void kudp_memcg_leave(struct mem_cgroup *old);

/* Counters for the "stats" command, per CPU: the threads never share one. */
struct kudp_stats {
	unsigned long requests;
	unsigned long hits;
	unsigned long misses;
	unsigned long errors;
	unsigned long drops;
};

DECLARE_PER_CPU(struct kudp_stats, kudp_stats);
#define kudp_count(field)	this_cpu_inc(kudp_stats.field)
void kudp_stats_sum(struct kudp_stats *sum);

/* kv.c: what memcached keeps with a value besides the value. */
struct kudp_meta {
	u32 flags;
	u32 cas;
	u32 expires;	/* kudp_kv_now() when it expires, 0 for never */
};

enum kudp_mode { KUDP_SET, KUDP_ADD, KUDP_REPLACE };

/*
 * kv.c: changes to a key need kudp_kv_key_lock(key), taken with
 * spin_lock_bh(); lookups need only RCU.
 */
struct kudp_entry;

int kudp_kv_init(void);
void kudp_kv_destroy(void);
spinlock_t *kudp_kv_key_lock(const char *key, size_t klen);
struct kudp_entry *kudp_kv_entry_new(const char *key, size_t klen,
				     const char *value, size_t vlen,
				     const struct kudp_meta *meta);
int kudp_kv_store(struct kudp_entry *entry, enum kudp_mode mode,
		  size_t extra);
int kudp_kv_delete(const char *key, size_t klen);
int kudp_kv_get(const char *key, size_t klen, char *out, size_t out_size,
		struct kudp_meta *meta);
unsigned long kudp_kv_reap_expired(void);
bool kudp_kv_reap_soon(void);
void kudp_kv_reclaim(void);
u32 kudp_kv_now(void);
unsigned long kudp_kv_entries(void);
int kudp_kv_seq_open(struct file *file, bool lasting);
int kudp_kv_seq_release(struct inode *inode, struct file *file);

int kudp_mem_reserve(size_t bytes);
void kudp_mem_release(size_t bytes);
unsigned long kudp_mem_charged(void);
/*
 * What a slab object charged to a memory cgroup (SLAB_ACCOUNT,
 * __GFP_ACCOUNT) costs beside itself: its slab's array of the objects'
 * cgroups holds a pointer for it.
 */
#define KUDP_MEMCG_COST	sizeof(void *)

size_t kudp_mem_cost(size_t size);

/* history.c: the last `history` changing commands. */
struct kudp_line;

int kudp_history_init(void);
void kudp_history_exit(void);
struct kudp_line *kudp_line_new(const char *key, size_t klen,
				const char *value, size_t vlen);
size_t kudp_line_cost(const struct kudp_line *line);
void kudp_history_add(struct kudp_line *line);
extern const struct seq_operations kudp_history_seq_ops;

/* journal.c: the change journal, and the daemon that follows it. */
int kudp_journal_init(void);
void kudp_journal_exit(void);
void kudp_journal_watch(void (*synced)(u64 seq));
struct kudp_journal_line;
struct kudp_journal_line *kudp_journal_line_new(const char *fmt, ...)
	__printf(1, 2);
u64 kudp_journal_add(struct kudp_journal_line *line);
bool kudp_journal_synced(u64 seq);
int kudp_journal_wait(u64 seq);
void kudp_journal_drain(void);
void kudp_journal_close_writers(void);

/* restore.c: /proc/kvrestore */
int kudp_restore_init(void);
void kudp_restore_exit(void);

int kudp_daemon_register(int nr);
int kudp_daemon_shown(void);
bool kudp_daemon_registered(void);
bool kudp_backup_ready(void);

#endif /* KUDP_STORE_H */
