/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The two protocols of udp_server: a datagram in, one parsed
 * request (request.h), a reply out. Neither sends anything: the transport
 * (transport.h) does, and /proc/ht (proc.c) runs text commands too.
 *
 *   text.c      the module's own text protocol on `port` (PROTOCOL.md)
 *   memcache.c  memcached's ASCII protocol over UDP on `memcached_port`
 */
#ifndef KUDP_PROTOCOL_LAYER_H
#define KUDP_PROTOCOL_LAYER_H

#include <linux/in.h>
#include <linux/types.h>

#include "request.h"

/* The longest text request and reply (module parameter, main.c). */
extern unsigned int kudp_len;

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

/**
 * struct kudp_reply - the answer to one request
 * @buf: the reply's bytes; the caller provides the room (text: len + 1)
 * @size: how many, 0 for no reply at all (memcached's noreply)
 * @datagram: send it as datagrams of at most this many bytes, each with a
 *            frame header of its own already in @buf (memcached); 0: one
 * @status: 0 for OK and GOT IT, else the errno PROTOCOL.md gives for the
 *          reply (-ENOENT for NOT FOUND, -ENOSPC for ERR full, ...)
 * @greeting: the request was HELLO, answered with GOT IT
 * @malformed: the request was not a well-formed command, and the reply says
 *             so (rate-limited to senders not on this host, ratelimit.c)
 * @log_sent: the transport logs the reply it sends (a greeting whose
 *            arrival was logged; rate-limited)
 * @seq: the number of the change the request made (journal.c), or 0
 */
struct kudp_reply {
	char *buf;
	size_t size;
	size_t datagram;
	int status;
	bool greeting;
	bool malformed;
	bool log_sent;
	u64 seq;
};

/**
 * struct kudp_protocol - what a port speaks: a datagram in, a reply out
 * @proto: which protocol it is
 * @parse: turns a datagram into one request value, once. @p holds its
 *         first min(@size, longest request + 1) bytes; @size is its full
 *         length. Whether the request may run in softirq context is a
 *         property of the parsed operation: kudp_op_may_sleep().
 * @answer: runs the parsed request and writes the reply into @reply
 *          (@reply->size 0: no reply at all)
 *
 * Context: both run in a worker thread, or in the receive softirq for a
 * request that cannot sleep (fastpath.c).
 */
struct kudp_protocol {
	enum kudp_proto proto;
	void (*parse)(const char *p, size_t size, struct kudp_request *req);
	void (*answer)(const char *p, size_t size,
		       const struct kudp_request *req,
		       const struct kudp_peer *peer, struct kudp_reply *reply);
};

extern const struct kudp_protocol kudp_text_protocol;
extern const struct kudp_protocol kudp_mc_protocol;

/* text.c */
void kudp_text_execute(const char *p, size_t size, struct kudp_reply *reply);
void kudp_text_init(void);
void kudp_text_exit(void);

/*
 * memcache.c: a request is one datagram; a reply may take several of
 * KUDP_MC_DATAGRAM bytes, header included.
 */
#define KUDP_MC_REQUEST_MAX	8192
#define KUDP_MC_REPLY_MAX	(256 * 1024)
#define KUDP_MC_DATAGRAM	1400

#endif /* KUDP_PROTOCOL_LAYER_H */
