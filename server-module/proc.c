// SPDX-License-Identifier: GPL-2.0
/*
 * The files of udp_server in /proc, one of its two entry points (beside the
 * transport, transport.h).
 *
 *   /proc/ht         0600  write: run one text command, like a datagram;
 *                          read: the history of changing commands
 *   /proc/hashtable  0400  read: the whole table, "KEY VALUE" per line
 *   /proc/kvsnapshot 0400  read: the same, without the entries that have
 *                          an expiry time: what the backup keeps
 *   /proc/daemonpid  0600  the backup daemon registers itself here, then
 *                          follows the changes in /proc/kvjournal (which
 *                          journal.c keeps, with /proc/kvrestore)
 *
 * Only root can open them, and /proc/hashtable only to read.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "procfs.h"
#include "protocol.h"

static int ht_open(struct inode *inode, struct file *file)
{
	return seq_open(file, &kudp_history_seq_ops);
}

/**
 * ht_write() - run one command written to /proc/ht
 * @file: unused
 * @ubuf: the command, exactly as it would arrive in a datagram
 * @count: its length; more than len is refused whole, unread
 * @ppos: unused: every write is a command of its own
 *
 * Return: @count for OK or GOT IT; otherwise the errno PROTOCOL.md lists for
 * the reply the command got (-ENOENT for NOT FOUND, -ENOSPC for ERR full,
 * -EMSGSIZE for ERR too long, ...).
 */
static ssize_t ht_write(struct file *file, const char __user *ubuf,
			size_t count, loff_t *ppos)
{
	struct kudp_reply reply = {};
	struct mem_cgroup *memcg;
	char *req = NULL;
	ssize_t ret;

	memcg = kudp_memcg_enter();
	reply.buf = kvmalloc(kudp_len + 1, KUDP_GFP);
	if (!reply.buf) {
		ret = -ENOMEM;
		goto out;
	}
	if (count <= kudp_len) {
		req = kvmalloc(max_t(size_t, count, 1), KUDP_GFP);
		if (!req) {
			ret = -ENOMEM;
			goto out;
		}
		if (copy_from_user(req, ubuf, count)) {
			ret = -EFAULT;
			goto out;
		}
	}
	kudp_text_execute(req, count, &reply);
	ret = reply.status ? reply.status : count;
	/* durable=1: the write returns once the change is on disk. */
	if (!reply.status && reply.seq && kudp_durable)
		ret = kudp_journal_wait(reply.seq) ?: count;
out:
	kvfree(req);
	kvfree(reply.buf);
	kudp_memcg_leave(memcg);
	return ret;
}

static const struct proc_ops ht_ops = {
	.proc_open = ht_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = seq_release,
	.proc_write = ht_write,
};

static int hashtable_open(struct inode *inode, struct file *file)
{
	return kudp_kv_seq_open(file, false);
}

static const struct proc_ops hashtable_ops = {
	.proc_open = hashtable_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = kudp_kv_seq_release,
};

static int kvsnapshot_open(struct inode *inode, struct file *file)
{
	return kudp_kv_seq_open(file, true);
}

static const struct proc_ops kvsnapshot_ops = {
	.proc_open = kvsnapshot_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = kudp_kv_seq_release,
};

static int daemonpid_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%d\n", kudp_daemon_shown());
	return 0;
}

static int daemonpid_open(struct inode *inode, struct file *file)
{
	return single_open(file, daemonpid_show, NULL);
}

/**
 * daemonpid_write() - register the backup daemon, or unregister it
 * @file: unused
 * @ubuf: a decimal PID, as seen from the writer's PID namespace; 0
 *        unregisters
 * @count: its length
 * @ppos: unused
 *
 * The file is root's alone (0600).
 *
 * Return: @count; -EINVAL or -ERANGE for text that is not a PID, -ESRCH for
 * a PID no process has.
 */
static ssize_t daemonpid_write(struct file *file, const char __user *ubuf,
			       size_t count, loff_t *ppos)
{
	int nr, ret;

	ret = kstrtoint_from_user(ubuf, count, 10, &nr);
	if (ret)
		return ret;
	if (nr < 0)
		return -EINVAL;
	ret = kudp_daemon_register(nr);
	return ret ? ret : count;
}

static const struct proc_ops daemonpid_ops = {
	.proc_open = daemonpid_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
	.proc_write = daemonpid_write,
};

int kudp_proc_init(void)
{
	if (!proc_create("ht", 0600, NULL, &ht_ops))
		goto out_exists;
	if (!proc_create("hashtable", 0400, NULL, &hashtable_ops))
		goto out_remove_ht;
	if (!proc_create("kvsnapshot", 0400, NULL, &kvsnapshot_ops))
		goto out_remove_hashtable;
	if (!proc_create("daemonpid", 0600, NULL, &daemonpid_ops))
		goto out_remove_kvsnapshot;
	return 0;

out_remove_kvsnapshot:
	remove_proc_entry("kvsnapshot", NULL);
out_remove_hashtable:
	remove_proc_entry("hashtable", NULL);
out_remove_ht:
	remove_proc_entry("ht", NULL);
out_exists:
	pr_err("cannot create the /proc files (another udp_server loaded?)\\n");
	return -EEXIST;
}

/*
 * remove_proc_entry() waits for readers and writers that are inside. The
 * caller has let the daemon save the last changes and woken the writers
 * still waiting for the disk (journal.c), so that nobody waits for ever.
 */
void kudp_proc_exit(void)
{
	remove_proc_entry("ht", NULL);
	remove_proc_entry("daemonpid", NULL);
	remove_proc_entry("kvsnapshot", NULL);
	remove_proc_entry("hashtable", NULL);
}
