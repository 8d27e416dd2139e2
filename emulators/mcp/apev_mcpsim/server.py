"""Serve a `Simulator` with uvicorn on a socket we bind ourselves (so port 0 and TCP_NODELAY work)."""

from __future__ import annotations

import socket

import uvicorn

from apev_mcpsim.app import Simulator


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn never sets TCP_NODELAY, and h11 writes a response's head and body separately: Nagle plus a
    # delayed ACK then cost ~40 ms a request. Accepted sockets inherit the option from the listener on Linux.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def server(sim: Simulator, *, log_level: str = "info") -> uvicorn.Server:
    # h11, not the auto-picked protocol: the lost-response fault relies on h11's request cycle owning the socket.
    config = uvicorn.Config(sim.asgi, http="h11", lifespan="on", log_level=log_level, timeout_graceful_shutdown=2)
    return uvicorn.Server(config)
