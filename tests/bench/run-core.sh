#!/bin/sh
# run-core.sh DIR: run the core benchmarks built in DIR (tests/bench.mk),
# print one table and write it to DIR/core.md.
#
#   (a) instructions per malloc+free pair: pair-<alloc> under callgrind;
#       each "pair SIZE" dump minus the "empty" loop dump, divided by the
#       pair count (method in pair.c)
#   (b) small-object churn, ops/s: churn-<alloc> run BENCH_RUNS times
#       (default 5), alternating allocators, median reported
#   (c) memory after the churn: held / live and Go's bound / live
#
# Allocators are the ALLOCS list (default "kmalloc glibc"); a later issue
# adds more by building pair-<name> and churn-<name>.
set -eu
dir=$1
runs=${BENCH_RUNS:-5}
allocs=${ALLOCS:-kmalloc glibc}
sizes="16 64 256 1024 8192 65536"
budget64=48 # fast-path budget for a 64-byte pair (the issue's target)
md=$dir/core.md
tmp=$dir/tmp
rm -rf "$tmp"
mkdir -p "$tmp"

# ---- (a) instructions per pair -------------------------------------
for a in $allocs; do
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg-$a" \
        "$dir/pair-$a" $sizes >"$tmp/pair-$a.out" 2>"$tmp/pair-$a.log" || {
        echo "run-core: callgrind run of pair-$a failed:" >&2
        cat "$tmp/pair-$a.log" >&2
        exit 1
    }
    # One dump file per client request: "desc: Trigger: Client Request:
    # <name>" and "summary: <Ir>".
    awk -v n=100000 '
        /^desc: Trigger: Client Request:/ { sub(/^desc: Trigger: Client Request: /, ""); name = $0 }
        /^summary:/ { ir[name] = $2 }
        END {
            for (k in ir) if (k ~ /^pair /) {
                split(k, w, " ")
                printf "%s %.1f\n", w[2], (ir[k] - ir["empty"]) / n
            }
        }' "$tmp"/cg-"$a".* | sort -n >"$tmp/ir-$a"
done

# ---- (b), (c) churn ---------------------------------------------------
for i in $(seq "$runs"); do
    for a in $allocs; do
        nice -n 0 "$dir/churn-$a" >>"$tmp/churn-$a" || {
            echo "run-core: churn-$a failed" >&2
            exit 1
        }
    done
done

field() { # field FILE KEY: values of KEY=... one per line
    tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

{
    echo "## Core benchmarks ($(date -u +%Y-%m-%d), $(uname -m), $(nproc) CPUs)"
    echo
    echo "Instructions per malloc+free pair (callgrind Ir, net of the loop; lower is better):"
    echo
    printf '| size |'; for a in $allocs; do printf ' %s |' "$a"; done; echo
    printf '|---:|'; for a in $allocs; do printf -- '---:|'; done; echo
    for s in $sizes; do
        printf '| %s |' "$s"
        for a in $allocs; do printf ' %s |' "$(awk -v s="$s" '$1 == s { print $2 }' "$tmp/ir-$a")"; done
        echo
    done
    echo
    k64=$(awk '$1 == 64 { print $2 }' "$tmp/ir-kmalloc" 2>/dev/null || true)
    if [ -n "$k64" ]; then
        if awk -v v="$k64" -v b="$budget64" 'BEGIN { exit !(v <= b) }'; then
            echo "64-byte pair: $k64 instructions, within the budget of $budget64."
        else
            echo "64-byte pair: $k64 instructions, OVER the budget of $budget64."
        fi
        echo
    fi
    echo "Small-object churn (8..512 B, random replacement in 50000 live objects, 4M ops; median of $runs runs):"
    echo
    echo "| allocator | ops/s (median) | runs (Mops/s) | live KiB | held KiB | held / live | Go bound / live |"
    echo "|---|---:|---|---:|---:|---:|---:|"
    for a in $allocs; do
        f=$tmp/churn-$a
        med=$(field "$f" ops_per_s | median)
        all=$(field "$f" ops_per_s | awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $1 / 1e6 }')
        live=$(field "$f" live | head -1)
        held=$(field "$f" held | head -1)
        bound=$(field "$f" go_bound | head -1)
        awk -v a="$a" -v m="$med" -v all="$all" -v l="$live" -v h="$held" -v b="$bound" 'BEGIN {
            printf "| %s | %.0f | %s | %.0f | %.0f | %.3f | %.3f |\n", a, m, all, l / 1024, h / 1024, h / l, b / l }'
    done
    echo
    echo "held: kmalloc_stats().committed for kmalloc (heap in use + free pages kept + metadata);"
    echo "mallinfo2() arena + hblkhd for glibc. Go bound: every live object charged its class's"
    echo "span bytes / objects per span (size-class round-up + span tail, at most 12.5% + 12.5%)."
} >"$md"
cat "$md"
