/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The executor of udp_server (request.c): one request value,
 * whichever protocol parsed it, run against the store (store.h).
 *
 * Each protocol (protocol.h) turns a datagram, or a write to /proc/ht, into
 * one struct kudp_request, once; request.c runs it. Whether a request may
 * sleep, and so must be run by a thread rather than in the receive softirq
 * (fastpath.c), is a property of its operation: kudp_op_may_sleep().
 */
#ifndef KUDP_REQUEST_H
#define KUDP_REQUEST_H

#include <linux/types.h>

#include "store.h"

/* A piece of a request: not NUL-terminated (both protocols). */
struct kudp_span {
	const char *p;
	size_t n;
};

bool kudp_span_is(const struct kudp_span *s, const char *word);
struct kudp_span kudp_next_word(struct kudp_span *rest);

/**
 * enum kudp_op - what a request asks for
 * @KUDP_OP_INVALID: nothing: the request is malformed (see @error)
 * @KUDP_OP_HELLO: the greeting
 * @KUDP_OP_STATS: the counters
 * @KUDP_OP_VERSION: memcached's "version"
 * @KUDP_OP_LOOKUP: the value of @key ("lookup"; memcached's "get" asks for
 *                  @key and then each key of @more_keys)
 * @KUDP_OP_STORE: store @value under @key ("insert"; memcached's set, add,
 *                 replace by @mode)
 * @KUDP_OP_DELETE: remove @key
 */
enum kudp_op {
	KUDP_OP_INVALID,
	KUDP_OP_HELLO,
	KUDP_OP_STATS,
	KUDP_OP_VERSION,
	KUDP_OP_LOOKUP,
	KUDP_OP_STORE,
	KUDP_OP_DELETE,
};

/* Where a request came from. */
enum kudp_proto {
	KUDP_PROTO_TEXT,
	KUDP_PROTO_MEMCACHED,
	KUDP_PROTO_PROC,
};

/**
 * struct kudp_request - one parsed request
 * @proto: the protocol that parsed it
 * @op: what it asks for
 * @key: its key (LOOKUP, STORE, DELETE)
 * @value: the value to store (STORE)
 * @more_keys: memcached's "get": the keys after @key, still to be read
 * @meta: flags and expiry time to keep with the value (STORE)
 * @mode: set, add or replace (STORE)
 * @with_cas: memcached's "gets": answer with the "cas unique"
 * @noreply: memcached's "noreply": answer nothing unless it fails to parse
 * @error: why it is malformed (INVALID); the protocol's own wording
 */
struct kudp_request {
	enum kudp_proto proto;
	enum kudp_op op;
	struct kudp_span key;
	struct kudp_span value;
	struct kudp_span more_keys;
	struct kudp_meta meta;
	enum kudp_mode mode;
	bool with_cas;
	bool noreply;
	const char *error;
};

/*
 * With durable=1, a change waits for the backup daemon (asks whether it is
 * there, and its reply is parked until the change is on disk): it may
 * sleep. Everything else fits softirq context: lookups take RCU only, and
 * other changes take the key's stripe spinlock and allocate before it
 * without sleeping there (kv.c, kudp_gfp()).
 */
static inline bool kudp_op_is_change(enum kudp_op op)
{
	return op == KUDP_OP_STORE || op == KUDP_OP_DELETE;
}

static inline bool kudp_op_may_sleep(enum kudp_op op)
{
	return kudp_durable && kudp_op_is_change(op);
}

/* Lookups, stores and deletes: the operations that touch the table. */
static inline bool kudp_op_touches_table(enum kudp_op op)
{
	return op == KUDP_OP_LOOKUP || kudp_op_is_change(op);
}

/**
 * struct kudp_result - what running a request gave
 * @status: 0; -ENOENT (not there, or KUDP_ADD found it); -EEXIST (KUDP_ADD);
 *          -ENOSPC, -ENOMEM, -EBUSY, -ENOLINK (see kudp_store())
 * @vlen: LOOKUP: the value's length (copied only when it fits)
 * @meta: LOOKUP: what is kept with the value
 * @seq: STORE, DELETE: the change's number (journal.c), for durable=1
 */
struct kudp_result {
	int status;
	int vlen;
	struct kudp_meta meta;
	u64 seq;
};

void kudp_run(const struct kudp_request *req, char *out, size_t room,
	      struct kudp_result *res);

/**
 * enum kudp_drop - why a datagram, or its reply, was dropped
 * @KUDP_DROP_SHORT: too short for its protocol's header (memcached)
 * @KUDP_DROP_FILTERED: the socket's filter, cgroup-BPF or an LSM refused it
 * @KUDP_DROP_QUEUE_FULL: the socket's receive queue, or the thread's, is full
 * @KUDP_DROP_LOOP: from port 0, or itself a reply: answering could loop
 * @KUDP_DROP_LIMITED: a reply the limits hold back (ratelimit.c)
 * @KUDP_DROP_NO_MEMORY: no memory to keep the reply until it is on disk
 * @KUDP_DROP_PARKED_FULL: too many replies already wait for the disk
 * @KUDP_DROP_SEND_FAILED: the stack did not take the reply
 */
enum kudp_drop {
	KUDP_DROP_SHORT,
	KUDP_DROP_FILTERED,
	KUDP_DROP_QUEUE_FULL,
	KUDP_DROP_LOOP,
	KUDP_DROP_LIMITED,
	KUDP_DROP_NO_MEMORY,
	KUDP_DROP_PARKED_FULL,
	KUDP_DROP_SEND_FAILED,
};

void kudp_drop(enum kudp_drop reason);

#endif /* KUDP_REQUEST_H */
