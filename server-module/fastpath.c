// SPDX-License-Identifier: GPL-2.0
/*
 * softirq=1: answering reads where the datagram arrives, without a thread.
 *
 * Without it every datagram takes the socket path (socket.c): the softirq
 * that delivers it queues it on the socket and wakes a worker thread, which
 * copies it out, answers and sends. With softirq=1 the sockets of both
 * protocols get a UDP encapsulation receive hook (encap_rcv, the way vxlan
 * and wireguard receive), which the UDP layer calls in the delivering
 * softirq, after the checksum and before the queue. The hook parses the
 * datagram once (protocol.h) and answers it on the spot: a lookup needs
 * only RCU, and a change takes its key's stripe spinlock, allocating
 * without sleeping (kudp_gfp()) and charging the memory cgroup of the
 * module's loader as the threads do. Only what may sleep goes to the
 * worker thread, queued on the socket as the UDP layer would have: with
 * durable=1, a change (it waits for the backup daemon); and a datagram too
 * long, not addressed to this host alone, or from a sender whose earlier
 * request is still with the thread.
 *
 * The reply allocates nothing: the request's own skb is turned around
 * (addresses and ports swapped, the payload rewritten in place, a new IP
 * header over the old one) and handed to ip_local_out() with the route the
 * FIB keeps cached per CPU. Only an skb that others may see (cloned, shared),
 * that is in pieces, that carries IP options, or that lacks the room for
 * the reply gets a reply skb of its own, as does every datagram after the
 * first of a long memcached reply. The udp_server:send tracepoint says
 * which way each reply went.
 *
 * Order: a sender's requests are answered in the order they arrive, as on
 * the threads' path. A request must not overtake that sender's change still
 * waiting for the thread (a pipelining client would read its own write
 * undone), so the hook counts, per bucket of senders, the datagrams it
 * queued that the thread has not finished (kudp_fast_done()); a request
 * from a sender whose bucket is not empty is queued behind them. The hook
 * queues every datagram it does not answer itself, so the count is exact:
 * the socket gets the hook before it is bound.
 *
 * Each CPU has its own request and reply buffers: softirqs do not nest on
 * a CPU. The unload takes the hooks off and waits for the softirqs inside
 * them (an expedited RCU grace period) before anything they use goes.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/filter.h>
#include <linux/hash.h>
#include <linux/if_vlan.h>
#include <linux/ip.h>
#include <linux/mm.h>
#include <linux/percpu.h>
#include <linux/skbuff.h>
#include <linux/udp.h>
#include <net/ip.h>
#include <net/route.h>
#include <net/udp.h>
#include <net/udp_tunnel.h>

#include "kudp_protocol.h"
#include "trace_transport.h"
#include "transport.h"

/* Any value but 0 makes the UDP layer call encap_rcv; tunnels use 1. */
#define KUDP_ENCAP_TYPE		1

struct fast_buffers {
	char *request;	/* the longest request of any port */
	char *reply;	/* the longest reply of any port, + 1 */
};

static struct fast_buffers __percpu *fast_buffers;

/* The route back to the sender of @in, or an ERR_PTR(). */
static struct rtable *route_back(struct sock *sk, const struct sk_buff *in,
				 struct flowi4 *fl4)
{
	return ip_route_output_ports(sock_net(sk), fl4, sk, ip_hdr(in)->saddr,
				     ip_hdr(in)->daddr, udp_hdr(in)->source,
				     udp_hdr(in)->dest, IPPROTO_UDP, 0, 0);
}

/*
 * Fills in the UDP and IP headers in front of @skb's payload (@skb->data:
 * the UDP header's room), sets its route @rt and sends it. Context: softirq.
 *
 * What udp_tunnel_xmit_skb() does for wireguard and vxlan, without it: it
 * lives in the udp_tunnel module (a dependency insmod would not load), and
 * its iptunnel_xmit() counts the packet in skb->dev's tunnel stats, which a
 * plain device such as lo or eth0 does not have (the same union holds its
 * own counters), unless skb->dev is cleared first.
 */
static void send_skb(struct sock *sk, struct sk_buff *skb, struct rtable *rt,
		     const struct flowi4 *fl4, __be16 sport, __be16 dport)
{
	struct net *net = sock_net(sk);
	struct udphdr *uh = udp_hdr(skb);
	struct iphdr *iph;
	int err;

	uh->source = sport;
	uh->dest = dport;
	uh->len = htons(skb->len);
	uh->check = 0;

	iph = skb_push(skb, sizeof(*iph));
	skb_reset_network_header(skb);
	iph->version = 4;
	iph->ihl = sizeof(*iph) >> 2;
	iph->tos = 0;
	/* No DF: a reply over the MTU is fragmented, as udp_sendmsg() does. */
	iph->frag_off = 0;
	iph->ttl = ip4_dst_hoplimit(&rt->dst);
	iph->protocol = IPPROTO_UDP;
	iph->saddr = fl4->saddr;
	iph->daddr = fl4->daddr;
	__ip_select_ident(net, iph, 1);

	skb->protocol = htons(ETH_P_IP);
	skb->ip_summed = CHECKSUM_NONE;
	skb_dst_set(skb, &rt->dst);
	/* After the route: offloads the checksum when the device can. */
	udp_set_csum(false, skb, iph->saddr, iph->daddr, ntohs(uh->len));
	/* Fills in tot_len and the header checksum, then sends. */
	err = ip_local_out(net, sk, skb);
	/* Not in net_xmit_eval(): the macro evaluates its argument twice. */
	if (net_xmit_eval(err))
		kudp_drop(KUDP_DROP_SEND_FAILED);
}

/*
 * Sends @size bytes of @data back to the sender of @in, in an skb of its
 * own. Context: softirq.
 */
static void reply_new_skb(struct sock *sk, const struct sk_buff *in,
			  const void *data, size_t size)
{
	struct sk_buff *skb;
	struct flowi4 fl4;
	struct rtable *rt;
	int headroom;

	rt = route_back(sk, in, &fl4);
	if (IS_ERR(rt))
		goto drop;
	headroom = LL_RESERVED_SPACE(rt->dst.dev) + sizeof(struct iphdr) +
		   sizeof(struct udphdr);
	skb = alloc_skb(headroom + size, GFP_ATOMIC);
	if (!skb) {
		ip_rt_put(rt);
		goto drop;
	}
	skb_reserve(skb, headroom);
	skb_put_data(skb, data, size);
	skb_push(skb, sizeof(struct udphdr));
	skb_reset_transport_header(skb);
	trace_send(size, KUDP_SEND_NEW_SKB);
	send_skb(sk, skb, rt, &fl4, udp_hdr(in)->dest, udp_hdr(in)->source);
	return;

drop:
	kudp_drop(KUDP_DROP_SEND_FAILED);
}

/*
 * Whether the request @skb (@skb->data: its UDP header) can carry @size
 * bytes of reply back: nobody else sees it, it is one linear buffer with a
 * plain IP header just before the UDP header, and it has the room.
 */
static bool can_turn_around(const struct sk_buff *skb, size_t size,
			    const struct rtable *rt)
{
	return !skb_shared(skb) && !skb_cloned(skb) &&
	       !skb_is_nonlinear(skb) && !skb_is_gso(skb) &&
	       ip_hdr(skb)->ihl == sizeof(struct iphdr) >> 2 &&
	       skb_network_header(skb) + sizeof(struct iphdr) == skb->data &&
	       skb_headroom(skb) >= sizeof(struct iphdr) +
				    LL_RESERVED_SPACE(rt->dst.dev) &&
	       size <= skb->len - sizeof(struct udphdr) + skb_tailroom(skb);
}

/*
 * Sends @size bytes of @data back to the sender of the request @skb,
 * consuming @skb: in @skb itself where it can (nothing allocated; traced
 * as @how), else in an skb of its own. Context: softirq.
 */
static void fast_reply(struct sock *sk, struct sk_buff *skb,
		       const void *data, size_t size, enum kudp_send how)
{
	__be16 sport = udp_hdr(skb)->dest;
	__be16 dport = udp_hdr(skb)->source;
	struct flowi4 fl4;
	struct rtable *rt;

	rt = route_back(sk, skb, &fl4);
	if (IS_ERR(rt)) {
		kudp_drop(KUDP_DROP_SEND_FAILED);
		consume_skb(skb);
		return;
	}
	if (!can_turn_around(skb, size, rt)) {
		ip_rt_put(rt);
		reply_new_skb(sk, skb, data, size);
		consume_skb(skb);
		return;
	}
	/* What the stack noted of the request's way in goes. */
	skb_orphan(skb);
	skb_scrub_packet(skb, true);
	skb_clear_hash(skb);
	__vlan_hwaccel_clear_tag(skb);
	skb->priority = 0;
	memset(IPCB(skb), 0, sizeof(*IPCB(skb)));
	/* The payload: the reply after the UDP header. */
	__skb_trim(skb, sizeof(struct udphdr));
	skb_put_data(skb, data, size);
	trace_send(size, how);
	send_skb(sk, skb, rt, &fl4, sport, dport);
}

/*
 * Sends the reply @reply to the request @skb, consuming it: one datagram,
 * or memcached's several, each already laid out with its frame header.
 */
static void fast_reply_with(struct sock *sk, struct sk_buff *skb,
			    const struct kudp_reply *reply, enum kudp_send how)
{
	size_t start, n;

	if (!reply->datagram || reply->size <= reply->datagram) {
		fast_reply(sk, skb, reply->buf, reply->size, how);
		return;
	}
	for (start = 0; start < reply->size; start += n) {
		n = min_t(size_t, reply->datagram, reply->size - start);
		reply_new_skb(sk, skb, reply->buf + start, n);
	}
	consume_skb(skb);
}

/* The count of datagrams queued for the thread from senders like @from. */
static atomic_t *sender_pending(struct kudp_worker *w, __be32 addr,
				__be16 port)
{
	u32 sender = (__force u32)addr ^ (__force u16)port;

	return &w->pending[hash_32(sender, KUDP_FAST_BUCKET_BITS)];
}

/* A datagram the socket does not take, counted as the UDP layer counts it. */
static void drop_datagram(struct sock *sk, struct sk_buff *skb, int mib,
			  enum kudp_drop reason)
{
	struct net *net = sock_net(sk);

	if (mib)
		__UDP_INC_STATS(net, mib, 0);
	__UDP_INC_STATS(net, UDP_MIB_INERRORS, 0);
	atomic_inc(&sk->sk_drops);
	kfree_skb(skb);
	kudp_drop(reason);
}

/*
 * Hands @skb (@skb->data: the UDP header) to the thread, as the UDP layer
 * does with a datagram that has no hook (udp_queue_rcv_one_skb()): header
 * pulled, where it came in noted for IP_PKTINFO (the thread's
 * from_loopback(); ipv4_pktinfo_prepare() is not exported), route dropped,
 * queued, the thread woken, and a full queue counted in the UDP MIB.
 */
static void queue_for_thread(struct sock *sk, struct sk_buff *skb,
			     atomic_t *pending)
{
	struct in_pktinfo *info = (struct in_pktinfo *)skb->cb;
	int ret;

	BUILD_BUG_ON(sizeof(*info) > sizeof(skb->cb));
	atomic_inc(pending);
	info->ipi_ifindex = skb->skb_iif;
	info->ipi_spec_dst.s_addr = ip_hdr(skb)->daddr;
	udp_csum_pull_header(skb);
	skb_dst_drop(skb);
	ret = __udp_enqueue_schedule_skb(sk, skb);
	if (ret < 0) {
		atomic_dec(pending);
		drop_datagram(sk, skb, ret == -ENOMEM ? UDP_MIB_RCVBUFERRORS :
				       UDP_MIB_MEMERRORS, KUDP_DROP_QUEUE_FULL);
	}
}

/*
 * Whether a thread would see the datagram as this host's: IP_PKTINFO's
 * interface is the loopback device (ipv4_pktinfo_prepare(), which runs
 * after this hook). That is a datagram that came in on loopback and was
 * routed to a loopback address; one to another local address is reported
 * on the device holding that address, as one forged from outside is.
 */
static bool from_this_host(const struct sk_buff *skb)
{
	return skb->skb_iif == LOOPBACK_IFINDEX &&
	       inet_iif(skb) == LOOPBACK_IFINDEX;
}

/* Who sent @skb, and whether a thread would see it as this host. */
static void peer_of(const struct sk_buff *skb, struct kudp_peer *peer)
{
	*peer = (struct kudp_peer) {
		.addr.sin_family = AF_INET,
		.addr.sin_addr.s_addr = ip_hdr(skb)->saddr,
		.addr.sin_port = udp_hdr(skb)->source,
		.local = from_this_host(skb),
	};
}

/*
 * The request in @skb (@skb->data: the UDP header), if the hook may answer
 * it, or NULL: broadcast, multicast, datagrams too long, and a sender whose
 * earlier request is still with the thread or whose reply waits for the
 * disk (durable=1) take the threads' way.
 */
static const char *fast_request(const struct kudp_worker *w,
				const struct sk_buff *skb,
				const struct kudp_peer *peer,
				const atomic_t *pending, char *buf)
{
	unsigned int size = skb->len - sizeof(struct udphdr);

	if (skb->pkt_type != PACKET_HOST || size > w->request_max ||
	    atomic_read(pending) ||
	    (kudp_durable && kudp_sender_parked(&peer->addr)))
		return NULL;
	return skb_header_pointer(skb, sizeof(struct udphdr), size, buf);
}

/* Whether answering @req (from @peer) could start a loop: nothing goes back. */
static bool may_loop(const struct kudp_peer *peer, const char *req,
		     size_t size)
{
	return !peer->addr.sin_port || kudp_is_reply(req, size);
}

/*
 * Answers the request @req, parsed into @parsed, and sends the reply,
 * consuming @skb; @early: from rx_dev's receive handler (devhook.c).
 */
static void fast_answer(struct sock *sk, struct kudp_worker *w,
			struct sk_buff *skb, const char *req,
			const struct kudp_request *parsed,
			const struct kudp_peer *peer, bool early)
{
	size_t size = skb->len - sizeof(struct udphdr);
	struct fast_buffers *buf = this_cpu_ptr(fast_buffers);
	struct kudp_reply reply = { .buf = buf->reply };
	struct mem_cgroup *memcg;

	/* A change allocates: charged to the loader's memory cgroup. */
	if (kudp_op_is_change(parsed->op)) {
		memcg = kudp_memcg_enter();
		w->protocol->answer(req, size, parsed, peer, &reply);
		kudp_memcg_leave(memcg);
	} else {
		w->protocol->answer(req, size, parsed, peer, &reply);
	}
	if (!reply.size) {
		consume_skb(skb);
		return;
	}
	if (!kudp_reply_allowed(peer, reply.size, reply.malformed)) {
		kudp_drop(KUDP_DROP_LIMITED);
		consume_skb(skb);
		return;
	}
	/* @req may point into @skb, which becomes the reply. */
	fast_reply_with(sk, skb, &reply,
			early ? KUDP_SEND_DEVICE : KUDP_SEND_REUSED_SKB);
	if (reply.log_sent)
		pr_info("sent " KUDP_GOT_IT " to %pI4:%u\n",
			&peer->addr.sin_addr, ntohs(peer->addr.sin_port));
}

/*
 * Serves the datagram @skb (@skb->data: its UDP header, its checksum
 * good): first what the UDP layer does before queueing any datagram, the
 * socket's filter, cgroup-BPF ingress and the LSM (sk_filter_trim_cap());
 * then answered here, queued for the thread, or dropped. @early: from
 * rx_dev's receive handler (devhook.c), before the IP layer.
 */
static void fast_serve(struct sock *sk, struct sk_buff *skb, bool early)
{
	struct kudp_worker *w = rcu_dereference_sk_user_data(sk);
	struct fast_buffers *buf = this_cpu_ptr(fast_buffers);
	struct kudp_request parsed;
	struct kudp_peer peer;
	atomic_t *pending;
	const char *req;
	unsigned int size;

	if (sk_filter_trim_cap(sk, skb, sizeof(struct udphdr))) {
		drop_datagram(sk, skb, 0, KUDP_DROP_FILTERED);
		return;
	}
	peer_of(skb, &peer);
	pending = sender_pending(w, peer.addr.sin_addr.s_addr,
				 peer.addr.sin_port);
	req = fast_request(w, skb, &peer, pending, buf->request);
	if (!req) {
		queue_for_thread(sk, skb, pending);
		return;
	}
	size = skb->len - sizeof(struct udphdr);
	if (may_loop(&peer, req, size)) {
		/* As socket.c's serve(). */
		kudp_count(requests);
		kudp_drop(KUDP_DROP_LOOP);
		consume_skb(skb);
		return;
	}
	/* Parsed once: what may sleep goes to the thread, the rest is answered here. */
	w->protocol->parse(req, size, &parsed);
	if (kudp_op_may_sleep(parsed.op)) {
		queue_for_thread(sk, skb, pending);
		return;
	}
	fast_answer(sk, w, skb, req, &parsed, &peer, early);
}

/* The encap_rcv hook: the UDP layer has checked the checksum. Return: 0, taken. */
static int fast_rcv(struct sock *sk, struct sk_buff *skb)
{
	fast_serve(sk, skb, false);
	return 0;
}

/**
 * kudp_fast_early() - serve a datagram before the IP and UDP layers
 * @sk: the socket the datagram is for, found by the caller
 * @skb: the datagram: @skb->data its UDP header, @skb->len its UDP length,
 *       its checksum checked
 *
 * For rx_dev's receive handler (devhook.c): the datagram is served as
 * fast_rcv() would, so that a sender's datagrams keep their order. The
 * stack delivers the frames of one NAPI poll to the IP layer in a batch,
 * after every receive handler has seen them: one left to it would be
 * overtaken by those answered here.
 *
 * Context: softirq.
 * Return: true if @skb was taken; false if @sk is not one of ours (@skb is
 * unchanged).
 */
bool kudp_fast_early(struct sock *sk, struct sk_buff *skb)
{
	if (READ_ONCE(udp_sk(sk)->encap_rcv) != fast_rcv)
		return false;
	/* As ip_rcv_core() and udp4_csum_init() leave it: checksum good. */
	memset(IPCB(skb), 0, sizeof(*IPCB(skb)));
	skb->csum_valid = 1;
	UDP_SKB_CB(skb)->partial_cov = 0;
	UDP_SKB_CB(skb)->cscov = skb->len;
	fast_serve(sk, skb, true);
	return true;
}

/**
 * kudp_fast_attach() - answer reads on a worker's socket in softirq context
 * @w: a worker whose socket is not bound yet
 * @protocol: what the socket speaks
 * @request_max: its longest request; a longer one goes to the thread
 */
void kudp_fast_attach(struct kudp_worker *w,
		      const struct kudp_protocol *protocol, size_t request_max)
{
	struct sock *sk = w->sock->sk;

	w->protocol = protocol;
	w->request_max = request_max;
	rcu_assign_sk_user_data(sk, w);
	WRITE_ONCE(udp_sk(sk)->encap_type, KUDP_ENCAP_TYPE);
	WRITE_ONCE(udp_sk(sk)->encap_rcv, fast_rcv);
	udp_tunnel_encap_enable(sk);
	w->fast = true;
}

/**
 * kudp_fast_done() - the thread has answered a datagram the hook queued
 * @w: the worker
 * @from: its sender
 */
void kudp_fast_done(struct kudp_worker *w, const struct sockaddr_in *from)
{
	atomic_dec(sender_pending(w, from->sin_addr.s_addr, from->sin_port));
}

/**
 * kudp_fast_detach() - stop answering in softirq context on @w's socket
 * @w: a worker given to kudp_fast_attach()
 *
 * A softirq may still be inside the hook until kudp_fast_exit() has waited
 * for it. Closing the socket undoes udp_tunnel_encap_enable().
 */
void kudp_fast_detach(struct kudp_worker *w)
{
	WRITE_ONCE(udp_sk(w->sock->sk)->encap_rcv, NULL);
}

static void free_buffers(void)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		struct fast_buffers *buf = per_cpu_ptr(fast_buffers, cpu);

		kvfree(buf->request);
		kvfree(buf->reply);
	}
	free_percpu(fast_buffers);
	fast_buffers = NULL;
}

/**
 * kudp_fast_init() - the buffers of every CPU
 * @request_max: the longest request of any port
 * @reply_max: the longest reply of any port
 *
 * Return: 0 or -ENOMEM.
 */
int kudp_fast_init(size_t request_max, size_t reply_max)
{
	int cpu;

	fast_buffers = alloc_percpu(struct fast_buffers);
	if (!fast_buffers)
		return -ENOMEM;
	for_each_possible_cpu(cpu) {
		struct fast_buffers *buf = per_cpu_ptr(fast_buffers, cpu);

		buf->request = kvmalloc_node(request_max, GFP_KERNEL_ACCOUNT,
					     cpu_to_node(cpu));
		buf->reply = kvmalloc_node(reply_max + 1, GFP_KERNEL_ACCOUNT,
					   cpu_to_node(cpu));
		if (!buf->request || !buf->reply) {
			free_buffers();
			return -ENOMEM;
		}
	}
	return 0;
}

/*
 * After every kudp_fast_detach(): waits out the softirqs in the hooks
 * (expedited, as socket.c's detach_fast_path()), then frees the buffers.
 */
void kudp_fast_exit(void)
{
	if (!fast_buffers)
		return;
	synchronize_rcu_expedited();
	free_buffers();
}
