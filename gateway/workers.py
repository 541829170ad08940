"""`gateway serve --workers N`: N processes answering on one port, one core each.

The parent binds N listening sockets to the same address with SO_REUSEPORT, so the kernel
spreads new connections over them evenly (a single shared socket would wake every worker
and hand most connections to whichever wins), forks one worker per socket, and from then on
only supervises. SIGTERM or SIGINT reaches the parent and is passed on once to every worker;
each finishes or cancels its requests and flushes its ledger, as a single `gateway serve`
does, and the parent exits when all have. Workers run in their own process group, so a
terminal's Ctrl-C does not hit them twice, and they get SIGTERM if the parent dies. A worker
that dies on its own stops the others (exit 1): a process manager then sees one failed
service, not a silently smaller one.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

log = logging.getLogger("gateway.workers")


def listen(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets on one address; with port 0 they all take the first one's port."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            address = sock.getsockname()
            sock.listen(1024)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _die_with_parent() -> None:
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker(run: Callable[[socket.socket], None], socks: list[socket.socket], index: int) -> None:
    os.setpgid(0, 0)
    _die_with_parent()
    for i, sock in enumerate(socks):
        if i != index:
            sock.close()
    try:
        run(socks[index])
    except SystemExit:
        raise
    except Exception as exc:  # one line, as the single-process server would say it (no class name)
        message = getattr(exc, "message", None) or getattr(exc, "strerror", None) or str(exc) or "failed"
        print(f"gateway: worker {index}: error: {message}", file=sys.stderr, flush=True)
        sys.exit(1)


def serve(run: Callable[[socket.socket], None], host: str, port: int, count: int, banner: str) -> int:
    """Serve with `count` workers; `banner` is printed once all sockets are bound ({origin}: their URL)."""
    socks = listen(host, port, count)
    bound = socks[0].getsockname()
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_worker, args=(run, socks, i), name=f"gateway-worker-{i}", daemon=False)
             for i in range(count)]
    for proc in procs:
        proc.start()
    for sock in socks:
        sock.close()
    host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(banner.replace("{origin}", f"http://{host}:{bound[1]}"), flush=True)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            _signal_all(procs, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda signum, frame: _signal_all(procs, signal.SIGHUP))   # config reload
    code = 0
    running = list(procs)
    while running:
        wait([p.sentinel for p in running], timeout=1.0)
        for proc in [p for p in running if not p.is_alive()]:
            running.remove(proc)
            proc.join()
            if not stopping:
                log.error("%s exited with code %s; stopping the other workers", proc.name, proc.exitcode)
                print(f"gateway: error: {proc.name} exited with code {proc.exitcode}; stopping", file=sys.stderr,
                      flush=True)
                stopping, code = True, 1
                _signal_all(running, signal.SIGTERM)
            elif proc.exitcode:
                code = code or 1
    return code


def _signal_all(procs: Iterable[BaseProcess], signum: int) -> None:
    for proc in procs:
        if proc.pid is not None and proc.is_alive():   # every one was started: each has a pid
            try:
                os.kill(proc.pid, signum)
            except ProcessLookupError:
                pass
