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


def test_label_agreement_is_reported_per_match():
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=float)
    matches = match_boxes(boxes, boxes, ("alive", "dead"), ("alive", "alive"))
    assert matches.label_agreement.tolist() == [True, False]
