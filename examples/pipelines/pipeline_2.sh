#!/bin/sh
# Light shell pipeline with parallel steps and a subshell (as in the seed).
set -e
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
( seq 1 20000 | sort -n > "$workdir/a" ) &
( seq 1 20000 | sort -rn > "$workdir/b" ) &
wait
cmp -s "$workdir/a" "$workdir/b" || echo "outputs differ, as expected" > /dev/null
tar -cf "$workdir/out.tar" -C "$workdir" a b
gzip -9 "$workdir/out.tar"
sha256sum "$workdir/out.tar.gz" > /dev/null
