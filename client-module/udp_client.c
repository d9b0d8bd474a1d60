// SPDX-License-Identifier: GPL-2.0
/*
 * A kernel UDP client that says HELLO.
 *
 * On load it creates a UDP socket connected to destip:port and starts a
 * kthread. The kthread sends "HELLO" and waits up to timeout_ms for the
 * server's "GOT IT"; when nothing comes (or the port turns out to be closed)
 * it tries again, up to `retries` more times. It logs the outcome, then idles
 * until the module is unloaded.
 *
 * Unloading is prompt at any moment: module_exit shuts the socket down first,
 * which wakes a receive that is waiting, and kthread_stop() wakes the thread
 * from its other sleeps.
 *
 * The wire format is in include/kudp_protocol.h and PROTOCOL.md.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/err.h>
#include <linux/in.h>
#include <linux/inet.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/string.h>
#include <linux/uio.h>
#include <net/net_namespace.h>
#include <net/sock.h>

#include "kudp_kthread.h"
#include "kudp_params.h"
#include "kudp_protocol.h"

/* Only this module's own knobs; the wire values come from kudp_protocol.h. */
#define TIMEOUT_MS_MIN		10
#define TIMEOUT_MS_MAX		60000
#define TIMEOUT_MS_DEFAULT	1000
#define RETRIES_MAX		100
#define RETRIES_DEFAULT		3

/*
 * An unexpected reply is logged, but at most this many bytes of it: a reply
 * may be 64 KiB, escaping can make each byte four, and one printk record
 * holds about 1 KiB.
 */
#define REPLY_SHOWN_MAX		64

/* Checked in udp_client_init(), where a bad address can be named in the log. */
static char *destip = "127.0.0.1";
module_param(destip, charp, 0444);
MODULE_PARM_DESC(destip, "Server to say HELLO to (IPv4 address, default 127.0.0.1)");

static unsigned int port = KUDP_DEFAULT_PORT;
KUDP_PARAM_UINT_RANGE(port, 1, 65535);
MODULE_PARM_DESC(port, "Server UDP port "
		 KUDP_RANGE(1, 65535, KUDP_DEFAULT_PORT));

static unsigned int len = KUDP_DEFAULT_LEN;
KUDP_PARAM_UINT_RANGE(len, KUDP_MIN_LEN, KUDP_MAX_LEN);
MODULE_PARM_DESC(len, "Largest reply accepted, in bytes "
		 KUDP_RANGE(KUDP_MIN_LEN, KUDP_MAX_LEN, KUDP_DEFAULT_LEN));

static unsigned int timeout_ms = TIMEOUT_MS_DEFAULT;
KUDP_PARAM_UINT_RANGE(timeout_ms, TIMEOUT_MS_MIN, TIMEOUT_MS_MAX);
MODULE_PARM_DESC(timeout_ms, "How long to wait for each reply, in ms "
		 KUDP_RANGE(TIMEOUT_MS_MIN, TIMEOUT_MS_MAX, TIMEOUT_MS_DEFAULT));

static unsigned int retries = RETRIES_DEFAULT;
KUDP_PARAM_UINT_RANGE(retries, 0, RETRIES_MAX);
MODULE_PARM_DESC(retries, "Tries after the first when no reply comes "
		 KUDP_RANGE(0, RETRIES_MAX, RETRIES_DEFAULT));

static struct socket *sock;
static struct task_struct *thread;
static struct sockaddr_in server;
/* len + 1 bytes: a reply of exactly len bytes still gets its NUL. */
static char *buf;

/* How one try ended. */
enum try_result {
	TRY_ANSWERED,	/* a reply came, whatever it said: stop trying */
	TRY_TIMED_OUT,	/* nothing within timeout_ms: try again */
	TRY_REFUSED,	/* ICMP port unreachable: try again, like a timeout */
	TRY_FAILED,	/* a local error that another try will not fix */
	TRY_UNLOADING,	/* module_exit is running: leave at once */
};

/*
 * module_exit shuts the socket down before it calls kthread_stop(), so a
 * receive or send can fail because of the unload while kthread_should_stop()
 * is still false. Checking both keeps such failures out of the log.
 */
static bool unloading(void)
{
	return kthread_should_stop() ||
	       (READ_ONCE(sock->sk->sk_shutdown) & RCV_SHUTDOWN);
}

/*
 * Sleeps until @deadline (in jiffies) unless kthread_stop() wakes us first.
 * The state is set before the check so that a stop between the two is not
 * missed. jiffies is read once: a tick between two reads could make the
 * timeout negative, which schedule_timeout() refuses with a stack dump.
 */
static void sleep_until(unsigned long deadline)
{
	long left;

	set_current_state(TASK_INTERRUPTIBLE);
	left = (long)(deadline - jiffies);
	if (!kthread_should_stop() && left > 0)
		schedule_timeout(left);
	__set_current_state(TASK_RUNNING);
}

static int send_hello(void)
{
	struct kvec iov = {
		.iov_base = KUDP_HELLO,
		.iov_len = sizeof(KUDP_HELLO) - 1,
	};
	struct msghdr msg = {};

	return kernel_sendmsg(sock, &msg, &iov, 1, iov.iov_len);
}

/**
 * receive_reply() - wait up to timeout_ms for one datagram from the server
 *
 * The socket is connected, so the kernel drops datagrams from anyone else.
 * MSG_TRUNC makes the return value the datagram's real size even when only
 * len bytes of it fit in buf.
 *
 * Return: the datagram's size (up to len bytes of it are in buf, followed by
 * a NUL), 0 also when the socket was shut down, -EAGAIN on timeout, or a
 * negative errno such as -ECONNREFUSED when the server's port is closed.
 */
static int receive_reply(void)
{
	struct kvec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = {};
	int ret;

	ret = kernel_recvmsg(sock, &msg, &iov, 1, len, MSG_TRUNC);
	if (ret >= 0)
		buf[min_t(unsigned int, ret, len)] = '\0';
	return ret;
}

/* Is this reply "GOT IT", with or without the protocol's final newline? */
static bool is_got_it(const char *reply, int size)
{
	const int want = sizeof(KUDP_GOT_IT) - 1;

	if (size == want + 1 && reply[want] == '\n')
		size--;
	return size == want && !memcmp(reply, KUDP_GOT_IT, want);
}

/**
 * log_reply() - say what the server answered
 * @size: the reply's real size, which may be more than the len bytes in buf
 *
 * Anything but GOT IT comes from a misbehaving or foreign server, so it is
 * logged ratelimited, cut short and with non-printable bytes escaped: it
 * must not be able to flood the log or forge log lines of its own.
 */
static void log_reply(int size)
{
	int shown = min_t(int, size, min_t(unsigned int, len, REPLY_SHOWN_MAX));

	if ((unsigned int)size <= len && is_got_it(buf, size)) {
		pr_info("got GOT IT from %pI4:%u\n", &server.sin_addr, port);
		return;
	}
	pr_warn_ratelimited("unexpected %d-byte reply from %pI4:%u: \"%*pE\"%s\n",
			    size, &server.sin_addr, port, shown, buf,
			    shown < size ? "..." : "");
}

/**
 * try_hello() - send HELLO once and wait for the answer
 * @attempt: 1 for the first try
 * @tries: how many tries there are in all
 *
 * A refusal arrives at once, so after one the rest of the try's timeout_ms
 * is slept off: a closed port is retried at the same pace as a silent one.
 *
 * Return: how the try ended.
 */
static enum try_result try_hello(unsigned int attempt, unsigned int tries)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(timeout_ms);
	int ret;

	ret = send_hello();
	/* A late ICMP error from the previous try can fail the send instead. */
	if (ret == -ECONNREFUSED)
		goto refused;
	if (ret < 0) {
		if (unloading())
			return TRY_UNLOADING;
		pr_err("cannot send HELLO to %pI4:%u: error %d\n",
		       &server.sin_addr, port, ret);
		return TRY_FAILED;
	}
	if (attempt == 1)
		pr_info("sent HELLO to %pI4:%u\n", &server.sin_addr, port);

	ret = receive_reply();
	if (ret >= 0 && unloading())
		return TRY_UNLOADING;
	if (ret == -EAGAIN) {
		pr_info_ratelimited("try %u of %u: no answer within %u ms\n",
				    attempt, tries, timeout_ms);
		return TRY_TIMED_OUT;
	}
	if (ret == -ECONNREFUSED)
		goto refused;
	if (ret < 0) {
		if (unloading())
			return TRY_UNLOADING;
		pr_err("cannot receive from %pI4:%u: error %d\n",
		       &server.sin_addr, port, ret);
		return TRY_FAILED;
	}
	log_reply(ret);
	return TRY_ANSWERED;

refused:
	pr_info_ratelimited("try %u of %u: %pI4:%u refused HELLO (ICMP port unreachable)\n",
			    attempt, tries, &server.sin_addr, port);
	if (attempt < tries)
		sleep_until(deadline);
	return TRY_REFUSED;
}

/**
 * client_thread() - say HELLO, retrying, then wait to be stopped
 * @data: unused
 *
 * Return: 0, once kthread_stop() has been called. Returning any earlier
 * would free the task under module_exit's kthread_stop().
 */
static int client_thread(void *data)
{
	const unsigned int tries = retries + 1;
	enum try_result result = TRY_TIMED_OUT;
	unsigned int attempt;

	for (attempt = 1; attempt <= tries; attempt++) {
		if (kthread_should_stop())
			return 0;
		result = try_hello(attempt, tries);
		if (result != TRY_TIMED_OUT && result != TRY_REFUSED)
			break;
	}
	if (result == TRY_TIMED_OUT || result == TRY_REFUSED)
		pr_info("no reply from %pI4:%u after %u %s\n", &server.sin_addr,
			port, tries, tries == 1 ? "try" : "tries");

	kudp_idle_until_stopped();
	return 0;
}

/**
 * parse_destip() - fill in the server's address from destip and port
 *
 * in4_pton() stops at the first byte that cannot continue an address, so
 * the end it reports must be the end of the string: "1.2.3.4x" and
 * "1.2.3.4:80" are refused rather than read as 1.2.3.4.
 *
 * Return: 0, or -EINVAL when destip is not a dotted-quad IPv4 address.
 */
static int parse_destip(void)
{
	const char *end;

	memset(&server, 0, sizeof(server));
	server.sin_family = AF_INET;
	server.sin_port = htons(port);
	if (!destip || !in4_pton(destip, -1, (u8 *)&server.sin_addr.s_addr,
				 '\0', &end) || *end) {
		pr_err("destip must be an IPv4 address such as 127.0.0.1, not \"%s\"\n",
		       destip ? destip : "");
		return -EINVAL;
	}
	return 0;
}

/**
 * udp_client_init() - check the parameters, connect and start the thread
 *
 * Return: 0, or a negative errno that makes insmod fail with nothing left
 * behind.
 */
static int __init udp_client_init(void)
{
	int ret;

	ret = parse_destip();
	if (ret)
		return ret;

	ret = sock_create_kern(&init_net, AF_INET, SOCK_DGRAM, IPPROTO_UDP,
			       &sock);
	if (ret) {
		pr_err("cannot create a UDP socket: error %d\n", ret);
		return ret;
	}
	/* No other user of the socket yet, so a plain store is enough. */
	sock->sk->sk_rcvtimeo = msecs_to_jiffies(timeout_ms);

	/*
	 * Connected, the socket receives only the server's datagrams, and an
	 * ICMP port unreachable for our HELLO surfaces as -ECONNREFUSED.
	 */
	ret = kernel_connect(sock, (struct sockaddr *)&server, sizeof(server), 0);
	if (ret) {
		pr_err("cannot connect to %pI4:%u: error %d\n",
		       &server.sin_addr, port, ret);
		goto out_release_sock;
	}

	buf = kmalloc(len + 1, GFP_KERNEL);
	if (!buf) {
		ret = -ENOMEM;
		goto out_release_sock;
	}

	thread = kthread_run(client_thread, NULL, KBUILD_MODNAME);
	if (IS_ERR(thread)) {
		ret = PTR_ERR(thread);
		pr_err("cannot start the client thread: error %d\n", ret);
		goto out_free_buf;
	}
	return 0;

out_free_buf:
	kfree(buf);
out_release_sock:
	sock_release(sock);
	return ret;
}

/**
 * udp_client_exit() - stop the thread and free everything
 *
 * The shutdown comes first: it wakes a receive that may otherwise wait for
 * up to timeout_ms, and kthread_stop() waits for the thread to return.
 */
static void __exit udp_client_exit(void)
{
	ktime_t start = ktime_get();

	kernel_sock_shutdown(sock, SHUT_RDWR);
	kthread_stop(thread);
	sock_release(sock);
	kfree(buf);
	/* Unload must stay prompt whatever the thread was doing: say so. */
	pr_info("stopped in %lld us\n", ktime_us_delta(ktime_get(), start));
}

module_init(udp_client_init);
module_exit(udp_client_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("UDP client that says HELLO to udp_server");
MODULE_AUTHOR("kernel-udp");
