# shellcheck shell=bash
# Sourced by the entry points in bin/: make sure Node is new enough, the npm
# packages are installed and the TypeScript is compiled, so that a fresh clone
# works with nothing installed by hand. Progress goes to stderr.

kudp_root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"

kudp_die() {
	echo "kernel-udp: $*" >&2
	exit 1
}

command -v node >/dev/null 2>&1 ||
	kudp_die "node is not installed. On Debian: apt-get install nodejs npm (Node 20 or newer)."
# `node --version` answers without starting JavaScript (`node -p` costs ~70 ms).
kudp_node_major="$(node --version)"
kudp_node_major="${kudp_node_major#v}"
kudp_node_major="${kudp_node_major%%.*}"
[ "$kudp_node_major" -ge 20 ] ||
	kudp_die "Node $(node --version) is too old; kernel-udp needs Node 20 or newer."

# npm packages: install when missing or when package-lock.json changed.
kudp_npm_stale() {
	[ ! -f "$kudp_root/node_modules/.package-lock.json" ] ||
		[ "$kudp_root/package-lock.json" -nt "$kudp_root/node_modules/.package-lock.json" ]
}
kudp_npm_ci() {
	echo "kernel-udp: installing npm packages (npm ci)..." >&2
	(cd "$kudp_root" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
		kudp_die "npm ci failed; see the messages above."
}

# TypeScript: compile when a source file is newer than the last build, or the
# list of source files differs from the one that build read (a file was added,
# renamed or deleted). The list, not the directories' times: a kernel module
# built in bench/echo-module changes that directory, and a needless compile
# mid-suite replaced dist/ under the lab guest's feet ("Cannot find module").
kudp_stamp="$kudp_root/dist/.build-stamp"
kudp_sources_seen="$kudp_root/dist/.build-sources"
kudp_sources() {
	(cd "$kudp_root" && find src user-client daemon test bench tsconfig.json package.json \
		\( -name '*.ts' -o -name '*.json' -o -name '*.sh' \) -print 2>/dev/null | LC_ALL=C sort)
}
kudp_stale() {
	[ ! -f "$kudp_stamp" ] || [ ! -f "$kudp_sources_seen" ] ||
		[ -n "$(find "$kudp_root/src" "$kudp_root/user-client" "$kudp_root/daemon" "$kudp_root/test" \
			"$kudp_root/bench" "$kudp_root/tsconfig.json" "$kudp_root/package.json" \
			-newer "$kudp_stamp" \( -name '*.ts' -o -name '*.json' -o -name '*.sh' \) \
			-print -quit 2>/dev/null)" ] ||
		[ "$(kudp_sources)" != "$(cat "$kudp_sources_seen")" ]
}

# tsc never deletes from its output directory, and ava runs every
# dist/test/**/*.test.js, so a deleted test would keep running. Compile into a
# fresh directory beside dist/ (the same depth, so source maps point at the
# same sources), then move each file into dist/ with rename(2), so that a
# ./run already running sees the old or the new file, never half of one, and
# remove what the new build no longer has. Under flock: two ./run started at
# once on a fresh checkout compile once, the second waits for the first.
kudp_compile() {
	local next="$kudp_root/.dist-next.$$" file
	rm -rf "$next" && mkdir -p "$next" || kudp_die "cannot create $next"
	# The stamp's time is when the sources were read: an edit during the compile triggers the next one.
	touch "$next/.build-stamp"
	kudp_sources >"$next/.build-sources"
	echo "kernel-udp: compiling TypeScript..." >&2
	if ! (cd "$kudp_root" && ./node_modules/.bin/tsc -p tsconfig.json --outDir "$next" >&2); then
		rm -rf "$next"
		kudp_die "TypeScript did not compile; see the errors above."
	fi
	(cd "$kudp_root/dist" && find . -type f ! -name .build-stamp ! -name .build-sources ! -name .build.lock -print0) |
		while IFS= read -r -d '' file; do
			[ -e "$next/$file" ] || rm -f "$kudp_root/dist/$file"
		done
	(cd "$next" && find . -mindepth 1 -type d -print0) |
		while IFS= read -r -d '' file; do mkdir -p "$kudp_root/dist/$file"; done
	(cd "$next" && find . -type f ! -name .build-stamp ! -name .build-sources -print0) |
		while IFS= read -r -d '' file; do mv -f "$next/$file" "$kudp_root/dist/$file"; done
	find "$kudp_root/dist" -mindepth 1 -type d -empty -delete
	mv -f "$next/.build-sources" "$kudp_sources_seen"
	mv -f "$next/.build-stamp" "$kudp_stamp"
	rm -rf "$next"
}

# npm ci and the compile both run under the flock: two ./run started at
# once on a fresh checkout must not both empty and refill node_modules.
if kudp_npm_stale || kudp_stale; then
	command -v flock >/dev/null 2>&1 ||
		kudp_die "flock is not installed (Debian package: util-linux)"
	mkdir -p "$kudp_root/dist" || kudp_die "cannot create $kudp_root/dist"
	exec {kudp_lock_fd}>"$kudp_root/dist/.build.lock" || kudp_die "cannot open $kudp_root/dist/.build.lock"
	flock "$kudp_lock_fd"
	# Another ./run may have installed or compiled while this one waited.
	if kudp_npm_stale; then
		kudp_npm_ci
	fi
	if kudp_stale; then
		kudp_compile
	fi
	# Closed before exec: node must not hold the lock for as long as it runs.
	exec {kudp_lock_fd}>&-
fi
