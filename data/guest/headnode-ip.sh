#!/bin/sh
# headnode-ip: print this guest's IPv4 address, derived from its MAC address at boot.
#
# headnode builds every leased MAC as a 2-byte prefix followed by the 4 bytes of the IPv4 address
# (02:00:0a:00:00:01 is 10.0.0.1), so the address is the last four bytes of the MAC, in decimal.
#
#   headnode-ip.sh                 # the MAC of eth0, read from /sys/class/net/eth0/address
#   headnode-ip.sh -i ens3         # another interface
#   headnode-ip.sh 02:00:0a:00:00:01
#   ip addr add "$(headnode-ip.sh)/24" dev eth0
#
# SYSFS overrides /sys (for tests). POSIX sh only: runs under dash, busybox ash and bash.
set -eu

iface=eth0
mac=
while [ $# -gt 0 ]; do
    case $1 in
        -i) [ $# -ge 2 ] || { echo "headnode-ip: -i needs an interface name" >&2; exit 2; }
            iface=$2; shift 2 ;;
        -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
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
printf '%d.%d.%d.%d\n' "0x$3" "0x$4" "0x$5" "0x$6"
