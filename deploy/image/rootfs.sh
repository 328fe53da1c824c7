#!/usr/bin/env bash
# Assembles the root filesystem of the strata image in OUT from the release
# binaries in BIN_DIR: the binaries, every shared library `ldd` lists plus the
# dynamic loader, CA certificates, a non-root user (uid/gid 10001), /data
# owned by it and a world-writable /tmp. No shell, no package manager.
#
#   deploy/image/rootfs.sh BIN_DIR OUT
#
# OUT/rootfs is the filesystem; OUT/data is the empty /data, kept apart so
# that the Dockerfile can COPY it with --chown (COPY makes files root's).
#
# Used by deploy/image/build (no base image) and by the top-level Dockerfile
# (inside its builder stage), so both images have the same layout.
set -euo pipefail

bin_dir=${1:?usage: rootfs.sh BIN_DIR OUT}
out=${2:?usage: rootfs.sh BIN_DIR OUT}
binaries=(strata strata-bench)
uid=10001

rm -rf "$out"
mkdir -p "$out/data"
out=$out/rootfs
mkdir -p "$out"/{usr/local/bin,etc/ssl/certs,tmp}

for name in "${binaries[@]}"; do
    install -m 0755 "$bin_dir/$name" "$out/usr/local/bin/$name"
    # Function names stay (backtraces); line tables go (most of the size).
    if [[ "${STRIP:-1}" == 1 ]] && command -v objcopy >/dev/null; then
        objcopy --strip-debug "$out/usr/local/bin/$name"
    fi
done

# Every library the binaries load, at the path the loader looks for it, plus
# the loader itself (the absolute path in ldd's output without "=>").
libraries() {
    for name in "${binaries[@]}"; do
        ldd "$bin_dir/$name" | awk '
            $2 == "=>" && $3 ~ /^\// { print $3 }
            $1 ~ /^\// { print $1 }'
    done | sort -u
}
while read -r lib; do
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
done < <(libraries)
# The loader's path in the ELF header (/lib64/ld-linux-x86-64.so.2 on
# x86_64) is a symlink on Debian; the copy above dereferenced it.

if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
else
    echo "rootfs.sh: warning: no /etc/ssl/certs/ca-certificates.crt, the image has no CA certificates" >&2
fi

cat > "$out/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
strata:x:$uid:$uid:strata:/data:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat > "$out/etc/group" <<GROUP
root:x:0:
strata:x:$uid:
nogroup:x:65534:
GROUP
# glibc resolves names through NSS; files then DNS, as everywhere else.
echo "hosts: files dns" > "$out/etc/nsswitch.conf"

chmod 1777 "$out/tmp"
chmod 0755 "$out/../data"
