#!/bin/sh
# headnode-ip: print this guest's IPv4 address, or an IPv6 one, derived from its MAC address at boot.
#
# headnode builds every leased MAC as a 2-byte prefix followed by the 4 bytes of the IPv4 address
# (02:00:0a:00:00:01 is 10.0.0.1), so the address is the last four bytes of the MAC, in decimal; its IPv6
# address under a /64 prefix is the MAC's EUI-64 (SLAAC) address, as headnode shows it (IP6_GLOBAL, IP6_LINK).
#
#   headnode-ip.sh                 # the MAC of eth0, read from /sys/class/net/eth0/address
#   headnode-ip.sh -i ens3         # another interface
#   headnode-ip.sh 02:00:0a:00:00:01
#   headnode-ip.sh -6 2001:db8::   # the IPv6 address under a /64 prefix (-6 fe80:: the link-local one)
#   ip addr add "$(headnode-ip.sh)/24" dev eth0
#
# SYSFS overrides /sys (for tests). POSIX sh only: runs under dash, busybox ash and bash.
set -eu

iface=eth0
mac=
prefix=
while [ $# -gt 0 ]; do
    case $1 in
        -i) [ $# -ge 2 ] || { echo "headnode-ip: -i needs an interface name" >&2; exit 2; }
            iface=$2; shift 2 ;;
        -6) [ $# -ge 2 ] || { echo "headnode-ip: -6 needs a /64 prefix, e.g. 2001:db8::" >&2; exit 2; }
            prefix=$2; shift 2 ;;
        -h|--help) sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) mac=$1; shift ;;
    esac
done

if [ -z "$mac" ]; then
    file=${SYSFS:-/sys}/class/net/$iface/address
    [ -r "$file" ] || { echo "headnode-ip: cannot read $file" >&2; exit 1; }
    read -r mac < "$file"
fi

case $mac in
    [0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]) ;;
    *) echo "headnode-ip: '$mac' is not a MAC address (six pairs of hex digits separated by colons)" >&2; exit 2 ;;
esac

old_ifs=$IFS
IFS=:
# shellcheck disable=SC2086 # split on the colons on purpose
set -- $mac
IFS=$old_ifs
if [ -z "$prefix" ]; then
    printf '%d.%d.%d.%d\n' "0x$3" "0x$4" "0x$5" "0x$6"
    exit 0
fi

# The EUI-64 interface id: flip bit 0x02 of the first byte, ff:fe in the middle.
g4=$(( ((0x$1 ^ 2) << 8) | 0x$2 )) g5=$(( (0x$3 << 8) | 0xff )) g6=$(( 0xfe00 | 0x$4 )) g7=$(( (0x$5 << 8) | 0x$6 ))

bad_prefix() {
    echo "headnode-ip: '$prefix' is not an IPv6 /64 prefix (e.g. 2001:db8::)" >&2
    exit 2
}

# The prefix's eight groups p0..p7 (a :: stands for as many zero groups as are missing).
text=${prefix%/64}
case $text in
    *::*::*) bad_prefix ;;
    *::*) head=${text%%::*} tail=${text#*::} gap=yes ;;
    *) head=$text tail= gap= ;;
esac
i=0
add_groups() {  # $1: hex groups separated by colons, set as p$i, p$((i + 1)), ...
    IFS=:
    # shellcheck disable=SC2086 # split on the colons on purpose
    set -- $1
    IFS=$old_ifs
    for group in "$@"; do
        case $group in ''|*[!0-9a-fA-F]*|?????*) bad_prefix ;; esac
        [ "$i" -lt 8 ] || bad_prefix
        eval "p$i=\$((0x$group))"
        i=$((i + 1))
    done
}
add_groups "$head"
if [ -n "$gap" ]; then
    IFS=:
    # shellcheck disable=SC2086
    set -- $tail
    IFS=$old_ifs
    [ $((i + $#)) -le 7 ] || bad_prefix
    while [ $((i + $#)) -lt 8 ]; do
        eval "p$i=0"
        i=$((i + 1))
    done
    add_groups "$tail"
fi
[ "$i" -eq 8 ] || bad_prefix
# shellcheck disable=SC2154 # p0..p7 are set by eval above
[ $((p4 | p5 | p6 | p7)) -eq 0 ] || bad_prefix
g0=$p0 g1=$p1 g2=$p2 g3=$p3

# RFC 5952 text: lower-case hex, the longest run of two or more zero groups (the first of equals) as ::.
best=-1 best_length=1 run=0 start=0 i=0
while [ $i -lt 8 ]; do
    eval "value=\$g$i"
    if [ "$value" -eq 0 ]; then
        [ $run -gt 0 ] || start=$i
        run=$((run + 1))
        if [ $run -gt $best_length ]; then best=$start best_length=$run; fi
    else
        run=0
    fi
    i=$((i + 1))
done
out= i=0
while [ $i -lt 8 ]; do
    if [ $i -eq $best ]; then
        out="$out::" i=$((i + best_length))
        continue
    fi
    eval "value=\$g$i"
    case $out in ''|*:) ;; *) out="$out:" ;; esac
    out="$out$(printf %x "$value")"
    i=$((i + 1))
done
echo "$out"
