/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The transport's tracepoint (socket.c, fastpath.c, devhook.c): one per reply
 * datagram handed to the stack, as udp_server:send, saying how it was
 * built, so that `perf stat` shows whether the read path allocates.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM udp_server

#if !defined(KUDP_TRACE_TRANSPORT_H) || defined(TRACE_HEADER_MULTI_READ)
#define KUDP_TRACE_TRANSPORT_H

#include <linux/tracepoint.h>

#include "transport.h"

TRACE_DEFINE_ENUM(KUDP_SEND_THREAD);
TRACE_DEFINE_ENUM(KUDP_SEND_NEW_SKB);
TRACE_DEFINE_ENUM(KUDP_SEND_REUSED_SKB);
TRACE_DEFINE_ENUM(KUDP_SEND_DEVICE);

/**
 * udp_server:send - a reply datagram handed to the stack
 * @bytes: its payload
 * @how: thread (kernel_sendmsg() from a worker thread), new_skb (built in
 *       the receive softirq in an skb of its own), reused_skb (the
 *       request's own skb turned around: nothing allocated) or device (the
 *       same, answered in rx_dev's receive handler, before the IP and UDP
 *       layers)
 */
TRACE_EVENT(send,
	    TP_PROTO(size_t bytes, enum kudp_send how),
	    TP_ARGS(bytes, how),
	    TP_STRUCT__entry(__field(u32, bytes)
			     __field(u8, how)),
	    TP_fast_assign(__entry->bytes = bytes;
			   __entry->how = how;),
	    TP_printk("bytes=%u how=%s", __entry->bytes,
		      __print_symbolic(__entry->how,
				       { KUDP_SEND_THREAD, "thread" },
				       { KUDP_SEND_NEW_SKB, "new_skb" },
				       { KUDP_SEND_REUSED_SKB, "reused_skb" },
				       { KUDP_SEND_DEVICE, "device" }))
);

#endif /* KUDP_TRACE_TRANSPORT_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE trace_transport
#include <trace/define_trace.h>
