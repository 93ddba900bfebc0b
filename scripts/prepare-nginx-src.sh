#!/usr/bin/env bash
# Lays out an nginx source tree that scripts/build-module.sh can build the
# module in (NGINX_SRC=DEST): the exact nginx release, the same patches the
# target nginx was built with (some add fields to nginx's structures, which
# --with-compat's signature cannot see), and its conf_flags file (from
# scripts/nginx-conf-flags.sh).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/prepare-nginx-src.sh (--tarball FILE --sha256 HEX | --source DIR)
                                    [--patches DIR] --conf-flags FILE --dest DIR

  --tarball FILE     nginx-X.Y.Z.tar.gz as nginx.org publishes it
  --sha256 HEX       its expected SHA-256; a mismatch fails
  --source DIR       an unpacked nginx source tree instead of a tarball
  --patches DIR      apply every file in DIR in name order, as ingress-nginx's
                     images/nginx/rootfs/build.sh does: *.txt with patch -p0,
                     anything else with patch -p1
  --conf-flags FILE  the conf_flags file to put in the tree
  --dest DIR         the tree to create (replaced if it exists)
EOF
}

tarball="" sha256="" source="" patches="" conf_flags="" dest=""
while [ $# -gt 0 ]; do
    case "$1" in
    --tarball) tarball=$2; shift 2 ;;
    --sha256) sha256=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    --patches) patches=$2; shift 2 ;;
    --conf-flags) conf_flags=$2; shift 2 ;;
    --dest) dest=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "prepare-nginx-src.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ -z "$conf_flags" ] || [ -z "$dest" ] ||
    { [ -n "$tarball" ] && [ -n "$source" ]; } || { [ -z "$tarball" ] && [ -z "$source" ]; } ||
    { [ -n "$tarball" ] && [ -z "$sha256" ]; }; then
    usage >&2
    exit 2
fi

rm -rf "$dest"
mkdir -p "$dest"
if [ -n "$tarball" ]; then
    if ! echo "$sha256  $tarball" | sha256sum -c - >/dev/null 2>&1; then
        echo "prepare-nginx-src.sh: $tarball does not have SHA-256 $sha256" \
            "(it has $(sha256sum "$tarball" | cut -d' ' -f1))" >&2
        exit 1
    fi
    tar -xzf "$tarball" -C "$dest" --strip-components=1
else
    cp -R "$source/." "$dest/"
fi
if [ ! -x "$dest/configure" ]; then
    echo "prepare-nginx-src.sh: no nginx configure script in $dest" >&2
    exit 1
fi

if [ -n "$patches" ]; then
    if [ ! -d "$patches" ]; then
        echo "prepare-nginx-src.sh: no patch folder $patches" >&2
        exit 1
    fi
    patches=$(cd "$patches" && pwd)
    count=0
    # Byte order, as ls sorts in the builder's POSIX locale.
    LC_ALL=C
    for path in "$patches"/*; do
        [ -f "$path" ] || continue
        case "$path" in
        *.txt) level=-p0 ;;
        *) level=-p1 ;;
        esac
        # --forward: a patch that is already in the release fails instead of
        # being silently reversed.
        if ! (cd "$dest" && patch "$level" --forward --batch --silent <"$path"); then
            echo "prepare-nginx-src.sh: patch $(basename "$path") does not apply to $dest" >&2
            exit 1
        fi
        count=$((count + 1))
    done
    echo "prepare-nginx-src.sh: applied $count patches from $patches"
fi

cp "$conf_flags" "$dest/conf_flags"
echo "prepare-nginx-src.sh: nginx tree ready in $dest"
