#!/usr/bin/env bash
# Import throughput: a generated CSV of ROWS rows (default 1,000,000; about 60 MB) imported
# into a fresh SQLite database by a release build.
#   bash benches/import.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
cargo build --release -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v n="$ROWS" 'BEGIN {
  print "email,name,employees,industry,engagement,products";
  split("retail manufacturing healthcare hospitality other", ind, " ");
  split("learner connector collaborator", eng, " ");
  for (i = 0; i < n; i++)
    printf "person%d@import.example,Person %d,%d,%s,%s,office;cloud\n", i, i, i % 300 + 1, ind[i % 5 + 1], eng[i % 3 + 1];
}' > "$work/list.csv"
echo "file: $(du -h "$work/list.csv" | cut -f1), $ROWS rows"
/usr/bin/time -v ./target/release/rapport --database-url "sqlite://$work/import.db" import "$work/list.csv" --source bench 2> "$work/time.txt" || true
grep -E "imported|Elapsed|Maximum resident" "$work/time.txt"
