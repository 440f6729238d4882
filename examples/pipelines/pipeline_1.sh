#!/bin/sh
# Light shell pipeline (as in the seed): a few short commands in sequence and in a pipe.
set -e
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
echo "fetching sources" > "$workdir/log"
ls -la / > "$workdir/listing"
grep -c . "$workdir/listing" > /dev/null
sort "$workdir/listing" | uniq | wc -l > /dev/null
sleep 0.2
date > "$workdir/done"
cat "$workdir/log" "$workdir/done" > /dev/null
