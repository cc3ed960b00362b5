#!/usr/bin/env python3
"""scripts/lib/delay.py - the lab's delay element (this kernel has no sch_netem).

A TUN device that the lab's routed "internet" namespace sends its forwarded IPv4 traffic
into (policy routing, scripts/lib/delay.sh); this process holds each packet for DELAY ms
plus a uniform jitter in [-JITTER, +JITTER] ms and writes it back into the same device,
where the namespace routes it on to its real next hop (a rule sends what comes back from
the device through the main table). It never makes up a packet: it only returns, late,
what the kernel handed it.

Bounded: at most --limit packets are held (a packet arriving at a full queue is dropped
and counted), and the process exits by itself after --max-seconds. Packets leave in the
order they came (a packet's release time is never earlier than its predecessor's), so
jitter varies the delay without reordering, like a FIFO link whose latency wanders.

Counters (held, forwarded, dropped at the cap, write errors, largest queue) are written as
JSON to --stats once a second and on SIGTERM/SIGINT.

Usage: delay.py --dev NAME --delay MS [--jitter MS] [--limit N] [--stats FILE]
                [--max-seconds S] [--seed N]
Prints "ready DEV" on stdout once the device exists.
"""

import argparse
import collections
import errno
import fcntl
import json
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
# A read returns one packet; the lab's links are 1500 bytes, a TUN device at most 64 KiB.
READ_SIZE = 65536
# Packets taken from the device per wakeup before the queue is serviced again.
READ_BURST = 64


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", required=True)
    ap.add_argument("--delay", type=float, required=True, help="one-way delay, ms")
    ap.add_argument("--jitter", type=float, default=0.0, help="uniform +/- ms")
    ap.add_argument("--limit", type=int, default=1000, help="packets held at most")
    ap.add_argument("--stats", default="")
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    if a.delay < 0 or a.jitter < 0 or a.jitter > a.delay or a.limit < 1:
        sys.exit("delay.py: need 0 <= jitter <= delay and limit >= 1")

    rng = random.Random(a.seed)
    fd = open_tun(a.dev)
    stats = {"dev": a.dev, "delay_ms": a.delay, "jitter_ms": a.jitter, "limit": a.limit,
             "held": 0, "forwarded": 0, "dropped": 0, "write_errors": 0, "max_queue": 0}
    queue = collections.deque()  # (release time, packet)
    last_release = 0.0
    stop = []

    def write_stats():
        if not a.stats:
            return
        tmp = a.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(stats, f)
        os.replace(tmp, a.stats)

    def on_signal(_sig, _frm):
        stop.append(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("ready", a.dev, flush=True)

    start = time.monotonic()
    next_stats = start
    while not stop:
        now = time.monotonic()
        if now - start > a.max_seconds:
            break
        if now >= next_stats:
            write_stats()
            next_stats = now + 1.0
        timeout = min(1.0, next_stats - now)
        if queue:
            timeout = min(timeout, max(0.0, queue[0][0] - now))
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        if ready:
            for _ in range(READ_BURST):
                try:
                    pkt = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno.EINTR:
                        break
                    raise
                if len(queue) >= a.limit:
                    stats["dropped"] += 1
                    continue
                hold = (a.delay + rng.uniform(-a.jitter, a.jitter)) / 1000.0
                last_release = max(now + hold, last_release)
                queue.append((last_release, pkt))
                stats["held"] += 1
                stats["max_queue"] = max(stats["max_queue"], len(queue))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, pkt = queue.popleft()
            try:
                os.write(fd, pkt)
                stats["forwarded"] += 1
            except OSError:
                stats["write_errors"] += 1
    write_stats()
    return 0


if __name__ == "__main__":
    sys.exit(main())
