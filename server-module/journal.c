// SPDX-License-Identifier: GPL-2.0
/*
 * The change journal of udp_server: how the backup daemon, kvd, keeps a copy
 * of the table on disk without reading the whole table after every change.
 *
 *   /proc/kvjournal  0600  read: the changes since the last read, one line
 *                          each; write: "N", the changes up to N are on disk
 *
 * Every change to the table gets a sequence number, given under the queue's
 * lock while the change's key is still locked (request.c), so the numbers of a
 * key's changes follow their order, and the queue is in number order. While
 * a daemon is registered in /proc/daemonpid, each change is also queued here
 * as a line:
 *
 *   N insert KEY VALUE
 *   N delete KEY
 *   N snapshot
 *
 * "snapshot" means: save the whole table (/proc/hashtable) now; the table
 * holds every change up to N. It is the first line after a daemon registers,
 * and it replaces the queue when the queue would pass KUDP_JOURNAL_MAX bytes
 * (a daemon too slow to keep up), so the queue stays bounded and nothing is
 * lost: the lines after it may repeat changes that the snapshot already
 * holds, and replaying them in order gives the same table.
 *
 * A read blocks until there is a line (or returns -EAGAIN with O_NONBLOCK;
 * poll() works) and hands out whole lines only. It returns 0 (end of file)
 * once the module is being unloaded, or once the daemon has unregistered
 * and read the lines queued before: so a daemon that leaves wakes its own
 * blocked read and loses nothing. An unload first gives a registered
 * daemon up to KUDP_DRAIN_TIMEOUT to confirm the changes it has not yet
 * saved, so that an rmmod, by hand or not, loses nothing a live daemon can
 * save.
 *
 * With durable=1, replies to changes wait until the daemon writes back a
 * number at least theirs: one fsync of the daemon answers all the changes it
 * read in one go (group commit).
 *
 * The daemon puts a backup back through /proc/kvrestore (restore.c).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/overflow.h>
#include <linux/poll.h>
#include <linux/proc_fs.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>

#include "kudp_protocol.h"
#include "store.h"

#define CREATE_TRACE_POINTS
#include "trace_journal.h"

/* Most bytes of lines the queue holds before it gives way to a snapshot. */
#define KUDP_JOURNAL_MAX	SZ_4M

/* How long an unload waits for the daemon to save the last changes. */
#define KUDP_DRAIN_TIMEOUT	(5 * HZ)

/* Room before a change's text for its number: 20 digits and a space. */
#define JOURNAL_PREFIX		21

/* One line: text[start..start + len), its number written in front last. */
struct kudp_journal_line {
	struct list_head node;
	size_t start;
	size_t len;
	char text[];
};

/*
 * Under journal_lock: the number of the last change, whether to queue the
 * changes for a daemon, the queue, and a snapshot to ask for before it.
 */
static DEFINE_SPINLOCK(journal_lock);
static u64 journal_seq;
static bool journal_on;
static LIST_HEAD(journal);
static size_t journal_bytes;
static bool journal_snapshot_due;
static u64 journal_snapshot;	/* N of "N snapshot" */
static bool journal_closing;
static DECLARE_WAIT_QUEUE_HEAD(journal_wait);

/*
 * The last change the daemon has on disk; durable replies and /proc/ht
 * writers wait for it, the writers until the unload closes them out.
 */
static atomic64_t journal_synced;
/* When the daemon last read changes (ktime_get_ns()), for udp_server:commit. */
static atomic64_t journal_read_ns;
static DECLARE_WAIT_QUEUE_HEAD(synced_wait);
static bool writers_closing;

/* Who hears of a change on disk: the transport's parked replies. */
static void no_hook(u64 seq)
{
}

static void (*synced_hook)(u64 seq) = no_hook;

/**
 * kudp_journal_watch() - be told when the daemon has changes on disk
 * @synced: called with the number of the last change on disk, from the
 *          daemon's write to /proc/kvjournal; NULL to stop
 *
 * Context: before the daemon's files exist, or after they are gone.
 */
void kudp_journal_watch(void (*synced)(u64 seq))
{
	synced_hook = synced ?: no_hook;
}

/* Frees every queued line; the caller holds journal_lock. */
static void journal_drop_locked(struct list_head *dropped)
{
	list_splice_init(&journal, dropped);
	journal_bytes = 0;
}

static void journal_free(struct list_head *lines)
{
	struct kudp_journal_line *line, *next;

	list_for_each_entry_safe(line, next, lines, node)
		kfree(line);
}

/* Replaces the queue with "N snapshot"; the caller holds journal_lock. */
static void journal_ask_snapshot_locked(u64 seq, struct list_head *dropped)
{
	journal_drop_locked(dropped);
	journal_snapshot_due = true;
	journal_snapshot = seq;
}

/**
 * journal_start() - a daemon registered: start queueing, from a snapshot
 * @on: false when the daemon unregistered
 *
 * A change made before this is in the table the snapshot will read; one
 * numbered after it is queued too (replaying it changes nothing). When the
 * daemon leaves, the lines already queued stay for its last reads; the next
 * daemon starts from a snapshot without them.
 */
static void journal_start(bool on)
{
	LIST_HEAD(dropped);

	spin_lock_bh(&journal_lock);
	journal_on = on;
	if (on)
		journal_ask_snapshot_locked(journal_seq, &dropped);
	spin_unlock_bh(&journal_lock);
	journal_free(&dropped);
	wake_up_interruptible(&journal_wait);
}

/**
 * journal_drop() - the daemon died: drop what was queued for it
 *
 * Context: the caller holds the registration's mutex (proc.c) and has just
 * forgotten the daemon, so no new one has registered meanwhile.
 */
static void journal_drop(void)
{
	LIST_HEAD(dropped);

	spin_lock_bh(&journal_lock);
	if (!journal_on) {
		journal_drop_locked(&dropped);
		journal_snapshot_due = false;
	}
	spin_unlock_bh(&journal_lock);
	journal_free(&dropped);
}

/**
 * kudp_journal_line_new() - the journal line of a change about to be made
 * @fmt: printf-style format of the change, without "N " and "\n"
 *
 * Made before the key's stripe is taken (the allocation may sleep where
 * the caller may), and handed to kudp_journal_add() with the change.
 *
 * Return: the line; NULL when no daemon follows the journal, or there is
 * no memory for it (the daemon then saves the whole table instead).
 */
struct kudp_journal_line *kudp_journal_line_new(const char *fmt, ...)
{
	struct kudp_journal_line *line;
	va_list args;
	int n;

	if (!READ_ONCE(journal_on))
		return NULL;
	va_start(args, fmt);
	n = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	/* The number, the change, "\n" and vscnprintf()'s NUL. */
	line = kmalloc(struct_size(line, text, JOURNAL_PREFIX + n + 2),
		       kudp_gfp());
	if (!line)
		return NULL;
	va_start(args, fmt);
	line->len = vscnprintf(line->text + JOURNAL_PREFIX, n + 1, fmt, args);
	va_end(args);
	line->text[JOURNAL_PREFIX + line->len++] = '\n';
	return line;
}

/**
 * kudp_journal_add() - number a change, and queue it for the daemon
 * @line: from kudp_journal_line_new(), or NULL; queued, or freed
 *
 * Whether to queue is decided here, under the journal's lock: a daemon
 * that registered since the line was (not) made gets a snapshot instead.
 *
 * Context: any; the caller holds the key's stripe lock and has just made
 * the change.
 * Return: the change's number.
 */
u64 kudp_journal_add(struct kudp_journal_line *line)
{
	char number[JOURNAL_PREFIX + 1];
	LIST_HEAD(dropped);
	u64 seq;
	int n;

	spin_lock_bh(&journal_lock);
	seq = ++journal_seq;
	if (!journal_on) {
		/* Nobody to queue for. */
	} else if (line && journal_bytes + line->len + JOURNAL_PREFIX <=
		   KUDP_JOURNAL_MAX) {
		n = scnprintf(number, sizeof(number), "%llu ", seq);
		line->start = JOURNAL_PREFIX - n;
		memcpy(line->text + line->start, number, n);
		line->len += n;
		list_add_tail(&line->node, &journal);
		journal_bytes += line->len;
		line = NULL;
	} else {
		/* No memory or no room: the daemon saves the whole table. */
		journal_ask_snapshot_locked(seq, &dropped);
	}
	spin_unlock_bh(&journal_lock);
	kfree(line);
	journal_free(&dropped);
	wake_up_interruptible(&journal_wait);
	return seq;
}

/* Whether a change numbered @seq is on the daemon's disk. */
bool kudp_journal_synced(u64 seq)
{
	return atomic64_read(&journal_synced) >= seq;
}

static bool writer_woken(u64 seq)
{
	return kudp_journal_synced(seq) || READ_ONCE(writers_closing);
}

/**
 * kudp_journal_wait() - wait until change @seq is on disk
 * @seq: the change's number
 *
 * The daemon's confirmation wakes the wait; the unload does too, and a
 * daemon that dies is noticed within a tenth of a second.
 *
 * Return: 0; -EINTR when a signal came first; -ESHUTDOWN at unload;
 * -ENOLINK when the daemon went away without saving it.
 */
int kudp_journal_wait(u64 seq)
{
	long ret;

	for (;;) {
		ret = wait_event_interruptible_timeout(synced_wait,
						       writer_woken(seq),
						       HZ / 10);
		if (ret < 0)
			return -EINTR;
		if (kudp_journal_synced(seq))
			return 0;
		if (READ_ONCE(writers_closing))
			return -ESHUTDOWN;
		if (!kudp_daemon_registered())
			return -ENOLINK;
	}
}

static bool journal_readable(void)
{
	bool readable;

	spin_lock_bh(&journal_lock);
	readable = journal_closing || journal_snapshot_due ||
		   !list_empty(&journal) || !journal_on;
	spin_unlock_bh(&journal_lock);
	return readable;
}

/*
 * Takes the lines that fit in @room off the queue, "N snapshot" first. A
 * line is never split; a buffer too small for the first one is an error.
 */
static ssize_t journal_take(struct list_head *taken, bool *snapshot,
			    u64 *seq, size_t room)
{
	struct kudp_journal_line *line, *next;
	size_t size = 0;

	spin_lock_bh(&journal_lock);
	*snapshot = journal_snapshot_due;
	*seq = journal_snapshot;
	journal_snapshot_due = false;
	if (*snapshot)
		size = 24 + 9;	/* room kept for "N snapshot\n" */
	list_for_each_entry_safe(line, next, &journal, node) {
		if (size + line->len > room)
			break;
		list_move_tail(&line->node, taken);
		journal_bytes -= line->len;
		size += line->len;
	}
	if (!size && !list_empty(&journal)) {
		spin_unlock_bh(&journal_lock);
		return -EINVAL;
	}
	spin_unlock_bh(&journal_lock);
	return size;
}

static ssize_t journal_read(struct file *file, char __user *ubuf,
			    size_t count, loff_t *ppos)
{
	struct kudp_journal_line *line;
	char snapshot_line[40];
	LIST_HEAD(dropped);
	LIST_HEAD(taken);
	size_t done = 0;
	bool snapshot;
	ssize_t ret;
	u64 seq;

	if (count < sizeof(snapshot_line))
		return -EINVAL;
	if (!(file->f_flags & O_NONBLOCK)) {
		ret = wait_event_interruptible(journal_wait, journal_readable());
		if (ret)
			return ret;
	}
	if (READ_ONCE(journal_closing))
		return 0;
	ret = journal_take(&taken, &snapshot, &seq, count);
	if (ret < 0)
		return ret;
	if (ret && trace_commit_enabled())
		atomic64_set(&journal_read_ns, ktime_get_ns());
	if (!ret && !snapshot)
		return READ_ONCE(journal_on) ? -EAGAIN : 0;

	if (snapshot) {
		done = scnprintf(snapshot_line, sizeof(snapshot_line),
				 "%llu snapshot\n", seq);
		if (copy_to_user(ubuf, snapshot_line, done))
			goto fault;
	}
	list_for_each_entry(line, &taken, node) {
		if (copy_to_user(ubuf + done, line->text + line->start,
				 line->len))
			goto fault;
		done += line->len;
	}
	journal_free(&taken);
	return done;

fault:
	/* What was taken is lost to the daemon: it must save everything. */
	journal_free(&taken);
	spin_lock_bh(&journal_lock);
	journal_ask_snapshot_locked(journal_seq, &dropped);
	spin_unlock_bh(&journal_lock);
	journal_free(&dropped);
	return -EFAULT;
}

/* udp_server:commit, timed from the daemon's latest read (0: not seen). */
static void trace_confirmed(u64 seq, u64 batch)
{
	u64 read = atomic64_read(&journal_read_ns);

	if (trace_commit_enabled())
		trace_commit(seq, batch, read ? ktime_get_ns() - read : 0);
}

/* "N": the daemon has every change up to N on disk. */
static ssize_t journal_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	u64 seq, synced;
	int ret;

	ret = kstrtou64_from_user(ubuf, count, 10, &seq);
	if (ret)
		return ret;
	spin_lock_bh(&journal_lock);
	ret = seq > journal_seq ? -EINVAL : 0;
	spin_unlock_bh(&journal_lock);
	if (ret)
		return ret;
	synced = atomic64_read(&journal_synced);
	while (seq > synced) {
		u64 old = atomic64_cmpxchg(&journal_synced, synced, seq);

		if (old == synced) {
			trace_confirmed(seq, seq - synced);
			break;
		}
		synced = old;
	}
	/* Both kinds of sleeper: writers (interruptible) and the drain. */
	wake_up_all(&synced_wait);
	synced_hook(seq);
	return count;
}

static __poll_t journal_poll(struct file *file, poll_table *wait)
{
	poll_wait(file, &journal_wait, wait);
	return journal_readable() ? EPOLLIN | EPOLLRDNORM : 0;
}

static const struct proc_ops journal_ops = {
	.proc_read = journal_read,
	.proc_write = journal_write,
	.proc_poll = journal_poll,
	.proc_lseek = noop_llseek,
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
	spin_lock_bh(&kvd_lock);
	old = kvd_pid;
	kvd_pid = pid;
	spin_unlock_bh(&kvd_lock);
	put_pid(old);
	journal_start(pid);
}

/* The registered daemon with a reference for the caller, or NULL. */
static struct pid *kvd_get(void)
{
	struct pid *pid;

	spin_lock_bh(&kvd_lock);
	pid = get_pid(kvd_pid);
	spin_unlock_bh(&kvd_lock);
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
 * kudp_daemon_register() - register the writer as the backup daemon, or
 * unregister it
 * @nr: the writer's own PID, as seen from its PID namespace; 0 unregisters
 *
 * Only the writer itself may register: the table's changes are then queued
 * for it, and a durable change waits for its word.
 *
 * Return: 0, or -EPERM for a PID that is not the writer's.
 */
int kudp_daemon_register(int nr)
{
	if (nr && nr != task_tgid_vnr(current))
		return -EPERM;
	mutex_lock(&kvd_mutex);
	kvd_set(nr ? get_task_pid(current, PIDTYPE_TGID) : NULL);
	mutex_unlock(&kvd_mutex);
	return 0;
}

/* The registered daemon's PID in the reader's namespace, 0 for none. */
int kudp_daemon_shown(void)
{
	struct pid *pid = kvd_get();
	int nr = pid && kvd_alive(pid) ? pid_vnr(pid) : 0;

	put_pid(pid);
	return nr;
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
			journal_drop();
		}
		mutex_unlock(&kvd_mutex);
	}
	put_pid(pid);
	return alive;
}

/* A check of the daemon that softirq context cannot make (kvd_mutex). */
static void kvd_check_work(struct work_struct *work)
{
	kudp_daemon_registered();
}

static DECLARE_WORK(kvd_check, kvd_check_work);

/**
 * kudp_backup_ready() - whether a change may be made now
 *
 * With durable=1 only while the daemon is there. Otherwise always; a
 * daemon that died is still noticed here, at most every tenth of a
 * second (from a worker when this runs in softirq context), so that its
 * journal lines stop being made for nobody.
 *
 * Context: any, no stripe held; with durable=1, process context
 * (kudp_op_may_sleep()).
 */
bool kudp_backup_ready(void)
{
	static unsigned long next_check;
	unsigned long due = READ_ONCE(next_check);

	if (kudp_durable)
		return kudp_daemon_registered();
	if (time_after_eq(jiffies, due) &&
	    cmpxchg(&next_check, due, jiffies + HZ / 10) == due &&
	    READ_ONCE(kvd_pid)) {
		if (in_task())
			kudp_daemon_registered();
		else
			schedule_work(&kvd_check);
	}
	return true;
}

int kudp_journal_init(void)
{
	if (!proc_create("kvjournal", 0600, NULL, &journal_ops)) {
		pr_err("cannot create /proc/kvjournal (another udp_server loaded?)\n");
		return -EEXIST;
	}
	return 0;
}

/**
 * kudp_journal_drain() - let the daemon save the last changes, at unload
 *
 * Waits until the registered daemon has confirmed every change made so far,
 * it unregisters or exits, or KUDP_DRAIN_TIMEOUT passes. A daemon that
 * exits is noticed within a tenth of a second.
 *
 * Context: the workers are stopped; /proc/ht may still take a change, whose
 * writer waits and is closed out after this (kudp_journal_close_writers()).
 */
void kudp_journal_drain(void)
{
	unsigned long deadline = jiffies + KUDP_DRAIN_TIMEOUT;
	u64 last;

	spin_lock_bh(&journal_lock);
	last = journal_seq;
	spin_unlock_bh(&journal_lock);
	while (!kudp_journal_synced(last) && READ_ONCE(journal_on) &&
	       kudp_daemon_registered()) {
		if (time_after(jiffies, deadline)) {
			pr_warn("kvd did not save the last %llu changes in %d s\n",
				last - atomic64_read(&journal_synced),
				KUDP_DRAIN_TIMEOUT / HZ);
			return;
		}
		wait_event_timeout(synced_wait, kudp_journal_synced(last),
				   HZ / 10);
	}
}

/**
 * kudp_journal_close_writers() - wake the /proc/ht writers still waiting
 *
 * They return -ESHUTDOWN: their change is made but not known to be on
 * disk. After this no writer waits, so removing /proc/ht cannot hang.
 */
void kudp_journal_close_writers(void)
{
	WRITE_ONCE(writers_closing, true);
	wake_up_all(&synced_wait);
}

/*
 * Wakes a daemon blocked in a read, so that remove_proc_entry(), which
 * waits for it, returns.
 *
 * Context: the caller makes sure no change can come (workers stopped,
 * /proc/ht removed) and has drained the journal (kudp_journal_drain()).
 */
void kudp_journal_exit(void)
{
	LIST_HEAD(dropped);

	cancel_work_sync(&kvd_check);
	spin_lock_bh(&journal_lock);
	journal_closing = true;
	journal_drop_locked(&dropped);
	spin_unlock_bh(&journal_lock);
	wake_up_interruptible_all(&journal_wait);
	remove_proc_entry("kvjournal", NULL);
	journal_free(&dropped);
	/* Nobody can reach the daemon's files: it is no longer ours. */
	mutex_lock(&kvd_mutex);
	kvd_set(NULL);
	mutex_unlock(&kvd_mutex);
}
