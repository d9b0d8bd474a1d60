/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the parts of udp_server share.
 *
 *   main.c  parameters, the socket and the kthread that serves it
 *   cmd.c   the request parser: one request in, one reply line out
 *   kv.c    the key-value table (rhashtable, RCU lookups) and the memory
 *           budget, max_bytes, that the table and the history share
 *   proc.c  /proc/ht (commands and their history), /proc/hashtable,
 *           /proc/daemonpid
 *   journal.c  /proc/kvjournal and /proc/kvrestore, for the backup daemon
 *   memcache.c  memcached's protocol on memcached_port, on the same table
 *   fastpath.c  softirq=1: reads answered in the receive softirq
 *   ratelimit.c what a sender not on this host can make the server send
 */
#ifndef UDP_SERVER_H
#define UDP_SERVER_H

#include <linux/atomic.h>
#include <linux/gfp.h>
#include <linux/in.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <linux/percpu.h>
#include <linux/seq_file.h>
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
#define KUDP_DEFAULT_REPLY_RATE		1024
#define KUDP_DEFAULT_ERR_RATE		20

/* Module parameters (main.c). */
extern unsigned int kudp_len;
extern unsigned int kudp_max_entries;
extern unsigned int kudp_max_bytes;
extern unsigned int kudp_history;
extern bool kudp_durable;
extern unsigned int kudp_reply_rate;
extern unsigned int kudp_err_rate;

/*
 * Memory that requests make the server allocate: charged to the memory
 * cgroup of whoever loaded the module (see kudp_memcg_enter()). Any sender
 * can make it fail, so a failure is answered, not logged (__GFP_NOWARN), and
 * never worth hard reclaim or the OOM killer (__GFP_NORETRY).
 */
#define KUDP_GFP	(GFP_KERNEL_ACCOUNT | __GFP_NORETRY | __GFP_NOWARN)

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

/**
 * struct kudp_peer - who sent a datagram
 * @addr: its source address and port, where the reply goes
 * @local: it arrived on the loopback device, so it was sent from this host
 *         (its source cannot have been forged from outside)
 */
struct kudp_peer {
	struct sockaddr_in addr;
	bool local;
};

/* One socket and the kthread that serves it (main.c). */
struct kudp_service;
#define KUDP_FAST_BUCKET_BITS	6
struct kudp_worker {
	struct socket *sock;
	struct task_struct *thread;
	const struct kudp_service *service;
	char *request;	/* the service's longest request + 1 bytes */
	char *reply;	/* its longest reply + 1 bytes */
	/* softirq=1 (fastpath.c): datagrams queued, per bucket of senders */
	bool fast;
	atomic_t pending[1 << KUDP_FAST_BUCKET_BITS];
};

void kudp_send(struct socket *sock, struct sockaddr_in *to, const void *data,
	       size_t size);
void kudp_park_reply(struct socket *sock, struct sockaddr_in *to,
		     const void *data, size_t size, u64 seq);
u64 kudp_sender_parked(const struct sockaddr_in *from);
bool kudp_reply_to(struct kudp_worker *w, const struct kudp_peer *peer,
		   const void *data, size_t size, u64 seq, bool malformed);
struct kudp_reply;
bool kudp_answer_text(const char *req, size_t size,
		      const struct kudp_peer *peer, struct kudp_reply *reply);

/* fastpath.c: softirq=1 */
int kudp_fast_init(void);
void kudp_fast_exit(void);
void kudp_fast_attach(struct kudp_worker *w);
void kudp_fast_done(struct kudp_worker *w, const struct sockaddr_in *from);
void kudp_fast_detach(struct kudp_worker *w);

/**
 * struct kudp_reply - the answer to one request (cmd.c)
 * @buf: the reply line and a NUL; room for kudp_len + 1 bytes
 * @size: the line's length, "\n" included, NUL excluded; at most kudp_len
 * @status: 0 for OK and GOT IT, else the errno PROTOCOL.md gives for the
 *          reply (-ENOENT for NOT FOUND, -ENOSPC for ERR full, ...)
 * @greeting: the request was HELLO, answered with GOT IT
 * @malformed: the request was not a well-formed command, and the reply says
 *             so (rate-limited to senders not on this host, ratelimit.c)
 * @seq: the number of the change the request made (journal.c), or 0
 *
 * A @size of 0 means no reply at all (a datagram that is itself a reply).
 */
struct kudp_reply {
	char *buf;
	size_t size;
	int status;
	bool greeting;
	bool malformed;
	u64 seq;
};

/* A piece of a request: not NUL-terminated (cmd.c, for both protocols). */
struct kudp_span {
	const char *p;
	size_t n;
};

bool kudp_span_is(const struct kudp_span *s, const char *word);
struct kudp_span kudp_next_word(struct kudp_span *rest);
bool kudp_is_reply(const char *p, size_t n);

/* ratelimit.c: the burst of error replies to one sender, at least. */
#define KUDP_ERR_BURST		50
void kudp_limit_init(void);
bool kudp_reply_allowed(const struct kudp_peer *peer, size_t size,
			bool malformed);

/* What memcached keeps with a value besides the value (memcache.c). */
struct kv_meta {
	u32 flags;
	u32 cas;
	u32 expires;	/* kv_now() when it expires, 0 for never */
};

enum kv_mode { KV_SET, KV_ADD, KV_REPLACE };

/* cmd.c */
void kudp_execute(const char *req, size_t size, struct kudp_reply *reply);
bool kudp_is_change(const char *req, size_t size);
int kudp_store(const char *key, size_t klen, const char *value, size_t vlen,
	       const struct kv_meta *meta, enum kv_mode mode, u64 *seq);
int kudp_delete(const char *key, size_t klen, u64 *seq);
void kudp_reply_error(struct kudp_reply *reply, int status,
		      const char *fmt, ...) __printf(3, 4);

/* kv.c: changes to a key need kv_key_lock(key); lookups need only RCU. */
struct mutex *kv_key_lock(const char *key, size_t klen);

int kv_init(void);
void kv_destroy(void);
int kv_insert(const char *key, size_t klen, const char *value, size_t vlen,
	      size_t extra);
int kv_delete(const char *key, size_t klen);
int kv_lookup(const char *key, size_t klen, char *out, size_t out_size);
int kv_store(const char *key, size_t klen, const char *value, size_t vlen,
	     const struct kv_meta *meta, enum kv_mode mode, size_t extra);
int kv_get(const char *key, size_t klen, char *out, size_t out_size,
	   struct kv_meta *meta);
u32 kv_now(void);
unsigned long kv_entries(void);
int kv_mem_reserve(size_t bytes);
void kv_mem_release(size_t bytes);
unsigned long kv_mem_charged(void);
size_t kv_mem_cost(size_t size);
unsigned long kv_reap_expired(void);
int kv_seq_open(struct file *file, bool lasting);
int kv_seq_release(struct inode *inode, struct file *file);

/*
 * memcache.c: memcached's ASCII protocol over UDP. A request is one
 * datagram; a reply may take several of KUDP_MC_DATAGRAM bytes.
 */
#define KUDP_MC_REQUEST_MAX	8192
#define KUDP_MC_REPLY_MAX	(256 * 1024)
void kudp_mc_serve(struct kudp_worker *w, const struct kudp_peer *peer,
		   size_t size);

/* main.c: replies that wait for their change to be on disk (durable=1). */
void kudp_release_replies(u64 synced);

/* journal.c */
int kudp_journal_init(void);
void kudp_journal_exit(void);
void kudp_journal_start(bool on);
void kudp_journal_drop(void);
u64 kudp_journal_add(const char *fmt, ...) __printf(1, 2);
bool kudp_journal_synced(u64 seq);
int kudp_journal_wait(u64 seq);
void kudp_journal_drain(void);
void kudp_journal_close_writers(void);

/* proc.c: the history of changing commands, and the files in /proc. */
struct kudp_line;

int kudp_proc_init(void);
void kudp_proc_exit(void);
struct kudp_line *kudp_line_new(const char *fmt, ...) __printf(1, 2);
size_t kudp_line_cost(const struct kudp_line *line);
void kudp_history_add(struct kudp_line *line);
bool kudp_daemon_registered(void);
bool kudp_backup_ready(void);

#endif /* UDP_SERVER_H */
