"""The robustness table: held-out MNIST digits drawn as pictures, perturbed, read back through the
conversion `compare` uses, and scored with the committed seed_siamese run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnist_pairs.data import load_data
from mnist_pairs.paths import REPORTS_DIR, Reports
from mnist_pairs.runs import Run
from mnist_pairs.serve import robustness as R

RUN = REPORTS_DIR / "runs" / "seed_siamese"
pytestmark = pytest.mark.skipif(not (RUN / "results.json").is_file(), reason="no published run (make study)")


@pytest.fixture(scope="module")
def digits(mnist_root):
    return load_data(Run.open(RUN).cfg, log=lambda m: None).sets["heldout"].images[:64].float().numpy()


def test_each_perturbation_changes_the_picture_the_way_it_says(digits):
    conv = {name: R.converted(digits, name, seed=0).numpy() for name in R.PERTURBATIONS}
    ink = {name: float((x > 0.5).mean()) for name, x in conv.items()}
    assert ink["thick"] > 1.2 * ink["clean"] > 1.2 * ink["thin"]                   # strokes grow and shrink
    np.testing.assert_allclose(conv["inverted"], conv["clean"], atol=5e-3)         # dark ink on light paper is read back (±1/255)
    np.testing.assert_allclose(conv["off_centre"], conv["clean"], atol=1e-6)       # the conversion crops to the ink
    for name, least in (("rotate", 0.01), ("low_res_12", 0.01), ("mouse", 0.01), ("jpeg_30", 0.002)):
        assert np.abs(conv[name] - conv["clean"]).mean() > least, name
    again = R.converted(digits, "rotate", seed=0).numpy()
    np.testing.assert_array_equal(again, conv["rotate"])                          # the random angles come from the seed


def test_measure_scores_every_perturbation_beside_the_clean_pairs(tmp_path, mnist_root):
    out = R.measure([str(RUN)], n_pairs=120, log=lambda m: None)
    r = out["runs"]["seed_siamese"]
    assert r["pairs"] == 120 and set(r["rows"]) == {"mnist", *R.PERTURBATIONS}
    rows = r["rows"]
    assert rows["mnist"]["acc"] > 0.9 and rows["clean"]["acc"] > 0.9 and rows["clean"]["drop_pp"] == 0
    assert abs(rows["inverted"]["acc"] - rows["clean"]["acc"]) <= 1 / 120
    assert r["worst"] in R.PERTURBATIONS and rows[r["worst"]]["drop_pp"] == max(
        v["drop_pp"] for k, v in rows.items() if k not in ("clean", "mnist"))
    path = R.write(out, Reports(tmp_path))
    assert json.loads(path.read_text())["runs"]["seed_siamese"]["rows"]["thick"] == rows["thick"]
    assert r["weights_sha256"] == Run.open(RUN).digests()["best.pt"]       # which weights these numbers are of


def test_only_runs_with_other_weights_are_measured_again_and_the_report_shows_only_current_ones(tmp_path):
    """make study re-measures a published model only when its best.pt is not the file robustness.json
    measured (sha256), or when the measurement itself would differ; the report leaves out a model whose
    recorded weights are not the published ones."""
    import shutil

    from mnist_pairs.study.report import measured_now

    runs = Path(shutil.copytree(RUN, tmp_path / "runs" / "seed_siamese")).parent
    sha = R._weights(runs / "seed_siamese")
    assert sha == Run.open(RUN).digests()["best.pt"]                        # the file's bytes, as digests.json has them
    base = R._setup(0, None)
    previous = base | {"runs": {"seed_siamese": {"weights_sha256": sha, "rows": 1}, "improved": {"weights_sha256": "b" * 64}}}
    assert R.stale([runs / "seed_siamese"], previous) == []
    assert R.stale([runs / "seed_siamese"], previous, n_pairs=120) == [runs / "seed_siamese"]      # fewer pairs
    assert R.stale([runs / "seed_siamese"], previous | {"seed": 1}) == [runs / "seed_siamese"]     # other draws
    assert R.stale([runs / "seed_siamese"], base | {"runs": {"seed_siamese": {"weights_sha256": "c" * 64}}}) == [runs / "seed_siamese"]
    assert R.stale([runs / "seed_siamese"], None) == [runs / "seed_siamese"]
    new = base | {"runs": {"improved": {"weights_sha256": "d" * 64}}}
    assert R.merged(previous, new)["runs"] == {"seed_siamese": previous["runs"]["seed_siamese"], "improved": new["runs"]["improved"]}
    assert R.merged(previous, new | {"n_pairs": 120}) == new | {"n_pairs": 120}    # measured otherwise: nothing kept
    shown = measured_now(previous, Reports(tmp_path))
    assert list(shown["runs"]) == ["seed_siamese"] and shown["stale"] == ["improved"]
    assert measured_now(base | {"runs": {"seed_siamese": {"weights_sha256": "c" * 64}}}, Reports(tmp_path)) is None



def test_a_perturbation_holds_only_within_the_limit():
    from mnist_pairs.study.findings import judged

    out = {"perturbations": {"clean": "", "a": "", "b": ""},
           "runs": {"m": {"rows": {"clean": {"drop_pp": 0.0}, "a": {"drop_pp": 1.5}, "b": {"drop_pp": 1.51}}}}}
    j = judged(out, limit_pp=1.5)
    assert j["runs"]["m"]["failing"] == ["b"] and j["runs"]["m"]["rows"]["a"]["holds"] and j["limit_pp"] == 1.5
    assert j["runs"]["m"]["near"] == ["a", "b"] and j["runs"]["m"]["worst"] == "b"
    assert judged(None) is None


def test_rows_the_conversion_undoes_stay_out_of_the_verdict():
    """load_digit inverts, crops, rescales and centres: inverted, off-centre and scaled pictures reach the model
    as the clean one does (0.00 in the committed table), so their rows say nothing about the model. A cost
    there (a broken conversion) is not a model failure either, and the worst row is a tested one."""
    from mnist_pairs.study.findings import NEUTRALISED, judged

    out = {"perturbations": {"clean": "", "thick": "", "inverted": "", "off_centre": ""},
           "runs": {"m": {"rows": {"clean": {"drop_pp": 0.0}, "thick": {"drop_pp": 0.4},
                                   "inverted": {"drop_pp": 9.0}, "off_centre": {"drop_pp": 0.0}}}}}
    j = judged(out, limit_pp=1.5)
    m = j["runs"]["m"]
    assert m["tested"] == ["thick"] and m["failing"] == [] and m["worst"] == "thick" and m["near"] == []
    assert m["rows"]["inverted"]["neutralised"] and not m["rows"]["thick"]["neutralised"]
    assert j["neutralised"] == ["inverted", "off_centre"] and set(j["neutralised"]) <= set(NEUTRALISED)


def test_a_stretch_target_inside_the_interval_is_a_point_estimate_only():
    from mnist_pairs.study.confirmation import stretch_state

    assert stretch_state(0.9953, [0.9936, 0.9967], 0.995) == "point_only"   # the committed ensemble
    assert stretch_state(0.9953, [0.9951, 0.9960], 0.995) == "met"
    assert stretch_state(0.9953, None, 0.995) == "point_only"                # no interval: one number
    assert stretch_state(0.9940, [0.9920, 0.9960], 0.995) == "missed"
