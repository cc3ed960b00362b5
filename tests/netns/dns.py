#!/usr/bin/env python3
"""tests/netns/dns.py - a minimal DNS client for the lab (test scaffolding: the product uses
hickory-proto). Sends one query or a burst of garbage, bounded in count and time.

  dns.py query SERVER NAME [TYPE=A]   prints "rcode=NAME aa=0|1 ra=0|1 answers=IP,IP" or "timeout"
  dns.py garbage SERVER COUNT         sends COUNT random datagrams, prints how many got a reply
"""
import os
import random
import socket
import struct
import sys

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TYPES = {"A": 1, "AAAA": 28, "MX": 15, "ANY": 255}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def skip_name(buf, i):
    while True:
        n = buf[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


def query(server, name, qtype):
    qid = random.randint(0, 0xFFFF)
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD=1
    packet = header + encode_name(name) + struct.pack(">HH", TYPES[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    for _ in range(2):
        s.sendto(packet, (server, 53))
        try:
            buf, _ = s.recvfrom(4096)
        except socket.timeout:
            continue
        except ConnectionRefusedError:
            print("refused-port")
            return
        rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", buf[:12])
        if rid != qid:
            continue
        i = 12
        for _ in range(qd):
            i = skip_name(buf, i) + 4
        answers = []
        for _ in range(an):
            i = skip_name(buf, i)
            rtype, _, _, rdlen = struct.unpack(">HHIH", buf[i:i + 10])
            i += 10
            rdata = buf[i:i + rdlen]
            i += rdlen
            if rtype == 1:
                answers.append(socket.inet_ntop(socket.AF_INET, rdata))
            elif rtype == 28:
                answers.append(socket.inet_ntop(socket.AF_INET6, rdata))
        print("rcode=%s aa=%d ra=%d answers=%s" % (
            RCODES.get(flags & 0xF, str(flags & 0xF)), (flags >> 10) & 1, (flags >> 7) & 1,
            ",".join(answers)))
        return
    print("timeout")


def garbage(server, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.05)
    replies = 0
    for _ in range(min(count, 100)):
        s.sendto(os.urandom(random.randint(1, 300)), (server, 53))
        try:
            s.recvfrom(4096)
            replies += 1
        except (socket.timeout, ConnectionRefusedError):
            pass
    print(replies)


if __name__ == "__main__":
    if sys.argv[1] == "query":
        query(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "A")
    else:
        garbage(sys.argv[2], int(sys.argv[3]))
