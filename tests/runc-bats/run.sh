#!/bin/bash
# runc's own integration suite (bats, from Debian's runc source package)
# run against any OCI runtime binary: the outside check of skiff-runc's
# command line, next to the same suite run against Debian's runc.
#
# Usage: tests/runc-bats/run.sh [bats filter args...]
#   RUNC=/path/to/runtime   runtime under test (default: Debian's runc)
#   RUNC_BATS_TEST_TIMEOUT=secs  a test that has run this long has its
#                           runtime processes killed (default 120)
#   RUNC_BATS_FILE_TIMEOUT=secs  time limit per .bats file (default 900)
#   RUNC_BATS_TESTS="a.bats b.bats"  only these files (default: all)
#
# Everything it makes lives under build/: the source package in
# build/runc-src/, Go caches, logs and results in build/runc-bats/. It is
# idempotent: each step is skipped when its output already exists. The only
# change outside build/ is a deb-src entry (skiff-deb-src.sources), added
# only when apt has no deb-src for bookworm main yet.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD="$REPO/build"
SRC_PARENT="$BUILD/runc-src"
WORK="$BUILD/runc-bats"
RUNC="${RUNC:-/usr/sbin/runc}"
RUNC_VERSION_WANTED="1.1.5"

log() { printf 'runc-bats: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (the suite's root tests need it)"
case "$RUNC" in
/*) ;;
*) RUNC=$(command -v "$RUNC" || true) ;;
esac
[ -n "$RUNC" ] && [ -x "$RUNC" ] || die "runtime under test is not an executable: ${RUNC:-<empty>}"
mkdir -p "$SRC_PARENT" "$WORK"

# --- 1. tools the suite and the helper build need -----------------------
# The suite shells out to jq, gawk, nsenter, script, gcc (it compiles small
# C test programs); the helpers need Go with the packaged runc
# sources (GOPATH mode) and libseccomp headers for seccompagent.
need_pkgs=(bats jq gawk xz-utils dpkg-dev gcc libc6-dev util-linux bsdutils golang-go
	golang-github-opencontainers-runc-dev libseccomp-dev pkg-config)
missing=()
for p in "${need_pkgs[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. deb-src entry and the source package ----------------------------
have_deb_src() {
	apt-get indextargets --format '$(CODENAME) $(COMPONENT)' 'Created-By: Sources' 2>/dev/null |
		grep -qx 'bookworm main'
}
SRC_DIR=$(find "$SRC_PARENT" -maxdepth 1 -type d -name "runc-${RUNC_VERSION_WANTED}*" | sort | tail -n1)
if [ -z "$SRC_DIR" ] || [ ! -f "$SRC_DIR/.skiff-extracted" ]; then
	if ! have_deb_src; then
		log "adding deb-src for bookworm main (/etc/apt/sources.list.d/skiff-deb-src.sources)"
		cat >/etc/apt/sources.list.d/skiff-deb-src.sources <<-'EOF'
			# added by skiff tests/runc-bats/run.sh: runc's integration suite
			# comes from Debian's runc source package
			Types: deb-src
			URIs: http://deb.debian.org/debian
			Suites: bookworm bookworm-updates
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
		apt-get update -qq
	fi
	if [ -z "$(apt-cache showsrc runc 2>/dev/null | head -n1)" ]; then
		apt-get update -qq
	fi
	log "apt-get source runc into $SRC_PARENT"
	rm -rf "${SRC_PARENT:?}"/runc-*
	# apt drops privileges to _apt for downloads; give it a directory it
	# may write, then let dpkg-source unpack (and apply Debian's patches).
	(cd "$SRC_PARENT" && apt-get source -qq runc >/dev/null 2>"$WORK/apt-source.log") ||
		die "apt-get source runc failed, see $WORK/apt-source.log"
	SRC_DIR=$(find "$SRC_PARENT" -maxdepth 1 -type d -name 'runc-*' | sort | tail -n1)
	[ -n "$SRC_DIR" ] || die "no runc-* directory after apt-get source"
	touch "$SRC_DIR/.skiff-extracted"
fi
case "$(basename "$SRC_DIR")" in
"runc-${RUNC_VERSION_WANTED}"*) ;;
*) log "warning: source is $(basename "$SRC_DIR"), counts were calibrated on runc $RUNC_VERSION_WANTED" ;;
esac
INTEGRATION="$SRC_DIR/tests/integration"
[ -f "$INTEGRATION/helpers.bash" ] || die "no $INTEGRATION/helpers.bash in the source package"

# --- 3. helper programs (helpers.bash looks in contrib/cmd/<name>/<name>) -
# GOPATH mode, offline: every import resolves from Debian's /usr/share/gocode
# (golang-github-opencontainers-runc-dev and its dependencies).
export GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local
export GOPATH="$WORK/gopath:/usr/share/gocode" GOCACHE="$WORK/gocache"
mkdir -p "$WORK/gopath"
for helper in recvtty sd-helper seccompagent; do
	dir="$SRC_DIR/contrib/cmd/$helper"
	[ -d "$dir" ] || continue
	bin="$dir/$helper"
	if [ ! -x "$bin" ] || [ -n "$(find "$dir" -name '*.go' -newer "$bin" -print -quit)" ]; then
		tags=()
		# seccompagent is a stub without the seccomp build tag.
		[ "$helper" = seccompagent ] && tags=(-tags seccomp)
		log "building $helper"
		(cd "$SRC_DIR" && go build "${tags[@]}" -o "$bin" "./contrib/cmd/$helper") ||
			die "building $helper failed"
	fi
done

# --- 4. images, offline --------------------------------------------------
# get-images.sh downloads only when $TESTDATA/<name>-<arch>.tar.xz is
# missing, so pre-placed files are used as they are and no test file changes.
IMAGES="$REPO/build/images"
if [ ! -f "$IMAGES/busybox-oci/index.json" ] && [ ! -f "$IMAGES/busybox.tar" ]; then
	log "no busybox image in $IMAGES; running make images"
	make -C "$REPO" images >&2
fi
arch=$(go env GOARCH)
TESTDATA="$INTEGRATION/testdata"
BUSYBOX_XZ="$TESTDATA/busybox-$arch.tar.xz"
DEBIAN_XZ="$TESTDATA/debian-$arch.tar.xz"

# Prints the path of the single layer blob of the busybox image, from the
# OCI layout if present, else from the docker-save archive (extracted to tmp).
busybox_layer() {
	local tmp="$1"
	if [ -f "$IMAGES/busybox-oci/index.json" ]; then
		local oci="$IMAGES/busybox-oci" manifest layers
		manifest=$(jq -r '.manifests[0].digest' "$oci/index.json")
		layers=$(jq -r '.layers[].digest' "$oci/blobs/${manifest/://}")
		[ "$(wc -l <<<"$layers")" -eq 1 ] || die "busybox image has more than one layer"
		echo "$oci/blobs/${layers/://}"
	else
		tar -C "$tmp" -xf "$IMAGES/busybox.tar"
		local layer
		layer=$(jq -r '.[0].Layers[0]' "$tmp/manifest.json")
		echo "$tmp/$layer"
	fi
}

# Newer sources than the stamp mean a rebuilt image: redo the tarballs.
# The stamp names the image it came from and this recipe's version.
image_src_stamp="recipe-2 $(stat -c %Y "$IMAGES"/busybox-oci/index.json "$IMAGES"/busybox.tar 2>/dev/null | sort -n | tail -n1)"
if [ ! -f "$BUSYBOX_XZ" ] || [ ! -f "$DEBIAN_XZ" ] ||
	[ "$(cat "$WORK/images.stamp" 2>/dev/null)" != "$image_src_stamp" ]; then
	tmp=$(mktemp -d "$WORK/images.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	layer=$(busybox_layer "$tmp")
	log "busybox image from $layer"
	mkdir -p "$tmp/rootfs"
	tar -C "$tmp/rootfs" -xzf "$layer"
	# Make it look like the busybox image the suite was written for
	# (docker-library's): no /proc or /sys directories (mask.bats puts
	# symlinks there) and no uid/gid 1000 entries (exec.bats expects
	# `id` to print bare numbers for 1000).
	rm -rf "$tmp/rootfs/proc" "$tmp/rootfs/sys"
	sed -i '/^[^:]*:[^:]*:1000:/d' "$tmp/rootfs/etc/passwd"
	sed -i '/^[^:]*:[^:]*:1000:/d' "$tmp/rootfs/etc/group"
	tar -C "$tmp/rootfs" -cJf "$BUSYBOX_XZ.tmp" . && mv "$BUSYBOX_XZ.tmp" "$BUSYBOX_XZ"
	# The suite's "debian" image is used only by hooks.bats, which needs a
	# shell, grep and ldconfig in the container and /lib in the rootfs. No
	# Debian rootfs can be fetched offline, so it is the busybox rootfs plus
	# the host's static ldconfig: enough for what that test exercises.
	mkdir -p "$tmp/rootfs/lib" "$tmp/rootfs/sbin" "$tmp/rootfs/etc/ld.so.conf.d"
	cp /sbin/ldconfig "$tmp/rootfs/sbin/ldconfig"
	printf 'include /etc/ld.so.conf.d/*.conf\n' >"$tmp/rootfs/etc/ld.so.conf"
	tar -C "$tmp/rootfs" -cJf "$DEBIAN_XZ.tmp" . && mv "$DEBIAN_XZ.tmp" "$DEBIAN_XZ"
	echo "$image_src_stamp" >"$WORK/images.stamp"
	rm -rf "$tmp"
	trap - EXIT
fi

# --- 5. run the suite ----------------------------------------------------
# One bats process per file, each under a time limit and watched by a
# per-test watchdog, so a runtime that hangs costs one test, at worst the
# rest of one file (counted as failed), never the run.
# (bats' own BATS_TEST_TIMEOUT is not used: its watchdog is a background job
# of the test shell, and tests that `wait` for their own jobs, as
# events.bats does, then wait for the watchdog too.)
name=$(basename "$RUNC")
# A partial run keeps its results apart from the last full one.
[ -n "${RUNC_BATS_TESTS:-}" ] && name+="-partial"
out="$WORK/results/$name"
rm -rf "$out"
mkdir -p "$out"
export RUNC
# No systemd cgroup driver here (the host is not booted by systemd in CI).
unset RUNC_USE_SYSTEMD
FILE_TIMEOUT="${RUNC_BATS_FILE_TIMEOUT:-900}"
TEST_TIMEOUT="${RUNC_BATS_TEST_TIMEOUT:-120}"

# Per-test time limit. When no test has finished for TEST_TIMEOUT seconds,
# kill (by PID) the runtime processes under this file's bats process: the
# hung command then fails its test and the rest of the file still runs.
# After twice that, kill the test's other helpers; after three times, end
# the file.
watchdog() {
	local root="$1" tap="$2" last="" same=0 pids
	while sleep 5; do
		local now
		now=$(grep -cE '^(not )?ok ' "$tap" 2>/dev/null || true)
		if [ "$now" != "$last" ]; then
			last=$now same=0
			continue
		fi
		same=$((same + 5))
		[ "$same" -ge "$TEST_TIMEOUT" ] || continue
		# script(1) made a session for the file; its process group leader
		# is script's child, `timeout`.
		local group
		group=$(ps -o pid= --ppid "$root" | head -n1 | tr -d ' ')
		if [ "$same" -ge $((3 * TEST_TIMEOUT)) ]; then
			log "$(basename "$tap" .tap) still stuck: ending the file (process group $group)"
			[ -n "$group" ] && kill -9 -- "-$group" 2>/dev/null || true
			return 0
		fi
		if [ "$same" -ge $((2 * TEST_TIMEOUT)) ] && [ -n "$group" ]; then
			# Killing the runtime was not enough: a test helper (recvtty,
			# seccompagent, ...) orphaned by a failed test holds bats' output
			# open. Kill every process of the group but bats' own.
			pids=$(ps -e -o pid=,pgid=,args= | awk -v g="$group" '
				$2 == g && $3 !~ /^(timeout|cat|bash)$/ && $0 !~ /bats-core/ { print $1 }')
			if [ -n "$pids" ]; then
				log "test $((last + 1)) of $(basename "$tap" .tap) still stuck: killing helper pids" $pids
				kill -9 $pids 2>/dev/null || true
			fi
			continue
		fi
		pids=$(ps -e -o pid=,ppid=,args= | awk -v root="$root" -v rt="$RUNC" '
			{ parent[$1] = $2; $1 = $1; line[$1] = $0 }
			END {
				for (p in parent) {
					q = p
					while (q in parent && q != root && q > 1) q = parent[q]
					if (q == root && index(line[p], rt) > 0) print p
				}
			}')
		if [ -n "$pids" ]; then
			log "test $((last + 1)) of $(basename "$tap" .tap) stuck for ${same}s: killing runtime pids" $pids
			kill -9 $pids 2>/dev/null || true
			# A process in a frozen cgroup (cgroups.bats freezes some on
			# purpose) takes SIGKILL only once thawed.
			local pid cg
			for pid in $pids; do
				cg=$(awk -F: '$2 == "freezer" { print $3 }' "/proc/$pid/cgroup" 2>/dev/null || true)
				if [ -n "$cg" ] && grep -qx FROZEN "/sys/fs/cgroup/freezer$cg/freezer.state" 2>/dev/null; then
					echo THAWED >"/sys/fs/cgroup/freezer$cg/freezer.state" || true
				fi
				cg=$(awk -F: '$1 == "0" { print $3 }' "/proc/$pid/cgroup" 2>/dev/null || true)
				for f in /sys/fs/cgroup/unified"$cg"/cgroup.freeze /sys/fs/cgroup"$cg"/cgroup.freeze; do
					if [ -n "$cg" ] && grep -qx 1 "$f" 2>/dev/null; then echo 0 >"$f" || true; fi
				done
			done
		fi
	done
}
files=()
if [ -n "${RUNC_BATS_TESTS:-}" ]; then
	for t in $RUNC_BATS_TESTS; do files+=("$INTEGRATION/$t"); done
else
	files=("$INTEGRATION"/*.bats)
fi
log "running $(bats --count "${files[@]}") tests in ${#files[@]} files with RUNC=$RUNC (logs: $out)"
total=0 passed=0 skipped=0 failed=0
start=$(date +%s)
tmp_before=$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'bats-run-*' 2>/dev/null | sort)
for f in "${files[@]}"; do
	base=$(basename "$f" .bats)
	tap="$out/$base.tap"
	count=$(bats --count "$f")
	# Tests with process.terminal and no console socket use the caller's
	# terminal (/dev/tty), so, as runc's own CI does, bats runs under
	# script(1) for a pseudo-terminal; TAP goes to the file, not the pty.
	bats_cmd="cd $(printf '%q' "$INTEGRATION") && exec timeout -k 10 $FILE_TIMEOUT"
	bats_cmd+=" bats --tap $(printf '%q ' "$@" "$f") >$(printf '%q' "$tap") 2>&1"
	# bats exits non-zero when any test fails; the counts are the result.
	script -qec "$bats_cmd" /dev/null </dev/null >/dev/null 2>&1 &
	bats_pid=$!
	watchdog "$bats_pid" "$tap" &
	watchdog_pid=$!
	wait "$bats_pid" || true
	kill "$watchdog_pid" 2>/dev/null || true
	wait "$watchdog_pid" 2>/dev/null || true
	s=$(grep -cE '^ok [0-9]+ .*# skip' "$tap" || true)
	p=$(($(grep -cE '^ok [0-9]+ ' "$tap" || true) - s))
	x=$(grep -cE '^not ok [0-9]+ ' "$tap" || true)
	grep -E '^not ok [0-9]+ ' "$tap" | sed "s/^not ok [0-9]* /  FAIL $base: /" >&2 || true
	lost=$((count - p - s - x))
	if [ "$lost" -gt 0 ]; then
		log "$base: $lost tests did not report (timed out after ${FILE_TIMEOUT}s?), counted as failed"
		x=$((x + lost))
	fi
	total=$((total + count)) passed=$((passed + p)) skipped=$((skipped + s)) failed=$((failed + x))
done
elapsed=$(($(date +%s) - start))

# A test that fails half-way can skip part of its teardown. Remove what the
# suite leaves then: its cgroups (thawed first; rmdir refuses a cgroup with
# tasks, so nothing in use goes) and this run's bats temporary directories
# (unless something is still mounted under them).
for d in /sys/fs/cgroup/*/runc-cgroups-integration-test /sys/fs/cgroup/runc-cgroups-integration-test; do
	[ -d "$d" ] || continue
	find "$d" -name freezer.state -exec sh -c 'grep -qx FROZEN "$1" && echo THAWED >"$1"' _ {} \; 2>/dev/null || true
	find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done
for d in $(comm -13 <(echo "$tmp_before") <(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'bats-run-*' 2>/dev/null | sort)); do
	awk -v d="$d/" 'index($5 "/", d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo || rm -rf "$d"
done
cat "$out"/*.tap >"$WORK/$name.tap"
summary="runc-bats RUNC=$RUNC: $passed passed, $skipped skipped, $failed failed of $total"
echo "$summary (${elapsed}s, $(date -u +%Y-%m-%dT%H:%MZ))" >"$WORK/$name.summary"
echo "$summary"
