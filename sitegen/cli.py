"""The command line: one typer app, one function per command, each a thin layer."""

from __future__ import annotations

import errno
import functools
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from .errors import SitegenError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build a neuron atlas of a convolutional network as a static site.")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The atlas's config file.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder the site is written to.")]
CacheOpt = Annotated[Path, typer.Option("--cache", help="Folder of computed results.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda (overrides the config).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

DEFAULT_CONFIG = Path("content/atlas.toml")
DEFAULT_OUT = Path("site")
DEFAULT_CACHE = Path(".cache")


# errors of a folder that cannot be written: read-only, full, over quota, not permitted
FOLDER_ERRORS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM}


def _say(message: str) -> None:
    typer.echo(message, err=True)


def friendly(command):
    """Turn a SitegenError into one clear line and a non-zero exit, no traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SitegenError as error:
            _say(f"error: {error}")
            raise typer.Exit(1) from None
        except OSError as error:
            if error.errno not in FOLDER_ERRORS:
                raise
            where = f"{error.filename}: " if error.filename else ""
            _say(f"error: {where}{error.strerror or error} (what was computed is kept in the cache)")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            _say("interrupted; finished results are kept in the cache")
            raise typer.Exit(130) from None
    return wrapper


def _leader() -> bool:
    """False in the ranks other than 0 of a torchrun launch: they compute but do not report or render."""
    return os.environ.get("RANK", "0") == "0"


def _compute(config_path: Path, cache: Path, device: str | None, quiet: bool) -> None:
    from . import config as config_module
    from .pipeline.runner import compute

    if device not in (None, "auto", "cpu", "cuda"):
        raise SitegenError(f"--device: {device!r} is not one of 'auto', 'cpu', 'cuda'")
    config = config_module.load(config_path)
    started = time.perf_counter()
    _, computed = compute(config, cache, device, quiet=quiet, log=_say)
    done = ", ".join(f"{n} {kind}" for kind, n in computed.items()) or "nothing (all cached)"
    if _leader():
        _say(f"computed {done} in {time.perf_counter() - started:.1f} s")


def _render(config_path: Path, out: Path, cache: Path) -> None:
    from . import config as config_module
    from .render import render
    from .site import build_site_model
    from .site.sheets import measurer
    from .store import manifest as manifest_store
    from .store.cache import Cache

    config = config_module.load(config_path)
    store = Cache(cache)
    try:
        manifest = manifest_store.read(store, config.path)
    except ValueError as error:
        raise SitegenError(f"the record of what is computed for {config_path} in {cache} cannot be used: {error}; "
                           f"run `sitegen compute` to record it again (it computes only what is missing)") from None
    if manifest is None:
        raise SitegenError(f"nothing computed yet for {config_path} in {cache}: run `sitegen compute` first")
    site = build_site_model(manifest, config, measurer(store))
    counts = render(site, out, store, log=_say)
    _say(f"rendered {counts['pages']} pages and {counts['assets']} files into {out} "
         f"({counts['changed']} changed, {counts['removed']} removed)")


@app.command()
@friendly
def build(config: ConfigOpt = DEFAULT_CONFIG, out: OutOpt = DEFAULT_OUT, cache: CacheOpt = DEFAULT_CACHE,
          device: DeviceOpt = None, quiet: QuietOpt = False) -> None:
    """Compute what is missing, then render the site."""
    _compute(config, cache, device, quiet)
    if _leader():
        _render(config, out, cache)


@app.command("compute")
@friendly
def compute_command(config: ConfigOpt = DEFAULT_CONFIG, cache: CacheOpt = DEFAULT_CACHE,
                    device: DeviceOpt = None, quiet: QuietOpt = False) -> None:
    """Compute activations, visualizations and top patches into the cache."""
    _compute(config, cache, device, quiet)


@app.command()
@friendly
def status(config: ConfigOpt = DEFAULT_CONFIG, cache: CacheOpt = DEFAULT_CACHE) -> None:
    """Say what `sitegen build` would compute, and why, without computing it."""
    from . import config as config_module
    from .pipeline.runner import status as plans

    for line in plans(config_module.load(config), cache):
        typer.echo(line)


@app.command("render")
@friendly
def render_command(config: ConfigOpt = DEFAULT_CONFIG, out: OutOpt = DEFAULT_OUT,
                   cache: CacheOpt = DEFAULT_CACHE) -> None:
    """Render the site from what is computed (never imports torch)."""
    _render(config, out, cache)


@app.command()
@friendly
def layers(model: Annotated[str, typer.Argument(help="A model name as in [model] name.")],
           all_modules: Annotated[bool, typer.Option("--all", help="Also list containers and modules "
                                                     "without a tensor output.")] = False) -> None:
    """List every addressable layer of MODEL with its output shape and alias."""
    from rich.console import Console
    from rich.table import Table

    from .model.layers import describe_layers
    from .model.registry import load_model

    loaded = load_model(model, "none")
    table = Table(title=f"{model}: layers for a {loaded.preprocess.crop} px image")
    for column in ("layer", "alias", "module", "output", "calls"):
        table.add_column(column, overflow="fold")  # a path must be readable whole, to be copied
    for info in describe_layers(loaded):
        if not all_modules and (not info.shape or info.calls != 1):
            continue
        table.add_row(info.path, info.alias or "", info.kind, " x ".join(map(str, info.shape)), str(info.calls))
    Console().print(table)


@app.command()
@friendly
def check(site: Annotated[Path, typer.Argument(help="The built site's folder.")] = DEFAULT_OUT,
          host: Annotated[str | None, typer.Option(
              help="Also check the site against a static host's limits (files, site size, largest file): "
                   "github, gitlab, cloudflare or cloudflare-paid.")] = None) -> None:
    """Check that every link and image of a built site resolves, and that it fits a host's limits."""
    from .check import HOSTS, advice, against, check_site, footprint, where

    if host is not None and host not in HOSTS:
        raise SitegenError(f"--host {host!r}: expected one of {', '.join(HOSTS)}")
    count, problems = check_site(site)
    for problem in problems[:50]:
        _say(problem)
    if problems:
        raise SitegenError(f"{len(problems)} broken link(s) of {count} in {site}")
    _say(f"{count} links and images checked in {site}: all resolve")
    if host is not None:
        limits = HOSTS[host]
        used = footprint(site)
        lines = against(used, limits)
        _say(f"{limits.title} ({limits.source}):")
        for _, line in lines:
            _say("  " + line)
        _say("  " + where(used))
        for line in advice(used, limits):
            _say("  " + line)
        over = [line for ok, line in lines if not ok]
        if over:
            raise SitegenError(f"{site} is over {len(over)} of {limits.title}'s limits")


@app.command()
@friendly
def serve(out: OutOpt = DEFAULT_OUT, port: Annotated[int, typer.Option(help="Port.")] = 8000,
          host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1") -> None:
    """Preview the built site over HTTP (files inside the site folder only)."""
    from .serve import serve as serve_site

    serve_site(out, host, port, _say)


@app.command()
@friendly
def clean(out: OutOpt = DEFAULT_OUT, cache: CacheOpt = DEFAULT_CACHE, config: ConfigOpt = DEFAULT_CONFIG,
          cache_too: Annotated[bool, typer.Option("--cache-too", help="Also delete the cache.")] = False) -> None:
    """Remove the files sitegen wrote into the site folder (and, if asked, the cache)."""
    from .render import clean as clean_site
    from .store.clean import remove_cache

    removed = clean_site(out, log=_say)
    _say(f"removed {removed} files from {out}")
    if cache_too:
        _say(remove_cache(cache, config))


def _tune_malloc() -> None:
    """Keep glibc from returning every large tensor's memory to the system and faulting it back in.

    Replicated batches allocate and free the same large buffers over and over;
    with glibc's defaults each is a fresh mmap, and the page faults cost as much
    as the arithmetic on a CPU.  Only the command line does this: the library
    leaves the process's allocator alone.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def main() -> None:
    _tune_malloc()
    app()
