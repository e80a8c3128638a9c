#!/usr/bin/env bash
# A Debian root made with debootstrap, cached, and a command run inside it
# (sourced by scripts/debian13.sh and scripts/check-package.sh).
#
#   debian_root SUITE 'PACKAGES...'       prints the root's path, making it if needed
#   in_debian_root ROOT WORKDIR CMD...    runs CMD in ROOT with WORKDIR at /work
#
# The mirror is the one this machine's apt sources name (read here, at run
# time: no host name is written into the repository). A root is cached under
# $NBDJS_ROOT_CACHE (default /var/cache/nbdjs, or ~/.cache/nbdjs when not
# root), keyed by the suite and its package list: a root with other packages
# is another root. The registries go through this machine's certificate
# authorities (/usr/local/share/ca-certificates), which are copied in, and npm
# is told about them (cafile) and about Node's headers (nodedir=/usr, from
# Debian's libnode-dev, when installed).
#
# Everything runs in a mount namespace of its own (unshare --mount): /proc,
# /dev, /sys and the work directory are mounted for the command and vanish
# with it, so nothing is left mounted if the run is killed. The root is also
# bind-mounted onto itself, so that / is a mount point inside: `unshare
# --mount` (the slow-DNS tests) fails in a plain chroot ("cannot change root
# filesystem propagation").

debian_mirror() {
  # The first deb822 URIs: line (or one-line deb entry) naming Debian's main
  # archive, not its security archive.
  local f uri
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
    [ -f "$f" ] || continue
    uri=$(awk '
      /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /debian\/?$/ && $i !~ /security/) { print $i; exit } }
      /^deb / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/ && $i ~ /debian\/?$/ && $i !~ /security/) { print $i; exit } }
    ' "$f")
    if [ -n "$uri" ]; then echo "${uri%/}"; return 0; fi
  done
  echo "debian-root: no Debian mirror in /etc/apt/sources.list.d/ or /etc/apt/sources.list" >&2
  return 1
}

debian_root_cache() {
  if [ -n "${NBDJS_ROOT_CACHE:-}" ]; then echo "$NBDJS_ROOT_CACHE"
  elif [ "$(id -u)" = 0 ]; then echo /var/cache/nbdjs
  else echo "${XDG_CACHE_HOME:-$HOME/.cache}/nbdjs"; fi
}

# debian_root SUITE 'PACKAGES' -> the root's path on stdout (progress on stderr).
debian_root() {
  local suite=$1 packages=$2 cache key root tmp mirror start=$SECONDS
  cache=$(debian_root_cache)
  key=$(printf '%s\n' "$suite" $packages | sort | sha256sum | cut -c1-12)
  root=$cache/$suite-$key
  if [ -f "$root/.complete" ]; then
    echo "debian-root: cached $suite root $root" >&2
    echo "$root"; return 0
  fi
  command -v debootstrap >/dev/null || as_root apt-get install -y -qq debootstrap >/dev/null
  mirror=$(debian_mirror) || return 1
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.$suite-XXXXXX")
  echo "debian-root: debootstrap $suite into $tmp (minbase)" >&2
  as_root debootstrap --variant=minbase --include=ca-certificates "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 ||
    { tail -20 "$tmp.log" >&2; echo "debian-root: debootstrap failed (log: $tmp.log)" >&2; return 1; }
  setup_root_config "$tmp"
  echo "debian-root: installing $packages" >&2
  in_debian_root "$tmp" "" bash -c 'export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null && apt-get clean' _ $packages >>"$tmp.log" 2>&1 ||
    { tail -20 "$tmp.log" >&2; echo "debian-root: apt-get install failed (log: $tmp.log)" >&2; return 1; }
  touch "$tmp/.complete"
  rm -rf "$root"
  mv "$tmp" "$root"
  rm -f "$tmp.log"
  echo "debian-root: made $root in $((SECONDS - start)) s" >&2
  echo "$root"
}

setup_root_config() {
  local root=$1
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
  in_debian_root "$root" "" update-ca-certificates >/dev/null 2>&1 || true
  printf 'cafile=/etc/ssl/certs/ca-certificates.crt\nnodedir=/usr\nfund=false\naudit=false\nupdate-notifier=false\n' >"$root/etc/npmrc"
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# in_debian_root ROOT WORKDIR CMD... : WORKDIR (if not empty) is /work inside.
in_debian_root() {
  local root=$1 work=$2 npm_cache=""; shift 2
  npm_cache=$(npm config get cache 2>/dev/null || true)
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mkdir -p "$root/work"
  as_root unshare --mount --propagation private -- bash -c '
    set -e
    root=$1 work=$2 npm_cache=$3; shift 3
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount -t sysfs sys "$root/sys"
    mount -t tmpfs tmpfs "$root/tmp"
    [ -z "$work" ] || mount --bind "$work" "$root/work"
    # npm'"'"'s download cache is shared with this machine'"'"'s: npm ci needs no second download.
    if [ -n "$npm_cache" ] && [ -d "$npm_cache" ]; then mkdir -p "$root/root/.npm"; mount --bind "$npm_cache" "$root/root/.npm"; fi
    exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      LANG=C.UTF-8 TERM="${TERM:-dumb}" CI="${CI:-}" "$@"
  ' _ "$root" "$work" "$npm_cache" "$@"
}
