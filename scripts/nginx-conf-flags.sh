#!/usr/bin/env bash
# Writes the configure flags of an installed nginx as a conf_flags file (the
# NGX_CONF_FLAGS bash array that scripts/build-module.sh reads, in the format
# of Debian's nginx-dev), derived from that nginx's own `nginx -V`.
#
# A dynamic module loads only into an nginx configured like the tree it was
# built in: --with-compat fixes the module signature, but flags such as
# --with-threads, --with-file-aio or a -D in --with-cc-opt still decide the
# layout of nginx's structures. So every flag is kept except those naming
# what the image build had and we do not: third-party modules and nginx's own
# modules built as separate .so files (neither changes the core's layout).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/nginx-conf-flags.sh [--nginx BINARY] [--expect-version VERSION] --output FILE

Reads `nginx -V` output on standard input, or runs BINARY -V, and writes FILE:
a conf_flags file for scripts/build-module.sh (NGINX_SRC=<tree with FILE>).

  --nginx BINARY            run BINARY -V; also keeps its PCRE library (PCRE1 or
                            PCRE2, from its ELF dependencies)
  --expect-version VERSION  fail unless that nginx is exactly VERSION (the version
                            of the source tree the module will be built in)
  --output FILE             where to write the conf_flags file
EOF
}

nginx="" expect_version="" output=""
while [ $# -gt 0 ]; do
    case "$1" in
    --nginx) nginx=$2; shift 2 ;;
    --expect-version) expect_version=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "nginx-conf-flags.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ -z "$output" ]; then
    usage >&2
    exit 2
fi

if [ -n "$nginx" ]; then
    version_output=$("$nginx" -V 2>&1)
else
    version_output=$(cat)
fi

version=$(sed -n 's|^nginx version: nginx/\([0-9][0-9.]*\).*|\1|p' <<<"$version_output")
arguments=$(sed -n 's|^configure arguments: ||p' <<<"$version_output")
if [ -z "$version" ]; then
    echo "nginx-conf-flags.sh: no \"nginx version:\" line in the nginx -V output" >&2
    exit 1
fi
if [ -n "$expect_version" ] && [ "$version" != "$expect_version" ]; then
    echo "nginx-conf-flags.sh: nginx is $version, the source tree is $expect_version;" \
        "a module built in one does not load into the other" >&2
    exit 1
fi
if [ -z "$arguments" ]; then
    echo "nginx-conf-flags.sh: no \"configure arguments:\" line in the nginx -V output" >&2
    exit 1
fi

# nginx prints its arguments as the shell received them, re-quoting those
# with spaces in single quotes, so the shell splits them back. Anything that
# would make the shell do more than split and unquote is refused.
if [[ "$arguments" =~ [\$\`\\\;\&\|\<\>\(\)] ]]; then
    echo "nginx-conf-flags.sh: refusing configure arguments with shell metacharacters:" \
        "$arguments" >&2
    exit 1
fi
all_flags=()
set -f
eval "all_flags=($arguments)"
set +f

flags=() dropped=()
for flag in "${all_flags[@]}"; do
    case "$flag" in
    --add-module=* | --add-dynamic-module=*)
        # Third-party modules: their sources were on the image builder only.
        dropped+=("$flag") ;;
    --with-*=dynamic)
        # nginx's own modules as separate .so files (they need libraries such
        # as libgd or libperl at configure time, and do not touch the core).
        dropped+=("$flag") ;;
    --with-openssl=* | --with-pcre=* | --with-zlib=* | --with-libatomic=*)
        echo "nginx-conf-flags.sh: $flag builds a library from a source tree that only" \
            "the original build had; this recipe cannot reproduce that nginx" >&2
        exit 1 ;;
    *)
        flags+=("$flag") ;;
    esac
done

# configure picks PCRE2 when it finds it; an nginx linked with PCRE1 was
# built without it, so say so rather than depend on the builder's packages.
if [ -n "$nginx" ]; then
    needed=$(readelf -d "$nginx" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    if grep -q '^libpcre\.so' <<<"$needed" && ! grep -q '^libpcre2' <<<"$needed" &&
        [[ " ${flags[*]} " != *" --without-pcre2 "* ]]; then
        flags+=(--without-pcre2)
    fi
fi

{
    echo "# nginx $version's configure flags, from its nginx -V${nginx:+ ($nginx)},"
    echo "# written by scripts/nginx-conf-flags.sh for scripts/build-module.sh."
    for flag in "${dropped[@]}"; do
        echo "# dropped: $flag"
    done
    echo "NGX_CONF_FLAGS=("
    for flag in "${flags[@]}"; do
        printf '    %q\n' "$flag"
    done
    echo ")"
} >"$output.tmp"
mv "$output.tmp" "$output"
echo "nginx-conf-flags.sh: nginx $version: ${#flags[@]} flags kept, ${#dropped[@]} dropped, in $output"
