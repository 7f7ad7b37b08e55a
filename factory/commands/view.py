"""factory view STORE/NAME[/vN] [--port N]: browse a version's traces in a local web page."""

from __future__ import annotations

import argparse
from pathlib import Path

from factory.errors import UserError
from factory.store.layout import MANIFEST_NAME, version_number
from factory.store.version import list_versions
from factory.viewer.server import Viewer, ViewerServer


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="browse a local version's traces in a web page on 127.0.0.1",
                       description="Serve a read-only page on 127.0.0.1 to filter a version's rows (accepted/"
                                   "rejected, reject reason, verifier, pass rate, length) and open any trace.")
    p.add_argument("target", help="STORE/NAME (the newest version) or STORE/NAME/vN")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.set_defaults(func=run)


def resolve(target: str) -> tuple[Path, list[str]]:
    """(the version dir, names of the dataset's other versions) for STORE/NAME or STORE/NAME/vN."""
    path = Path(target)
    if version_number(path.name) is not None:
        if not (path / MANIFEST_NAME).is_file():
            raise UserError(f"{path} is not a version (no {MANIFEST_NAME}); list versions with "
                            f"`factory versions {path.parent}`")
        dataset = path.parent
    else:
        versions = list_versions(path)
        if not versions:
            raise UserError(f"{path} holds no versions; give STORE/NAME or STORE/NAME/vN, "
                            "e.g. factory-store/default-arithmetic/v1")
        dataset, path = path, versions[-1].path
    others = [v.version for v in list_versions(dataset) if v.path.name != path.name]
    return path, others


def run(args: argparse.Namespace) -> int:
    version_dir, others = resolve(args.target)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0-65535, got {args.port}")
    try:
        server = ViewerServer(Viewer(version_dir, others), args.port)
    except OSError as e:
        raise UserError(f"cannot listen on 127.0.0.1:{args.port} ({e.strerror}); pick another --port, "
                        "or leave it out for a free one") from None
    print(f"factory view: {version_dir} at {server.url}  (read-only; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
