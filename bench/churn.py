#!/usr/bin/python3
"""Connection churn for the memory figures of `deno task bench`, in its own process.

Usage: churn.py SOCKET MODE COUNT SECONDS

MODE is one of
- hold: open COUNT connections that send nothing and keep them (reconnecting any the server closes);
- watch: COUNT clients each open a line-mode `GET /healthz?watch`, read its first line, close, again;
- complete: COUNT clients each send a complete `GET /livez` and never read; when the server closes, connect again.

Non-blocking sockets on one epoll: as fast as the kernel and the server allow. Prints `ready` once COUNT
connections are open (hold) or have started (the others), and at the end one JSON line:
{"opened": N, "cycles": N, "errors": N, "seconds": S}. Stops after SECONDS or when its stdin ends.
"""
import errno
import json
import os
import select
import socket
import sys
import time

WATCH = b"GET /healthz?watch\n"
COMPLETE = b"GET /livez\n"


def main():
    if len(sys.argv) != 5 or sys.argv[2] not in ("hold", "watch", "complete"):
        sys.stderr.write("Usage: churn.py SOCKET hold|watch|complete COUNT SECONDS\n")
        sys.exit(64)
    path, mode, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    ep = select.epoll()
    stdin = sys.stdin.fileno()
    ep.register(stdin, select.EPOLLIN | select.EPOLLHUP)
    socks = {}
    figures = {"opened": 0, "cycles": 0, "errors": 0}
    request = WATCH if mode == "watch" else COMPLETE if mode == "complete" else b""
    wanted = count
    started = time.monotonic()
    deadline = started + seconds
    announced = False

    def open_one():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            # The accept queue is full: try again on the next turn.
            s.close()
            return False
        except OSError:
            figures["errors"] += 1
            s.close()
            return False
        if request:
            try:
                s.send(request)
            except OSError:
                figures["errors"] += 1
                s.close()
                return False
        figures["opened"] += 1
        socks[s.fileno()] = s
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        return True

    def drop(fd):
        s = socks.pop(fd)
        ep.unregister(fd)
        s.close()

    while time.monotonic() < deadline:
        while len(socks) < wanted:
            if not open_one():
                break
        if not announced and len(socks) >= wanted:
            announced = True
            print("ready", flush=True)
        for fd, events in ep.poll(0.05 if len(socks) >= wanted else 0.001):
            if fd == stdin:
                if not os.read(stdin, 4096):
                    deadline = 0
                continue
            s = socks.get(fd)
            if s is None:
                continue
            if mode == "watch":
                # The first report (or a 503) arrived: the follower leaves.
                try:
                    s.recv(65536)
                except OSError:
                    pass
                figures["cycles"] += 1
                drop(fd)
            elif events & (select.EPOLLRDHUP | select.EPOLLHUP):
                # Closed by the server (answered, or dropped): never read, connect again.
                figures["cycles"] += 1
                drop(fd)
            elif mode == "hold":
                # Something arrived on an idle connection (a 408): it is about to close.
                try:
                    s.recv(65536)
                except OSError:
                    pass
    for fd in list(socks):
        drop(fd)
    figures["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    except OSError as error:
        if error.errno != errno.EPIPE:
            raise
