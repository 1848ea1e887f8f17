"""``sitegen serve``: the built site over HTTP, for a preview, and nothing outside it."""

from __future__ import annotations

import errno
import functools
import http.server
import os
from collections.abc import Callable
from pathlib import Path

from .errors import SitegenError


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files of the site folder only: a link inside it that leads out of it (to ``/etc``, to a file of
    the home folder) is answered 404, as if it were not there.  The sheets' types are its own, not the system's
    table's, which may lack them."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".avif": "image/avif", ".webp": "image/webp"}

    def send_head(self):
        root = os.path.realpath(self.directory)
        path = self.translate_path(self.path)
        served = [path] + [os.path.join(path, index) for index in ("index.html", "index.htm")
                           if os.path.isdir(path) and os.path.lexists(os.path.join(path, index))]
        for candidate in served:  # a folder's URL serves its index: that file is checked too
            real = os.path.realpath(candidate)  # every link on the way followed
            if real != root and not real.startswith(root + os.sep):
                self.send_error(404, "File not found")
                return None
        return super().send_head()


def serve(out: Path, host: str, port: int, log: Callable[[str], None]) -> None:
    if not 0 < port < 65536:
        raise SitegenError(f"--port: {port} is not a port number (1 to 65535)")
    if not (out / "index.html").is_file():
        raise SitegenError(f"{out} holds no built site: run `sitegen build` first")
    handler = functools.partial(SiteHandler, directory=str(out))
    try:
        server = http.server.ThreadingHTTPServer((host, port), handler)
    except (OSError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or error
        raise SitegenError(f"cannot serve on {host}:{port}: {reason}"
                           + ("; choose another --port" if getattr(error, "errno", None) == errno.EADDRINUSE
                              else "")) from None
    with server:
        log(f"serving {out} at http://{host}:{port}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
