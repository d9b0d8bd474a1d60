// SPDX-License-Identifier: GPL-2.0
/*
 * udp_server - a key-value store served over UDP from kernel threads.
 *
 * The module: its parameters, and the order in which the layers start and
 * stop. From the top down (each layer calls only the ones below it, each
 * has one header):
 *
 *   (this file)                     parameters, init and exit
 *   transport.h  socket.c, fastpath.c, ratelimit.c
 *                                   datagrams in, replies out (an entry point)
 *   procfs.h     proc.c             the /proc files (the other entry point)
 *   protocol.h   text.c, memcache.c the two protocols: parse, answer
 *   request.h    request.c          the executor: one request value, run
 *   store.h      kv.c, history.c, journal.c
 *                                   the table, the history, the journal
 *
 * The path of one request: a kthread of socket.c receives a datagram,
 * text.c parses it into a struct kudp_request, request.c runs it against
 * kv.c (and history.c and journal.c for a change), text.c writes the reply
 * line, socket.c sends it (or parks it until the change is on disk).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/inet.h>
#include <linux/ktime.h>
#include <linux/module.h>

#include "kudp_params.h"
#include "kudp_protocol.h"
#include "procfs.h"
#include "transport.h"

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
 * Off by default, as memcached's UDP port is since 1.5.6: its protocol lets
 * a short request draw a long reply. Ours bounds that for senders off this
 * host (PROTOCOL.md, "Reflection"), but a port nobody asked for stays shut.
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
MODULE_PARM_DESC(softirq, "Answer requests (both protocols) in the receive softirq; durable=1 changes still go to the threads (default off)");

/* devhook.c: requests served in a device's receive path, before IP and UDP. */
static char *rx_dev = "";
module_param(rx_dev, charp, 0444);
MODULE_PARM_DESC(rx_dev, "Serve requests in this Ethernet device's receive handler, before the IP and UDP layers and iptables (needs softirq=1; default none)");

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

static int __init udp_server_init(void)
{
	struct kudp_listen listen = {
		.port = port,
		.memcached_port = memcached_port,
		.threads = threads,
		.softirq = softirq,
	};
	int ret;

	ret = parse_bind();
	if (ret)
		return ret;
	if (memcached_port && memcached_port == port) {
		pr_err("memcached_port=%u is the text protocol's port too\n",
		       memcached_port);
		return -EINVAL;
	}
	if (rx_dev && *rx_dev && !softirq) {
		pr_err("rx_dev=%s needs softirq=1\n", rx_dev);
		return -EINVAL;
	}
	listen.addr = listen_addr;
	kudp_text_init();
	kudp_limit_init();

	ret = kudp_kv_init();
	if (ret)
		return ret;
	ret = kudp_history_init();
	if (ret)
		goto out_destroy_table;
	ret = kudp_journal_init();
	if (ret)
		goto out_history_exit;
	ret = kudp_restore_init();
	if (ret)
		goto out_journal_exit;
	ret = kudp_proc_init();
	if (ret)
		goto out_restore_exit;
	ret = kudp_socket_start(&listen);
	if (ret)
		goto out_proc_exit;
	if (rx_dev && *rx_dev) {
		ret = kudp_dev_attach(rx_dev);
		if (ret)
			goto out_socket_stop;
	}

	pr_info("listening on %pI4:%u (len %u)\n", &listen_addr.sin_addr,
		port, kudp_len);
	if (memcached_port)
		pr_info("memcached protocol on %pI4:%u\n",
			&listen_addr.sin_addr, memcached_port);
	pr_debug("%s\n", softirq ? "reads answered in softirq" : "threads only");
	return 0;

out_socket_stop:
	kudp_socket_stop();
	kudp_socket_free();
out_proc_exit:
	kudp_proc_exit();
out_restore_exit:
	kudp_restore_exit();
out_journal_exit:
	kudp_journal_exit();
out_history_exit:
	kudp_history_exit();
out_destroy_table:
	kudp_kv_destroy();
	return ret;
}

/*
 * The reverse of init, starting with what lets work in: the transport stops
 * receiving (kudp_socket_stop()). A registered backup daemon then saves the
 * last changes (at most KUDP_DRAIN_TIMEOUT, journal.c), the /proc/ht writers
 * still waiting for the disk are woken, and the /proc files go:
 * remove_proc_entry() waits for whoever is inside one, so nobody is. Then
 * the sockets (the daemon released parked replies through them until its
 * files went), the history, and only then, with nobody left to reach it,
 * the table.
 */
static void __exit udp_server_exit(void)
{
	ktime_t start = ktime_get();

	if (rx_dev && *rx_dev)
		kudp_dev_detach();
	kudp_socket_stop();
	kudp_text_exit();
	kudp_journal_drain();
	kudp_journal_close_writers();
	kudp_proc_exit();
	kudp_restore_exit();
	kudp_journal_exit();
	kudp_socket_free();
	kudp_history_exit();
	kudp_kv_destroy();
	/* Unload must stay prompt under any load: say how long it took. */
	pr_info("stopped in %lld us\n", ktime_us_delta(ktime_get(), start));
}

module_init(udp_server_init);
module_exit(udp_server_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Key-value store served over UDP from kernel threads");
MODULE_AUTHOR("kernel-udp");
