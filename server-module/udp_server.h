/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the parts of udp_server share.
 *
 *   main.c  parameters, the socket and the kthread that serves it
 *   cmd.c   the request parser: one request in, one reply line out
 *   kv.c    the key-value table (rhashtable, RCU lookups)
 *   proc.c  /proc/ht, /proc/hashtable, /proc/daemonpid
 */
#ifndef UDP_SERVER_H
#define UDP_SERVER_H

#include <linux/atomic.h>
#include <linux/mutex.h>
#include <linux/seq_file.h>
#include <linux/types.h>

/*
 * Defaults of the server-only parameters. Plain literals, because
 * KUDP_RANGE() (kudp_params.h) pastes them into the parameter
 * descriptions that modinfo shows and ./run parses.
 */
#define KUDP_DEFAULT_MAX_ENTRIES	131072
#define KUDP_DEFAULT_MAX_BYTES		16777216
#define KUDP_DEFAULT_HISTORY		128

/* Module parameters (main.c). */
extern unsigned int len;
extern unsigned int max_entries;
extern unsigned int max_bytes;
extern unsigned int history;

/* Counters for the "stats" command. */
struct kudp_stats {
	atomic_long_t requests;
	atomic_long_t hits;
	atomic_long_t misses;
	atomic_long_t errors;
	atomic_long_t drops;
};

extern struct kudp_stats kudp_stats;

/* cmd.c */
size_t kudp_execute(const char *req, size_t size, char *reply, int *status);

/* kv.c: changes need kv_mutex; lookups need only RCU. */
extern struct mutex kv_mutex;

int kv_init(void);
void kv_destroy(void);
int kv_insert(const char *key, size_t klen, const char *value, size_t vlen);
int kv_delete(const char *key, size_t klen);
int kv_lookup(const char *key, size_t klen, char *out, size_t out_size);
unsigned long kv_entries(void);
unsigned long kv_bytes(void);
int kv_seq_open(struct file *file);
int kv_seq_release(struct inode *inode, struct file *file);

/* proc.c */
int kudp_proc_init(void);
void kudp_proc_exit(void);
void kudp_history_add(const char *fmt, ...) __printf(1, 2);
void kudp_notify_daemon(void);

#endif /* UDP_SERVER_H */
