"""Detection spread over a Dask cluster: blocks of window rows go to workers, their crowns are merged here.

A run on a cluster reads and detects exactly the windows a run in one process would, block by
block; each worker loads the checkpoint once and keeps the raster open between blocks. The crowns
come back unmerged and go through the same streaming merge as in one process (core.crown_merge),
in reading order, so the result does not depend on which worker did what or when.

When a worker dies, the scheduler runs its blocks again on another worker; a block's crowns are
taken once, when it first comes back, so a lost worker costs time, not crowns.

The cluster is named by one string:

* ``local:N`` starts N worker processes on this machine for the run and stops them after;
* ``tcp://host:port`` uses a running scheduler, with workers started on other machines
  (``dask scheduler`` / ``dask worker tcp://host:port``; see the README). Every worker must be
  able to open the raster and the checkpoint at the paths this machine gives, and import
  ``treecrowns`` (the plugin's folder on its PYTHONPATH) with torch, torchvision and rasterio.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from .checkpoint import LoadedModel, load_checkpoint
from .crown_merge import RawCrowns
from .errors import Cancelled, TreecrownsError
from .raster import RasterReader
from .tiling import Window

# How often a run waiting for blocks checks whether it was cancelled.
_POLL_SECONDS = 0.25
# How long to wait for a running scheduler to answer.
_CONNECT_TIMEOUT_S = 20


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed cluster string: either ``local_workers`` local processes or a scheduler ``address``."""

    local_workers: int = 0
    address: str = ""

    def __str__(self) -> str:
        return f"local:{self.local_workers}" if self.local_workers else self.address


def parse_cluster(text: str) -> ClusterSpec | None:
    """The cluster a user named; None for an empty string (detect in this process).

    Raises:
        TreecrownsError: If the string is neither ``local:N`` nor ``tcp://host:port``.
    """
    text = text.strip()
    if not text:
        return None
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise TreecrownsError(f"cluster {text!r}: give the number of local workers, e.g. local:4")
        return ClusterSpec(local_workers=int(count))
    if text.startswith(("tcp://", "tls://")) and ":" in text.split("://", 1)[1]:
        return ClusterSpec(address=text)
    raise TreecrownsError(
        f"cluster {text!r} is not understood: leave it empty to detect in this process, write local:N for N "
        "worker processes on this machine, or tcp://host:port for a running Dask scheduler"
    )


def use_worker_python(python: str | Path) -> None:
    """Start local workers with ``python`` (the interpreter of the host's own Python)."""
    multiprocessing.set_executable(str(python))


def _dask():
    """dask.distributed, or a message saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise TreecrownsError(
            "detecting on a cluster needs Dask's distributed package; install it with pip install \"dask[distributed]\" "
            "in QGIS's Python, or leave the cluster empty to detect in this process"
        ) from exc
    return distributed


@contextmanager
def connect(spec: ClusterSpec) -> Iterator[object]:
    """A Dask client for ``spec``; a local cluster lives as long as the ``with`` block.

    Local workers are started with the interpreter ``multiprocessing`` is set to use; a host
    whose ``sys.executable`` is not a Python that can run them (QGIS) sets it first, with
    :func:`use_worker_python`.
    """
    distributed = _dask()
    if spec.local_workers:
        cluster = distributed.LocalCluster(
            n_workers=spec.local_workers, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=40,  # errors only: the run's own progress is what the user follows
        )
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = distributed.Client(spec.address, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise TreecrownsError(
            f"no Dask scheduler answered at {spec.address} ({exc}); start one with 'dask scheduler' on that machine, "
            "or check the address and firewall"
        ) from exc
    with client:
        yield client


def detect_blocks_on_cluster(
    cluster: str,
    raster_path: str,
    model: LoadedModel,
    settings,
    run,
    counter,
    should_stop,
    notes: list[str],
) -> Iterator[tuple[int, RawCrowns]]:
    """Each block's crowns as workers finish them (in any order), with the run's progress and cancel.

    Raises:
        TreecrownsError: If the model is not a file, the cluster cannot be reached, or a block failed.
        Cancelled: If ``should_stop`` asked to stop; the cluster's work is cancelled.
    """
    spec = parse_cluster(cluster)
    if model.path is None:
        raise TreecrownsError("detection on a cluster loads the model from its file; save the checkpoint first")
    distributed = _dask()
    # Workers need only the scales and thresholds; each task carries its own windows.
    shared_plan = replace(run, blocks=())
    run_id = uuid.uuid4().hex[:8]
    with connect(spec) as client:
        if not client.scheduler_info().get("workers"):
            notes.append(f"the cluster at {spec} has no workers yet; blocks wait until one joins")
        futures = {
            client.submit(
                detect_block, raster_path, str(model.path), settings, shared_plan, block,
                key=f"treecrowns-{run_id}-block-{index}", pure=False,
            ): index
            for index, block in enumerate(run.blocks)
        }
        pending = set(futures)
        try:
            while pending:
                if should_stop is not None and should_stop():
                    raise Cancelled("detection was cancelled; no layer was written")
                try:
                    finished = distributed.wait(pending, timeout=_POLL_SECONDS, return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    continue
                for future in finished:
                    pending.discard(future)
                    index = futures[future]
                    yield index, _block_result(future, index)
                    counter.add(len(run.blocks[index]) * len(run.scales))
        finally:
            if pending:
                client.cancel(list(pending))


def _block_result(future, index: int) -> RawCrowns:
    """A finished block's crowns; a block that failed on its worker stops the run with the worker's message."""
    if future.status == "error":
        error = future.exception()
        if isinstance(error, TreecrownsError):
            raise error
        raise TreecrownsError(f"block {index} failed on a worker: {type(error).__name__}: {error}") from error
    return future.result()


# ---- on the worker ------------------------------------------------------------------------

_loaded: dict[tuple[str, float], LoadedModel] = {}
_open: dict[tuple[str, float, object], RasterReader] = {}


def _changed_at(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _model_on_worker(path: str) -> LoadedModel:
    """The checkpoint, loaded once per worker (again only if the file changed)."""
    key = (path, _changed_at(path))
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = load_checkpoint(path)
    return _loaded[key]


def _reader_on_worker(path: str, bands) -> RasterReader:
    """The raster, opened once per worker and kept open for its next blocks."""
    key = (path, _changed_at(path), bands)
    if key not in _open:
        for reader in _open.values():
            reader.close()
        _open.clear()
        _open[key] = RasterReader(path, bands)
    return _open[key]


def detect_block(raster_path: str, model_path: str, settings, run, windows: tuple[Window, ...]) -> RawCrowns:
    """One block's crowns, unmerged, in raster pixels: the task a worker runs."""
    from .prediction import find_in_windows, prepare_network, resolve_device  # on the worker, after the pickle

    if not Path(model_path).exists():
        raise TreecrownsError(f"the worker on {os.uname().nodename} cannot find the model {model_path}; "
                              "give every worker the same path to it (a shared folder)")
    model = _model_on_worker(model_path)
    reader = _reader_on_worker(raster_path, settings.bands)
    device, _ = resolve_device(settings.device)
    prepare_network(model, settings, run, device)
    return find_in_windows(reader, model, settings, run, windows, device)
