#!/usr/bin/env python3
"""tests/netns/roam_tcp.py - one bounded TCP transfer across the VPN for tests/netns/roam.sh.

    roam_tcp.py recv ADDR PORT RESULT.json [--max-seconds S]
    roam_tcp.py send ADDR PORT SECONDS [--rate BYTES_PER_S]

The sender connects once and writes a paced stream (default 256 KiB/s in 8 KiB chunks) for
SECONDS, then half-closes and waits for the receiver's "OK <bytes>". The receiver accepts
one connection, counts bytes and the longest silence between two reads, answers "OK
<bytes>" at EOF, and writes {"bytes", "longest_gap_s", "gaps_over_1s", "clean"} to
RESULT.json. "clean" means the connection ended with the sender's FIN, not a reset or a
timeout: the same TCP connection survived whatever happened to the underlay meanwhile.
Both sides are bounded in time (socket timeouts and --max-seconds) and in bytes (pace x
SECONDS). Exit status 0 only on a clean, complete transfer.
"""

import json
import socket
import sys
import time

CHUNK = 8192


def recv(addr, port, result, max_seconds):
    out = {"bytes": 0, "longest_gap_s": 0.0, "gaps_over_1s": [], "clean": False, "error": ""}
    deadline = time.monotonic() + max_seconds
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)
    srv.settimeout(max_seconds)
    print("listening", flush=True)
    try:
        conn, _ = srv.accept()
        start = last = time.monotonic()
        conn.settimeout(30)
        while time.monotonic() < deadline:
            data = conn.recv(65536)
            now = time.monotonic()
            if not data:
                out["clean"] = True
                break
            gap = now - last
            if gap > out["longest_gap_s"]:
                out["longest_gap_s"] = round(gap, 3)
            if gap > 1.0:
                out["gaps_over_1s"].append([round(last - start, 2), round(gap, 2)])
            last = now
            out["bytes"] += len(data)
        if out["clean"]:
            conn.sendall(b"OK %d\n" % out["bytes"])
        conn.close()
    except OSError as e:
        out["error"] = str(e)
    with open(result, "w") as f:
        json.dump(out, f)
    print(json.dumps(out), flush=True)
    return 0 if out["clean"] else 1


def send(addr, port, seconds, rate):
    s = socket.create_connection((addr, port), timeout=10)
    s.settimeout(60)
    chunk = b"x" * CHUNK
    interval = CHUNK / rate
    sent = 0
    start = time.monotonic()
    nxt = start
    while time.monotonic() - start < seconds:
        s.sendall(chunk)
        sent += CHUNK
        nxt += interval
        pause = nxt - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    s.shutdown(socket.SHUT_WR)
    reply = s.recv(64).decode(errors="replace").strip()
    s.close()
    print("sent %d, receiver: %s" % (sent, reply), flush=True)
    return 0 if reply == "OK %d" % sent else 1


def main(argv):
    if len(argv) >= 5 and argv[1] == "recv":
        max_s = float(argv[6]) if len(argv) >= 7 and argv[5] == "--max-seconds" else 120.0
        return recv(argv[2], int(argv[3]), argv[4], max_s)
    if len(argv) >= 5 and argv[1] == "send":
        rate = float(argv[6]) if len(argv) >= 7 and argv[5] == "--rate" else 262144.0
        return send(argv[2], int(argv[3]), float(argv[4]), rate)
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
