// SPDX-License-Identifier: GPL-2.0
/*
 * What a sender that is not on this host can make udp_server send.
 *
 * A UDP source address can be forged, so every reply may land on someone
 * who never asked for it. Three rules keep the server from being used
 * against a third party (PROTOCOL.md, "Reflection"):
 *
 *  1. A datagram that parses as a reply of either protocol is never
 *     answered (kudp_is_reply(), below): two servers, or the two ports of
 *     one, cannot bounce a forged datagram between them for ever (the
 *     "Loop DoS" class, CVE-2024-2169).
 *  2. Error replies to requests that are not well-formed commands are
 *     limited to err_rate a second per source address (a burst of
 *     KUDP_ERR_BURST), as the kernel limits the ICMP errors it sends to
 *     one peer: whatever answers our errors with its own garbage meets a
 *     server that soon stops answering. (An error about the table's state,
 *     "ERR full", answers a well-formed command, and a well-formed command
 *     is never the reply of a server.)
 *  3. Reply bytes to one /24 of senders (DNS response rate limiting's
 *     default prefix) are limited to reply_rate KiB a second, with a burst
 *     of one second's worth (at least one longest datagram): a flood with
 *     forged sources makes the server send at most that much to its
 *     victim, whatever the flood's size. Each reply is also at most
 *     KUDP_REFLECT_RATIO times its request (or one small datagram), in
 *     main.c and memcache.c.
 *
 * Datagrams that arrived on the loopback device come from this host: they
 * cannot be forged from outside, and they are exempt from 2 and 3, as
 * icmpv4_xrlim_allow() exempts loopback. Rule 1 holds for everyone.
 *
 * Senders are hashed into a fixed number of buckets with a key chosen at
 * load, so the memory is fixed and a sender cannot pick a bucket to share
 * with a victim; two senders that share one also share its budget.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cache.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/math64.h>
#include <linux/random.h>
#include <linux/siphash.h>
#include <linux/spinlock.h>

#include "kudp_protocol.h"
#include "transport.h"

/*
 * Words that begin a reply: the text protocol's (kudp_protocol.h; "GOT IT"
 * and "NOT FOUND" by their first word) and memcached's. No request of
 * either protocol starts with one.
 */
static const char *const reply_words[] = {
	KUDP_OK, KUDP_ERR, "GOT", "NOT",
	"VALUE", "END", "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND",
	"DELETED", "TOUCHED", "ERROR", "CLIENT_ERROR", "SERVER_ERROR",
	"VERSION", "STAT",
};

/* Whether @p starts with a reply word, followed by a space, a line end or nothing. */
static bool starts_with_reply_word(const char *p, size_t n)
{
	size_t len = 0;
	unsigned int i;

	while (len < n && p[len] != ' ' && p[len] != '\r' && p[len] != '\n')
		len++;
	for (i = 0; i < ARRAY_SIZE(reply_words); i++)
		if (len == strlen(reply_words[i]) &&
		    !memcmp(p, reply_words[i], len))
			return true;
	return false;
}

/* memcached's frame header: ID, sequence, count (at least 1), then 0. */
#define KUDP_MC_HEADER	8

/**
 * kudp_is_reply() - whether a datagram is a reply of either protocol
 * @p: its first bytes
 * @n: how many
 *
 * A server that answers replies can be made to bounce one forged datagram
 * with another server (or between its own two ports) for ever. Both ports
 * ask this of every datagram and answer none that is a reply: a text
 * protocol reply, or a memcached reply with or without its frame header.
 *
 * Return: true for a reply, which gets no answer.
 */
bool kudp_is_reply(const char *p, size_t n)
{
	if (starts_with_reply_word(p, n))
		return true;
	return n > KUDP_MC_HEADER && (p[4] || p[5]) && !p[6] && !p[7] &&
	       starts_with_reply_word(p + KUDP_MC_HEADER, n - KUDP_MC_HEADER);
}

#define KUDP_LIMIT_BUCKETS	1024

/* A token bucket: @tokens now, refilled at a rate since @stamp (jiffies). */
struct kudp_bucket {
	spinlock_t lock;	/* guards the other two */
	unsigned long stamp;
	u64 tokens;
};

static struct kudp_bucket err_buckets[KUDP_LIMIT_BUCKETS];
static struct kudp_bucket byte_buckets[KUDP_LIMIT_BUCKETS];
static siphash_key_t limit_key __read_mostly;

static struct kudp_bucket *bucket_of(struct kudp_bucket *table, __be32 addr)
{
	u64 hash = siphash_1u32((__force u32)addr, &limit_key);

	return &table[hash % KUDP_LIMIT_BUCKETS];
}

/* Longer idle than this counts as this: enough to fill any bucket. */
#define KUDP_LIMIT_IDLE_MAX	(60 * HZ)

/*
 * Takes @cost tokens from @b if it has them. It refills at @rate tokens a
 * second up to @burst. The time since @stamp is turned into tokens only
 * once it is worth one, so that a sender asking every jiffy still earns
 * them. Context: any; the lock is taken with bottom halves off, since both
 * the threads and the receive softirq (softirq=1) ask.
 */
static bool bucket_take(struct kudp_bucket *b, u64 cost, u64 rate, u64 burst)
{
	unsigned long now = jiffies;
	unsigned long elapsed;
	u64 earned;
	bool ok;

	spin_lock_bh(&b->lock);
	elapsed = min_t(unsigned long, now - b->stamp, KUDP_LIMIT_IDLE_MAX);
	earned = div_u64(rate * elapsed, HZ);
	if (earned) {
		b->tokens = min(burst, b->tokens + earned);
		b->stamp = now;
	}
	ok = b->tokens >= cost;
	if (ok)
		b->tokens -= cost;
	spin_unlock_bh(&b->lock);
	return ok;
}

/**
 * kudp_reply_allowed() - whether a reply may be sent to its sender
 * @peer: the sender
 * @size: the reply's bytes on the wire (payload)
 * @malformed: the reply says the request was not a well-formed command
 *
 * Return: true to send it; false to drop it (the caller counts it).
 */
bool kudp_reply_allowed(const struct kudp_peer *peer, size_t size,
			bool malformed)
{
	__be32 addr = peer->addr.sin_addr.s_addr;
	u64 errors = kudp_err_rate;
	u64 rate = (u64)kudp_reply_rate * 1024;

	if (peer->local)
		return true;
	if (malformed && errors &&
	    !bucket_take(bucket_of(err_buckets, addr), 1, errors,
			 max_t(u64, errors, KUDP_ERR_BURST)))
		return false;
	if (!rate)
		return true;
	/* One bucket per /24; room for the longest datagram, whatever the rate. */
	addr &= htonl(0xffffff00);
	return bucket_take(bucket_of(byte_buckets, addr), size, rate,
			   max_t(u64, rate, KUDP_MAX_LEN));
}

/* Every bucket starts full, with a key nobody outside knows. */
void kudp_limit_init(void)
{
	unsigned int i;

	get_random_bytes(&limit_key, sizeof(limit_key));
	for (i = 0; i < KUDP_LIMIT_BUCKETS; i++) {
		spin_lock_init(&err_buckets[i].lock);
		spin_lock_init(&byte_buckets[i].lock);
		err_buckets[i].stamp = jiffies - KUDP_LIMIT_IDLE_MAX;
		byte_buckets[i].stamp = jiffies - KUDP_LIMIT_IDLE_MAX;
	}
}
