#!/usr/bin/env bash
# Assembles a minimal root filesystem with this machine's Python 3 in OUT:
# the interpreter at /usr/bin/python3, its standard library without tests,
# tooling and GUI parts, the shared libraries it and its extension modules
# load, and the non-root user 10001. The load generator's image is this plus
# deploy/loadgen; it needs no base image.
#
#   deploy/image/rootfs-python.sh OUT        (PYTHON overrides the interpreter)
set -euo pipefail

out=${1:?usage: rootfs-python.sh OUT}
if [[ -z "${PYTHON:-}" && -x /usr/bin/python3 ]]; then
    PYTHON=/usr/bin/python3
fi
python=${PYTHON:-$(command -v python3)}
python=$(readlink -f "$python")

read -r stdlib dynload < <("$python" -c '
import sysconfig
print(sysconfig.get_path("stdlib"), sysconfig.get_config_var("DESTSHARED"))')

rm -rf "$out"
prefix=$("$python" -c 'import sys; print(sys.prefix)')
mkdir -p "$out"/{usr/bin,etc,tmp} "$out$prefix/bin"
# Python finds its standard library from where its executable really is:
# keep the interpreter under its prefix and link /usr/bin/python3 to it.
cp -L "$python" "$out$prefix/bin/python3"
if [[ "$prefix" != /usr ]]; then
    ln -s "$prefix/bin/python3" "$out/usr/bin/python3"
fi

# The standard library where the interpreter looks for it (its prefix is
# derived from its own path, so keep the same layout).
mkdir -p "$out$stdlib"
tar -C "$stdlib" -cf - \
    --exclude='./test' --exclude='./idlelib' --exclude='./tkinter' \
    --exclude='./turtledemo' --exclude='./ensurepip' --exclude='./lib2to3' \
    --exclude='./pydoc_data' --exclude='./distutils' --exclude='./config-*' \
    --exclude='./site-packages' --exclude='./dist-packages' \
    --exclude='__pycache__' --exclude='*/tests' . | tar -C "$out$stdlib" -xf -
if [[ -d "$dynload" && ! -d "$out$dynload" ]]; then
    mkdir -p "$out$dynload"
    cp -a "$dynload/." "$out$dynload/"
fi
# Libraries of the interpreter and every extension module that resolve.
{
    ldd "$python"
    find "$out$dynload" -name '*.so' -exec ldd {} \; 2>/dev/null
} | awk '
    $2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }' | sort -u | while read -r lib; do
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
done

cat > "$out/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
loadgen:x:10001:10001:loadgen:/tmp:/sbin/nologin
PASSWD
printf 'root:x:0:\nloadgen:x:10001:\n' > "$out/etc/group"
echo "hosts: files dns" > "$out/etc/nsswitch.conf"
chmod 1777 "$out/tmp"
