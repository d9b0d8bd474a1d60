// SPDX-License-Identifier: GPL-2.0
/*
 * rx_dev=DEV: requests served in DEV's receive path, before the IP and UDP
 * layers: the design of BMC (Ghigoff et al., NSDI '21), which answers
 * memcached's get in XDP, here as a receive handler of the device.
 *
 * With softirq=1 alone (fastpath.c) a request crosses the IP layer's input
 * (routing, netfilter's PREROUTING and INPUT) and the UDP layer (socket
 * lookup, checksum) before the encap_rcv hook serves it. The handler
 * registered here (netdev_rx_handler_register(), the hook bridges and
 * macvlan use) sees each frame right after the driver's NAPI poll and the
 * tc ingress hook. A datagram for one of our sockets is served there as the
 * encap_rcv hook would serve it (kudp_fast_early()): a read answered, its
 * skb turned into the reply as fastpath.c does (its IP output, with the
 * cached route and the neighbour's header), a change made or queued for
 * the thread. Not only reads: the stack hands the frames of one poll to
 * the IP layer in a batch, after every handler has seen them, so a request
 * left to it would be overtaken by the reads of the same sender answered
 * here.
 *
 * What goes on up the stack unchanged (RX_HANDLER_PASS): anything not for
 * our sockets, and what the IP layer must see: fragments (reassembled
 * there; such a request can be overtaken by its sender's next ones, the one
 * order not kept), IP options, a bad checksum (dropped and counted there).
 * netfilter's PREROUTING and INPUT hooks (iptables) do not see what is
 * served here, as with XDP. The parameter is off by default.
 *
 * Not done: the reply turned around at the link layer too (MAC addresses
 * swapped, handed to dev_queue_xmit(), as XDP_TX does). Under QEMU's
 * virtio-mmio network device that left the device's interrupt storming
 * ("irq N: nobody cared") after a few replies; the cause is not found.
 *
 * Why not XDP itself: a BPF program that calls into this module needs the
 * module's BTF (a kfunc), which needs pahole and the kernel's vmlinux at
 * build time; Debian's headers ship neither.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/if_arp.h>
#include <linux/if_vlan.h>
#include <linux/inetdevice.h>
#include <linux/ip.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <linux/skbuff.h>
#include <linux/udp.h>
#include <net/ip.h>
#include <net/udp.h>

#include "transport.h"

/* The device with our handler, and our reference to it; under RTNL. */
static struct net_device *hook_dev;
static netdevice_tracker hook_tracker;

/* Whether @addr is one of @dev's own IPv4 addresses. Context: RCU. */
static bool addressed_to(const struct net_device *dev, __be32 addr)
{
	const struct in_device *in_dev = __in_dev_get_rcu(dev);
	const struct in_ifaddr *ifa;

	if (!in_dev)
		return false;
	in_dev_for_each_ifa_rcu(ifa, in_dev)
		if (ifa->ifa_local == addr)
			return true;
	return false;
}

/*
 * Whether the UDP checksum of @skb (@skb->data its UDP header, @skb->len
 * the UDP length) is good, checked without changing @skb: one that is not
 * goes up to the UDP layer, which drops and counts it.
 */
static bool checksum_ok(const struct sk_buff *skb)
{
	const struct udphdr *uh = udp_hdr(skb);

	if (!uh->check || skb_csum_unnecessary(skb))
		return true;
	return !csum_tcpudp_magic(ip_hdr(skb)->saddr, ip_hdr(skb)->daddr,
				  skb->len, IPPROTO_UDP,
				  skb_checksum(skb, 0, skb->len, 0));
}

/*
 * The receive handler. @skb->data is the network header; an IPv4 datagram
 * for one of our sockets is taken (kudp_fast_early()), the rest passes
 * unchanged (the length trimmed to the IP header's, as ip_rcv() does
 * first).
 */
static rx_handler_result_t dev_rcv(struct sk_buff **pskb)
{
	struct sk_buff *skb = *pskb;
	const struct iphdr *iph;
	const struct udphdr *uh;
	unsigned int tot_len;
	struct sock *sk;

	if (skb->protocol != htons(ETH_P_IP) || skb->pkt_type != PACKET_HOST ||
	    skb_shared(skb) || skb_vlan_tag_present(skb) ||
	    !pskb_may_pull(skb, sizeof(*iph) + sizeof(*uh)))
		return RX_HANDLER_PASS;
	iph = ip_hdr(skb);
	tot_len = ntohs(iph->tot_len);
	if (iph->version != 4 || iph->ihl != sizeof(*iph) >> 2 ||
	    iph->protocol != IPPROTO_UDP || ip_is_fragment(iph) ||
	    tot_len < sizeof(*iph) + sizeof(*uh) || tot_len > skb->len ||
	    ip_fast_csum(iph, iph->ihl) ||
	    !addressed_to(skb->dev, iph->daddr) ||
	    addressed_to(skb->dev, iph->saddr) ||
	    ipv4_is_multicast(iph->saddr) || ipv4_is_lbcast(iph->saddr) ||
	    ipv4_is_zeronet(iph->saddr) || ipv4_is_loopback(iph->saddr))
		return RX_HANDLER_PASS;
	uh = (const struct udphdr *)(iph + 1);
	if (ntohs(uh->len) != tot_len - sizeof(*iph) ||
	    pskb_trim_rcsum(skb, tot_len))
		return RX_HANDLER_PASS;
	/* The trim may have moved the headers (a cloned skb gets its own). */
	iph = ip_hdr(skb);
	uh = (const struct udphdr *)(iph + 1);

	sk = kudp_socket_lookup(iph->saddr, uh->source, iph->daddr, uh->dest);
	if (!sk || !net_eq(dev_net(skb->dev), sock_net(sk)))
		return RX_HANDLER_PASS;
	__skb_pull(skb, sizeof(*iph));
	skb_reset_transport_header(skb);
	if (checksum_ok(skb) && kudp_fast_early(sk, skb))
		return RX_HANDLER_CONSUMED;
	__skb_push(skb, sizeof(*iph));
	return RX_HANDLER_PASS;
}

/* The device going away takes our handler with it. */
static int dev_event(struct notifier_block *nb, unsigned long event,
		     void *ptr)
{
	struct net_device *dev = netdev_notifier_info_to_dev(ptr);

	if (event != NETDEV_UNREGISTER || dev != hook_dev)
		return NOTIFY_DONE;
	netdev_rx_handler_unregister(dev);
	netdev_put(dev, &hook_tracker);
	hook_dev = NULL;
	pr_info("rx_dev=%s is going away: its requests now take the stack\n",
		dev->name);
	return NOTIFY_OK;
}

static struct notifier_block dev_notifier = {
	.notifier_call = dev_event,
};

/**
 * kudp_dev_attach() - serve requests in @name's receive path
 * @name: an Ethernet device of the initial network namespace
 *
 * Context: process; after kudp_socket_start() with softirq=1.
 * Return: 0; -ENODEV, -EINVAL (not Ethernet), -EBUSY (it has a receive
 * handler already: a bridge, bond or macvlan port), each logged.
 */
int kudp_dev_attach(const char *name)
{
	struct net_device *dev;
	int ret;

	ret = register_netdevice_notifier(&dev_notifier);
	if (ret)
		return ret;
	rtnl_lock();
	dev = __dev_get_by_name(&init_net, name);
	if (!dev) {
		pr_err("rx_dev=%s: no such device\n", name);
		ret = -ENODEV;
	} else if (dev->type != ARPHRD_ETHER || (dev->flags & IFF_LOOPBACK)) {
		pr_err("rx_dev=%s is not an Ethernet device\n", name);
		ret = -EINVAL;
	} else {
		ret = netdev_rx_handler_register(dev, dev_rcv, NULL);
		if (ret)
			pr_err("rx_dev=%s has a receive handler already (a bridge, bond or macvlan port?)\n",
			       name);
	}
	if (!ret) {
		netdev_hold(dev, &hook_tracker, GFP_KERNEL);
		hook_dev = dev;
	}
	rtnl_unlock();
	if (ret)
		unregister_netdevice_notifier(&dev_notifier);
	else
		pr_info("answering requests in %s's receive path\n", name);
	return ret;
}

/**
 * kudp_dev_detach() - undo kudp_dev_attach()
 *
 * Waits until no softirq is in the handler (netdev_rx_handler_unregister()
 * does), so the sockets may go after it.
 */
void kudp_dev_detach(void)
{
	rtnl_lock();
	if (hook_dev) {
		netdev_rx_handler_unregister(hook_dev);
		netdev_put(hook_dev, &hook_tracker);
		hook_dev = NULL;
	}
	rtnl_unlock();
	unregister_netdevice_notifier(&dev_notifier);
}
