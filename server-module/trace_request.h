/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The tracepoints of the executor (request.c): one per request it runs,
 * one per datagram the server drops. perf, trace-cmd and bpftrace read
 * them as udp_server:request and udp_server:drop; `./run trace` too.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM udp_server

#if !defined(KUDP_TRACE_REQUEST_H) || defined(TRACE_HEADER_MULTI_READ)
#define KUDP_TRACE_REQUEST_H

#include <linux/tracepoint.h>

#include "request.h"

/* The names below, for the tools that read the format (perf, trace-cmd). */
TRACE_DEFINE_ENUM(KUDP_PROTO_TEXT);
TRACE_DEFINE_ENUM(KUDP_PROTO_MEMCACHED);
TRACE_DEFINE_ENUM(KUDP_PROTO_PROC);
TRACE_DEFINE_ENUM(KUDP_OP_INVALID);
TRACE_DEFINE_ENUM(KUDP_OP_HELLO);
TRACE_DEFINE_ENUM(KUDP_OP_STATS);
TRACE_DEFINE_ENUM(KUDP_OP_VERSION);
TRACE_DEFINE_ENUM(KUDP_OP_LOOKUP);
TRACE_DEFINE_ENUM(KUDP_OP_STORE);
TRACE_DEFINE_ENUM(KUDP_OP_DELETE);
TRACE_DEFINE_ENUM(KUDP_DROP_SHORT);
TRACE_DEFINE_ENUM(KUDP_DROP_FILTERED);
TRACE_DEFINE_ENUM(KUDP_DROP_QUEUE_FULL);
TRACE_DEFINE_ENUM(KUDP_DROP_LOOP);
TRACE_DEFINE_ENUM(KUDP_DROP_LIMITED);
TRACE_DEFINE_ENUM(KUDP_DROP_NO_MEMORY);
TRACE_DEFINE_ENUM(KUDP_DROP_PARKED_FULL);
TRACE_DEFINE_ENUM(KUDP_DROP_SEND_FAILED);

#define kudp_show_proto(proto)					\
	__print_symbolic(proto,					\
			 { KUDP_PROTO_TEXT, "text" },		\
			 { KUDP_PROTO_MEMCACHED, "memcached" },	\
			 { KUDP_PROTO_PROC, "proc" })

#define kudp_show_op(op)					\
	__print_symbolic(op,					\
			 { KUDP_OP_INVALID, "invalid" },	\
			 { KUDP_OP_HELLO, "hello" },		\
			 { KUDP_OP_STATS, "stats" },		\
			 { KUDP_OP_VERSION, "version" },	\
			 { KUDP_OP_LOOKUP, "lookup" },		\
			 { KUDP_OP_STORE, "store" },		\
			 { KUDP_OP_DELETE, "delete" })

#define kudp_show_drop(reason)					\
	__print_symbolic(reason,				\
			 { KUDP_DROP_SHORT, "short" },		\
			 { KUDP_DROP_FILTERED, "filtered" },	\
			 { KUDP_DROP_QUEUE_FULL, "queue_full" },	\
			 { KUDP_DROP_LOOP, "loop" },		\
			 { KUDP_DROP_LIMITED, "limited" },	\
			 { KUDP_DROP_NO_MEMORY, "no_memory" },	\
			 { KUDP_DROP_PARKED_FULL, "parked_full" },	\
			 { KUDP_DROP_SEND_FAILED, "send_failed" })

/**
 * udp_server:request - one request run, whichever protocol it came in
 * @proto: text, memcached, or a write to /proc/ht
 * @op: what it asked for (invalid: malformed, refused with an error reply)
 * @klen: its key's length
 * @vlen: the value's length: stored, or found
 * @result: 0, or the errno of its reply (-ENOENT for NOT FOUND, ...)
 * @ns: the time the executor took, in ns
 */
TRACE_EVENT(request,
	    TP_PROTO(const struct kudp_request *req,
		     const struct kudp_result *res, u64 ns),
	    TP_ARGS(req, res, ns),
	    TP_STRUCT__entry(__field(u8, proto)
			     __field(u8, op)
			     __field(u16, klen)
			     __field(u32, vlen)
			     __field(int, result)
			     __field(u64, ns)),
	    TP_fast_assign(__entry->proto = req->proto;
			   __entry->op = req->op;
			   __entry->klen = req->key.n;
			   __entry->vlen = req->op == KUDP_OP_STORE ?
					   req->value.n : res->vlen;
			   __entry->result = res->status;
			   __entry->ns = ns;),
	    TP_printk("proto=%s op=%s klen=%u vlen=%u result=%d ns=%llu",
		      kudp_show_proto(__entry->proto),
		      kudp_show_op(__entry->op), __entry->klen,
		      __entry->vlen, __entry->result, __entry->ns)
);

/**
 * udp_server:drop - a datagram, or its reply, dropped
 * @reason: why (enum kudp_drop)
 */
TRACE_EVENT(drop,
	    TP_PROTO(enum kudp_drop reason),
	    TP_ARGS(reason),
	    TP_STRUCT__entry(__field(u8, reason)),
	    TP_fast_assign(__entry->reason = reason;),
	    TP_printk("reason=%s", kudp_show_drop(__entry->reason))
);

#endif /* KUDP_TRACE_REQUEST_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE trace_request
#include <trace/define_trace.h>
