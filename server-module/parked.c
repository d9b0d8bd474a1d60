// SPDX-License-Identifier: GPL-2.0
/*
 * Replies that wait for the disk. With durable=1, the replies to changes
 * wait here until the backup daemon has the change on disk (journal.c): the
 * server thread parks them, and the daemon's word, written to
 * /proc/kvjournal, sends them. A flood cannot park
 * more than KUDP_PARKED_MAX; past that a reply is dropped, and the client's
 * retry (the same insert, or a delete answered NOT FOUND) finds the change.
 *
 * Replies to one sender keep the order of its requests: a read from a
 * sender whose change is still parked is parked behind it (parked_until,
 * per bucket of senders), and parked_mutex is held while parked replies
 * are sent, so that a reply sent at once never overtakes one being
 * released.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/hash.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "transport.h"

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
		kudp_drop(KUDP_DROP_NO_MEMORY);
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
		kudp_send_datagram(p->sock, &p->to, p->data, p->size);
		kfree(p);
	} else if (parked_count >= KUDP_PARKED_MAX) {
		kudp_drop(KUDP_DROP_PARKED_FULL);
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
		kudp_send_datagram(p->sock, &p->to, p->data, p->size);
		kfree(p);
	}
	mutex_unlock(&parked_mutex);
}

/* At unload: the changes were made; their replies are dropped. */
void kudp_drop_parked_replies(void)
{
	struct parked_reply *p, *next;

	list_for_each_entry_safe(p, next, &parked, node)
		kfree(p);
	INIT_LIST_HEAD(&parked);
	parked_count = 0;
}
