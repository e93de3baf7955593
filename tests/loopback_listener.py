"""Servers on loopback that record what reaches them: HTTP requests, UDP packets (STUN), TCP
connections (TURN), for tests that prove a page reaches none of them."""

from __future__ import annotations

import http.server
import socket
import threading


class Listener:
    """An HTTP server, a UDP socket and a TCP socket on loopback that record what reaches them."""

    def __init__(self) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"secret")

            def log_message(self, *args: object) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.5)
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen()
        self.tcp.settimeout(0.5)

    def port(self, what: str) -> int:
        sock = {"http": self.http.socket, "udp": self.udp, "tcp": self.tcp}[what]
        return int(sock.getsockname()[1])

    def udp_packets(self) -> list[bytes]:
        try:
            return [self.udp.recv(4096)]
        except OSError:
            return []

    def tcp_connections(self) -> int:
        try:
            self.tcp.accept()[0].close()
        except OSError:
            return 0
        return 1

    def drain(self) -> tuple[list[str], list[bytes], int]:
        """What reached each server before a marker the test sends now, once the page is gone:
        loopback delivers in order, so nothing sent earlier can still be on its way.
        Returns (HTTP paths, UDP packets, TCP connections), the markers left out."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as marker:
            marker.sendto(b"marker", self.udp.getsockname())
        packets = []
        while (packet := self.udp.recv(4096)) != b"marker":
            packets.append(packet)
        connections = 0
        with socket.create_connection(self.tcp.getsockname()) as marker:
            marker.sendall(b"marker")
            while True:
                accepted = self.tcp.accept()[0]
                with accepted:
                    if accepted.recv(6) == b"marker":
                        break
                connections += 1
        with socket.create_connection(self.http.socket.getsockname()) as marker:
            marker.sendall(b"GET /marker HTTP/1.0\r\n\r\n")
            marker.recv(1024)
        return self.hits[: self.hits.index("/marker")], packets, connections

    def close(self) -> None:
        self.http.shutdown()
        self.udp.close()
        self.tcp.close()
