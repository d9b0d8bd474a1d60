// SPDX-License-Identifier: GPL-2.0
/*
 * udp_server - a key-value store served over UDP from a kernel thread.
 *
 * module_init creates and binds the socket, so a bad or busy port makes
 * insmod fail with the reason in the kernel log and nothing left behind.
 * Then one kthread receives a datagram at a time, runs it through the
 * parser (cmd.c) and sends the reply line back to the sender. "HELLO" gets
 * "GOT IT"; the other commands work on the table in kv.c.
 *
 * module_exit shuts the socket down before it stops the thread: the shutdown
 * wakes a blocked receive at once, so rmmod never waits for a datagram.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/err.h>
#include <linux/in.h>
#include <linux/inet.h>
#include <linux/kthread.h>
#include <linux/list.h>
#include <linux/ktime.h>
#include <linux/memcontrol.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/ratelimit.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/uio.h>
#include <net/net_namespace.h>
#include <net/route.h>
#include <net/sock.h>

#include "kudp_kthread.h"
#include "kudp_params.h"
#include "kudp_protocol.h"
#include "udp_server.h"

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

static struct socket *sock;
static struct task_struct *thread;
/*
 * Owned by the thread, len + 1 bytes each: the request's extra byte tells an
 * oversized datagram apart, the reply's holds the NUL.
 */
static char *request_buf;
static char *reply_buf;

/*
 * The memory cgroup of whoever loaded the module. Requests make the server
 * allocate (entries, history lines); that memory is charged here, whether
 * the request came from the network (the server thread) or from /proc/ht.
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
 * kernel's own "serve: N callbacks suppressed" line would carry no module
 * prefix, so it is turned off (RATELIMIT_MSG_ON_RELEASE) and the server
 * counts what it left out itself. Only the server thread touches either.
 */
static DEFINE_RATELIMIT_STATE(packet_log, 5 * HZ, 10);
static unsigned int packet_log_missed;

/* Whether to log this greeting; says how many were left out before it. */
static bool log_greeting(void)
{
	if (!__ratelimit(&packet_log)) {
		packet_log_missed++;
		return false;
	}
	if (packet_log_missed) {
		pr_info("%u greetings not logged (rate limit)\n",
			packet_log_missed);
		packet_log_missed = 0;
	}
	return true;
}

static void send_reply(struct sockaddr_in *to, const char *data, size_t size)
{
	struct kvec iov = { .iov_base = (char *)data, .iov_len = size };
	struct msghdr msg = {
		.msg_name = to,
		.msg_namelen = sizeof(*to),
		/* Never block the only thread on a full send buffer. */
		.msg_flags = MSG_DONTWAIT,
	};
	int ret;

	ret = kernel_sendmsg(sock, &msg, &iov, 1, size);
	if (ret < 0) {
		atomic_long_inc(&kudp_stats.drops);
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
 */
#define KUDP_PARKED_MAX		65536

struct parked_reply {
	struct list_head node;
	u64 seq;
	struct sockaddr_in to;
	size_t size;
	char data[];
};

static LIST_HEAD(parked);
static unsigned int parked_count;
static DEFINE_SPINLOCK(parked_lock);

/* Parks a reply until change @seq is on disk, or sends it if it already is. */
static void park_reply(struct sockaddr_in *to, const struct kudp_reply *reply)
{
	struct parked_reply *p;

	p = kmalloc(struct_size(p, data, reply->size), KUDP_GFP);
	if (!p) {
		atomic_long_inc(&kudp_stats.drops);
		return;
	}
	p->seq = reply->seq;
	p->to = *to;
	p->size = reply->size;
	memcpy(p->data, reply->buf, reply->size);

	/* Checked under the lock that kudp_release_replies() takes. */
	spin_lock(&parked_lock);
	if (kudp_journal_synced(p->seq) || parked_count >= KUDP_PARKED_MAX) {
		spin_unlock(&parked_lock);
		if (kudp_journal_synced(p->seq))
			send_reply(&p->to, p->data, p->size);
		else
			atomic_long_inc(&kudp_stats.drops);
		kfree(p);
		return;
	}
	list_add_tail(&p->node, &parked);
	parked_count++;
	spin_unlock(&parked_lock);
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
	LIST_HEAD(ready);

	spin_lock(&parked_lock);
	list_for_each_entry_safe(p, next, &parked, node) {
		if (p->seq > synced)
			break;	/* parked in the order of their changes */
		list_move_tail(&p->node, &ready);
		parked_count--;
	}
	spin_unlock(&parked_lock);
	list_for_each_entry_safe(p, next, &ready, node) {
		send_reply(&p->to, p->data, p->size);
		kfree(p);
	}
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
 * @from: the sender
 * @size: the request's size
 * @reply: the reply, replaced by "ERR pad to N" when it is too long
 *
 * A datagram's source address can be forged, so a small request must not
 * draw a large reply onto someone else (memcached's CVE-2018-1000115). To a
 * sender that is not on this host, a reply is at most KUDP_REFLECT_RATIO
 * times the request, or KUDP_MIN_LEN bytes. A sender that wants a longer
 * reply pads its request with spaces to N bytes, which the parser skips.
 * Senders on this host cannot be forged from outside it (the kernel drops
 * such martians), so they get every reply whole.
 */
static void bound_reflection(const struct sockaddr_in *from, size_t size,
			     struct kudp_reply *reply)
{
	size_t limit = max_t(size_t, size * KUDP_REFLECT_RATIO, KUDP_MIN_LEN);

	if (reply->size <= limit ||
	    inet_addr_type(&init_net, from->sin_addr.s_addr) == RTN_LOCAL)
		return;
	kudp_reply_error(reply, -EMSGSIZE, KUDP_ERR_PAD " %zu",
			 DIV_ROUND_UP(reply->size, KUDP_REFLECT_RATIO));
}

/**
 * serve() - answer one datagram
 * @from: the sender, where the reply goes
 * @size: the datagram's full length, which may be more than was received
 *
 * A datagram longer than len was cut by the receive; kudp_execute() refuses
 * it whole, so its first len bytes are never taken for a different, valid
 * command.
 */
static void serve(struct sockaddr_in *from, size_t size)
{
	struct kudp_reply reply = { .buf = reply_buf };
	bool log;

	kudp_execute(request_buf, size, &reply);
	bound_reflection(from, size, &reply);
	/* Only the greeting is logged at info level, and not always. */
	log = reply.greeting && log_greeting();
	if (log)
		pr_info("received " KUDP_HELLO " from %pI4:%u\n",
			&from->sin_addr, ntohs(from->sin_port));
	else
		pr_debug("%zu-byte request from %pI4:%u: status %d\n", size,
			 &from->sin_addr, ntohs(from->sin_port), reply.status);
	if (kudp_durable && reply.seq)
		park_reply(from, &reply);
	else
		send_reply(from, reply.buf, reply.size);
	if (log)
		pr_info("sent " KUDP_GOT_IT " to %pI4:%u\n",
			&from->sin_addr, ntohs(from->sin_port));
}

/* Set by module_exit's kernel_sock_shutdown(): time to stop serving. */
static bool shutting_down(void)
{
	return READ_ONCE(sock->sk->sk_shutdown) & RCV_SHUTDOWN;
}

/**
 * server_thread() - receive one datagram at a time and answer it
 * @data: unused
 *
 * The receive blocks until a datagram arrives or module_exit shuts the
 * socket down; the shutdown wakes it, and it then returns at once, so the
 * loop needs no timeout to notice the unload.
 *
 * Return: 0, to kthread_stop().
 */
static int server_thread(void *data)
{
	struct mem_cgroup *old_memcg = kudp_memcg_enter();
	struct sockaddr_in from;
	struct kvec iov;
	struct msghdr msg;
	int ret;

	while (!kthread_should_stop()) {
		memset(&msg, 0, sizeof(msg));
		msg.msg_name = &from;
		msg.msg_namelen = sizeof(from);
		/*
		 * Room for one byte more than len, and MSG_TRUNC so that the
		 * result is the datagram's full length: either way a datagram
		 * longer than len shows up as ret > len.
		 */
		iov.iov_base = request_buf;
		iov.iov_len = kudp_len + 1;
		ret = kernel_recvmsg(sock, &msg, &iov, 1, kudp_len + 1,
				     MSG_TRUNC);
		if (shutting_down())
			break;
		if (ret < 0) {
			if (ret != -EAGAIN && ret != -EINTR)
				pr_warn_ratelimited("receive failed: error %d\n", ret);
			continue;
		}
		if (msg.msg_flags & MSG_TRUNC)
			ret = max_t(int, ret, kudp_len + 1);
		serve(&from, ret);
		/* A flood must not starve the rest of this CPU. */
		cond_resched();
	}

	kudp_memcg_leave(old_memcg);
	kudp_idle_until_stopped();
	return 0;
}

/* The address to listen on, from the bind and port parameters. */
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
	listen_addr.sin_port = htons(port);
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
 * open_socket() - create the UDP socket and bind it to listen_addr
 *
 * Binding here rather than in the thread is what makes a busy port fail
 * insmod itself, with the reason in the kernel log.
 *
 * Return: 0, or the error of sock_create_kern() or kernel_bind().
 */
static int open_socket(void)
{
	int ret;

	ret = sock_create_kern(&init_net, AF_INET, SOCK_DGRAM, IPPROTO_UDP,
			       &sock);
	if (ret) {
		pr_err("cannot create a UDP socket: error %d\n", ret);
		return ret;
	}
	ret = kernel_bind(sock, (struct sockaddr *)&listen_addr,
			  sizeof(listen_addr));
	if (ret) {
		pr_err("cannot bind %pI4:%u: error %d%s\n",
		       &listen_addr.sin_addr, port, ret, bind_error_reason(ret));
		sock_release(sock);
		return ret;
	}
	return 0;
}

static int __init udp_server_init(void)
{
	int ret;

	ret = parse_bind();
	if (ret)
		return ret;
	ratelimit_set_flags(&packet_log, RATELIMIT_MSG_ON_RELEASE);

	kudp_memcg = get_mem_cgroup_from_mm(current->mm);

	/* Up to 64 KiB each: kvmalloc() does not need contiguous pages. */
	request_buf = kvmalloc(kudp_len + 1, GFP_KERNEL_ACCOUNT);
	reply_buf = kvmalloc(kudp_len + 1, GFP_KERNEL_ACCOUNT);
	if (!request_buf || !reply_buf) {
		ret = -ENOMEM;
		goto out_free_buffers;
	}
	ret = kv_init();
	if (ret)
		goto out_free_buffers;
	ret = open_socket();
	if (ret)
		goto out_destroy_table;
	ret = kudp_proc_init();
	if (ret)
		goto out_release_sock;

	thread = kthread_run(server_thread, NULL, KBUILD_MODNAME);
	if (IS_ERR(thread)) {
		ret = PTR_ERR(thread);
		pr_err("cannot start the server thread: error %d\n", ret);
		goto out_remove_proc;
	}
	pr_info("listening on %pI4:%u (len %u)\n", &listen_addr.sin_addr,
		port, kudp_len);
	return 0;

out_remove_proc:
	kudp_proc_exit();
out_release_sock:
	sock_release(sock);
out_destroy_table:
	kv_destroy();
out_free_buffers:
	kvfree(reply_buf);
	kvfree(request_buf);
	mem_cgroup_put(kudp_memcg);
	return ret;
}

/*
 * The reverse of init, starting with what lets work in: the shutdown makes
 * the thread's receive return at once, so kthread_stop() does not wait for
 * a datagram. The /proc files go next (remove_proc_entry() waits for readers
 * and writers inside them, and kudp_journal_exit() wakes those that wait),
 * then the socket, and only then, with nobody left to reach it, the table.
 */
static void __exit udp_server_exit(void)
{
	ktime_t start = ktime_get();

	kernel_sock_shutdown(sock, SHUT_RDWR);
	kthread_stop(thread);
	if (packet_log_missed)
		pr_info("%u greetings not logged (rate limit)\n",
			packet_log_missed);
	/* The daemon may send parked replies until its /proc files are gone. */
	kudp_proc_exit();
	drop_parked_replies();
	sock_release(sock);
	kv_destroy();
	kvfree(reply_buf);
	kvfree(request_buf);
	mem_cgroup_put(kudp_memcg);
	/* Unload must stay prompt under any load: say how long it took. */
	pr_info("stopped in %lld us\n", ktime_us_delta(ktime_get(), start));
}

module_init(udp_server_init);
module_exit(udp_server_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Key-value store served over UDP from a kernel thread");
MODULE_AUTHOR("kernel-udp");
