"""The shell a chain runs on its hosts: POSIX sh, coreutils and the hosts' own OpenSSH, nothing installed.

A chain is a pipeline of `ssh` sessions, as HDFS writes a block through a pipeline of data nodes: the head streams
the image into the first host's HOP script, which appends it to its temporary entry with `tee -p` and forwards the
same bytes to the next host's HOP through its own `ssh`, and so on. `tee -p` keeps writing the file when the pipe
to the next host breaks, so a host dropping out downstream costs its upstream nothing.

The chain is a SPEC, one line per host from this one on, of whitespace-free words (SpecLine); each hop peels off
its own line and hands the rest to the next host, base64 encoded, together with the script itself (base64 too): the
remote command keeps one shape at every depth, `sh -c "$(echo S | base64 -d)" sh SPEC S WANT`, so nothing is quoted
twice (shell quoting nested 16 deep grows past the kernel's limit on one argument).

Each hop reports on stdout, which flows back through every upstream session to the head: `forward NAME STATUS`
once the next host's ssh ended (255: that connection failed), then `stored NAME SIZE SUM` once its own copy
checksums to WANT and is renamed into place, else `partial NAME SIZE SUM` (the temporary entry stays, to be resumed).
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
from engine.transfers.checksums import SHELL_FUNCTIONS
from engine.transfers.endpoints import INSIDE
from engine.transfers.openssh import CIPHERS

LINK_PERSIST = 300  # seconds an idle master lives on after the head is gone
LINK_DIR = "hn-fanout."  # mktemp's prefix, under the host's $TMPDIR or /tmp (ControlPath must stay short)


@dataclass(frozen=True)
class SpecLine:
    """One host of a chain as its hop reads it. `root`: the directory every write must stay inside (the host's VM
    directory); `control`: its master to the next host ("-" at the chain's end); `address`, `port`, `user`: how the
    host before it reaches it."""

    name: str
    root: str
    tmp: str
    final: str
    offset: int
    control: str
    address: str
    port: int
    user: str

    def words(self) -> list[str]:
        words = [self.name, self.root, self.tmp, self.final, str(self.offset), self.control, self.address]
        words += [str(self.port), self.user]
        for word in words:
            if not word or any(c.isspace() for c in word):
                raise OperationError(f"host {self.name}: {word!r} cannot travel down a chain (white space)")
        return words


# $1 the spec (base64), $2 this script (base64), $3 the checksum value every copy must have.
_HOP = (
    INSIDE
    + r"""
s=$2; want=$3; spec=$(printf %s "$1" | base64 -d) || exit 4
rest=$(printf '%s\n' "$spec" | tail -n +2)
set -- $(printf '%s\n' "$spec" | head -n 1)
name=$1; root=$2; tmp=$3; final=$4; off=$5; ctl=$6
inside "$root" "${tmp%/*}/" "${final%/*}/"
mkdir -p -- "${tmp%/*}" "${final%/*}" || exit 4
if [ "$off" = 0 ]; then
  rm -f -- "$tmp" && (set -C; : > "$tmp") || exit 4
elif [ -L "$tmp" ] || [ ! -f "$tmp" ] || [ "$(stat -c %h -- "$tmp")" != 1 ]; then
  echo "$name: will not resume $tmp: not a plain file with one name" >&2; exit 4
elif [ "$(stat -c %s -- "$tmp")" -lt "$off" ]; then
  echo "$name: $tmp is shorter than $off bytes" >&2; exit 4
else
  truncate -s "$off" -- "$tmp" || exit 4
fi
( while :; do sleep 1 </dev/null >/dev/null 2>&1; echo "progress $name $(stat -c %s -- "$tmp" 2>/dev/null)"; done \
  ) >&2 &
p=$!
if [ -n "$rest" ]; then
  set -- $(printf '%s\n' "$rest" | head -n 1)
  next=$(printf '%s\n' "$rest" | base64 -w0)
  tee -p -a -- "$tmp" | ssh -F none -S "$ctl" -o ControlMaster=no -o BatchMode=yes -p "$8" -l "$9" -- "$7" \
    "sh -c \"\$(echo $s | base64 -d)\" sh $next $s $want"
  echo "forward $name $?"
else
  cat >> "$tmp"
fi
kill "$p" 2>/dev/null
size=$(stat -c %s -- "$tmp"); h=$(checksum < "$tmp"); h=${h%% *}
if [ "$h" = "$want" ] && mv -T -- "$tmp" "$final"; then echo "stored $name $size $h"
else echo "partial $name $size $h"; fi
"""
)

# $1 a temporary entry, $2 the final one: `have` when the final one is there, `partial SIZE` when a plain temporary
# one is (an interrupted copy), else `none`.
_LOOK = (
    'if [ -f "$2" ] && [ ! -L "$2" ]; then echo have; elif [ -f "$1" ] && [ ! -L "$1" ]; then '
    'echo "partial $(stat -c %s -- "$1")"; else echo none; fi'
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


def hop_command(chain: Sequence[SpecLine], algorithm: str, want: str) -> str:
    """The remote command that starts `chain` on its first host (for `ssh ... -- FIRST COMMAND`); `want` is the
    checksum's value (without its `ALGORITHM:`)."""
    script = _b64(SHELL_FUNCTIONS[algorithm] + _HOP)
    spec = _b64("".join(" ".join(line.words()) + "\n" for line in chain))
    return f'sh -c "$(echo {script} | base64 -d)" sh {spec} {script} {want}'


def link_argv(known_line: str, address: str, port: int, user: str) -> list[str]:
    return ["sh", "-c", _LINK, "sh", known_line, address, str(port), user]


def look_argv(tmp: str, final: str) -> list[str]:
    return ["sh", "-c", _LOOK, "sh", tmp, final]


def unlink_argv(directory: str) -> list[str]:
    return ["sh", "-c", _UNLINK, "sh", directory]
