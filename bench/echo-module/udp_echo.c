// SPDX-License-Identifier: GPL-2.0
/*
 * udp_echo: a bare in-kernel UDP echo, the ceiling of the benchmark
 * (bench/kv-bench.ts). It receives and sends exactly as udp_server does:
 * one kernel thread per socket, a blocking kernel_recvmsg(), a
 * kernel_sendmsg() back to the sender with MSG_DONTWAIT, several sockets on
 * one port with SO_REUSEPORT; it only skips the work of parsing the request
 * and looking in a table. What udp_server costs above this is its own.
 *
 *   insmod udp_echo.ko port=3400 threads=2 [bind=10.0.9.2]
 *
 * It answers anyone who can reach it with as many bytes as they sent (no
 * amplification, but no other bound either), so it binds to 127.0.0.1
 * unless told otherwise: the bench gives it a lab guest's address on the
 * labs' private network for the rows whose generator is in another lab.
 * Bench only: it is never installed.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/inet.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/in.h>
#include <net/sock.h>

#include "kudp_kthread.h"

#define ECHO_MAX_THREADS 64
#define ECHO_MAX_DATAGRAM 2048

static ushort port = 3400;
module_param(port, ushort, 0444);
MODULE_PARM_DESC(port, "UDP port (default 3400)");

static char *bind_addr = "127.0.0.1";
module_param_named(bind, bind_addr, charp, 0444);
MODULE_PARM_DESC(bind, "IPv4 address to listen on (default 127.0.0.1)");

static uint threads;
module_param(threads, uint, 0444);
MODULE_PARM_DESC(threads, "sockets and threads on the port (default 0: one per online CPU)");

struct echo_worker {
	struct socket *sock;
	struct task_struct *thread;
	u8 buf[ECHO_MAX_DATAGRAM];
};

static struct echo_worker *workers;
static unsigned int nr_workers;

static int echo_thread(void *data)
{
	struct echo_worker *w = data;
	struct sockaddr_in from;
	struct msghdr msg;
	struct kvec iov;
	int ret;

	while (!kthread_should_stop()) {
		memset(&msg, 0, sizeof(msg));
		msg.msg_name = &from;
		msg.msg_namelen = sizeof(from);
		iov.iov_base = w->buf;
		iov.iov_len = sizeof(w->buf);
		ret = kernel_recvmsg(w->sock, &msg, &iov, 1, sizeof(w->buf), 0);
		if (READ_ONCE(w->sock->sk->sk_shutdown) & RCV_SHUTDOWN)
			break;
		if (ret < 0)
			continue;
		memset(&msg, 0, sizeof(msg));
		msg.msg_name = &from;
		msg.msg_namelen = sizeof(from);
		msg.msg_flags = MSG_DONTWAIT;
		iov.iov_base = w->buf;
		iov.iov_len = ret;
		kernel_sendmsg(w->sock, &msg, &iov, 1, ret);
		cond_resched();
	}
	kudp_idle_until_stopped();
	return 0;
}

static struct sockaddr_in listen_addr;

static int open_socket(struct echo_worker *w)
{
	struct sockaddr_in addr = listen_addr;
	int ret;

	ret = sock_create_kern(&init_net, AF_INET, SOCK_DGRAM, IPPROTO_UDP,
			       &w->sock);
	if (ret)
		return ret;
	sock_set_reuseport(w->sock->sk);
	ret = kernel_bind(w->sock, (struct sockaddr *)&addr, sizeof(addr));
	if (ret) {
		sock_release(w->sock);
		w->sock = NULL;
	}
	return ret;
}

/* Shuts every socket first (each wakes its thread at once), then stops the threads. */
static void stop_workers(void)
{
	unsigned int i;

	for (i = 0; i < nr_workers; i++)
		kernel_sock_shutdown(workers[i].sock, SHUT_RDWR);
	for (i = 0; i < nr_workers; i++) {
		kthread_stop(workers[i].thread);
		sock_release(workers[i].sock);
	}
	kvfree(workers);
}

static int __init udp_echo_init(void)
{
	unsigned int n = min_t(unsigned int, threads ?: num_online_cpus(),
			       ECHO_MAX_THREADS);
	int ret;

	listen_addr.sin_family = AF_INET;
	listen_addr.sin_port = htons(port);
	if (!bind_addr ||
	    !in4_pton(bind_addr, -1, (u8 *)&listen_addr.sin_addr.s_addr, '\0',
		      NULL)) {
		pr_err("bind=\"%s\" is not an IPv4 address\n", bind_addr ?: "");
		return -EINVAL;
	}
	workers = kvcalloc(n, sizeof(*workers), GFP_KERNEL);
	if (!workers)
		return -ENOMEM;
	for (nr_workers = 0; nr_workers < n; nr_workers++) {
		struct echo_worker *w = &workers[nr_workers];

		ret = open_socket(w);
		if (ret) {
			pr_err("cannot bind %pI4:%u: error %d\n", &listen_addr.sin_addr, port, ret);
			goto fail;
		}
		w->thread = kthread_run(echo_thread, w, "udp_echo/%u",
					nr_workers);
		if (IS_ERR(w->thread)) {
			ret = PTR_ERR(w->thread);
			sock_release(w->sock);
			goto fail;
		}
	}
	pr_info("echoing on %pI4:%u with %u threads\n", &listen_addr.sin_addr, port, n);
	return 0;

fail:
	stop_workers();
	return ret;
}

static void __exit udp_echo_exit(void)
{
	stop_workers();
	pr_info("stopped\n");
}

module_init(udp_echo_init);
module_exit(udp_echo_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Bare UDP echo from kernel threads: the benchmark's ceiling");
MODULE_AUTHOR("kernel-udp");
