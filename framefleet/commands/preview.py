"""``framefleet preview FILE``: plays a template or a VideoJSON document in any browser, with a
scrubber, on the agent's own runtime.

The job page is what the agent loads (for a document, the shell page that runs VideoFlow's
renderer), with the agent's timecontrol.js in front of it and the job's parameters in place,
served from the job's own files under /job/. The player at / holds it in an iframe and drives
it through the same calls the agent makes: ``__framefleet.ready()`` once, then
``__framefleet.seek(ms)`` for the frame at ``ms``. So what the scrubber shows at t is the frame
the farm renders at t. The server listens on 127.0.0.1 only."""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import re
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import unquote, urlparse

from framefleet.agent.sources import page_input
from framefleet.agent.template_page import RUNTIME_JS, page_html, script_tag
from framefleet.cli import fill_duration, spec_from_args
from framefleet.core import jobspec
from framefleet.v1 import framefleet_pb2 as pb


def job_page(template: pb.Template, params: dict[str, Any]) -> str:
    """The template's HTML as the agent's page runs it: the time-control runtime first (the
    agent adds it as an init script), then the parameters, then the template's own scripts."""
    return page_html(template.html, params, prelude=script_tag(RUNTIME_JS))


# The player page (package data): __WIDTH__ and the like are filled in per job.
PLAYER = files("framefleet.commands").joinpath("preview_player.html")


@dataclass
class Preview:
    """A job's preview: the player page, the job page and the job's files."""

    title: str
    template: pb.Template
    params: dict[str, Any]
    output: jobspec.Output

    @classmethod
    def of(cls, spec: pb.JobSpec, title: str = "") -> Preview:
        output = jobspec.validate(spec)
        template, params = page_input(spec)
        return cls(title, template, params, output)

    def player(self) -> str:
        values = {
            "__TITLE__": self.title.replace("<", "&lt;"),
            "__WIDTH__": str(self.output.width),
            "__HEIGHT__": str(self.output.height),
            "__FPS__": str(self.output.fps),
            "__FRAMES__": str(self.output.frames),
            "__LAST__": str(self.output.frames - 1),
        }
        player = PLAYER.read_text(encoding="utf-8")
        return re.sub("|".join(values), lambda m: values[m.group(0)], player)

    def file(self, path: str) -> tuple[bytes, str] | None:
        """The body and content type served at ``path``, or None."""
        if path in ("/", "/index.html"):
            return self.player().encode(), "text/html; charset=utf-8"
        if path == "/job/index.html":
            return job_page(self.template, self.params).encode(), "text/html; charset=utf-8"
        if path.startswith("/job/"):
            data = self.template.assets.get(path.removeprefix("/job/"))
            if data is None:
                return None
            return data, mimetypes.guess_type(path)[0] or "application/octet-stream"
        return None


class PreviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, preview: Preview, host: str = "127.0.0.1", port: int = 0) -> None:
        self.preview = preview
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> PreviewServer:
        threading.Thread(target=self.serve_forever, name="framefleet-preview", daemon=True).start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: PreviewServer

    def do_GET(self) -> None:
        found = self.server.preview.file(unquote(urlparse(self.path).path))
        if found is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        body, kind = found
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def cmd_preview(args: argparse.Namespace) -> int:
    """``framefleet preview FILE``: serve until interrupted."""
    fill_duration(args)
    spec = spec_from_args(args, "")
    preview = Preview.of(spec, str(args.template))
    try:
        server = PreviewServer(preview, "127.0.0.1", args.port).start()
    except OSError as e:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {e} (try --port 0)", file=sys.stderr)
        return 2
    print(f"framefleet preview of {args.template}: {server.url}  (Ctrl-C stops)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
    return 0
