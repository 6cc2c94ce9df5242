"""`ingest upload FILE...`: stream files to an ingest server with a progress bar each.

Each file is hashed first (streamed, off the event loop, with its own bar) and
its SHA-256 sent when the session is created: a file the user already stored
is not sent again, and the earlier result is printed as its result.

Exit status 0 when every file was stored, 1 when any failed (each failure is
named on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cli.client.errors import TOKEN_HELP, UploadFailed
from cli.client.files import file_sha256
from cli.client.resume import ResumeStore, default_state_file
from cli.client.uploader import ClientConfig, Uploader
from infra.describe import in_words
from infra.env import SettingsError, size

EXAMPLES = """\
examples:
  export INGEST_URL=http://127.0.0.1:8080 INGEST_TOKEN=...   # as `ingest dev` printed
  ingest upload clip.mp4                       # one file; prints its video id and result URL
  ingest upload *.mp4 other.mov --parallel 4   # several at once, a progress bar each
  ingest upload big.mkv --resumable            # run it again after a failure: sends the rest
  ingest upload big.mkv --resumable --chunk-size 64MiB   # behind a proxy that caps bodies
  ingest upload clip.mp4 --json | jq -r '.[].result_url' # for scripts

a token: `ingest token --user NAME` (signs with INGEST_JWT_SECRET or the dev secret).
"""


def add_parser(commands: Any) -> None:
    upload = commands.add_parser(
        "upload",
        help="upload video files to an ingest server",
        description=textwrap.fill(
            "Stream video files to an ingest server, a progress bar each, and print each"
            " file's video id, SHA-256 and result URL. A file you already stored is not sent"
            " again. Exit status 0 when every file was stored, 1 when any failed (each named"
            " on stderr), 2 on bad usage.",
            width=78,
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    upload.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="video files (mp4, mov, avi, mkv, webm)"
    )
    upload.add_argument(
        "--server",
        default=os.environ.get("INGEST_URL", "http://127.0.0.1:8080"),
        help="ingest server URL (INGEST_URL; default http://127.0.0.1:8080)",
    )
    upload.add_argument(
        "--token", default=os.environ.get("INGEST_TOKEN"), help="bearer token (INGEST_TOKEN)"
    )
    upload.add_argument(
        "--resumable", action="store_true", help="use tus: an interrupted upload resumes"
    )
    upload.add_argument(
        "--chunk-size",
        default=None,
        help="with --resumable: largest request, e.g. 64MiB (default: the rest of the file)",
    )
    upload.add_argument("--parallel", type=int, default=2, help="files at once (default 2)")
    upload.add_argument("--retries", type=int, default=5, help="retries per file (default 5)")
    upload.add_argument("--json", action="store_true", help="print the results as JSON")
    upload.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.token:
        print(
            f"ingest upload: a token is needed (--token or INGEST_TOKEN); {TOKEN_HELP}",
            file=sys.stderr,
        )
        return 2
    if not looks_like_jwt(args.token):
        print(f"ingest upload: the token is not a JWT; {TOKEN_HELP}", file=sys.stderr)
        return 2
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"ingest upload: not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.parallel < 1:
        print("ingest upload: --parallel must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.chunk_size and size(args.chunk_size, "--chunk-size") < 1:
            raise SettingsError("--chunk-size must be positive")
    except SettingsError as error:
        print(f"ingest upload: {error}", file=sys.stderr)
        return 2
    sizes = {path: path.stat().st_size for path in args.files}
    results = [with_result_url(r, args.server) for r in asyncio.run(_upload_all(args, sizes))]
    failed = [r for r in results if "error" in r]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if "error" in result:
                print(f"FAILED {result['file']}: {result['error']}", file=sys.stderr)
            else:
                print(
                    f"{result['file']}: video {result['video_id']} analysis {result['analysis_id']}"
                    f" sha256 {result['file_hash']} {result['result_url']}"
                    + (
                        f" (duplicate of {result['duplicate_of']})"
                        if result.get("duplicate_of")
                        else ""
                    )
                )
    return 1 if failed else 0


_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts joined by dots: anything else is refused before a byte is sent."""
    parts = token.split(".")
    return len(parts) == 3 and all(_BASE64URL.fullmatch(part) for part in parts)


def with_result_url(result: dict[str, Any], server: str) -> dict[str, Any]:
    # The server answers with a path; a terminal makes an absolute URL clickable.
    if "error" in result or not result.get("redirect_url"):
        return result
    return {**result, "result_url": urljoin(server.rstrip("/") + "/", result["redirect_url"])}


async def _upload_all(args: argparse.Namespace, sizes: dict[Path, int]) -> list[dict[str, Any]]:
    config = ClientConfig(
        server=args.server,
        token=args.token,
        retries=args.retries,
        patch_size=size(args.chunk_size, "--chunk-size") if args.chunk_size else None,
    )
    slots = asyncio.Semaphore(args.parallel)
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        BinarySpeedColumn(),
        TimeRemainingColumn(),
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        uploader = Uploader(http, config, ResumeStore(default_state_file()))
        with Progress(*columns, console=console, transient=False) as bars:

            async def one(path: Path) -> dict[str, Any]:
                hashing: TaskID = bars.add_task(
                    f"{path.name} sha256", total=sizes[path], start=False
                )
                task: TaskID = bars.add_task(path.name, total=sizes[path], start=False)
                async with slots:
                    file_hash = None
                    if not args.resumable:
                        # Hashed first: a file already stored then takes no upload at all.
                        bars.start_task(hashing)
                        try:
                            file_hash = await file_sha256(
                                path, on_chunk=lambda n: bars.advance(hashing, n)
                            )
                        except OSError as error:
                            return {
                                "file": str(path),
                                "error": f"cannot read it: {in_words(error)}",
                            }
                    bars.start_task(task)
                    try:
                        result = await uploader.upload(
                            path,
                            resumable=args.resumable,
                            progress=lambda done: bars.update(task, completed=done),
                            file_hash=file_hash,
                        )
                    except UploadFailed as error:
                        bars.update(task, description=f"[red]{path.name} failed")
                        return {"file": str(path), "error": str(error)}
                    return {"file": str(path), **result}

            return list(await asyncio.gather(*(one(path) for path in args.files)))


class BinarySpeedColumn(ProgressColumn):
    """Speed in the bar's own units (MiB/s beside MiB), where rich's own speaks MB/s."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("?", style="progress.data.speed")
        units = ["B", "KiB", "MiB", "GiB", "TiB"]
        unit, suffix = filesize.pick_unit_and_suffix(int(speed), units, 1024)
        return Text(f"{speed / unit:.1f} {suffix}/s", style="progress.data.speed")
