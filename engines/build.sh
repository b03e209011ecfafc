#!/usr/bin/env bash
# Build Go main packages of one pinned engine module into a cache directory, once per pin.
#   engines/build.sh <module dir> <out dir> <package> [<package> ...]   (extra go build flags: $GOFLAGS_EXTRA)
# The out dir's name carries the version; its .stamp holds the hash of go.mod + go.sum, so a fresh clone
# (new file times) reuses the binaries and a changed pin rebuilds them.
set -euo pipefail
mod_dir=$1 out=$2; shift 2
stamp=$(cat "$mod_dir/go.mod" "$mod_dir/go.sum" | sha256sum | cut -d' ' -f1)
if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]]; then
  echo "up to date: $out"
  exit 0
fi
mkdir -p "$out"
rm -f "$out/.stamp"
for pkg in "$@"; do
  echo "go build $pkg -> $out"
  # shellcheck disable=SC2086 # GOFLAGS_EXTRA is a list of flags
  (cd "$mod_dir" && go build -trimpath ${GOFLAGS_EXTRA:-} -o "$out/" "$pkg")
done
echo "$stamp" > "$out/.stamp"
