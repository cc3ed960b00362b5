#!/usr/bin/env python3
"""scripts/lib/link_order.py - the symbol ordering file for the linker (lld's
--symbol-ordering-file) of the profile-guided build, written by scripts/pgo.sh.

Why: a process maps a page of its binary when it first runs code in it, and the kernel then maps
the whole 64 KiB window around that page (fault-around) from the page cache. Code that a node runs
once at start (the CLI parser, the config, the runtime) was spread across the binary's 7 MB of
text among the server's and the CLI's, so a node kept far more of it resident than it ever ran
(README, "A profile-guided build": 2.3 MiB less per node with the order). Listing the functions
a node ran in training first, then the standard library's precompiled code, then the rest that
training ran (the server, the CLI), packs what a node touches into as few windows as possible.

A settled node gives its pages back (src/os/trim.rs) and maps again only what it still runs, so
the node's functions come in two groups: first those it ran after it settled (a training node
writes that part of its profile apart, src/pgo_training.rs: the data path, timers, keepalives),
with the runtime right after them; then those it ran only to start. Otherwise the start-up code
shares the settled code's windows and maps them all back.

Within the node's group and the server's and CLI's, the functions keep the first link's order,
which is the compiler's: a function stays beside the others of its module. The runtime group
between them is in nm's order, by name (no profile says which of it a node runs; putting what
the node's code reaches first gained 64 KiB in a model of one node's functions: notes,
issue11-next.md, stop 28). Sorted by call count instead, the data path's functions
from different modules interleaved and a ping's round trip was about 6% slower over six paired
runs. The hot code (.text.hot, about 130 KB, all of it resident in any case) is left out of the
order altogether, so it keeps its layout exactly.

Usage: link_order.py SETTLED NODE_RUN ALL_RUN PROFILED BINARY > ORDER
  SETTLED   the functions the nodes ran once settled, one name per line (may be empty)
  NODE_RUN  the functions the nodes' profiles ran, one name per line
  ALL_RUN   the same for every profile of the training (server, CLI, nodes)
  PROFILED  every function name the profile has, run or not (one per line)
  BINARY    a first link of the same build, for the names the linker sees: ThinLTO renames a
            function it promotes across modules to NAME.llvm.NUMBER, and the standard library
            (not instrumented, so not in the profile) is known only from the binary, and
            so is which functions the compiler put in .text.hot.
"""
import re
import subprocess
import sys

# Crates of the standard library's backtrace printer: run only when a panic prints a backtrace.
BACKTRACE = re.compile(r"(5gimli|14rustc_demangle|9addr2line|11miniz_oxide|6adler2|6object)")
# Code that no profile covers but every process runs: the standard library (v0-mangled, `_R`,
# or legacy `_ZN3std`...), ring's C and assembly, the C runtime's start-up.
RUNTIME = re.compile(
    r"^(_R|_ZN(3std|4core|5alloc|17compiler_builtins|12std_detect|9hashbrown)|ring_core_"
    r"|(_start|main|frame_dummy|register_tm_clones|deregister_tm_clones|__do_global_dtors_aux)$)"
)
SUFFIX = re.compile(r"\.llvm\.\d+$")


def names(path):
    """The names in a file of one name per line, in order."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def section_range(binary, name):
    """[start, end) of section NAME's addresses in BINARY, or (0, 0) without one."""
    out = subprocess.run(
        ["readelf", "-SW", binary], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        # "  [21] .text.hot  PROGBITS  00000000009589f0 9579f0 022c64 00 AX 0 0 16"
        fields = line.replace("[ ", "[").split()
        if len(fields) > 5 and fields[1] == name:
            start = int(fields[3], 16)
            return start, start + int(fields[5], 16)
    return 0, 0


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__.split("Usage: ")[1].split("\n")[0])
    settled_run, node_run, all_run, profiled_path, binary = sys.argv[1:]
    settled = names(settled_run)
    profiled = set(names(profiled_path))
    node = names(node_run)
    hot = section_range(binary, ".text.hot")
    nm = subprocess.run(
        ["nm", "--defined-only", binary], capture_output=True, text=True, check=True
    ).stdout
    # Every function symbol and its address, in nm's (name) order: the runtime group below
    # keeps it.
    address = {p[2]: int(p[0], 16) for p in (line.split() for line in nm.splitlines())
               if len(p) == 3 and p[1] in "tTwW"}
    in_hot = {sym for sym, at in address.items() if hot[0] <= at < hot[1]}
    promoted = {}
    for sym in address:
        base = SUFFIX.sub("", sym)
        if base != sym:
            promoted.setdefault(base, []).append(sym)

    order, seen = [], set()

    def add(sym):
        if sym not in seen and sym not in in_hot:
            seen.add(sym)
            order.append(sym)

    def add_run(run):
        # In the first link's order (the module docstring says why), names at one address (one
        # section) by name; a name the first link does not have (inlined everywhere) sorts last
        # and the linker skips it.
        syms = []
        for name in run:
            syms.append(name)
            syms.extend(promoted.get(name, []))
        for sym in sorted(syms, key=lambda sym: (address.get(sym, 1 << 64), sym)):
            add(sym)

    # The settled node's code, the runtime every process runs (next to it, so that a node's
    # windows stay together), the node's start-up, then what only the server and the CLI ran.
    add_run(settled)
    first = len(order)
    runtime = 0
    for sym in address:
        if RUNTIME.match(sym) and not BACKTRACE.search(sym) and SUFFIX.sub("", sym) not in profiled:
            if sym not in seen:
                runtime += 1
            add(sym)
    add_run(node)
    add_run(names(all_run))
    sys.stdout.write("\n".join(order) + "\n")
    print(
        f"{len(node)} functions a node ran, {first} of them (with renames) once settled, "
        f"{len(order)} listed, {runtime} from the unprofiled runtime",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
