"""The shell a chain runs on its hosts: POSIX sh, coreutils and the hosts' own OpenSSH, nothing installed.

A chain is a pipeline of hosts, as HDFS writes a block through a pipeline of data nodes: the head streams the image
into the first host, which appends it to its cache entry's part with `tee -p` and forwards the same bytes to the
next host through its own `ssh`, and so on. `tee -p` keeps writing the file when the pipe to the next host breaks,
so a host dropping out downstream costs its upstream nothing.

Everything a chain needs is opened on all hosts at once before a byte flows, so a chain starts in the time of one
host, not of each in turn (every session pays its login shell's start-up, ~/.bashrc included):

- LINK, over a session that forwards the head's agent, makes the host's run directory (a private `mktemp -d`) with
  a FIFO `in` that its upstream neighbour will write into, and opens an OpenSSH ControlMaster to the next host
  (the next host's keys alone in a known_hosts of its own, StrictHostKeyChecking on). ControlPersist ends a master
  left behind by a head that died.
- STAGE, one session per host from the head, all started at once: it takes the cache entry's lock, reads the
  image from its session's stdin (the first host of a chain, fed by the head) or from its FIFO, appends it to the
  part, and forwards it through the master into the next host's FIFO (`cat > DIR/in` there). It reports straight
  to the head on its own stdout, so the head knows at once which host did what:

      ready NAME                it is about to read (the head streams once every stage of a chain is)
      progress NAME SIZE        every second, what the part holds
      stored NAME SIZE SUM      its copy checksummed to the image's and was published
      partial NAME SIZE SUM     it was not (the part stays, to be resumed)
      have|busy|refused NAME    it wrote nothing (see _STAGE); it forwarded all the same
      forward NAME STATUS       its ssh to the next host ended (255: that connection failed)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import OperationError
from engine.transfers.checksums import SHELL_FUNCTIONS
from engine.transfers.openssh import CIPHERS

LINK_PERSIST = 300  # seconds an idle master lives on after the head is gone
LINK_DIR = "hn-fanout."  # mktemp's prefix, under the host's $TMPDIR or /tmp (ControlPath must stay short)
# What a run directory may look like, as it goes unquoted into the remote command `cat > DIR/in`.
RUN_DIR = re.compile(r"/[A-Za-z0-9._/-]+")

# $1 the cache directory, $2 KEY: `have SIZE` and the sidecar's text when the entry and its sidecar lie there (the
# head then applies the cache's trust rule), `partial SIZE` when a plain part does (an interrupted copy), else `none`.
_LOOK = (
    'cd -- "$1" 2>/dev/null || { echo none; exit 0; }; '
    'if [ -f "$2" ] && [ ! -L "$2" ] && [ -f "$2.json" ] && [ ! -L "$2.json" ]; then '
    'echo "have $(stat -c %s -- "$2")"; cat -- "$2.json"; '
    'elif [ -f ".$2.part" ] && [ ! -L ".$2.part" ]; then echo "partial $(stat -c %s -- ".$2.part")"; else echo none; fi'
)

# $1 the cache directory, $2 KEY, $3 the host's run directory, or `run` to make one; $4 the next host's known_hosts
# lines ("": no next host), $5 its address, $6 port, $7 user, $8 the master's socket name in the run directory.
# Prints `dir DIR` (a new run directory), then `linked` or `unlinked WHAT SSH SAID` (with a next host), then what
# LOOK says: all in one session.
_LINK = rf"""
if [ "$3" = run ]; then
  d=$(mktemp -d "${{TMPDIR:-/tmp}}/{LINK_DIR}XXXXXX") && mkfifo -m 600 "$d/in" || exit 4
  echo "dir $d"
else d=$3
fi
if [ -n "$4" ]; then
  printf '%s\n' "$4" > "$d/known.$8"
  if ssh -F none -M -S "$d/$8" -o ControlPersist={LINK_PERSIST} -N -f -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$d/known.$8" -o GlobalKnownHostsFile=/dev/null -o Ciphers={CIPHERS} -o Compression=no \
    -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -p "$6" -l "$7" -- "$5" \
    </dev/null >/dev/null 2>"$d/err.$8"
  then echo linked
  else echo "unlinked $(tr '\r\n' '  ' < "$d/err.$8")"
  fi
fi
"""

# $1 a run directory: its masters are told to exit, the directory removed.
_UNLINK_SCRIPT = rf"""
case $1 in "${{TMPDIR:-/tmp}}/{LINK_DIR}"*) ;; *) exit 4;; esac
for c in "$1"/c*; do [ -S "$c" ] && ssh -F none -S "$c" -O exit -- link >/dev/null 2>&1; done
rm -rf -- "$1"
"""

# The stage writes into the cache as engine.transfers.cache.layout says a writer must: it holds `.KEY.lock`
# (flock, exclusive; its open file checked to be the one named, as the cache's own lock does), writes `.KEY.part`,
# and publishes only a part of the image's size and checksum: renamed to KEY, then the sidecar written under a
# name of its own and renamed to KEY.json. A lock held by someone else (a CLONE fetching the same image) is not
# waited for, which would stall the whole chain: that host only forwards, says `busy`, and is looked at again
# after the round; so does a host whose entry is there already (`have`). Nothing stops a stage before it opens its
# FIFO, so an upstream host is never left writing into a FIFO nobody reads; and the FIFO is opened (which waits for
# the upstream's forwarder) only once this stage has started its own forwarder, so the stages of a chain come up
# side by side rather than one after another.
# $1 NAME, $2 the cache directory, $3 KEY, $4 the size, $5 the checksum value, $6 the offset to resume at, $7 the
# sidecar's text, $8 `fifo` (read the run directory's FIFO) or `stdin`, $9 the run directory, then with a next host:
# $10 the master's socket, $11 its address, $12 port, $13 user, $14 its run directory. At the end it ends its masters
# and removes its run directory (a next round links afresh).
_STAGE = r"""
name=$1; dir=$2; key=$3; size=$4; want=$5; off=$6; side=$7; in=-; run=$9
[ "$8" = fifo ] && in=$run
exec 3>&1
part=".$key.part"; l=".$key.lock"; state=write
mkdir -p -- "$dir" && cd -- "$dir" || { echo "$name: cannot enter $dir" >&2; state=refused; }
while [ $state = write ]; do
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
  rm -f -- "$part"; set -C; : > "$part" || state=refused; set +C
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
    ) &
  p=$!
fi
verify() {
  [ -z "$p" ] || kill "$p" 2>/dev/null
  if [ $state != write ]; then echo "$state $name"; return; fi
  got=$(stat -c %s -- "$part"); h=$(checksum < "$part"); h=${h%% *}; j=".$key.json.$$.part"
  if [ "$got" = "$size" ] && [ "$h" = "$want" ] && mv -T -- "$part" "$key" && rm -f -- "$j" \
    && printf '%s' "$side" > "$j" && mv -T -- "$j" "$key.json"
  then echo "stored $name $got $h"
  else echo "partial $name $got $h"
  fi
}
echo "ready $name"
if [ -n "${10}" ]; then
  { [ "$in" = - ] || exec 0< "$in/in"; tee -p -a -- "$out"; exec >&-; verify >&3; } \
    | ssh -F none -S "${10}" -o ControlMaster=no -o BatchMode=yes -p "${12}" -l "${13}" -- "${11}" "cat > ${14}/in"
  echo "forward $name $?"
else
  [ "$in" = - ] || exec 0< "$in/in"
  cat >> "$out"; verify
fi
""" + _UNLINK_SCRIPT.replace("$1", "$run")


@dataclass(frozen=True)
class Next:
    """How a stage reaches the next host of its chain: its master's socket, the next host's address, port and user
    (as the master was opened), and the next host's run directory (whose FIFO it writes into)."""

    control: str
    address: str
    port: int
    user: str
    run_dir: str


def link_argv(
    directory: str,
    key: str,
    run_dir: str | None,
    known: str = "",
    address: str = "",
    port: int = 22,
    user: str = "",
    control: str = "",
) -> list[str]:
    """LINK (a new run directory when `run_dir` is None; a master named `control` in it to the next host when
    `known` is given), then LOOK."""
    argv = ["sh", "-c", _LINK + _LOOK, "sh", directory, key, run_dir or "run", known, address, str(port), user]
    return [*argv, control]


def look_argv(directory: str, key: str) -> list[str]:
    return ["sh", "-c", _LOOK, "sh", directory, key]


def stage_argv(
    name: str,
    directory: str,
    checksum: str,
    key: str,
    size: int,
    offset: int,
    sidecar: str,
    run_dir: str,
    from_fifo: bool,
    after: Next | None,
) -> list[str]:
    """STAGE for one host of a chain: the image of `checksum` (ALGORITHM:VALUE), read from the head's stream or
    (`from_fifo`) from the FIFO in the host's `run_dir`, forwarded to `after` if given."""
    algorithm, _, want = checksum.partition(":")
    script = SHELL_FUNCTIONS[algorithm] + _STAGE
    source = "fifo" if from_fifo else "stdin"
    argv = ["sh", "-c", script, "sh", name, directory, key, str(size), want, str(offset), sidecar, source, run_dir]
    if after is not None:
        if not RUN_DIR.fullmatch(after.run_dir):
            raise OperationError(f"the next host's run directory {after.run_dir!r} cannot be named in a command")
        argv += [after.control, after.address, str(after.port), after.user, after.run_dir]
    return argv


def unblock_argv(run_dir: str) -> list[str]:
    """Give a stage waiting on its FIFO an end of file (its upstream will never write): opening a FIFO to write
    without blocking fails at once when nobody reads it."""
    return ["dd", "if=/dev/null", f"of={run_dir}/in", "oflag=nonblock", "conv=nocreat", "status=none"]


def unlink_argv(directory: str) -> list[str]:
    return ["sh", "-c", _UNLINK_SCRIPT, "sh", directory]
