"""Detection on a Dask cluster: the crowns of one process, a lost worker costs only time, cancel stops the cluster."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from synthetic import cut_into_tiles
from treecrowns.core import prediction
from treecrowns.core.boxes import iou_matrix
from treecrowns.core.checkpoint import load_checkpoint
from treecrowns.core.cluster import parse_cluster
from treecrowns.core.errors import Cancelled, TreecrownsError
from treecrowns.core.prediction import DetectionSettings, detect
from treecrowns.core.sample_data import write_mirrored_orthophoto

distributed = pytest.importorskip("distributed")  # installed by scripts/setup.sh; the check is for clear failures

BUNDLED = Path(__file__).resolve().parents[2] / "resources" / "models" / "treecrowns-neon-lite.safetensors"
ONE_VIEW = DetectionSettings(test_time_augmentation=False, device="cpu")


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """A 2,400 px, 10 cm orthophoto cut into four tiles: 49 windows of the bundled model."""
    folder = tmp_path_factory.mktemp("cluster")
    mosaic = write_mirrored_orthophoto(2400, folder / "mosaic.tif")
    return cut_into_tiles(mosaic, folder / "tiles", 1200, 1200)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 8 or more windows (two rows of 7), so that 49 windows make four tasks for the workers."""
    monkeypatch.setattr(prediction, "BLOCK_WINDOWS", 8)


@pytest.fixture(scope="module")
def in_process(tiles):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prediction, "BLOCK_WINDOWS", 8)
        return detect(str(tiles), load_checkpoint(BUNDLED), ONE_VIEW)


def assert_same_crowns(found, expected):
    """The same crowns, up to float rounding: processes with other thread counts add up in another order."""
    assert len(found) == len(expected)
    overlap = iou_matrix(found.boxes, expected.boxes)
    match = overlap.argmax(axis=1)
    assert sorted(match) == list(range(len(expected))), "a crown is missing or doubled"
    assert overlap.max(axis=1).min() > 0.999
    assert np.abs(found.scores - expected.scores[match]).max() < 1e-4
    assert [found.labels[i] for i in range(len(found))] == [expected.labels[j] for j in match]


def test_cluster_names_are_read_or_refused_with_a_hint():
    assert parse_cluster("") is None
    assert parse_cluster("local:3").local_workers == 3
    assert parse_cluster("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    for wrong in ("local:0", "local:two", "10.0.0.5:8786", "spark://x:1"):
        with pytest.raises(TreecrownsError, match="local:N|local:4"):
            parse_cluster(wrong)


def test_two_local_workers_find_the_crowns_of_one_process(tiles, in_process, small_blocks):
    assert len(in_process) > 200
    fractions = []
    found = detect(str(tiles), load_checkpoint(BUNDLED), ONE_VIEW, progress=lambda f, m: fractions.append(f),
                   cluster="local:2")
    assert_same_crowns(found, in_process)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 4  # one per block


def test_a_worker_killed_mid_run_costs_a_retry_not_crowns(tiles, in_process, small_blocks):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=50) as cluster, \
            distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed = []

        def kill_one_worker(fraction, message):
            if not killed:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(fraction)

        found = detect(str(tiles), load_checkpoint(BUNDLED), ONE_VIEW, progress=kill_one_worker,
                       cluster=cluster.scheduler_address)
        assert killed and killed[0] < 0.5
        assert_same_crowns(found, in_process)


def test_cancel_stops_the_run_and_the_local_workers(tiles, small_blocks):
    asked = []

    def stop_after_the_first_block() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(Cancelled):
        detect(str(tiles), load_checkpoint(BUNDLED), ONE_VIEW, should_stop=stop_after_the_first_block, cluster="local:2")
    children = [p for p in distributed.utils.psutil.Process().children(recursive=True) if p.is_running()]
    # (multiprocessing's resource tracker is one helper per Python process, not a worker)
    alive = [p.cmdline() for p in children if p.status() != "zombie" and "resource_tracker" not in " ".join(p.cmdline())]
    assert not alive, "the local cluster's workers outlived the run"


def test_workers_that_cannot_find_the_model_say_so(tmp_path, tiles, small_blocks):
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(BUNDLED.read_bytes())
    model = load_checkpoint(copy)
    copy.unlink()  # as on workers that do not share this machine's folders
    with pytest.raises(TreecrownsError, match="cannot find the model .*model.safetensors.*same path"):
        detect(str(tiles), model, ONE_VIEW, cluster="local:1")


def test_a_model_without_a_file_cannot_go_to_a_cluster(tiles):
    from synthetic import oracle_model

    with pytest.raises(TreecrownsError, match="from its file"):
        detect(str(tiles), oracle_model(), ONE_VIEW, cluster="local:1")
