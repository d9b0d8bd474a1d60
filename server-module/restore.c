// SPDX-License-Identifier: GPL-2.0
/*
 * Putting a backup back: the backup daemon, kvd, writes its copy of the
 * table to
 *
 *   /proc/kvrestore  0200  write: "KEY VALUE" lines, put back into the table
 *
 * Restoring is not a stream of commands: the lines are inserted (keys and
 * values as in the protocol, whatever len is now) without history, journal
 * or len, and the write reports how far it got, so that the daemon can keep
 * aside a line the table's limits refuse.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/spinlock.h>
#include <linux/proc_fs.h>
#include <linux/sizes.h>
#include <linux/string.h>

#include "kudp_protocol.h"
#include "store.h"

/* The largest /proc/kvrestore write taken at once. */
#define KUDP_RESTORE_MAX	SZ_1M

/*
 * One "KEY VALUE" line (no line end): a key of 1..KUDP_MAX_KEY bytes without
 * spaces, one space, then a value of 1..KUDP_MAX_VALUE bytes; neither holds
 * "\r" or NUL (memcache.c's rule: entries stored there come back too).
 */
static int restore_line(const char *p, size_t n)
{
	const char *space = memchr(p, ' ', n);
	struct kudp_entry *entry;
	spinlock_t *lock;	/* the key's stripe (kv.c) */
	size_t klen;
	int ret;

	if (!space || memchr(p, '\r', n) || memchr(p, '\0', n))
		return -EINVAL;
	klen = space - p;
	if (!klen || klen > KUDP_MAX_KEY || n - klen - 1 < 1 ||
	    n - klen - 1 > KUDP_MAX_VALUE)
		return -EINVAL;
	entry = kudp_kv_entry_new(p, klen, space + 1, n - klen - 1, NULL);
	if (!entry)
		return -ENOMEM;
	lock = kudp_kv_key_lock(p, klen);
	spin_lock_bh(lock);
	ret = kudp_kv_store(entry, KUDP_SET, 0);
	spin_unlock_bh(lock);
	return ret;
}

/**
 * restore_write() - put "KEY VALUE\n" lines back into the table
 * @file: unused
 * @ubuf: whole lines, each ending in "\n"
 * @count: their length
 * @ppos: unused
 *
 * Return: the bytes of the lines put back, up to the first that could not
 * be (the next write starts there); for that first line itself, the reason:
 * -EINVAL (not a valid KEY VALUE line), -ENOSPC (max_entries or max_bytes),
 * -EBUSY or -ENOMEM.
 */
static ssize_t restore_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	struct mem_cgroup *memcg;
	size_t done = 0;
	char *buf, *end;
	int ret = 0;

	count = min_t(size_t, count, KUDP_RESTORE_MAX);
	buf = vmemdup_user(ubuf, count);
	if (IS_ERR(buf))
		return PTR_ERR(buf);
	memcg = kudp_memcg_enter();
	while (done < count) {
		end = memchr(buf + done, '\n', count - done);
		if (!end) {
			ret = done ? 0 : -EINVAL;
			break;
		}
		ret = restore_line(buf + done, end - (buf + done));
		if (ret)
			break;
		done = end - buf + 1;
	}
	kudp_memcg_leave(memcg);
	kvfree(buf);
	return done ? done : ret;
}

static const struct proc_ops restore_ops = {
	.proc_write = restore_write,
	.proc_lseek = noop_llseek,
};

int kudp_restore_init(void)
{
	if (!proc_create("kvrestore", 0200, NULL, &restore_ops)) {
		pr_err("cannot create /proc/kvrestore (another udp_server loaded?)\n");
		return -EEXIST;
	}
	return 0;
}

void kudp_restore_exit(void)
{
	remove_proc_entry("kvrestore", NULL);
}
