#!/usr/bin/env bash
# Creates the credentials an overlay's secretGenerator reads, once: random
# values in OVERLAY/secrets/ (git-ignored, mode 0600), never overwritten, so
# that re-running it keeps a cluster's passwords. Bring your own by writing
# the files before running it (or instead of it).
set -euo pipefail

usage() {
    cat <<'EOF_USAGE'
Usage: scripts/manifest-secrets.sh OVERLAY_DIR

Writes, if missing:
  OVERLAY_DIR/secrets/redis-password     the Redis password (one line)
  OVERLAY_DIR/secrets/amqp-credentials   RabbitMQ's user:password (one line)
  OVERLAY_DIR/secrets/identity-secret    the gateway's secret for signed identity
                                         tokens (pod-router-controller sign)
Then `kubectl kustomize OVERLAY_DIR` renders the Secrets from them.
EOF_USAGE
}

case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") usage >&2; exit 2 ;;
esac
overlay=$1
[ -f "$overlay/kustomization.yaml" ] || {
    echo "manifest-secrets.sh: $overlay has no kustomization.yaml" >&2
    exit 2
}

dir=$overlay/secrets
mkdir -p "$dir"
chmod 700 "$dir"
umask 077

# 32 random bytes as hex: safe in Redis's ACL file, RabbitMQ's config and a
# user:password line.
random_hex() {
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

write_once() {
    local file=$dir/$1 value=$2
    if [ -s "$file" ]; then
        echo "kept    $file"
    else
        printf '%s\n' "$value" >"$file.tmp"
        mv "$file.tmp" "$file"
        echo "created $file"
    fi
}
write_once redis-password "$(random_hex)"
write_once amqp-credentials "pod-router:$(random_hex)"
write_once identity-secret "$(random_hex)"
