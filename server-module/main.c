// SPDX-License-Identifier: GPL-2.0
/*
 * udp_server - a key-value store served over UDP from kernel threads.
 *
 * Two services share the table: the module's own text protocol on `port`
 * (PROTOCOL.md), and memcached's ASCII protocol over UDP on `memcached_port`
 * when it is set (memcache.c). Each service has `threads` sockets bound to
 * its port with SO_REUSEPORT, so the kernel spreads the senders over them,
 * and one kthread per socket receives a datagram at a time and answers it.
 *
 * module_init creates and binds every socket, so a bad or busy port makes
 * insmod fail with the reason in the kernel log and nothing left behind.
 * module_exit shuts the sockets down before it stops the threads: the
 * shutdown wakes a blocked receive at once, so rmmod never waits for a
 * datagram.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpumask.h>
#include <linux/err.h>
#include <linux/hash.h>
#include <linux/in.h>
#include <linux/inet.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/memcontrol.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/ratelimit.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/uio.h>
#include <net/ip.h>
#include <net/net_namespace.h>
#include <net/route.h>
#include <net/sock.h>

#include "kudp_kthread.h"
#include "kudp_params.h"
#include "kudp_protocol.h"
#include "udp_server.h"

#define KUDP_MAX_THREADS	64

static unsigned int port = KUDP_DEFAULT_PORT;
KUDP_PARAM_UINT_RANGE(port, 1, 65535);
MODULE_PARM_DESC(port, "UDP port to listen on "
		 KUDP_RANGE(1, 65535, KUDP_DEFAULT_PORT));

unsigned int kudp_len = KUDP_DEFAULT_LEN;
KUDP_PARAM_UINT_RANGE_NAMED(len, kudp_len, KUDP_MIN_LEN, KUDP_MAX_LEN);
MODULE_PARM_DESC(len, "Longest request and reply, in bytes "
		 KUDP_RANGE(KUDP_MIN_LEN, KUDP_MAX_LEN, KUDP_DEFAULT_LEN));

/*
 * Loopback by default: a module that parses untrusted input in kernel space
 * should not face the network unless asked to.
 */
static char *bind_addr = "127.0.0.1";
module_param_named(bind, bind_addr, charp, 0444);
MODULE_PARM_DESC(bind, "Address to listen on (IPv4 address, default 127.0.0.1)");

/*
 * Off by default, as in memcached itself since 1.5.6: its UDP protocol has
 * no bound on replies, so it can amplify a forged request (see PROTOCOL.md).
 */
static unsigned int memcached_port;
KUDP_PARAM_UINT_RANGE(memcached_port, 0, 65535);
MODULE_PARM_DESC(memcached_port, "UDP port for memcached's ASCII protocol, 0 for none "
		 KUDP_RANGE(0, 65535, 0));

static unsigned int threads;
KUDP_PARAM_UINT_RANGE(threads, 0, KUDP_MAX_THREADS);
MODULE_PARM_DESC(threads, "Sockets and threads per port, 0 for one per online CPU "
		 KUDP_RANGE(0, KUDP_MAX_THREADS, 0));

unsigned int kudp_max_entries = KUDP_DEFAULT_MAX_ENTRIES;
KUDP_PARAM_UINT_RANGE_NAMED(max_entries, kudp_max_entries, 1, 4194304);
MODULE_PARM_DESC(max_entries, "Most entries the table holds "
		 KUDP_RANGE(1, 4194304, KUDP_DEFAULT_MAX_ENTRIES));

unsigned int kudp_max_bytes = KUDP_DEFAULT_MAX_BYTES;
KUDP_PARAM_UINT_RANGE_NAMED(max_bytes, kudp_max_bytes, KUDP_MIN_MAX_BYTES,
			    1073741824);
MODULE_PARM_DESC(max_bytes, "Most bytes of memory the table and history take "
		 KUDP_RANGE(KUDP_MIN_MAX_BYTES, 1073741824,
			    KUDP_DEFAULT_MAX_BYTES));

unsigned int kudp_history = KUDP_DEFAULT_HISTORY;
KUDP_PARAM_UINT_RANGE_NAMED(history, kudp_history, 1, 65536);
MODULE_PARM_DESC(history, "Changing commands kept for /proc/ht "
		 KUDP_RANGE(1, 65536, KUDP_DEFAULT_HISTORY));

bool kudp_durable;
module_param_named(durable, kudp_durable, bool, 0444);
MODULE_PARM_DESC(durable, "Answer a change only once the backup daemon has it on disk (default off)");

/* ratelimit.c: reply bytes a second to each /24 of senders not on this host. */
unsigned int kudp_reply_rate = KUDP_DEFAULT_REPLY_RATE;
KUDP_PARAM_UINT_RANGE_NAMED(reply_rate, kudp_reply_rate, 0, 4194304);
MODULE_PARM_DESC(reply_rate, "KiB of replies a second to each /24 of senders not on this host, 0 for no limit "
		 KUDP_RANGE(0, 4194304, KUDP_DEFAULT_REPLY_RATE));

unsigned int kudp_err_rate = KUDP_DEFAULT_ERR_RATE;
KUDP_PARAM_UINT_RANGE_NAMED(err_rate, kudp_err_rate, 0, 1000000);
MODULE_PARM_DESC(err_rate, "Replies to malformed requests a second to each sender not on this host, 0 for no limit "
		 KUDP_RANGE(0, 1000000, KUDP_DEFAULT_ERR_RATE));

/* fastpath.c: lookups answered where they arrive, without waking a thread. */
static bool softirq;
module_param(softirq, bool, 0444);
MODULE_PARM_DESC(softirq, "Answer the text protocol's reads in the receive softirq (default off)");

/* What a port speaks, and the buffers its workers need. */
struct kudp_service {
	const char *name;
	unsigned int *port;
	size_t request_max;	/* longer datagrams are refused whole */
	size_t reply_max;
	void (*serve)(struct kudp_worker *w, const struct kudp_peer *peer,
		      size_t size);
};

static void serve_text(struct kudp_worker *w, const struct kudp_peer *peer,
		       size_t size);

static struct kudp_service services[] = {
	{ .name = KBUILD_MODNAME, .port = &port, .serve = serve_text },
	{ .name = KBUILD_MODNAME "_mc", .port = &memcached_port,
	  .request_max = KUDP_MC_REQUEST_MAX, .reply_max = KUDP_MC_REPLY_MAX,
	  .serve = kudp_mc_serve },
};

static struct kudp_worker *workers;
static unsigned int nr_workers;

/*
 * The memory cgroup of whoever loaded the module. Requests make the server
 * allocate (entries, history lines); that memory is charged here, whether
 * the request came from the network (a server thread) or from /proc/ht.
 */
static struct mem_cgroup *kudp_memcg;

/* Starts charging KUDP_GFP allocations to kudp_memcg; returns the old one. */
struct mem_cgroup *kudp_memcg_enter(void)
{
	return set_active_memcg(kudp_memcg);
}

void kudp_memcg_leave(struct mem_cgroup *old)
{
	set_active_memcg(old);
}

/*
 * Per-datagram lines share one budget so a flood cannot fill the log. The
 * kernel's own "serve_text: N callbacks suppressed" line would carry no
 * module prefix, so it is turned off (RATELIMIT_MSG_ON_RELEASE) and the
 * server counts what it left out itself.
 */
static DEFINE_RATELIMIT_STATE(packet_log, 5 * HZ, 10);
static atomic_t packet_log_missed;

static void log_missed_greetings(void)
{
	int missed = atomic_xchg(&packet_log_missed, 0);

	if (missed)
		pr_info("%d greetings not logged (rate limit)\n", missed);
}

/* Whether to log this greeting; says how many were left out before it. */
static bool log_greeting(void)
{
	if (!__ratelimit(&packet_log)) {
		atomic_inc(&packet_log_missed);
		return false;
	}
	log_missed_greetings();
	return true;
}

/**
 * kudp_send() - send one datagram from a worker's socket
 * @sock: the socket
 * @to: where it goes
 * @data: its bytes
 * @size: how many
 *
 * Never blocks the thread on a full send buffer: the datagram is dropped
 * and counted instead.
 */
void kudp_send(struct socket *sock, struct sockaddr_in *to, const void *data,
	       size_t size)
{
	struct kvec iov = { .iov_base = (void *)data, .iov_len = size };
	struct msghdr msg = {
		.msg_name = to,
		.msg_namelen = sizeof(*to),
		.msg_flags = MSG_DONTWAIT,
	};
	int ret;

	ret = kernel_sendmsg(sock, &msg, &iov, 1, size);
	if (ret < 0) {
		kudp_count(drops);
		pr_debug("cannot reply to %pI4:%u: error %d\n",
			 &to->sin_addr, ntohs(to->sin_port), ret);
	}
}

/*
 * With durable=1, the replies to changes wait here until the backup daemon
 * has the change on disk (journal.c): the server thread parks them, and the
 * daemon's word, written to /proc/kvjournal, sends them. A flood cannot park
 * more than KUDP_PARKED_MAX; past that a reply is dropped, and the client's
 * retry (the same insert, or a delete answered NOT FOUND) finds the change.
 *
 * Replies to one sender keep the order of its requests: a read from a
 * sender whose change is still parked is parked behind it (parked_until,
 * per bucket of senders), and parked_mutex is held while parked replies
 * are sent, so that a reply sent at once never overtakes one being
 * released.
 */
#define KUDP_PARKED_MAX		65536
#define KUDP_PARKED_BUCKET_BITS	6

struct parked_reply {
	struct list_head node;
	u64 seq;
	struct socket *sock;
	struct sockaddr_in to;
	size_t size;
	char data[];
};

static LIST_HEAD(parked);
static unsigned int parked_count;
static DEFINE_MUTEX(parked_mutex);
static atomic64_t parked_until[1 << KUDP_PARKED_BUCKET_BITS];

static atomic64_t *parked_slot(const struct sockaddr_in *from)
{
	u32 sender = (__force u32)from->sin_addr.s_addr ^
		     (__force u16)from->sin_port;

	return &parked_until[hash_32(sender, KUDP_PARKED_BUCKET_BITS)];
}

/**
 * kudp_sender_parked() - the change a sender's replies wait behind
 * @from: the sender
 *
 * Context: any (the softirq hook asks too).
 * Return: the number of the last change whose reply to this sender (or one
 * in its bucket) is parked and not yet on disk, or 0.
 */
u64 kudp_sender_parked(const struct sockaddr_in *from)
{
	u64 seq = atomic64_read(parked_slot(from));

	return kudp_journal_synced(seq) ? 0 : seq;
}

/*
 * Keeps the list in the order of the changes: threads park their replies
 * in about that order, so the walk from the tail is short.
 */
static void parked_insert(struct parked_reply *p)
{
	struct parked_reply *before;

	list_for_each_entry_reverse(before, &parked, node) {
		if (before->seq <= p->seq) {
			list_add(&p->node, &before->node);
			return;
		}
	}
	list_add(&p->node, &parked);
}

/**
 * kudp_park_reply() - send a reply once change @seq is on disk
 * @sock: the socket to send it from
 * @to: where it goes
 * @data: the datagram
 * @size: its length
 * @seq: the change it answers
 */
void kudp_park_reply(struct socket *sock, struct sockaddr_in *to,
		     const void *data, size_t size, u64 seq)
{
	struct parked_reply *p;

	p = kmalloc(struct_size(p, data, size), KUDP_GFP);
	if (!p) {
		kudp_count(drops);
		return;
	}
	p->seq = seq;
	p->sock = sock;
	p->to = *to;
	p->size = size;
	memcpy(p->data, data, size);

	/* Checked under the mutex that kudp_release_replies() holds. */
	mutex_lock(&parked_mutex);
	if (kudp_journal_synced(p->seq) &&
	    (list_empty(&parked) ||
	     list_first_entry(&parked, struct parked_reply, node)->seq > seq)) {
		kudp_send(p->sock, &p->to, p->data, p->size);
		kfree(p);
	} else if (parked_count >= KUDP_PARKED_MAX) {
		kudp_count(drops);
		kfree(p);
	} else {
		if (atomic64_read(parked_slot(to)) < seq)
			atomic64_set(parked_slot(to), seq);
		parked_insert(p);
		parked_count++;
	}
	mutex_unlock(&parked_mutex);
}

/**
 * kudp_release_replies() - send the replies whose change is now on disk
 * @synced: the daemon has every change up to this one
 *
 * Context: the daemon's write to /proc/kvjournal.
 */
void kudp_release_replies(u64 synced)
{
	struct parked_reply *p, *next;

	mutex_lock(&parked_mutex);
	list_for_each_entry_safe(p, next, &parked, node) {
		if (p->seq > synced)
			break;	/* kept in the order of their changes */
		list_del(&p->node);
		parked_count--;
		kudp_send(p->sock, &p->to, p->data, p->size);
		kfree(p);
	}
	mutex_unlock(&parked_mutex);
}

/**
 * kudp_reply_to() - send a reply, or park it until its change is on disk
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
bool kudp_reply_to(struct kudp_worker *w, const struct kudp_peer *peer,
		   const void *data, size_t size, u64 seq, bool malformed)
{
	struct sockaddr_in to = peer->addr;

	if (!kudp_reply_allowed(peer, size, malformed)) {
		kudp_count(drops);
		return false;
	}
	if (kudp_durable && !seq)
		seq = kudp_sender_parked(&to);
	if (kudp_durable && seq)
		kudp_park_reply(w->sock, &to, data, size, seq);
	else
		kudp_send(w->sock, &to, data, size);
	return true;
}

/* At unload: the changes were made; their replies are dropped. */
static void drop_parked_replies(void)
{
	struct parked_reply *p, *next;

	list_for_each_entry_safe(p, next, &parked, node)
		kfree(p);
	INIT_LIST_HEAD(&parked);
	parked_count = 0;
}

/**
 * bound_reflection() - keep a reply from amplifying a forged request
 * @peer: the sender
 * @size: the request's size
 * @reply: the reply, replaced by "ERR pad to N" when it is too long
 *
 * A datagram's source address can be forged, so a small request must not
 * draw a large reply onto someone else (memcached's CVE-2018-1000115). To a
 * sender that is not on this host, a reply is at most KUDP_REFLECT_RATIO
 * times the request, or KUDP_MIN_LEN bytes. A sender that wants a longer
 * reply pads its request with spaces to N bytes, which the parser skips.
 * Datagrams that came in on the loopback device were sent from this host,
 * so they get every reply whole.
 */
static void bound_reflection(const struct kudp_peer *peer, size_t size,
			     struct kudp_reply *reply)
{
	size_t limit = max_t(size_t, size * KUDP_REFLECT_RATIO, KUDP_MIN_LEN);

	if (reply->size <= limit || peer->local)
		return;
	kudp_reply_error(reply, -EMSGSIZE, KUDP_ERR_PAD " %zu",
			 DIV_ROUND_UP(reply->size, KUDP_REFLECT_RATIO));
}

/**
 * kudp_answer_text() - run one request of the text protocol, bound its reply
 * @req: the request: its first min(@size, len + 1) bytes
 * @size: the datagram's full length, which may be more than was received
 * @peer: its sender
 * @reply: gets the reply; its size is 0 when the datagram gets none
 *
 * A datagram longer than len was cut by the receive; kudp_execute() refuses
 * it whole, so its first len bytes are never taken for a different, valid
 * command. A datagram that is itself a reply gets no answer (ratelimit.c),
 * nor does one from port 0, where no reply can go. Only the greeting is
 * logged at info level, and not always.
 *
 * Context: a worker thread, or softirq for a request that changes nothing
 * (fastpath.c).
 * Return: whether the greeting was logged; the caller logs the reply sent.
 */
bool kudp_answer_text(const char *req, size_t size,
		      const struct kudp_peer *peer, struct kudp_reply *reply)
{
	const struct sockaddr_in *from = &peer->addr;
	bool log;

	if (!from->sin_port ||
	    kudp_is_reply(req, min_t(size_t, size, kudp_len + 1))) {
		kudp_count(requests);
		kudp_count(drops);
		reply->size = 0;
		return false;
	}
	kudp_execute(req, size, reply);
	bound_reflection(peer, size, reply);
	log = reply->greeting && log_greeting();
	if (log)
		pr_info("received " KUDP_HELLO " from %pI4:%u\n",
			&from->sin_addr, ntohs(from->sin_port));
	else
		pr_debug("%zu-byte request from %pI4:%u: status %d\n", size,
			 &from->sin_addr, ntohs(from->sin_port), reply->status);
	return log;
}

/* Answers one datagram of the text protocol, received in w->request. */
static void serve_text(struct kudp_worker *w, const struct kudp_peer *peer,
		       size_t size)
{
	struct kudp_reply reply = { .buf = w->reply };
	bool log = kudp_answer_text(w->request, size, peer, &reply);

	if (!reply.size)
		return;
	if (kudp_reply_to(w, peer, reply.buf, reply.size, reply.seq,
			  reply.malformed) && log)
		pr_info("sent " KUDP_GOT_IT " to %pI4:%u\n",
			&peer->addr.sin_addr, ntohs(peer->addr.sin_port));
}

/* Set by module_exit's kernel_sock_shutdown(): time to stop serving. */
static bool shutting_down(struct kudp_worker *w)
{
	return READ_ONCE(w->sock->sk->sk_shutdown) & RCV_SHUTDOWN;
}

/*
 * Whether the datagram came in on the loopback device, from its IP_PKTINFO
 * (@len bytes of control data; the only kind asked for). Datagrams from this
 * host's own addresses do too, and only they: a datagram from outside that
 * forges one of them (accept_local=1) came in on another device.
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
		w->service->serve(w, &peer, ret);
		if (w->fast)
			kudp_fast_done(w, &peer.addr);
		/* A flood must not starve the rest of this CPU. */
		cond_resched();
	}

	kudp_memcg_leave(old_memcg);
	kudp_idle_until_stopped();
	return 0;
}

/* The address to listen on, from the bind parameter. */
static struct sockaddr_in listen_addr = { .sin_family = AF_INET };

static int parse_bind(void)
{
	const char *end;

	if (!bind_addr ||
	    !in4_pton(bind_addr, -1, (u8 *)&listen_addr.sin_addr.s_addr, '\0',
		      &end) || *end) {
		pr_err("bind=\"%s\" is not an IPv4 address\n",
		       bind_addr ? bind_addr : "");
		return -EINVAL;
	}
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
 *
 * Binding here rather than in the thread is what makes a busy port fail
 * insmod itself, with the reason in the kernel log.
 *
 * Return: 0, or the error of sock_create_kern() or kernel_bind().
 */
static int open_socket(struct kudp_worker *w, bool shared)
{
	struct sockaddr_in addr = listen_addr;
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
	if (softirq && w->service->serve == serve_text)
		kudp_fast_attach(w);
	addr.sin_port = htons(*w->service->port);
	ret = kernel_bind(w->sock, (struct sockaddr *)&addr, sizeof(addr));
	if (ret) {
		pr_err("cannot bind %pI4:%u: error %d%s\n", &addr.sin_addr,
		       *w->service->port, ret, bind_error_reason(ret));
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
			bool shared)
{
	int ret;

	w->request = kvmalloc(w->service->request_max + 1, GFP_KERNEL_ACCOUNT);
	w->reply = kvmalloc(w->service->reply_max + 1, GFP_KERNEL_ACCOUNT);
	if (!w->request || !w->reply) {
		ret = -ENOMEM;
		goto out_free;
	}
	ret = open_socket(w, shared);
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
 * softirqs inside them, which use the workers, before anything goes.
 */
static void detach_fast_path(void)
{
	unsigned int i;

	if (!softirq)
		return;
	for (i = 0; i < nr_workers; i++)
		if (workers[i].fast)
			kudp_fast_detach(&workers[i]);
	synchronize_net();
}

/* `threads` workers for each service that has a port. */
static int start_workers(void)
{
	unsigned int per_port = threads ?: num_online_cpus();
	unsigned int i, s;
	int ret;

	per_port = min_t(unsigned int, per_port, KUDP_MAX_THREADS);
	workers = kcalloc(ARRAY_SIZE(services) * per_port, sizeof(*workers),
			  GFP_KERNEL);
	if (!workers)
		return -ENOMEM;
	for (s = 0; s < ARRAY_SIZE(services); s++) {
		if (!*services[s].port)
			continue;
		if (!services[s].request_max) {	/* the text protocol */
			services[s].request_max = kudp_len;
			services[s].reply_max = kudp_len;
		}
		for (i = 0; i < per_port; i++) {
			struct kudp_worker *w = &workers[nr_workers];

			w->service = &services[s];
			ret = start_worker(w, i, per_port > 1);
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

static int __init udp_server_init(void)
{
	int ret;

	ret = parse_bind();
	if (ret)
		return ret;
	if (memcached_port && memcached_port == port) {
		pr_err("memcached_port=%u is the text protocol's port too\n",
		       memcached_port);
		return -EINVAL;
	}
	ratelimit_set_flags(&packet_log, RATELIMIT_MSG_ON_RELEASE);
	kudp_limit_init();
	kudp_memcg = get_mem_cgroup_from_mm(current->mm);

	ret = kv_init();
	if (ret)
		goto out_put_memcg;
	ret = kudp_proc_init();
	if (ret)
		goto out_destroy_table;
	if (softirq) {
		ret = kudp_fast_init();
		if (ret)
			goto out_remove_proc;
	}
	ret = start_workers();
	if (ret)
		goto out_fast_exit;

	pr_info("listening on %pI4:%u (len %u)\n", &listen_addr.sin_addr,
		port, kudp_len);
	if (memcached_port)
		pr_info("memcached protocol on %pI4:%u\n",
			&listen_addr.sin_addr, memcached_port);
	pr_debug("%u threads%s\n", nr_workers,
		 softirq ? ", reads answered in softirq" : "");
	return 0;

out_fast_exit:
	kudp_fast_exit();
out_remove_proc:
	kudp_proc_exit();
out_destroy_table:
	kv_destroy();
out_put_memcg:
	mem_cgroup_put(kudp_memcg);
	return ret;
}

/*
 * The reverse of init, starting with what lets work in: the softirq hooks
 * come off first (and the softirqs inside them finish), the shutdown makes
 * each thread's receive return at once, so kthread_stop() does not wait for
 * a datagram. The /proc files go next: a registered backup daemon first
 * saves the last changes (at most KUDP_DRAIN_TIMEOUT, in journal.c), then
 * the /proc/ht writers still waiting for the disk and the daemon's blocked
 * read are woken, so that remove_proc_entry(), which waits for whoever is
 * inside a file, returns. Then the sockets, the softirq=1 buffers, and only
 * then, with nobody left to reach it, the table.
 */
static void __exit udp_server_exit(void)
{
	ktime_t start = ktime_get();

	detach_fast_path();
	stop_workers(nr_workers);
	log_missed_greetings();
	/* The daemon may send parked replies until its /proc files are gone. */
	kudp_proc_exit();
	drop_parked_replies();
	free_workers(nr_workers);
	kudp_fast_exit();
	kv_destroy();
	mem_cgroup_put(kudp_memcg);
	/* Unload must stay prompt under any load: say how long it took. */
	pr_info("stopped in %lld us\n", ktime_us_delta(ktime_get(), start));
}

module_init(udp_server_init);
module_exit(udp_server_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Key-value store served over UDP from kernel threads");
MODULE_AUTHOR("kernel-udp");
