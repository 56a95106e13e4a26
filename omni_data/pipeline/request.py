"""``omni-data ingest`` as one library call: a user's request (``IngestRequest``) resolved to an
``IngestSpec`` (manifest or plain path, local copy, overrides), staged (archives), run by the
driver (``pipeline.ingest.ingest``), then the id index and the warnings. The CLI, the demo and
``pipelines/`` call ``run_ingest``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_data.pipeline.ingest import DEFAULT_SHARD_SIZE, IngestSpec, IngestSummary, ingest
from omni_data.store import catalog as cat
from omni_data.store.writer import FORMATS

__all__ = ["IngestFailed", "IngestRequest", "all_quarantined_message", "run_ingest"]


class IngestFailed(RuntimeError):
    """An ingest that could not run to the end (a refused archive, an unreadable source, a damaged
    shard met while working); the message names the file."""


@dataclass
class IngestRequest:
    """What a user asks for: ``omni-data ingest TARGET --out OUT ...`` as data.

    ``target`` is a manifest name or YAML path, or a data file/folder (then ``dataset`` and
    ``task`` are required). ``source`` defaults to the manifest's configured local copy, or to
    ``target``. ``key_map`` (``{"energy": "potential-energy"}`` or ``["energy=potential-energy"]``),
    ``energy_unit`` and ``stress_unit`` override the manifest's. ``sanity=False`` turns the default
    sanity bounds off (``harmonize.sanity``). ``cluster``: a ``pipeline.cluster.ClusterConfig``
    to start Dask with when ``run_ingest`` gets no client (None: in this process).
    """

    target: str
    out: Path
    source: Path | None = None
    format: str | None = None
    dataset: str | None = None
    task: str | None = None
    energy_unit: str | None = None
    stress_unit: str | None = None
    key_map: Any = None
    shard_size: int = DEFAULT_SHARD_SIZE
    formats: tuple[str, ...] = FORMATS
    id_index: bool = True
    progress: bool = True
    sanity: bool = True
    cluster: Any = None
    command: list[str] | None = None


def all_quarantined_message(source: Path, summary: IngestSummary) -> str:
    """One line for a run that stored nothing: the top quarantine reason and its count."""
    top = summary.top_reason()
    why = "" if top is None else f"; top reason {top[0]} ({top[1]} records), e.g. {top[2]!r}"
    return (
        f"{source}: all {summary.read} records read were quarantined, none stored{why}; "
        f"see the store's quarantine/ for every reason"
    )


@contextlib.contextmanager
def _phase(what: str) -> Any:
    """A ValueError met while working is a failure of the run (``IngestFailed``), not of the
    request; an OSError in a named phase is restated with the phase's name."""
    try:
        yield
    except ValueError as exc:
        raise IngestFailed(f"{what}: {exc}" if what else str(exc)) from exc
    except OSError as exc:
        if what:
            raise IngestFailed(f"{what}: {exc}") from exc
        raise


def _remove_if_empty(store: Path) -> bool:
    """Remove ``store`` (created by this run) when no shard was registered in it; whether it was."""
    import shutil

    try:
        if (store / cat.CATALOG_NAME).is_file() and cat.Catalog(store).shards:
            return False
    except (ValueError, OSError):
        return False
    shutil.rmtree(store, ignore_errors=True)
    return not store.exists()


def run_ingest(request: IngestRequest, client: Any = None, echo: Callable[[str], None] | None = None) -> IngestSummary:
    """Resolve ``request`` (manifest or path), stage archives, ingest, index the ids.

    ``client``: a ``distributed.Client`` to use (else ``request.cluster`` starts one, else the
    work runs here); ``echo``: where progress lines go (what is read, where archives were
    extracted, the Dask dashboard). A bad request raises ValueError (exit 2 in the CLI); a run
    that fails raises ``IngestFailed``, ``ReaderError`` or OSError. A store folder this call
    created is removed again when the run ends without a single shard in it.
    """
    from omni_data.pipeline.resolve import build_spec

    say = echo or (lambda line: None)
    spec = build_spec(request)
    store = Path(spec.store)
    created = not store.exists()
    try:
        summary = _run_spec(spec, request, client, say)
    except KeyboardInterrupt:
        raise
    except BaseException:
        if created:
            _remove_if_empty(store)
        raise
    if created and summary.written == 0 and _remove_if_empty(store):
        summary.notes.append(f"{store}: removed again (this run created it and stored nothing)")
    return summary


def _run_spec(spec: IngestSpec, request: IngestRequest, client: Any, say: Callable[[str], None]) -> IngestSummary:
    from omni_data.pipeline.archives import stage_source
    from omni_data.pipeline.cluster import dask_client

    config = request.cluster
    how = (
        "in this process"
        if client is None and config is None
        else (
            "on the given Dask client"
            if client is not None
            else f"{config.mode}{'' if config.mode != 'local' else f', {config.n_workers} workers'}"
        )
    )
    say(f"ingest {spec.source} ({spec.reader}) as {spec.options.dataset}/{spec.options.task} -> {spec.store} [{how}]")
    with _phase("cannot extract"):
        staged = stage_source(spec.source, spec.store, spec.reader, spec.globs)
    if staged != spec.source:
        say(f"extracted {spec.source} -> {staged}")
        spec.source = staged
    with _phase(""):
        if client is not None or config is None:
            summary = ingest(spec, client=client, progress=request.progress)
        else:
            with dask_client(config) as own:
                if own is not None:
                    say(f"dask dashboard: {own.dashboard_link}")
                summary = ingest(spec, client=own, progress=request.progress)
    if request.id_index and not summary.all_quarantined:
        from omni_data.store.idindex import build_id_index

        with _phase("id index"):
            summary.notes.append(build_id_index(spec.store, progress=request.progress).line())
    return summary
