"""The shell a chain runs on its hosts: POSIX sh, coreutils and the hosts' own OpenSSH, nothing installed.

A chain is a pipeline of `ssh` sessions, as HDFS writes a block through a pipeline of data nodes: the head streams
the image into the first host's HOP script, which appends it to its cache entry's part with `tee -p` and forwards
the same bytes to the next host's HOP through its own `ssh`, and so on. `tee -p` keeps writing the file when the pipe
to the next host breaks, so a host dropping out downstream costs its upstream nothing.

The chain is a SPEC, one line per host from this one on, of whitespace-free words (SpecLine); each hop peels off
its own line and hands the rest to the next host, base64 encoded, together with the script itself (base64 too):
the remote command keeps one shape at every depth, `sh -c "$(echo S | base64 -d)" sh SPEC S WANT KEY SIZE SIDECAR`,
so nothing is quoted twice (shell quoting nested 16 deep grows past the kernel's limit on one argument).

Each hop reports on stdout, which flows back through every upstream session to the head: `forward NAME STATUS`
once the next host's ssh ended (255: that connection failed), then `stored NAME SIZE SUM` once its own copy
checksums to WANT and is published, else `partial NAME SIZE SUM` (the part stays, to be resumed), or `have NAME`,
`busy NAME`, `refused NAME` when it wrote nothing (see _HOP).
Every second it says `progress NAME SIZE` on stderr (lines shorter than PIPE_BUF stay whole through the sessions).

Connections between hosts are opened before any byte flows, all at once: LINK runs on every host, over a session
that forwards the head's agent, and leaves an OpenSSH ControlMaster to the next host in a private directory (the
next host's key alone in its known_hosts, StrictHostKeyChecking on); the hops then open their sessions through it
in one round trip. ControlPersist ends a master left behind by a head that died.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import OperationError
from engine.transfers.cache.layout import entry_key
from engine.transfers.checksums import SHELL_FUNCTIONS
from engine.transfers.openssh import CIPHERS

LINK_PERSIST = 300  # seconds an idle master lives on after the head is gone
LINK_DIR = "hn-fanout."  # mktemp's prefix, under the host's $TMPDIR or /tmp (ControlPath must stay short)


@dataclass(frozen=True)
class SpecLine:
    """One host of a chain as its hop reads it: `directory` is its cache directory; `control` its master to the
    next host ("-" at the chain's end); `address`, `port`, `user` how the host before it reaches it."""

    name: str
    directory: str
    offset: int
    control: str
    address: str
    port: int
    user: str

    def words(self) -> list[str]:
        words = [self.name, self.directory, str(self.offset), self.control, self.address, str(self.port), self.user]
        for word in words:
            if not word or any(c.isspace() for c in word):
                raise OperationError(f"host {self.name}: {word!r} cannot travel down a chain (white space)")
        return words


# The hop writes into the cache as engine.transfers.cache.layout says a writer must: it holds `.KEY.lock`
# (flock, exclusive; its open file checked to be the one named, as the cache's own lock does), writes `.KEY.part`,
# and publishes only a part of the image's size and checksum: renamed to KEY, then the sidecar written under a
# name of its own and renamed to KEY.json. A lock held by someone else (a CLONE fetching the same image) is not
# waited for, which would stall the whole chain: that host only forwards, says `busy`, and is looked at again
# after the round. A host whose entry is there already (`have`) only forwards too.
# $1 the spec (base64), $2 this script (base64), $3 the checksum value, $4 KEY, $5 the size, $6 the sidecar (base64).
_HOP = r"""
s=$2; want=$3; key=$4; size=$5; side=$6; spec=$(printf %s "$1" | base64 -d) || exit 4
rest=$(printf '%s\n' "$spec" | tail -n +2)
set -- $(printf '%s\n' "$spec" | head -n 1)
name=$1; dir=$2; off=$3; ctl=$4
mkdir -p -- "$dir" && cd -- "$dir" || exit 4
part=".$key.part"; l=".$key.lock"; state=write
while :; do
  if [ -L "$l" ]; then echo "$name: $dir/$l is a symbolic link" >&2; state=refused; break; fi
  exec 9>>"$l" || { state=refused; break; }
  flock -xn 9 || { state=busy; break; }
  [ "$(stat -L -c %i /dev/fd/9)" = "$(stat -c %i -- "$l" 2>/dev/null)" ] && break
  exec 9>&-
done
if [ $state = write ] && [ -f "$key" ] && [ ! -L "$key" ] && [ -f "$key.json" ] && [ ! -L "$key.json" ]; then
  state=have
fi
if [ $state != write ]; then :
elif [ "$off" = 0 ]; then
  { rm -f -- "$part" && (set -C; : > "$part"); } || state=refused
elif [ -L "$part" ] || [ ! -f "$part" ] || [ "$(stat -c %h -- "$part")" != 1 ] \
  || [ "$(stat -c %s -- "$part")" -lt "$off" ]; then
  echo "$name: will not resume $dir/$part: not a plain file of $off bytes or more with one name" >&2; state=refused
else
  truncate -s "$off" -- "$part" || state=refused
fi
out=/dev/null; p=
if [ $state = write ]; then
  out=$part
  ( while :; do sleep 1 </dev/null >/dev/null 2>&1; echo "progress $name $(stat -c %s -- "$part" 2>/dev/null)"; done \
    ) >&2 &
  p=$!
fi
if [ -n "$rest" ]; then
  set -- $(printf '%s\n' "$rest" | head -n 1)
  next=$(printf '%s\n' "$rest" | base64 -w0)
  tee -p -a -- "$out" | ssh -F none -S "$ctl" -o ControlMaster=no -o BatchMode=yes -p "$6" -l "$7" -- "$5" \
    "sh -c \"\$(echo $s | base64 -d)\" sh $next $s $want $key $size $side"
  echo "forward $name $?"
else
  cat >> "$out"
fi
[ -z "$p" ] || kill "$p" 2>/dev/null
if [ $state != write ]; then echo "$state $name"; exit 0; fi
got=$(stat -c %s -- "$part"); h=$(checksum < "$part"); h=${h%% *}; j=".$key.json.$$.part"
if [ "$got" = "$size" ] && [ "$h" = "$want" ] && mv -T -- "$part" "$key" && rm -f -- "$j" \
  && printf %s "$side" | base64 -d > "$j" && mv -T -- "$j" "$key.json"
then echo "stored $name $got $h"
else echo "partial $name $got $h"
fi
"""

# $1 the cache directory, $2 KEY: `have SIZE` and the sidecar's text when the entry and its sidecar lie there (the
# head then applies the cache's trust rule), `partial SIZE` when a plain part does (an interrupted copy), else `none`.
_LOOK = (
    'cd -- "$1" 2>/dev/null || { echo none; exit 0; }; '
    'if [ -f "$2" ] && [ ! -L "$2" ] && [ -f "$2.json" ] && [ ! -L "$2.json" ]; then '
    'echo "have $(stat -c %s -- "$2")"; cat -- "$2.json"; '
    'elif [ -f ".$2.part" ] && [ ! -L ".$2.part" ]; then echo "partial $(stat -c %s -- ".$2.part")"; else echo none; fi'
)

# $1 the next host's known_hosts line ("" at a chain's end), $2 its address, $3 port, $4 user. Prints `dir DIR`,
# then `linked` or `unlinked WHAT SSH SAID`.
_LINK = rf"""
d=$(mktemp -d "${{TMPDIR:-/tmp}}/{LINK_DIR}XXXXXX") || exit 4
echo "dir $d"
[ -n "$1" ] || exit 0
printf '%s\n' "$1" > "$d/known"
if ssh -F none -M -S "$d/ctl" -o ControlPersist={LINK_PERSIST} -N -f -o BatchMode=yes -o StrictHostKeyChecking=yes \
  -o UserKnownHostsFile="$d/known" -o GlobalKnownHostsFile=/dev/null -o Ciphers={CIPHERS} -o Compression=no \
  -o ConnectTimeout=10 -o ServerAliveInterval=15 -p "$3" -l "$4" -- "$2" </dev/null >/dev/null 2>"$d/err"
then echo linked
else echo "unlinked $(tr '\n' ' ' < "$d/err")"
fi
"""

# $1 a directory LINK made: its master is told to exit, the directory removed.
_UNLINK = rf"""
case $1 in "${{TMPDIR:-/tmp}}/{LINK_DIR}"*) ;; *) exit 4;; esac
[ -S "$1/ctl" ] && ssh -F none -S "$1/ctl" -O exit -- link >/dev/null 2>&1
rm -rf -- "$1"
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def hop_command(chain: Sequence[SpecLine], checksum: str, size: int, sidecar: str) -> str:
    """The remote command that starts `chain` on its first host (for `ssh ... -- FIRST COMMAND`): the image of
    `checksum` (ALGORITHM:VALUE) and `size` bytes, published with the `sidecar` text."""
    algorithm, _, want = checksum.partition(":")
    script = _b64(SHELL_FUNCTIONS[algorithm] + _HOP)
    spec = _b64("".join(" ".join(line.words()) + "\n" for line in chain))
    return (
        f'sh -c "$(echo {script} | base64 -d)" sh {spec} {script} {want} {entry_key(checksum)} {size} {_b64(sidecar)}'
    )


def link_argv(known_line: str, address: str, port: int, user: str) -> list[str]:
    return ["sh", "-c", _LINK, "sh", known_line, address, str(port), user]


def look_argv(directory: str, key: str) -> list[str]:
    return ["sh", "-c", _LOOK, "sh", directory, key]


def unlink_argv(directory: str) -> list[str]:
    return ["sh", "-c", _UNLINK, "sh", directory]
