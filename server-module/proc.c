// SPDX-License-Identifier: GPL-2.0
/*
 * The files of udp_server in /proc.
 *
 *   /proc/ht         0600  write: run one command, like a datagram;
 *                          read: the history of changing commands
 *   /proc/hashtable  0400  read: the whole table, "KEY VALUE" per line
 *   /proc/kvsnapshot 0400  read: the same, without the entries that have
 *                          an expiry time: what the backup keeps
 *   /proc/daemonpid  0600  the backup daemon registers itself here, then
 *                          follows the changes in /proc/kvjournal (journal.c)
 *
 * Only root can open them, and /proc/hashtable only to read.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/pid.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "kudp_protocol.h"
#include "udp_server.h"

/* One line of the history, and the bytes it is charged against max_bytes. */
struct kudp_line {
	size_t cost;
	char text[];
};

/*
 * The history: a ring of the last `history` changing commands. Line number
 * n (counting from 0 since load) lives in ring[n % history]. ring_lock
 * guards the ring, so a reader never sees a line being replaced; a writer
 * adds its line under the key's stripe lock, so the lines of one key are in
 * the order the table changed. The ring and its lines are charged against
 * max_bytes like the table.
 */
static struct kudp_line **ring;
static size_t ring_cost;
static u64 ring_added;	/* lines added since load; the next one's number */
static DEFINE_SPINLOCK(ring_lock);

static struct kudp_line **ring_slot(u64 n)
{
	u32 slot;

	div_u64_rem(n, kudp_history, &slot);
	return &ring[slot];
}

/**
 * kudp_line_new() - format a line for the history
 * @fmt: printf-style format of the normalised command, without "\n"
 *
 * The line is not charged yet: the caller charges kudp_line_cost() with the
 * change it records, then hands the line to kudp_history_add(), or kfree()s
 * it.
 *
 * Return: the line, or NULL when there is no memory for it (the history is
 * best effort; the table is not).
 */
struct kudp_line *kudp_line_new(const char *fmt, ...)
{
	struct kudp_line *line;
	va_list args;
	int n;

	va_start(args, fmt);
	n = vsnprintf(NULL, 0, fmt, args);
	va_end(args);

	line = kmalloc(struct_size(line, text, n + 1), KUDP_GFP);
	if (!line)
		return NULL;
	line->cost = kv_mem_cost(struct_size(line, text, n + 1));
	va_start(args, fmt);
	vsnprintf(line->text, n + 1, fmt, args);
	va_end(args);
	return line;
}

size_t kudp_line_cost(const struct kudp_line *line)
{
	return line ? line->cost : 0;
}

/**
 * kudp_history_add() - remember a command that changed the table
 * @line: from kudp_line_new(), its cost already charged
 *
 * The oldest line makes room when the ring is full; its charge goes back.
 *
 * Context: process context.
 */
void kudp_history_add(struct kudp_line *line)
{
	struct kudp_line **slot, *old;

	spin_lock(&ring_lock);
	slot = ring_slot(ring_added);
	old = *slot;
	*slot = line;
	ring_added++;
	spin_unlock(&ring_lock);
	if (old) {
		kv_mem_release(old->cost);
		kfree(old);
	}
}

/*
 * /proc/ht reads: *pos is a line number. ring_lock is held from start to
 * stop, which seq_file never sleeps between; between two read()s the ring
 * may move on, and a reader that fell behind skips to the oldest line kept.
 */
static void *history_start(struct seq_file *m, loff_t *pos)
	__acquires(&ring_lock)
{
	u64 oldest;

	spin_lock(&ring_lock);
	oldest = ring_added > kudp_history ? ring_added - kudp_history : 0;
	if (*pos < oldest)
		*pos = oldest;
	return *pos < ring_added ? *ring_slot(*pos) : NULL;
}

static void *history_next(struct seq_file *m, void *v, loff_t *pos)
{
	++*pos;
	return *pos < ring_added ? *ring_slot(*pos) : NULL;
}

static void history_stop(struct seq_file *m, void *v)
	__releases(&ring_lock)
{
	spin_unlock(&ring_lock);
}

static int history_show(struct seq_file *m, void *v)
{
	const struct kudp_line *line = v;

	seq_printf(m, "%s\n", line->text);
	return 0;
}

static const struct seq_operations history_ops = {
	.start = history_start,
	.next = history_next,
	.stop = history_stop,
	.show = history_show,
};

static int ht_open(struct inode *inode, struct file *file)
{
	return seq_open(file, &history_ops);
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
	kudp_execute(req, count, &reply);
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
	return kv_seq_open(file, false);
}

static const struct proc_ops hashtable_ops = {
	.proc_open = hashtable_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = kv_seq_release,
};

static int kvsnapshot_open(struct inode *inode, struct file *file)
{
	return kv_seq_open(file, true);
}

static const struct proc_ops kvsnapshot_ops = {
	.proc_open = kvsnapshot_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = kv_seq_release,
};

/*
 * The registered backup daemon, kvd. Holding its struct pid (not the number)
 * makes PID reuse harmless: a new process with the same number has a
 * different struct pid, which nobody registered. kvd_mutex orders the
 * registrations (and the journal's start and stop with them); kvd_lock
 * guards the pointer for the quick check of every durable change.
 */
static struct pid *kvd_pid;
static DEFINE_MUTEX(kvd_mutex);
static DEFINE_SPINLOCK(kvd_lock);

/* Registers @pid (NULL: nobody); the caller holds kvd_mutex. */
static void kvd_set(struct pid *pid)
{
	struct pid *old;

	lockdep_assert_held(&kvd_mutex);
	spin_lock(&kvd_lock);
	old = kvd_pid;
	kvd_pid = pid;
	spin_unlock(&kvd_lock);
	put_pid(old);
	kudp_journal_start(pid);
}

/* The registered daemon with a reference for the caller, or NULL. */
static struct pid *kvd_get(void)
{
	struct pid *pid;

	spin_lock(&kvd_lock);
	pid = get_pid(kvd_pid);
	spin_unlock(&kvd_lock);
	return pid;
}

/*
 * A process that is exiting, or has exited and waits to be reaped (a
 * zombie), still has its struct pid: it counts as gone.
 */
static bool kvd_alive(struct pid *pid)
{
	struct task_struct *task;
	bool alive;

	rcu_read_lock();
	task = pid_task(pid, PIDTYPE_TGID);
	alive = task && !READ_ONCE(task->exit_state) &&
		!(READ_ONCE(task->signal->flags) & SIGNAL_GROUP_EXIT);
	rcu_read_unlock();
	return alive;
}

/**
 * kudp_daemon_registered() - whether the backup daemon is there
 *
 * A daemon that exited without unregistering is forgotten here.
 *
 * Context: process context.
 * Return: true while a registered daemon runs.
 */
bool kudp_daemon_registered(void)
{
	struct pid *pid = kvd_get();
	bool alive = pid && kvd_alive(pid);

	if (pid && !alive) {
		mutex_lock(&kvd_mutex);
		if (kvd_pid == pid) {	/* not replaced meanwhile */
			kvd_set(NULL);
			kudp_journal_drop();
		}
		mutex_unlock(&kvd_mutex);
	}
	put_pid(pid);
	return alive;
}

/**
 * kudp_backup_ready() - whether a change may be made now
 *
 * With durable=1 only while the daemon is there. Otherwise always; a
 * daemon that died is still noticed here, at most every tenth of a
 * second, so that its journal lines stop being made for nobody.
 *
 * Context: process context, no stripe held.
 */
bool kudp_backup_ready(void)
{
	static unsigned long next_check;
	unsigned long due = READ_ONCE(next_check);

	if (kudp_durable)
		return kudp_daemon_registered();
	if (time_after_eq(jiffies, due) &&
	    cmpxchg(&next_check, due, jiffies + HZ / 10) == due &&
	    READ_ONCE(kvd_pid))
		kudp_daemon_registered();
	return true;
}

static int daemonpid_show(struct seq_file *m, void *v)
{
	struct pid *pid = kvd_get();

	seq_printf(m, "%d\n", pid && kvd_alive(pid) ? pid_vnr(pid) : 0);
	put_pid(pid);
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
	/*
	 * Only the writer itself may register: the table's changes are then
	 * queued for it, and a durable change waits for its word.
	 */
	if (nr && nr != task_tgid_vnr(current))
		return -EPERM;
	mutex_lock(&kvd_mutex);
	kvd_set(nr ? get_task_pid(current, PIDTYPE_TGID) : NULL);
	mutex_unlock(&kvd_mutex);
	return count;
}

static const struct proc_ops daemonpid_ops = {
	.proc_open = daemonpid_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
	.proc_write = daemonpid_write,
};

/*
 * The ring is charged against max_bytes first: a history too large for the
 * budget is refused at load time rather than leaving no room for the table.
 */
int kudp_proc_init(void)
{
	int ret;

	ring_cost = kv_mem_cost(array_size(kudp_history, sizeof(*ring)));
	ret = kv_mem_reserve(ring_cost);
	if (ret) {
		pr_err("history=%u needs %zu bytes, more than max_bytes=%u\n",
		       kudp_history, ring_cost, kudp_max_bytes);
		return -EINVAL;
	}
	ring = kvcalloc(kudp_history, sizeof(*ring), GFP_KERNEL_ACCOUNT);
	if (!ring) {
		ret = -ENOMEM;
		goto out_release;
	}
	if (!proc_create("ht", 0600, NULL, &ht_ops))
		goto out_exists;
	if (!proc_create("hashtable", 0400, NULL, &hashtable_ops))
		goto out_remove_ht;
	if (!proc_create("kvsnapshot", 0400, NULL, &kvsnapshot_ops))
		goto out_remove_hashtable;
	if (!proc_create("daemonpid", 0600, NULL, &daemonpid_ops))
		goto out_remove_kvsnapshot;
	ret = kudp_journal_init();
	if (ret)
		goto out_remove_daemonpid;
	return 0;

out_remove_daemonpid:
	remove_proc_entry("daemonpid", NULL);
out_remove_kvsnapshot:
	remove_proc_entry("kvsnapshot", NULL);
out_remove_hashtable:
	remove_proc_entry("hashtable", NULL);
out_remove_ht:
	remove_proc_entry("ht", NULL);
out_exists:
	pr_err("cannot create the /proc files (another udp_server loaded?)\n");
	kvfree(ring);
	ret = -EEXIST;
out_release:
	kv_mem_release(ring_cost);
	return ret;
}

/*
 * remove_proc_entry() waits for readers and writers that are inside, so the
 * ring and the registration are nobody's once the files are gone.
 */
void kudp_proc_exit(void)
{
	unsigned int i;

	/*
	 * Only /proc/ht can still make a change: the daemon saves the last
	 * ones, then writers waiting for the disk are woken, so that the
	 * removal, which waits for them, returns.
	 */
	kudp_journal_drain();
	kudp_journal_close_writers();
	remove_proc_entry("ht", NULL);
	kudp_journal_exit();
	remove_proc_entry("daemonpid", NULL);
	remove_proc_entry("kvsnapshot", NULL);
	remove_proc_entry("hashtable", NULL);
	mutex_lock(&kvd_mutex);
	kvd_set(NULL);
	mutex_unlock(&kvd_mutex);
	for (i = 0; i < kudp_history; i++) {
		if (ring[i]) {
			kv_mem_release(ring[i]->cost);
			kfree(ring[i]);
		}
	}
	kvfree(ring);
	kv_mem_release(ring_cost);
}
