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
kudp_node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$kudp_node_major" -ge 20 ] ||
	kudp_die "Node $(node --version) is too old; kernel-udp needs Node 20 or newer."

# npm packages: install when missing or when package-lock.json changed.
if [ ! -f "$kudp_root/node_modules/.package-lock.json" ] ||
	[ "$kudp_root/package-lock.json" -nt "$kudp_root/node_modules/.package-lock.json" ]; then
	echo "kernel-udp: installing npm packages (npm ci)..." >&2
	(cd "$kudp_root" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
		kudp_die "npm ci failed; see the messages above."
fi

# TypeScript: compile when a source file is newer than the last build.
kudp_stamp="$kudp_root/dist/.build-stamp"
if [ ! -f "$kudp_stamp" ] ||
	[ -n "$(find "$kudp_root/src" "$kudp_root/user-client" "$kudp_root/daemon" "$kudp_root/test" \
		"$kudp_root/bench" "$kudp_root/tsconfig.json" "$kudp_root/package.json" \
		-newer "$kudp_stamp" \( -name '*.ts' -o -name '*.json' -o -name '*.sh' \) \
		-print -quit 2>/dev/null)" ]; then
	echo "kernel-udp: compiling TypeScript..." >&2
	(cd "$kudp_root" && ./node_modules/.bin/tsc -p tsconfig.json >&2) ||
		kudp_die "TypeScript did not compile; see the errors above."
	touch "$kudp_stamp"
fi
