import numpy as np
import pytest

from treecrowns.core.evaluation import evaluate, match_boxes


def test_one_to_one_matching_at_iou_0_4():
    reference = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], dtype=float)
    predicted = np.array(
        [
            [1, 1, 11, 11],  # IoU 0.68 with the first crown
            [0, 0, 10, 10],  # a duplicate of the first crown: only one of the two can match
            [20, 20, 30, 26],  # IoU 0.6 with the second crown
            [55, 55, 65, 65],  # IoU 0.14 with the third crown: too little
        ],
        dtype=float,
    )
    result = evaluate({"plot": predicted}, {"plot": reference})
    assert (result.true_positives, result.false_positives, result.missed) == (2, 2, 1)
    assert result.precision == pytest.approx(0.5)
    assert result.recall == pytest.approx(2 / 3)
    assert result.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_iou_must_exceed_the_threshold():
    reference = np.array([[0, 0, 10, 10]], dtype=float)
    exactly_04 = np.array([[0, 0, 10, 4]], dtype=float)  # IoU 0.4
    assert len(match_boxes(exactly_04, reference).matched_pairs) == 0
    assert len(match_boxes(exactly_04, reference, iou_threshold=0.39).matched_pairs) == 1


def test_images_are_matched_separately_and_empty_sides_count():
    reference = {"a": np.array([[0, 0, 10, 10]], dtype=float), "b": np.array([[0, 0, 10, 10]], dtype=float)}
    predicted = {"a": np.array([[0, 0, 10, 10]], dtype=float), "c": np.array([[0, 0, 5, 5]], dtype=float)}
    result = evaluate(predicted, reference)
    assert (result.true_positives, result.false_positives, result.missed) == (1, 1, 1)


def test_averaged_over_images_weighs_every_image_alike_as_deepforest_does():
    crown = np.array([[0, 0, 10, 10]], dtype=float)
    large = np.array([[x, 0, x + 10, 10] for x in range(0, 200, 20)], dtype=float)  # ten crowns, all found
    references = {"large": large, "small": crown, "unseen": crown}
    predictions = {"large": large, "small": np.array([[50, 50, 60, 60]], dtype=float)}  # nothing on "unseen"
    result = evaluate(predictions, references)
    assert result.recall == pytest.approx(10 / 12), "summed: the large image dominates"
    averaged = result.averaged_over_images()
    # Precision over the two images with predictions (1 and 0); recall over all three (1, 0, 0).
    assert averaged["precision"] == pytest.approx(0.5)
    assert averaged["recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert averaged["f1"] == pytest.approx(0.4, abs=1e-4)


def test_label_agreement_is_reported_per_match():
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=float)
    matches = match_boxes(boxes, boxes, ("alive", "dead"), ("alive", "alive"))
    assert matches.label_agreement.tolist() == [True, False]


def noisy_forest(seed: int, crowns_per_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Touching reference crowns in a closed canopy and predictions that miss, shift, split and add."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(crowns_per_side) * 20.0, np.arange(crowns_per_side) * 20.0)
    size = rng.uniform(18, 26, x.size)  # neighbours overlap: one linked group per stand
    reference = np.stack([x.ravel(), y.ravel(), x.ravel() + size, y.ravel() + size], axis=1)
    found = reference[rng.random(len(reference)) < 0.85] + rng.normal(0, 3.0, (1, 4))
    found = found + rng.normal(0, 3.0, found.shape)
    extra = reference[rng.random(len(reference)) < 0.2] + rng.uniform(-8, 8, (1, 4))
    return np.concatenate([found, extra]), reference


def test_matching_by_groups_equals_one_hungarian_over_the_whole_image():
    from scipy.optimize import linear_sum_assignment

    from treecrowns.core.boxes import iou_matrix

    predicted, reference = noisy_forest(seed=0, crowns_per_side=12)
    iou = iou_matrix(predicted, reference)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    good = iou[rows, cols] > 0.4
    expected = set(zip(rows[good].tolist(), cols[good].tolist()))
    matches = match_boxes(predicted, reference)
    assert set(map(tuple, matches.matched_pairs.tolist())) == expected
    assert 0 < len(expected) < len(reference)


def test_a_group_too_large_for_one_matrix_is_paired_on_countable_pairs(monkeypatch):
    import treecrowns.core.evaluation as evaluation

    predicted, reference = noisy_forest(seed=1, crowns_per_side=12)
    whole = match_boxes(predicted, reference)
    monkeypatch.setattr(evaluation, "_LARGEST_GROUP", 4)
    narrowed = match_boxes(predicted, reference)
    assert len(narrowed.matched_pairs) == len(whole.matched_pairs)
    assert (narrowed.matched_iou > 0.4).all()
    assert len(set(narrowed.matched_pairs[:, 0])) == len(set(narrowed.matched_pairs[:, 1])) == len(narrowed.matched_pairs)


def test_a_layer_of_ninety_thousand_crowns_is_scored():
    """As one matrix this would need 63 GiB; the touching crowns form one group, paired on countable pairs."""
    predicted, reference = noisy_forest(seed=2, crowns_per_side=300)
    result = evaluate({"layer": predicted}, {"layer": reference})
    assert result.true_positives + result.missed == len(reference) == 90_000
    assert 0.6 < result.recall < 0.9
