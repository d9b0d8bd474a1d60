# The target's half of src/kvd-control.ts, run as `sh kvd-control.sh COMMAND ARGS...`
# where the target is (this machine, or the lab guest, which sees this file at
# the same path). Paths come as arguments, never in a script's text: the
# project path may have spaces.
#
#   pid                            prints kvd's PID if it runs; fails otherwise
#   start BACKUP NODE KVD BACKUP_JSON
#                                  makes sure kvd runs, waits until it is ready
#                                  for the loaded udp_server; prints its PID and
#                                  its status line. Exit 3: a kvd that keeps
#                                  another backup file runs; 2: not ready in 60 s
#   stop PID                       SIGTERM, then waits up to 15 s for it to exit

kvd_log=/var/log/kvd.log

# The loaded copy of udp_server, as kvd names it (boot id + sysfs inode).
instance() {
	echo "$(cat /proc/sys/kernel/random/boot_id):$(stat -c %i /sys/module/udp_server 2>/dev/null)"
}

case "$1" in
pid)
	p=$(cat /run/kvd.pid 2>/dev/null) && kill -0 "$p" && echo "$p"
	;;
start)
	shift
	# One ./run at a time from the check to kvd's ready: two at once both
	# saw no kvd and started one each (the second fails kvd's own lock).
	# The lock is held until this script exits; kvd must not inherit it.
	exec 9>/run/kvd.start.lock && flock -w 140 9 || { echo "kvd: another ./run is starting kvd" >&2; exit 1; }
	kvd=$(cat /run/kvd.pid 2>/dev/null)
	if [ -n "$kvd" ] && kill -0 "$kvd" 2>/dev/null; then
		# A kvd that keeps another backup file: the caller restarts it ($4 is the file as JSON).
		grep -qF "\"backup\":$4," /run/kvd.status || exit 3
	else
		# A kvd killed outright leaves its files: they are not the new one's word.
		rm -f /run/kvd.pid /run/kvd.ready
		setsid "$2" "$3" --backup "$1" >>$kvd_log 2>&1 </dev/null 9>&- &
		kvd=$!
	fi
	want=$(instance)
	for i in $(seq 6000); do
		[ "$(cat /run/kvd.ready 2>/dev/null)" = "$want" ] && { echo "$kvd"; cat /run/kvd.status; exit 0; }
		kill -0 $kvd 2>/dev/null || { tail -n 5 $kvd_log >&2; exit 1; }
		sleep 0.01
	done
	exit 2
	;;
stop)
	kill -TERM "$2"
	for i in $(seq 300); do
		kill -0 "$2" 2>/dev/null || exit 0
		sleep 0.05
	done
	exit 1
	;;
*)
	echo "kvd-control.sh: unknown command: $1" >&2
	exit 64
	;;
esac
