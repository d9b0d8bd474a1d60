// SPDX-License-Identifier: GPL-2.0
/*
 * The transport of udp_server: sockets, the kthreads that serve them, and
 * the replies they send.
 *
 * Two services share the table: the text protocol on `port`, and
 * memcached's on `memcached_port` when it is set. Each service has `threads`
 * sockets bound to its port with SO_REUSEPORT, so the kernel spreads the
 * senders over them, and one kthread per socket receives a datagram at a
 * time, hands it to its protocol (protocol.h) and sends what it answers.
 * A datagram that is itself a reply, or comes from port 0, gets nothing
 * (ratelimit.c); a reply goes only if the limits of ratelimit.c allow it.
 *
 * kudp_socket_start() creates and binds every socket, so a bad or busy port
 * makes insmod fail with the reason in the kernel log and nothing left
 * behind. kudp_socket_stop() shuts the sockets down before it stops the
 * threads: the shutdown wakes a blocked receive at once, so rmmod never
 * waits for a datagram.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpumask.h>
#include <linux/err.h>
#include <linux/hash.h>
#include <linux/in.h>
#include <linux/jhash.h>
#include <linux/kthread.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/net.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/uio.h>
#include <net/ip.h>
#include <net/net_namespace.h>
#include <net/sock.h>

#include "kudp_kthread.h"
#include "kudp_protocol.h"
#include "transport.h"

#define CREATE_TRACE_POINTS
#include "trace_transport.h"

/* What a port speaks, and the buffers its workers need. */
struct kudp_service {
	const char *name;
	unsigned int port;
	size_t request_max;	/* longer datagrams are refused whole */
	size_t reply_max;
	const struct kudp_protocol *protocol;
};

static struct kudp_service services[] = {
	{ .name = KBUILD_MODNAME, .protocol = &kudp_text_protocol },
	{ .name = KBUILD_MODNAME "_mc", .request_max = KUDP_MC_REQUEST_MAX,
	  .reply_max = KUDP_MC_REPLY_MAX, .protocol = &kudp_mc_protocol },
};

static struct kudp_worker *workers;
static unsigned int nr_workers;
static unsigned int per_port;	/* workers of each service, in services[] order */
static __be32 listen_addr;
static u32 sender_seed;
static bool fast_path;

/**
 * kudp_send_datagram() - send one datagram from a worker's socket
 * @sock: the socket
 * @to: where it goes
 * @data: its bytes
 * @size: how many
 *
 * Never blocks the thread on a full send buffer: the datagram is dropped
 * and counted instead.
 */
void kudp_send_datagram(struct socket *sock, struct sockaddr_in *to,
			const void *data, size_t size)
{
	struct kvec iov = { .iov_base = (void *)data, .iov_len = size };
	struct msghdr msg = {
		.msg_name = to,
		.msg_namelen = sizeof(*to),
		.msg_flags = MSG_DONTWAIT,
	};
	int ret;

	trace_send(size, KUDP_SEND_THREAD);
	ret = kernel_sendmsg(sock, &msg, &iov, 1, size);
	if (ret < 0) {
		kudp_drop(KUDP_DROP_SEND_FAILED);
		pr_debug("cannot reply to %pI4:%u: error %d\n",
			 &to->sin_addr, ntohs(to->sin_port), ret);
	}
}

/**
 * reply_to() - send a reply, or park it until its change is on disk
 * @w: the worker whose socket sends it
 * @peer: the sender of the request
 * @data: the reply datagram
 * @size: its length
 * @seq: the change the request made, or 0
 * @malformed: it answers a request that was not a well-formed command
 *
 * A reply the limits of ratelimit.c refuse is dropped and counted. With
 * durable=1, a reply to a change waits for the disk, and so does any reply
 * to a sender whose earlier reply waits.
 *
 * Return: false when the reply was dropped at once (the limits).
 */
static bool reply_to(struct kudp_worker *w, const struct kudp_peer *peer,
		     const void *data, size_t size, u64 seq, bool malformed)
{
	struct sockaddr_in to = peer->addr;

	if (!kudp_reply_allowed(peer, size, malformed)) {
		kudp_drop(KUDP_DROP_LIMITED);
		return false;
	}
	if (kudp_durable && !seq)
		seq = kudp_sender_parked(&to);
	if (kudp_durable && seq)
		kudp_park_reply(w->sock, &to, data, size, seq);
	else
		kudp_send_datagram(w->sock, &to, data, size);
	return true;
}

/*
 * Sends a reply laid out by its protocol: one datagram, or memcached's
 * several, each with its header already in place. Only a one-datagram
 * reply can be a change's, so only it may wait for the disk.
 */
static bool reply_with(struct kudp_worker *w, const struct kudp_peer *peer,
		       const struct kudp_reply *reply)
{
	struct sockaddr_in to = peer->addr;
	size_t start, n;

	if (!reply->datagram || reply->size <= reply->datagram)
		return reply_to(w, peer, reply->buf, reply->size, reply->seq,
				reply->malformed);
	if (!kudp_reply_allowed(peer, reply->size, reply->malformed)) {
		kudp_drop(KUDP_DROP_LIMITED);
		return false;
	}
	for (start = 0; start < reply->size; start += n) {
		n = min_t(size_t, reply->datagram, reply->size - start);
		kudp_send_datagram(w->sock, &to, reply->buf + start, n);
	}
	return true;
}

/* Answers one datagram of the text protocol, received in w->request. */
/*
 * Hands a datagram to its protocol, unless it must get no answer at all:
 * it is itself a reply of either protocol, or comes from port 0.
 */
static void serve(struct kudp_worker *w, const struct kudp_peer *peer,
		  size_t size)
{
	const struct kudp_protocol *protocol = w->service->protocol;
	size_t received = min_t(size_t, size, w->service->request_max + 1);
	struct kudp_reply reply = { .buf = w->reply };
	struct kudp_request req;

	if (!peer->addr.sin_port || kudp_is_reply(w->request, received)) {
		kudp_count(requests);
		kudp_drop(KUDP_DROP_LOOP);
		return;
	}
	protocol->parse(w->request, size, &req);
	protocol->answer(w->request, size, &req, peer, &reply);
	if (reply.size && reply_with(w, peer, &reply) && reply.log_sent)
		pr_info("sent " KUDP_GOT_IT " to %pI4:%u\n",
			&peer->addr.sin_addr, ntohs(peer->addr.sin_port));
}

/* Set by module_exit's kernel_sock_shutdown(): time to stop serving. */
static bool shutting_down(struct kudp_worker *w)
{
	return READ_ONCE(w->sock->sk->sk_shutdown) & RCV_SHUTDOWN;
}

/*
 * Whether the datagram was sent from this host to a loopback address, from
 * its IP_PKTINFO (@len bytes of control data; the only kind asked for): the
 * kernel reports the loopback device then, and only then. A datagram to one
 * of the host's other addresses is reported on the device that holds the
 * address, as one from outside that forges it (accept_local=1) is, so it
 * counts as the network's.
 */
static bool from_loopback(const char *control, size_t len)
{
	const struct cmsghdr *cmsg = (const struct cmsghdr *)control;
	const struct in_pktinfo *info;

	if (len < CMSG_LEN(sizeof(*info)) || cmsg->cmsg_level != SOL_IP ||
	    cmsg->cmsg_type != IP_PKTINFO)
		return false;
	info = (const struct in_pktinfo *)CMSG_DATA(cmsg);
	return info->ipi_ifindex == LOOPBACK_IFINDEX;
}

/**
 * worker_thread() - receive one datagram at a time and answer it
 * @data: the worker
 *
 * The receive blocks until a datagram arrives or module_exit shuts the
 * socket down; the shutdown wakes it, and it then returns at once, so the
 * loop needs no timeout to notice the unload.
 *
 * Return: 0, to kthread_stop().
 */
static int worker_thread(void *data)
{
	struct kudp_worker *w = data;
	size_t max = w->service->request_max;
	struct mem_cgroup *old_memcg = kudp_memcg_enter();
	char control[CMSG_SPACE(sizeof(struct in_pktinfo))];
	struct kudp_peer peer;
	struct kvec iov;
	struct msghdr msg;
	int ret;

	while (!kthread_should_stop()) {
		memset(&msg, 0, sizeof(msg));
		msg.msg_name = &peer.addr;
		msg.msg_namelen = sizeof(peer.addr);
		msg.msg_control = control;
		msg.msg_controllen = sizeof(control);
		/*
		 * Room for one byte more than the longest request, and
		 * MSG_TRUNC so that the result is the datagram's full length:
		 * either way a datagram too long shows up as ret > max.
		 */
		iov.iov_base = w->request;
		iov.iov_len = max + 1;
		ret = kernel_recvmsg(w->sock, &msg, &iov, 1, max + 1,
				     MSG_TRUNC);
		if (shutting_down(w))
			break;
		if (ret < 0) {
			if (ret != -EAGAIN && ret != -EINTR)
				pr_warn_ratelimited("receive failed: error %d\n",
						    ret);
			continue;
		}
		if (msg.msg_flags & MSG_TRUNC)
			ret = max_t(int, ret, max + 1);
		peer.local = from_loopback(control,
					   sizeof(control) - msg.msg_controllen);
		serve(w, &peer, ret);
		if (w->fast)
			kudp_fast_done(w, &peer.addr);
		/* A flood must not starve the rest of this CPU. */
		cond_resched();
	}

	kudp_memcg_leave(old_memcg);
	kudp_idle_until_stopped();
	return 0;
}

static const char *bind_error_reason(int err)
{
	switch (err) {
	case -EADDRINUSE:
		return " (address in use)";
	case -EADDRNOTAVAIL:
		return " (no such local address)";
	case -EACCES:
		return " (permission denied)";
	default:
		return "";
	}
}

/**
 * open_socket() - create a worker's UDP socket and bind it to its port
 * @w: the worker
 * @shared: several workers share the port (SO_REUSEPORT)
 * @listen: the address, and whether to hook the socket (softirq=1)
 *
 * Binding here rather than in the thread is what makes a busy port fail
 * insmod itself, with the reason in the kernel log.
 *
 * Return: 0, or the error of sock_create_kern() or kernel_bind().
 */
static int open_socket(struct kudp_worker *w, bool shared,
		       const struct kudp_listen *listen)
{
	struct sockaddr_in addr = listen->addr;
	int ret;

	ret = sock_create_kern(&init_net, AF_INET, SOCK_DGRAM, IPPROTO_UDP,
			       &w->sock);
	if (ret) {
		pr_err("cannot create a UDP socket: error %d\n", ret);
		return ret;
	}
	if (shared)
		sock_set_reuseport(w->sock->sk);
	/* Where each datagram came in: from_loopback(). */
	ip_sock_set_pktinfo(w->sock->sk);
	/* Before the bind, so that the hook sees every datagram. */
	if (listen->softirq)
		kudp_fast_attach(w, w->service->protocol,
				 w->service->request_max);
	addr.sin_port = htons(w->service->port);
	ret = kernel_bind(w->sock, (struct sockaddr *)&addr, sizeof(addr));
	if (ret) {
		pr_err("cannot bind %pI4:%u: error %d%s\n", &addr.sin_addr,
		       w->service->port, ret, bind_error_reason(ret));
		if (w->fast)
			kudp_fast_detach(w);
		sock_release(w->sock);
		w->sock = NULL;
		return ret;
	}
	return 0;
}

/* Undoes start_workers() for the first @n workers. */
static void stop_workers(unsigned int n)
{
	unsigned int i;

	/* Shut every socket first: each wakes its thread at once. */
	for (i = 0; i < n; i++)
		kernel_sock_shutdown(workers[i].sock, SHUT_RDWR);
	for (i = 0; i < n; i++)
		if (workers[i].thread)
			kthread_stop(workers[i].thread);
}

static void free_workers(unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		sock_release(workers[i].sock);
		kvfree(workers[i].reply);
		kvfree(workers[i].request);
	}
	kfree(workers);
}

/* Buffers, socket and thread of one worker; on failure, nothing is left. */
static int start_worker(struct kudp_worker *w, unsigned int index,
			bool shared, const struct kudp_listen *listen)
{
	int ret;

	w->request = kvmalloc(w->service->request_max + 1, GFP_KERNEL_ACCOUNT);
	w->reply = kvmalloc(w->service->reply_max + 1, GFP_KERNEL_ACCOUNT);
	if (!w->request || !w->reply) {
		ret = -ENOMEM;
		goto out_free;
	}
	ret = open_socket(w, shared, listen);
	if (ret)
		goto out_free;
	w->thread = kthread_run(worker_thread, w, "%s/%u", w->service->name,
				index);
	if (IS_ERR(w->thread)) {
		ret = PTR_ERR(w->thread);
		w->thread = NULL;
		pr_err("cannot start a server thread: error %d\n", ret);
		if (w->fast)
			kudp_fast_detach(w);
		sock_release(w->sock);
		goto out_free;
	}
	return 0;

out_free:
	kvfree(w->reply);
	kvfree(w->request);
	return ret;
}

/*
 * softirq=1: takes the hooks off the sockets (fastpath.c) and waits for the
 * softirqs inside them, which use the workers, before anything goes. The
 * grace period is expedited, as synchronize_net() does under RTNL: under a
 * flood a normal one waits on CPUs busy in softirq, and unload must stay
 * prompt.
 */
static void detach_fast_path(void)
{
	unsigned int i;

	if (!fast_path)
		return;
	for (i = 0; i < nr_workers; i++)
		if (workers[i].fast)
			kudp_fast_detach(&workers[i]);
	synchronize_rcu_expedited();
}

/* `threads` workers for each service that has a port. */
static int start_workers(const struct kudp_listen *listen)
{
	unsigned int i, s;
	int ret;

	per_port = min_t(unsigned int, listen->threads ?: num_online_cpus(),
			 KUDP_MAX_THREADS);
	workers = kcalloc(ARRAY_SIZE(services) * per_port, sizeof(*workers),
			  GFP_KERNEL);
	if (!workers)
		return -ENOMEM;
	for (s = 0; s < ARRAY_SIZE(services); s++) {
		if (!services[s].port)
			continue;
		for (i = 0; i < per_port; i++) {
			struct kudp_worker *w = &workers[nr_workers];

			w->service = &services[s];
			ret = start_worker(w, i, per_port > 1, listen);
			if (ret)
				goto out_stop;
			nr_workers++;
		}
	}
	return 0;

out_stop:
	/* The hooks may be running on the sockets opened so far. */
	detach_fast_path();
	stop_workers(nr_workers);
	free_workers(nr_workers);
	nr_workers = 0;
	return ret;
}

/* The longest request and reply among the services that have a port. */
static void largest_service(size_t *request, size_t *reply)
{
	unsigned int s;

	*request = 0;
	*reply = 0;
	for (s = 0; s < ARRAY_SIZE(services); s++) {
		if (!services[s].port)
			continue;
		*request = max(*request, services[s].request_max);
		*reply = max(*reply, services[s].reply_max);
	}
}

/**
 * kudp_socket_start() - open every socket and start its thread
 * @listen: where and how (main.c's parameters)
 *
 * Return: 0, or the error that made a socket or thread fail; then nothing
 * is left behind.
 */
int kudp_socket_start(const struct kudp_listen *listen)
{
	size_t request_max, reply_max;
	int ret;

	services[0].port = listen->port;
	services[0].request_max = kudp_len;
	services[0].reply_max = kudp_len;
	services[1].port = listen->memcached_port;
	listen_addr = listen->addr.sin_addr.s_addr;
	sender_seed = get_random_u32();
	fast_path = listen->softirq;
	if (fast_path) {
		largest_service(&request_max, &reply_max);
		ret = kudp_fast_init(request_max, reply_max);
		if (ret)
			return ret;
	}
	kudp_journal_watch(kudp_release_replies);
	ret = start_workers(listen);
	if (ret) {
		kudp_journal_watch(NULL);
		kudp_fast_exit();
	}
	return ret;
}

/**
 * kudp_socket_lookup() - the socket a datagram goes to, if it is ours
 * @saddr: its sender's address
 * @sport: and port
 * @daddr: where it is addressed (an address of this host)
 * @dport: and the port
 *
 * For rx_dev's receive handler, before the UDP layer (whose lookup not
 * every kernel exports): one of the port's sockets, the same one for every
 * datagram of a sender, so that they keep their order.
 *
 * Context: softirq, between kudp_socket_start() and kudp_socket_stop().
 * Return: the socket, or NULL.
 */
struct sock *kudp_socket_lookup(__be32 saddr, __be16 sport, __be32 daddr,
				__be16 dport)
{
	unsigned int first = 0, s;
	u32 sender;

	if (listen_addr != htonl(INADDR_ANY) && daddr != listen_addr)
		return NULL;
	for (s = 0; s < ARRAY_SIZE(services); s++) {
		if (!services[s].port)
			continue;
		if (htons(services[s].port) == dport) {
			sender = jhash_2words((__force u32)saddr,
					      (__force u32)sport, sender_seed);
			return workers[first +
				       reciprocal_scale(sender, per_port)].sock->sk;
		}
		first += per_port;
	}
	return NULL;
}

/*
 * At unload, first: the softirq hooks come off (and the softirqs inside
 * them finish), then the shutdown makes each thread's receive return at
 * once, so kthread_stop() does not wait for a datagram. The sockets stay,
 * for the replies the daemon releases until its files are gone.
 */
void kudp_socket_stop(void)
{
	detach_fast_path();
	stop_workers(nr_workers);
}

/* At unload, once the daemon's files are gone: the rest. */
void kudp_socket_free(void)
{
	kudp_journal_watch(NULL);
	kudp_drop_parked_replies();
	free_workers(nr_workers);
	nr_workers = 0;
	kudp_fast_exit();
}
