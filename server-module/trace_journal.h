/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The journal's tracepoint (journal.c): one per confirmation the backup
 * daemon writes, as udp_server:commit.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM udp_server

#if !defined(KUDP_TRACE_JOURNAL_H) || defined(TRACE_HEADER_MULTI_READ)
#define KUDP_TRACE_JOURNAL_H

#include <linux/tracepoint.h>

/**
 * udp_server:commit - the daemon confirmed changes as on disk
 * @seq: the last change it confirmed
 * @batch: how many changes this confirmation covers
 * @ns: from the daemon's read of them to its confirmation, in ns
 */
TRACE_EVENT(commit,
	    TP_PROTO(u64 seq, u64 batch, u64 ns),
	    TP_ARGS(seq, batch, ns),
	    TP_STRUCT__entry(__field(u64, seq)
			     __field(u64, batch)
			     __field(u64, ns)),
	    TP_fast_assign(__entry->seq = seq;
			   __entry->batch = batch;
			   __entry->ns = ns;),
	    TP_printk("seq=%llu batch=%llu ns=%llu", __entry->seq,
		      __entry->batch, __entry->ns)
);

#endif /* KUDP_TRACE_JOURNAL_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE trace_journal
#include <trace/define_trace.h>
