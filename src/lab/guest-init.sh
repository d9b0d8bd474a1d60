#!/bin/busybox sh
# /init of the lab guest's initramfs (runs as PID 1 inside QEMU).
#
# Stage 1 mounts the host's root file system read-only over virtiofs with a
# tmpfs overlay on top, so the guest runs the host's own programs (insmod,
# node, nc...) without an image to build or keep in sync. Stage 2, inside that
# root, brings the network up with no route off the host, mirrors the kernel
# log to the host, and starts the agent that `./run` talks to.
#
# Settings arrive on the kernel command line as kudp.NAME=VALUE.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

fail() {
	echo "kudp-init: $*" >&2
	# Leave a trace on the host-side log, then stop the guest.
	echo "kudp-init: $*" >/dev/kmsg 2>/dev/null
	poweroff -f
}

stage1() {
	mkdir -p /proc /sys /dev
	mount -t proc proc /proc
	mount -t sysfs sys /sys
	mount -t devtmpfs dev /dev

	for m in $(cat /modules.order); do
		insmod "/modules/$m.ko" || fail "cannot load $m"
	done

	mkdir -p /host /ovl /newroot
	mount -t virtiofs -o ro hostroot /host || fail "cannot mount the host root (virtiofs)"
	mount -t tmpfs -o mode=0755 tmpfs /ovl
	mkdir -p /ovl/upper /ovl/work
	mount -t overlay overlay \
		-o lowerdir=/host,upperdir=/ovl/upper,workdir=/ovl/work /newroot ||
		fail "cannot mount the overlay"

	for d in proc sys dev; do
		mount --move "/$d" "/newroot/$d"
	done
	# Fresh, empty /run and /var/log. /tmp and /root stay as on the host
	# (a project cloned there must be visible); writes go to the overlay.
	for d in run var/log; do
		mount -t tmpfs -o mode=0755 tmpfs "/newroot/$d"
	done
	# /var/tmp lives on the host (.lab/NAME/var-tmp), so what the backup
	# daemon writes there survives ./run down and a killed guest.
	if grep -q 'kudp.state=1' /newroot/proc/cmdline; then
		mount -t virtiofs kudpstate /newroot/var/tmp ||
			fail "cannot mount the lab's /var/tmp"
	else
		mount -t tmpfs -o mode=1777 tmpfs /newroot/var/tmp
	fi
	cp /init /newroot/run/kudp-init
	# Stage 2 sets the guest up with busybox (static, in RAM) first on PATH:
	# each of the host's dynamically linked programs costs a virtiofs read
	# and a dynamic link, a few hundred ms apiece under emulation.
	# (The initramfs' /bin: busybox and a relative link per applet, one cp.)
	cp -a /bin /newroot/run/kudp-bin
	exec chroot /newroot /run/kudp-bin/sh /run/kudp-init stage2
}

# A kudp.NAME=VALUE setting. lab.ts percent-encodes %, space, tab, newline
# and double quote in values (a project path may have spaces); %25 last.
# Shell builtins only: every program started costs time under emulation.
arg() {
	read -r cmdline </proc/cmdline
	for word in $cmdline; do
		case $word in
		"kudp.$1="*)
			value=${word#*=}
			value=${value//%20/ }
			value=${value//%09/$'\t'}
			value=${value//%0A/$'\n'}
			value=${value//%22/\"}
			echo "${value//%25/%}"
			;;
		esac
	done
}

stage2() {
	host_path=$PATH
	PATH=/run/kudp-bin:$PATH
	# Read qemu-ga and its libraries from the host while the rest is set
	# up: it starts in a fraction of the time once they are in the cache.
	qemu-ga -V >/dev/null 2>&1 &
	# Pseudo-terminals, for an interactive ./run shell.
	mkdir -p /dev/pts
	mount -t devpts -o gid=5,mode=620 devpts /dev/pts
	# The links udev or systemd make on a Debian machine: bash's <(...)
	# needs /dev/fd (dkms uses it: ./run install in the lab).
	ln -s /proc/self/fd /dev/fd
	ln -s /proc/self/fd/0 /dev/stdin
	ln -s /proc/self/fd/1 /dev/stdout
	ln -s /proc/self/fd/2 /dev/stderr
	# debugfs: the debug kernel's kmemleak is read there (test/helpers/lab.ts).
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	hostname kudp-lab

	# Kernel log: live to the host through the virtio console, and to
	# /var/log/kern.log like on a Debian host.
	i=0
	while [ ! -e /dev/hvc0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	# Raw records, one per line: no "\r" added by the tty layer.
	stty -F /dev/hvc0 raw -echo 2>/dev/null
	cat /dev/kmsg >/dev/hvc0 &
	busybox syslogd -O /var/log/kern.log
	busybox klogd

	# Network: loopback, and eth0 with a /32 address and a route to the
	# host alias 10.0.2.2 only. No default route: anything else the guest
	# sends is "Network is unreachable" and never leaves this machine.
	ip link set lo up
	ip link set eth0 up
	ip addr add 10.0.2.15/32 dev eth0
	ip route add 10.0.2.2/32 dev eth0
	# eth1: the labs' private network 10.0.9.0/24 (lab/network.ts), whose
	# frames reach the other lab guests only. Its /24 route is the only one
	# it adds: still no default route.
	if [ -n "$(arg net)" ]; then
		[ "$(cat /sys/class/net/eth1/address 2>/dev/null)" = "$(arg netmac)" ] ||
			fail "eth1 is not the labs' network card (MAC $(arg netmac))"
		ip link set eth1 up
		ip addr add "$(arg net)" dev eth1 || fail "cannot give eth1 the address $(arg net)"
	fi

	# The guest agent (qemu-ga, lab/qga.ts) runs the host's commands. It
	# starts last: the host counts the guest as ready when it answers. Its
	# port has no /dev name of its own (no udev): find it by its sysfs name.
	port=
	for p in /sys/class/virtio-ports/*; do
		[ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${p##*/}
	done
	[ -n "$port" ] || fail "no virtio-serial port for qemu-ga"
	PATH=$host_path
	# This shell stays PID 1: it reaps orphans (daemons started through
	# the agent) and restarts the agent should it ever die.
	cd /
	while :; do
		setsid qemu-ga -m virtio-serial -p "$port" -t /run -l /var/log/qemu-ga.log </dev/null >/dev/null 2>/dev/kmsg
		echo "kudp-init: qemu-ga exited ($?); restarting it" >/dev/kmsg
		sleep 1
	done
}

case "$1" in
stage2) stage2 ;;
*) stage1 ;;
esac
