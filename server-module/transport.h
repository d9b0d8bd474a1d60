/* SPDX-License-Identifier: GPL-2.0 */
/*
 * How datagrams reach udp_server and its replies leave, one
 * of its two entry points beside /proc (procfs.h).
 *
 *   socket.c     the sockets, one kthread each, and sending
 *   parked.c     durable=1: replies that wait until their change is on disk
 *   fastpath.c   softirq=1: reads answered in the receive softirq, in the
 *                request's own skb where it has the room
 *   devhook.c    rx_dev=DEV: reads answered in DEV's receive handler, before
 *                the IP and UDP layers
 *   ratelimit.c  what a sender not on this host can make the server send
 */
#ifndef KUDP_TRANSPORT_H
#define KUDP_TRANSPORT_H

#include <linux/atomic.h>
#include <linux/in.h>
#include <linux/net.h>
#include <linux/skbuff.h>
#include <linux/types.h>
#include <net/sock.h>

#include "protocol.h"

/* Module parameters of this layer (main.c). */
#define KUDP_DEFAULT_REPLY_RATE		1024
#define KUDP_DEFAULT_ERR_RATE		20
#define KUDP_MAX_THREADS		64
extern unsigned int kudp_reply_rate;
extern unsigned int kudp_err_rate;

/* Where and how to listen (main.c's parameters). */
struct kudp_listen {
	struct sockaddr_in addr;	/* the address; the ports below */
	unsigned int port;
	unsigned int memcached_port;	/* 0: none */
	unsigned int threads;		/* per port; 0: one per online CPU */
	bool softirq;
};

int kudp_socket_start(const struct kudp_listen *listen);
struct sock *kudp_socket_lookup(__be32 saddr, __be16 sport, __be32 daddr,
				__be16 dport);
void kudp_socket_stop(void);
void kudp_socket_free(void);

/* One socket and the kthread that serves it (socket.c). */
struct kudp_service;
#define KUDP_FAST_BUCKET_BITS	6
struct kudp_worker {
	struct socket *sock;
	struct task_struct *thread;
	const struct kudp_service *service;
	char *request;	/* the service's longest request + 1 bytes */
	char *reply;	/* its longest reply + 1 bytes */
	/* softirq=1 (fastpath.c): what the socket speaks, its longest request */
	bool fast;
	const struct kudp_protocol *protocol;
	size_t request_max;
	/* datagrams queued for the thread, per bucket of senders */
	atomic_t pending[1 << KUDP_FAST_BUCKET_BITS];
};

/* How a reply datagram was sent (the udp_server:send tracepoint). */
enum kudp_send {
	KUDP_SEND_THREAD,
	KUDP_SEND_NEW_SKB,
	KUDP_SEND_REUSED_SKB,
	KUDP_SEND_DEVICE,
};

/* socket.c: a reply datagram from a worker's socket, never blocking. */
void kudp_send_datagram(struct socket *sock, struct sockaddr_in *to,
			const void *data, size_t size);

/* parked.c: durable=1, replies that wait until their change is on disk. */
u64 kudp_sender_parked(const struct sockaddr_in *from);
void kudp_park_reply(struct socket *sock, struct sockaddr_in *to,
		     const void *data, size_t size, u64 seq);
void kudp_release_replies(u64 synced);
void kudp_drop_parked_replies(void);

/* fastpath.c: softirq=1 */
int kudp_fast_init(size_t request_max, size_t reply_max);
void kudp_fast_exit(void);
void kudp_fast_attach(struct kudp_worker *w,
		      const struct kudp_protocol *protocol, size_t request_max);
void kudp_fast_done(struct kudp_worker *w, const struct sockaddr_in *from);
void kudp_fast_detach(struct kudp_worker *w);
bool kudp_fast_early(struct sock *sk, struct sk_buff *skb);

/* devhook.c: rx_dev=DEV, needs softirq=1 */
int kudp_dev_attach(const char *name);
void kudp_dev_detach(void);

/* ratelimit.c: the burst of error replies to one sender, at least. */
#define KUDP_ERR_BURST		50
void kudp_limit_init(void);
bool kudp_is_reply(const char *p, size_t n);
bool kudp_reply_allowed(const struct kudp_peer *peer, size_t size,
			bool malformed);

#endif /* KUDP_TRANSPORT_H */
