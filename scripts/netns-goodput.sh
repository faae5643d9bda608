#!/usr/bin/env bash
# Channel goodput on real kernel networking, against loss and RTT: two `iotaf node run` processes,
# each in a network namespace of its own joined by one veth; nftables in each namespace drops
# LOSS % of the UDP it receives (`numgen random mod 100 < LOSS drop` in the input hook, as
# Tests/IntegrationTests/LossyNetnsTests.swift does: a drop on output would fail the sender's
# sendmsg instead), and netem on each veth end delays by RTT/2. For every RTT and loss, `iotaf send`
# moves one file of random bytes from node 1 to node 0 (hash checked); the table goes to stdout and
# to <out>.txt, and the plot (SVG, drawn by `iotaf bench channel --plot-from`) to <out>, beside the
# simulator's Docs/images/channel-goodput.svg. The two nodes stay up for the whole sweep: rules and
# delays change between transfers.
#
# Needs root, iproute2 (ip, tc with netem) and nftables. Opt-in: not part of `make test`.
#   scripts/netns-goodput.sh [--bin .build/release/iotaf] [--mib 16] [--out Docs/images/channel-goodput-netns.svg]
#                            [--losses "0 1 2 5 10 15 20"] [--rtts "0 10 50 200"]
set -euo pipefail

BIN=.build/release/iotaf
MIB=16
OUT=Docs/images/channel-goodput-netns.svg
LOSSES="0 1 2 5 10 15 20"
RTTS="0 10 50 200"
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift 2 ;;
        --mib) MIB="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --losses) LOSSES="$2"; shift 2 ;;
        --rtts) RTTS="$2"; shift 2 ;;
        *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, nftables, tc)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no iotaf binary at $BIN (swift build -c release --product iotaf, or --bin)" >&2; exit 2; }
command -v nft >/dev/null && command -v tc >/dev/null || { echo "needs nft and tc" >&2; exit 2; }

P="ngp$$"
DIR=$(mktemp -d /tmp/iotaf-netns-goodput.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "${P}n0" 2>/dev/null || true
    ip netns del "${P}n1" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

ADDR=(fd7a:28::1 fd7a:28::2)
DEV=("${P}a" "${P}b")
for i in 0 1; do
    ip netns add "${P}n$i"
    ip -n "${P}n$i" link set lo up
done
ip link add "${DEV[0]}" netns "${P}n0" type veth peer name "${DEV[1]}" netns "${P}n1"
for i in 0 1; do
    ip -n "${P}n$i" addr add "${ADDR[$i]}/64" dev "${DEV[$i]}" nodad
    ip -n "${P}n$i" link set "${DEV[$i]}" up
    ip netns exec "${P}n$i" nft add table inet lossy
    ip netns exec "${P}n$i" nft add chain inet lossy in '{ type filter hook input priority 0 ; }'
done

# netem (the kernel's sch_netem) makes the delay; without it only RTT 0 (the veth's own) is measured.
NETEM=1
if ! tc -n "${P}n0" qdisc add dev "${DEV[0]}" root netem delay 1ms 2>/dev/null; then NETEM=0; fi
tc -n "${P}n0" qdisc del dev "${DEV[0]}" root 2>/dev/null || true

# Sets LOSS % input drop and RTT/2 delay in both namespaces.
shape() {
    local loss=$1 rtt=$2 i
    for i in 0 1; do
        ip netns exec "${P}n$i" nft flush chain inet lossy in
        if [ "$loss" != 0 ]; then
            ip netns exec "${P}n$i" nft add rule inet lossy in meta l4proto udp numgen random mod 100 '<' "$loss" counter drop
        fi
        tc -n "${P}n$i" qdisc del dev "${DEV[$i]}" root 2>/dev/null || true
        if [ "$rtt" != 0 ]; then
            tc -n "${P}n$i" qdisc add dev "${DEV[$i]}" root netem delay "$(awk "BEGIN { print $rtt / 2 }")ms" limit 100000
        fi
    done
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

ID=()
for i in 0 1; do
    ID[$i]=$("$BIN" keygen --out "$DIR/n$i.key" --json | json 'd["node_id"]')
    args=(node run --key "$DIR/n$i.key" --listen "[${ADDR[$i]}]:7400" --control "$DIR/n$i.sock" --data "$DIR/d$i" --log-level warning)
    [ "$i" = 1 ] && args+=(--peer "[${ADDR[0]}]:7400")
    ip netns exec "${P}n$i" "$BIN" "${args[@]}" 2>"$DIR/n$i.log" >/dev/null &
    PIDS+=($!)
done
alive() { "$BIN" members --control "$DIR/n$1.sock" --json 2>/dev/null | json "any(m['node_id'] == '${ID[$2]}' and m['state'] == 'alive' for m in d)" 2>/dev/null; }
for _ in $(seq 150); do
    [ "$(alive 0 1)" = True ] && [ "$(alive 1 0)" = True ] && break
    sleep 0.2
done
[ "$(alive 0 1)" = True ] && [ "$(alive 1 0)" = True ] || { echo "the two nodes never saw each other alive" >&2; exit 1; }

head -c $((MIB << 20)) /dev/urandom > "$DIR/payload.bin"
SUM=$(sha256sum < "$DIR/payload.bin" | cut -d' ' -f1)
suspicions() { "$BIN" status --control "$DIR/n$1.sock" --json | json 'd["gossip"]["suspicions_raised"]'; }

TABLE="$OUT.txt"
mkdir -p "$(dirname "$OUT")"
{
    echo "# iotaf send of $MIB MiB between two node processes in network namespaces (veth; nftables input drop each way; $([ "$NETEM" = 1 ] && echo 'netem delay RTT/2 each way' || echo 'no netem on this kernel: RTT is the veth own, under 1 ms'))"
    echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $BIN, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# rtt_ms loss_percent goodput_MBps seconds suspicions_raised(n0,n1) retransmitted_chunks probe_timeouts"
} > "$TABLE"
cat "$TABLE"
for rtt in $RTTS; do
    if [ "$rtt" != 0 ] && [ "$NETEM" = 0 ]; then
        echo "# rtt $rtt ms: skipped, this kernel has no netem qdisc (sch_netem) to delay with" | tee -a "$TABLE"
        continue
    fi
    for loss in $LOSSES; do
        shape "$loss" "$rtt"
        sleep 1
        before=("$(suspicions 0)" "$(suspicions 1)")
        retx0=$("$BIN" status --control "$DIR/n1.sock" --json | json 'd["channels"]["retransmitted_chunks"]')
        pto0=$("$BIN" status --control "$DIR/n1.sock" --json | json 'd["channels"]["probe_timeouts"]')
        rm -f "$DIR/d0/inbox/${ID[1]}/payload.bin"
        timeout 300 "$BIN" send --control "$DIR/n1.sock" --to "${ID[0]}" --file "$DIR/payload.bin" --json > "$DIR/send.json" || true
        state=$(json 'd["state"]' < "$DIR/send.json" 2>/dev/null || echo failed)
        # The node's own transfer time (the report's elapsed_s), not the CLI's start-up.
        elapsed=$(json 'd["elapsed_s"]' < "$DIR/send.json" 2>/dev/null || echo 0)
        got=$(sha256sum < "$DIR/d0/inbox/${ID[1]}/payload.bin" 2>/dev/null | cut -d' ' -f1 || true)
        if [ "$state" != completed ] || [ "$got" != "$SUM" ]; then
            echo "# rtt $rtt ms, loss $loss %: transfer $state, hash $([ "$got" = "$SUM" ] && echo ok || echo wrong)" | tee -a "$TABLE"
            continue
        fi
        retx=$("$BIN" status --control "$DIR/n1.sock" --json | json 'd["channels"]["retransmitted_chunks"]')
        pto=$("$BIN" status --control "$DIR/n1.sock" --json | json 'd["channels"]["probe_timeouts"]')
        row=$(awk -v r="$rtt" -v l="$loss" -v m="$MIB" -v e="$elapsed" -v s0="$(( $(suspicions 0) - before[0] ))" -v s1="$(( $(suspicions 1) - before[1] ))" \
              -v x="$((retx - retx0))" -v p="$((pto - pto0))" \
              'BEGIN { printf "%s %s %.2f %.2f %s,%s %s %s", r, l, m * 1.048576 / e, e, s0, s1, x, p }')
        echo "$row" | tee -a "$TABLE"
    done
done
shape 0 0
if [ "$NETEM" = 1 ]; then
    TITLE="Channel goodput between two node processes in network namespaces (veth, nftables loss, netem delay)"
else
    TITLE="Channel goodput between two node processes in network namespaces (veth, nftables loss; no netem here, so RTT is the veth's, under 1 ms)"
fi
"$BIN" bench channel --plot-from "$TABLE" --sweep-svg "$OUT" --plot-title "$TITLE"
echo "table: $TABLE"
