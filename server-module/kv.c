// SPDX-License-Identifier: GPL-2.0
/*
 * The key-value table of udp_server, and the memory budget it shares with
 * the command history.
 *
 * An rhashtable: it grows and shrinks with the number of entries, so there
 * is no bucket count to guess. Lookups run under RCU only and copy the value
 * out without allocating. Changes to one key are serialized by one of
 * KV_STRIPES spinlocks, picked by the key's hash (kudp_kv_key_lock()), which
 * request.c holds across a change and its history and journal lines so
 * that they follow the order of the changes; changes to keys of other
 * stripes run at the same time, each on its own CPU, and the rhashtable's
 * bucket locks keep them apart. A change may be made in the receive softirq
 * (fastpath.c), so the stripes are taken with bottom halves off, and
 * nothing under them sleeps: the new entry is allocated before its stripe
 * is taken (kudp_kv_entry_new()). Replaced and deleted entries are freed
 * after an RCU grace period, by a work item (kv_reclaimer), not by call_rcu().
 *
 * Keys are 1..KUDP_MAX_KEY bytes and values 1..KUDP_MAX_VALUE bytes, stored
 * back to back after the header in one slab object per entry. The objects
 * come from size classes, as memcached's items do from its slab classes: one
 * kmem_cache per class, the sizes growing by a quarter from the smallest
 * entry to the largest (kv_classes_create()). An entry then leaves about a
 * fifth of its object unused at most, where kmalloc's classes (powers of two,
 * and 96 and 192 bytes) leave up to half.
 *
 * max_bytes bounds the kernel memory the table and the history take, counted
 * as the slab allocator hands it out, not as the bytes asked for:
 *   - each entry's slab object (its class's kmem_cache_size()), plus
 *     KUDP_MEMCG_COST for the slab's pointer to its cgroup and
 *     KV_BUCKET_COST for its share of the rhashtable's bucket arrays;
 *   - replaced and deleted entries until the grace period frees them;
 *   - the history ring and its lines (history.c).
 * max_entries bounds the number of entries.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jhash.h>
#include <linux/llist.h>
#include <linux/memcontrol.h>
#include <linux/sched/mm.h>
#include <linux/mutex.h>
#include <linux/preempt.h>
#include <linux/overflow.h>
#include <linux/random.h>
#include <linux/rcupdate.h>
#include <linux/rhashtable.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/time.h>
#include <linux/timekeeping.h>
#include <linux/workqueue.h>

#include "kudp_protocol.h"
#include "store.h"

/*
 * 32 bytes before the key on 64-bit: what PROTOCOL.md calls the header. A
 * key fits its length in a byte (memcached's 250 is for the same reason),
 * which leaves a byte for the size class the entry was allocated from.
 */
struct kudp_entry {
	struct rhash_head node;
	struct llist_node retired;	/* out of the table: in kv_retired */
	u32 flags;	/* memcached's client flags, stored and returned */
	u32 cas;	/* memcached's "cas unique": changes with every store */
	u32 expires;	/* kudp_kv_now() when it expires, 0 for never */
	u8 klen;
	u8 class;	/* its place in kv_classes[] */
	u16 vlen;
	char data[];	/* klen key bytes, then vlen value bytes */
};

/* The smallest entry (a 1-byte key and value) and the largest, as objects. */
#define KV_SMALLEST	ALIGN(sizeof(struct kudp_entry) + 2, 8)
#define KV_LARGEST	ALIGN(sizeof(struct kudp_entry) + KUDP_MAX_KEY + \
			      KUDP_MAX_VALUE, 8)

/*
 * The size classes, smallest first; the last is KV_LARGEST. 32 classes
 * growing by a quarter cover objects up to 48 KiB: past that, entries
 * should come from kmalloc() (page allocations) instead.
 */
#define KV_CLASSES_MAX	32

struct kv_class {
	struct kmem_cache *cache;
	unsigned int cost;	/* kmem_cache_size(): the object, as allocated */
};

static struct kv_class kv_classes[KV_CLASSES_MAX];
static unsigned int kv_nr_classes;

/* What a lookup searches for: the key is not NUL-terminated. */
struct kv_key {
	const char *data;
	size_t len;
};

/*
 * An entry's share of the bucket arrays, at worst: the table grows to twice
 * its size when it is 75% full and shrinks when it is 30% full, so it has
 * fewer than 3.4 buckets per entry, and fewer than 4 while a growing table
 * and its successor both exist. A bucket is one pointer.
 */
#define KV_BUCKET_COST		(4 * sizeof(struct rhash_head *))

/* Enough stripes that writers on a few CPUs rarely meet on one. */
#define KV_STRIPES		256

static spinlock_t kv_stripes[KV_STRIPES];
static u32 kv_stripe_seed;
static struct rhashtable kv_table;
static atomic_long_t kv_count;

/*
 * Bytes charged against max_bytes: a charge is checked and made in one
 * cmpxchg, and given back anywhere. kv_pending is the part held by entries
 * waiting for their grace period.
 */
static atomic_long_t kv_charged;
static atomic_long_t kv_pending;

/* The last "cas unique" handed out. */
static atomic_t kv_cas;

/*
 * Entries with an expiry time (memcached's EXPTIME), and the work that
 * takes them out once expired, so that they stop counting against
 * max_entries and max_bytes. kv_reap_mutex keeps two reapers apart.
 */
static atomic_long_t kv_volatile;
static DEFINE_MUTEX(kv_reap_mutex);
static void kv_reap_work(struct work_struct *work);
static DECLARE_DELAYED_WORK(kv_reaper, kv_reap_work);

/*
 * Replaced and deleted entries wait in kv_retired for their grace period.
 * Not in call_rcu(): its callback would be this module's code, so that
 * module_exit would need rcu_barrier(), which waits for the callbacks that
 * every CPU has queued, ours or not: seconds under a flood on a debug
 * kernel. Instead kv_reclaimer takes the entries retired so far as one
 * batch (kv_waiting), notes the grace period they need
 * (start_poll_synchronize_rcu()) and frees them once it has passed,
 * looking again each jiffy. It never sleeps waiting, so module_exit can
 * cancel it at once. kv_reclaim_mutex keeps it and kudp_kv_reclaim() apart.
 */
static LLIST_HEAD(kv_retired);
static struct llist_node *kv_waiting;
static unsigned long kv_waiting_gp;
static DEFINE_MUTEX(kv_reclaim_mutex);
static void kv_reclaim_work(struct work_struct *work);
static DECLARE_DELAYED_WORK(kv_reclaimer, kv_reclaim_work);

/* Seconds since boot: the clock of expiry times (never goes back). */
u32 kudp_kv_now(void)
{
	return ktime_get_boottime_seconds();
}

static bool kv_expired(const struct kudp_entry *entry)
{
	return entry->expires && !time_before32(kudp_kv_now(), entry->expires);
}

static u32 kv_key_hash(const void *data, u32 unused, u32 seed)
{
	const struct kv_key *key = data;

	return jhash(key->data, key->len, seed);
}

static u32 kv_entry_hash(const void *data, u32 unused, u32 seed)
{
	const struct kudp_entry *entry = data;

	return jhash(entry->data, entry->klen, seed);
}

static int kv_compare(struct rhashtable_compare_arg *arg, const void *obj)
{
	const struct kv_key *key = arg->key;
	const struct kudp_entry *entry = obj;

	return entry->klen != key->len || memcmp(entry->data, key->data, key->len);
}

static const struct rhashtable_params kv_params = {
	.head_offset = offsetof(struct kudp_entry, node),
	.hashfn = kv_key_hash,
	.obj_hashfn = kv_entry_hash,
	.obj_cmpfn = kv_compare,
	.automatic_shrinking = true,
};

/**
 * kudp_mem_cost() - what an allocation of @size bytes really takes
 * @size: the bytes asked of kmalloc()
 *
 * Return: the size of the slab object (or pages) kmalloc() hands out.
 */
size_t kudp_mem_cost(size_t size)
{
	return kmalloc_size_roundup(size);
}

/**
 * kudp_mem_reserve() - charge @bytes against max_bytes, if they fit
 * @bytes: what is about to be allocated
 *
 * Return: 0 when charged; -EBUSY when they would fit once the entries
 * waiting for a grace period are freed (soon: try again); else -ENOSPC.
 */
int kudp_mem_reserve(size_t bytes)
{
	long charged = atomic_long_read(&kv_charged);

	do {
		if (charged + bytes > kudp_max_bytes) {
			if (charged - atomic_long_read(&kv_pending) + bytes <=
			    kudp_max_bytes)
				return -EBUSY;
			return -ENOSPC;
		}
	} while (!atomic_long_try_cmpxchg(&kv_charged, &charged,
					  charged + bytes));
	return 0;
}

/* Gives back what kudp_mem_reserve() charged, once it is freed. */
void kudp_mem_release(size_t bytes)
{
	atomic_long_sub(bytes, &kv_charged);
}

/* The bytes charged against max_bytes now: the "bytes" of stats. */
unsigned long kudp_mem_charged(void)
{
	return atomic_long_read(&kv_charged);
}

static size_t kv_entry_cost(const struct kudp_entry *entry)
{
	return kv_classes[entry->class].cost + KUDP_MEMCG_COST + KV_BUCKET_COST;
}

/* memcached's growth: a quarter more, and the largest class last. */
static unsigned int kv_class_next(unsigned int size)
{
	size = ALIGN(size * 5 / 4, 8);
	return size * 5 / 4 < KV_LARGEST ? size : KV_LARGEST;
}

static void kv_classes_destroy(void)
{
	while (kv_nr_classes)
		kmem_cache_destroy(kv_classes[--kv_nr_classes].cache);
}

/*
 * The classes, from KV_SMALLEST to KV_LARGEST. SLAB_ACCOUNT charges each
 * entry to the memory cgroup active where it is allocated (kudp_memcg_enter()
 * in the softirq), as __GFP_ACCOUNT does for kmalloc(). The slab allocator
 * may merge a class with another cache of about its size (both then show
 * under that cache's name in /proc/slabinfo); kmem_cache_size() is then the
 * larger object size of the two, and that is what is charged.
 */
static int kv_classes_create(void)
{
	unsigned int size = KV_SMALLEST;
	struct kmem_cache *cache;
	char name[24];	/* kmem_cache_create() keeps a copy */

	/* The header's u8 and u16, and 32 classes reach 48 KiB objects. */
	BUILD_BUG_ON(KUDP_MAX_KEY > U8_MAX || KUDP_MAX_VALUE > U16_MAX);
	BUILD_BUG_ON(KV_LARGEST > 48 * 1024);
	BUILD_BUG_ON(IS_ENABLED(CONFIG_64BIT) &&
		     sizeof(struct kudp_entry) != 32);
	while (kv_nr_classes < KV_CLASSES_MAX) {
		snprintf(name, sizeof(name), "kudp_entry_%u", size);
		cache = kmem_cache_create(name, size,
					  __alignof__(struct kudp_entry),
					  SLAB_ACCOUNT, NULL);
		if (!cache)
			break;
		kv_classes[kv_nr_classes].cache = cache;
		kv_classes[kv_nr_classes++].cost = kmem_cache_size(cache);
		if (size == KV_LARGEST)
			return 0;
		size = kv_class_next(size);
	}
	kv_classes_destroy();
	return -ENOMEM;
}

/* The smallest class whose objects hold @size bytes. */
static unsigned int kv_class_of(size_t size)
{
	unsigned int class = 0;

	while (kv_classes[class].cost < size)
		class++;
	return class;
}

/*
 * The memory cgroup of whoever loaded the module. Requests make the server
 * allocate (entries, history lines, journal lines); that memory is charged
 * here, whether the request came from the network (a server thread) or
 * from /proc.
 */
static struct mem_cgroup *kudp_memcg;

/* Starts charging KUDP_GFP allocations to kudp_memcg; returns the old one. */
struct mem_cgroup *kudp_memcg_enter(void)
{
	return set_active_memcg(kudp_memcg);
}

void kudp_memcg_leave(struct mem_cgroup *old)
{
	set_active_memcg(old);
}

int kudp_kv_init(void)
{
	unsigned int i;
	int ret;

	for (i = 0; i < KV_STRIPES; i++)
		spin_lock_init(&kv_stripes[i]);
	kv_stripe_seed = get_random_u32();
	ret = kv_classes_create();
	if (ret)
		return ret;
	kudp_memcg = get_mem_cgroup_from_mm(current->mm);
	ret = rhashtable_init(&kv_table, &kv_params);
	if (ret) {
		mem_cgroup_put(kudp_memcg);
		kv_classes_destroy();
	}
	return ret;
}

/**
 * kudp_kv_key_lock() - the spinlock that serializes the changes to a key
 * @key: the key, @klen bytes
 * @klen: its length
 *
 * Take it with spin_lock_bh(): changes are made in the receive softirq too.
 *
 * Return: one of the stripes; the seed keeps a sender from choosing keys
 * that all land on one.
 */
spinlock_t *kudp_kv_key_lock(const char *key, size_t klen)
{
	return &kv_stripes[jhash(key, klen, kv_stripe_seed) % KV_STRIPES];
}

/* Back to its class; what it was charged is the caller's to give back. */
static void kv_entry_free(struct kudp_entry *entry)
{
	kmem_cache_free(kv_classes[entry->class].cache, entry);
}

static void kv_free_entry(void *ptr, void *arg)
{
	struct kudp_entry *entry = ptr;

	kudp_mem_release(kv_entry_cost(entry));
	kv_entry_free(entry);
}

/* Frees retired entries whose grace period has passed. */
static void kv_free_retired(struct llist_node *batch)
{
	struct kudp_entry *entry, *next;

	llist_for_each_entry_safe(entry, next, batch, retired) {
		atomic_long_sub(kv_entry_cost(entry), &kv_pending);
		kv_free_entry(entry, NULL);
	}
}

/* Frees an entry taken out of the table once no RCU reader can see it. */
static void kv_retire(struct kudp_entry *entry)
{
	atomic_long_add(kv_entry_cost(entry), &kv_pending);
	llist_add(&entry->retired, &kv_retired);
	/* Already queued: the entry joins the next batch. */
	queue_delayed_work(system_wq, &kv_reclaimer, 1);
}

static void kv_reclaim_work(struct work_struct *work)
{
	mutex_lock(&kv_reclaim_mutex);
	if (kv_waiting && poll_state_synchronize_rcu(kv_waiting_gp)) {
		kv_free_retired(kv_waiting);
		kv_waiting = NULL;
	}
	if (!kv_waiting) {
		kv_waiting = llist_del_all(&kv_retired);
		if (kv_waiting)
			kv_waiting_gp = start_poll_synchronize_rcu();
	}
	if (kv_waiting)
		queue_delayed_work(system_wq, &kv_reclaimer, 1);
	mutex_unlock(&kv_reclaim_mutex);
}

/**
 * kudp_kv_reclaim() - free the retired entries now
 *
 * For a writer that found max_bytes held by entries waiting for their grace
 * period (after kudp_kv_reap_expired(), say).
 *
 * Context: process; sleeps for a grace period.
 */
void kudp_kv_reclaim(void)
{
	struct llist_node *batch;

	mutex_lock(&kv_reclaim_mutex);
	batch = llist_del_all(&kv_retired);
	synchronize_rcu();
	kv_free_retired(batch);
	/* Out of the table before the grace period just waited for began. */
	kv_free_retired(kv_waiting);
	kv_waiting = NULL;
	mutex_unlock(&kv_reclaim_mutex);
}

/*
 * Only after the socket, the thread and the /proc files are gone: nothing can
 * reach the table any more, so no RCU reader remains, and the entries in it
 * and those waiting for their grace period are freed at once. No callback of
 * ours can be pending (kv_retire()): the caches can go.
 */
void kudp_kv_destroy(void)
{
	cancel_delayed_work_sync(&kv_reaper);
	cancel_delayed_work_sync(&kv_reclaimer);
	kv_free_retired(kv_waiting);
	kv_waiting = NULL;
	kv_free_retired(llist_del_all(&kv_retired));
	rhashtable_free_and_destroy(&kv_table, kv_free_entry, NULL);
	mem_cgroup_put(kudp_memcg);
	kv_classes_destroy();
}

unsigned long kudp_kv_entries(void)
{
	return atomic_long_read(&kv_count);
}

/* The key's stripe is held: no other writer can free what this returns. */
static struct kudp_entry *kv_find_locked(const char *key, size_t klen)
{
	struct kv_key k = { .data = key, .len = klen };

	return rhashtable_lookup_fast(&kv_table, &k, kv_params);
}

/**
 * kudp_kv_entry_new() - a new entry, not in the table yet
 * @key: the key, @klen bytes
 * @klen: 1..KUDP_MAX_KEY
 * @value: the value, @vlen bytes
 * @vlen: 1..KUDP_MAX_VALUE
 * @meta: flags and expiry time to keep with it (NULL: none)
 *
 * Made before the key's stripe is taken, so that the allocation may sleep
 * where the caller may (kudp_gfp()); kudp_kv_store() stores or frees it.
 *
 * Return: the entry, or NULL when there is no memory for it.
 */
struct kudp_entry *kudp_kv_entry_new(const char *key, size_t klen,
				     const char *value, size_t vlen,
				     const struct kudp_meta *meta)
{
	struct kudp_entry *entry;
	unsigned int class;

	class = kv_class_of(struct_size(entry, data, klen + vlen));
	entry = kmem_cache_alloc(kv_classes[class].cache, kudp_gfp());
	if (!entry)
		return NULL;
	entry->class = class;
	entry->flags = meta ? meta->flags : 0;
	entry->expires = meta ? meta->expires : 0;
	entry->klen = klen;
	entry->vlen = vlen;
	memcpy(entry->data, key, klen);
	memcpy(entry->data + klen, value, vlen);
	return entry;
}

/**
 * kudp_kv_store() - store an entry, as memcached's set, add or replace
 * @entry: from kudp_kv_entry_new(); stored, or freed
 * @mode: KUDP_SET stores in any case, KUDP_ADD only a new key, KUDP_REPLACE only
 *        an existing one (an expired entry counts as none)
 * @extra: bytes to charge with the entry (its history line); the caller
 *         releases them when it frees what they stand for
 *
 * Context: any; the caller holds kudp_kv_key_lock() of the entry's key.
 * Return: 0; -EEXIST (KUDP_ADD) or -ENOENT (KUDP_REPLACE) when the key is there
 * or not; -ENOSPC when max_entries or max_bytes would be passed; -EBUSY
 * when memory is held only by entries waiting for a grace period, or the
 * table is busy resizing; -ENOMEM when the kernel is out of memory.
 */
int kudp_kv_store(struct kudp_entry *entry, enum kudp_mode mode, size_t extra)
{
	size_t cost = kv_entry_cost(entry);
	struct kudp_entry *old;
	int ret;

	old = kv_find_locked(entry->data, entry->klen);
	if (mode == KUDP_ADD && old && !kv_expired(old)) {
		ret = -EEXIST;
		goto out_free_entry;
	}
	if (mode == KUDP_REPLACE && (!old || kv_expired(old))) {
		ret = -ENOENT;
		goto out_free_entry;
	}
	/* A new entry counts at once, so writers of other keys see it. */
	if (!old && atomic_long_inc_return(&kv_count) > kudp_max_entries) {
		atomic_long_dec(&kv_count);
		ret = -ENOSPC;
		goto out_free_entry;
	}
	ret = kudp_mem_reserve(cost + extra);
	if (ret)
		goto out_uncount;

	entry->cas = atomic_inc_return(&kv_cas);
	if (old) {
		ret = rhashtable_replace_fast(&kv_table, &old->node,
					      &entry->node, kv_params);
		if (ret)
			goto out_release;
		if (old->expires)
			atomic_long_dec(&kv_volatile);
		kv_retire(old);
	} else {
		ret = rhashtable_insert_fast(&kv_table, &entry->node,
					     kv_params);
		if (ret)
			goto out_release;
	}
	if (entry->expires) {
		atomic_long_inc(&kv_volatile);
		schedule_delayed_work(&kv_reaper, HZ);
	}
	return 0;

out_release:
	kudp_mem_release(cost + extra);
out_uncount:
	if (!old)
		atomic_long_dec(&kv_count);
out_free_entry:
	kv_entry_free(entry);
	return ret;
}

/**
 * kudp_kv_delete() - remove a key
 * @key: the key, @klen bytes
 * @klen: its length
 *
 * Context: any; the caller holds kudp_kv_key_lock(@key).
 * Return: 0, or -ENOENT when the key is not in the table (an expired entry
 * goes, but was not there).
 */
int kudp_kv_delete(const char *key, size_t klen)
{
	struct kudp_entry *entry;
	int ret;

	entry = kv_find_locked(key, klen);
	if (!entry)
		return -ENOENT;
	ret = rhashtable_remove_fast(&kv_table, &entry->node, kv_params);
	if (ret)
		return ret;
	atomic_long_dec(&kv_count);
	if (entry->expires)
		atomic_long_dec(&kv_volatile);
	ret = kv_expired(entry) ? -ENOENT : 0;
	kv_retire(entry);
	return ret;
}

/* Removes @key if it has expired; the caller holds no stripe. */
static unsigned long kv_reap_key(const char *key, size_t klen)
{
	spinlock_t *lock = kudp_kv_key_lock(key, klen);
	struct kudp_entry *entry;
	unsigned long reaped = 0;

	spin_lock_bh(lock);
	entry = kv_find_locked(key, klen);
	if (entry && kv_expired(entry) &&
	    !rhashtable_remove_fast(&kv_table, &entry->node, kv_params)) {
		atomic_long_dec(&kv_count);
		atomic_long_dec(&kv_volatile);
		kv_retire(entry);
		reaped = 1;
	}
	spin_unlock_bh(lock);
	return reaped;
}

/* Keys copied out of one stretch of the walk, reaped after it. */
#define KV_REAP_BATCH	16

/**
 * kudp_kv_reap_expired() - take the expired entries out of the table
 *
 * An expired entry is already invisible to every command; this gives back
 * its place under max_entries at once, and its memory after a grace period.
 * The walk runs under RCU, where no stripe can be taken, so it copies the
 * keys of expired entries out a batch at a time and removes them after,
 * each under its stripe, if they are still expired.
 *
 * Context: process; the caller holds no stripe.
 * Return: how many entries were taken out.
 */
unsigned long kudp_kv_reap_expired(void)
{
	struct rhashtable_iter iter;
	unsigned long reaped = 0;
	u16 lens[KV_REAP_BATCH];
	struct kudp_entry *entry;
	unsigned int n, i;
	bool done = false;
	char *keys;

	if (!atomic_long_read(&kv_volatile))
		return 0;
	keys = kmalloc_array(KV_REAP_BATCH, KUDP_MAX_KEY, GFP_KERNEL);
	if (!keys)
		return 0;
	mutex_lock(&kv_reap_mutex);
	rhashtable_walk_enter(&kv_table, &iter);
	while (!done) {
		n = 0;
		rhashtable_walk_start(&iter);
		while (n < KV_REAP_BATCH) {
			entry = rhashtable_walk_next(&iter);
			if (entry == ERR_PTR(-EAGAIN))
				continue;	/* a resize: go on */
			if (IS_ERR_OR_NULL(entry)) {
				done = true;
				break;
			}
			if (!kv_expired(entry))
				continue;
			memcpy(keys + n * KUDP_MAX_KEY, entry->data, entry->klen);
			lens[n++] = entry->klen;
		}
		rhashtable_walk_stop(&iter);
		for (i = 0; i < n; i++)
			reaped += kv_reap_key(keys + i * KUDP_MAX_KEY, lens[i]);
		cond_resched();
	}
	rhashtable_walk_exit(&iter);
	mutex_unlock(&kv_reap_mutex);
	kfree(keys);
	return reaped;
}

/**
 * kudp_kv_reap_soon() - reap the expired entries now, from a worker
 *
 * For a change made in softirq context that found the table full: the
 * reaper takes the expired entries out in process context, and a retry
 * finds their room.
 *
 * Return: whether there are entries that may have expired.
 */
bool kudp_kv_reap_soon(void)
{
	if (!atomic_long_read(&kv_volatile))
		return false;
	mod_delayed_work(system_wq, &kv_reaper, 0);
	return true;
}

/* Once a second while entries with an expiry time are in the table. */
static void kv_reap_work(struct work_struct *work)
{
	kudp_kv_reap_expired();
	if (atomic_long_read(&kv_volatile))
		schedule_delayed_work(&kv_reaper, HZ);
}

/**
 * kudp_kv_get() - copy the value stored under a key, and what is kept with it
 * @key: the key, @klen bytes
 * @klen: its length
 * @out: where the value goes
 * @out_size: room in @out
 * @meta: gets the flags and "cas unique" (NULL: not wanted)
 *
 * Lock-free: RCU keeps the entry alive while its value is copied, and
 * nothing is allocated. An expired entry is not there.
 *
 * Return: the value's length (copied only if it fits in @out_size), or
 * -ENOENT.
 */
int kudp_kv_get(const char *key, size_t klen, char *out, size_t out_size,
		struct kudp_meta *meta)
{
	struct kv_key k = { .data = key, .len = klen };
	struct kudp_entry *entry;
	int ret = -ENOENT;

	rcu_read_lock();
	entry = rhashtable_lookup(&kv_table, &k, kv_params);
	if (entry && !kv_expired(entry)) {
		ret = entry->vlen;
		if (entry->vlen <= out_size)
			memcpy(out, entry->data + entry->klen, entry->vlen);
		if (meta) {
			meta->flags = entry->flags;
			meta->cas = entry->cas;
			meta->expires = entry->expires;
		}
	}
	rcu_read_unlock();
	return ret;
}

/*
 * /proc/hashtable: one "KEY VALUE" line per entry. The walker keeps its place
 * between reads; rhashtable_walk_peek() hands back the entry whose line did
 * not fit in the last read, so no line is lost or cut. A resize during a walk
 * (-EAGAIN) may repeat entries, never tear one.
 */
static void *kv_seq_skip_resize(struct rhashtable_iter *iter, void *obj)
{
	while (IS_ERR(obj) && PTR_ERR(obj) == -EAGAIN)
		obj = rhashtable_walk_next(iter);
	return IS_ERR(obj) ? NULL : obj;
}

static void *kv_seq_start(struct seq_file *m, loff_t *pos)
	__acquires(RCU)
{
	struct rhashtable_iter *iter = m->private;

	/* Reading from the start again (lseek to 0): rewind the walker. */
	if (!*pos) {
		rhashtable_walk_exit(iter);
		rhashtable_walk_enter(&kv_table, iter);
	}
	rhashtable_walk_start(iter);
	return kv_seq_skip_resize(iter, rhashtable_walk_peek(iter));
}

static void *kv_seq_next(struct seq_file *m, void *v, loff_t *pos)
{
	struct rhashtable_iter *iter = m->private;

	++*pos;
	return kv_seq_skip_resize(iter, rhashtable_walk_next(iter));
}

static void kv_seq_stop(struct seq_file *m, void *v)
	__releases(RCU)
{
	rhashtable_walk_stop(m->private);
}

static void kv_seq_line(struct seq_file *m, const struct kudp_entry *entry)
{
	seq_write(m, entry->data, entry->klen);
	seq_putc(m, ' ');
	seq_write(m, entry->data + entry->klen, entry->vlen);
	seq_putc(m, '\n');
}

/* /proc/hashtable: every entry that has not expired. */
static int kv_seq_show(struct seq_file *m, void *v)
{
	const struct kudp_entry *entry = v;

	if (!kv_expired(entry))
		kv_seq_line(m, entry);
	return 0;
}

/* /proc/kvsnapshot: what the backup keeps, the entries without an expiry. */
static int kv_seq_show_lasting(struct seq_file *m, void *v)
{
	const struct kudp_entry *entry = v;

	if (!entry->expires)
		kv_seq_line(m, entry);
	return 0;
}

static const struct seq_operations kv_seq_ops = {
	.start = kv_seq_start,
	.next = kv_seq_next,
	.stop = kv_seq_stop,
	.show = kv_seq_show,
};

static const struct seq_operations kv_seq_lasting_ops = {
	.start = kv_seq_start,
	.next = kv_seq_next,
	.stop = kv_seq_stop,
	.show = kv_seq_show_lasting,
};

/**
 * kudp_kv_seq_open() - open a listing of the table, one "KEY VALUE" line each
 * @file: the /proc file being opened
 * @lasting: list only the entries without an expiry time (the backup's)
 *
 * Return: 0 or -ENOMEM.
 */
int kudp_kv_seq_open(struct file *file, bool lasting)
{
	struct rhashtable_iter *iter;

	iter = __seq_open_private(file, lasting ? &kv_seq_lasting_ops :
				  &kv_seq_ops, sizeof(*iter));
	if (!iter)
		return -ENOMEM;
	rhashtable_walk_enter(&kv_table, iter);
	return 0;
}

int kudp_kv_seq_release(struct inode *inode, struct file *file)
{
	struct seq_file *m = file->private_data;

	rhashtable_walk_exit(m->private);
	return seq_release_private(inode, file);
}
