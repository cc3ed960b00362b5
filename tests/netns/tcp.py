"""Bounded TCP helpers for the lab scripts (pmtu.sh, workers.sh), run inside a namespace:
  serve-bulk ADDR PORT        accept one connection, count what arrives, answer the count
  send-bulk ADDR PORT BYTES [MSS]   send BYTES (segments of at most MSS bytes if given), exit 0
                              if the peer counted them all
  serve-echo ADDR PORT        echo length-prefixed messages back on one connection
  echo ADDR PORT              an SSH-sized exchange of length-prefixed messages, checked
Every socket has a timeout, so nothing here waits for ever."""
import socket, sys
mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def serve():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(1); s.settimeout(60)
    c, _ = s.accept(); c.settimeout(30)
    return c
def recv_exact(c, n):
    b = bytearray()
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d: raise SystemExit("short read")
        b += d
    return bytes(b)
if mode == "serve-bulk":
    c = serve(); n = 0
    while True:
        d = c.recv(65536)
        if not d: break
        n += len(d)
    c.sendall(str(n).encode()); c.close()
elif mode == "send-bulk":
    total = int(sys.argv[4]); c = socket.socket(); c.settimeout(10)
    if len(sys.argv) > 5:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, int(sys.argv[5]))
    c.connect((addr, port))
    chunk = bytes(range(256)) * 256; sent = 0
    while sent < total:
        k = min(len(chunk), total - sent); c.sendall(chunk[:k]); sent += k
    c.shutdown(socket.SHUT_WR)
    got = int(c.recv(64).decode() or "0")
    print(f"sent {sent} received-by-peer {got}")
    raise SystemExit(0 if got == total else 1)
elif mode == "serve-echo":
    c = serve()
    while True:
        h = c.recv(4, socket.MSG_WAITALL)
        if len(h) < 4: break
        n = int.from_bytes(h, "big"); c.sendall(h + recv_exact(c, n))
elif mode == "echo":
    c = socket.create_connection((addr, port), timeout=10)
    for n in (21, 1600, 3000, 612, 9000, 48):
        msg = bytes((i * 7) % 256 for i in range(n))
        c.sendall(n.to_bytes(4, "big") + msg)
        back = recv_exact(c, 4 + n)
        if back[4:] != msg: raise SystemExit(f"echo of {n} bytes differs")
    print("exchange complete"); c.close()
