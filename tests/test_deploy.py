"""ONNX export (parity with PyTorch on real held-out pairs) and `compare` on real pictures.

Uses the committed seed_siamese run (reports/runs/seed_siamese) and held-out MNIST digits,
saved as PNG/JPEG plain, inverted, off-centre and at 200x200.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_pairs.data import load_data
from mnist_pairs.serve.deploy import OnnxScorer, TorchScorer, export_onnx, pair_logits, parity
from mnist_pairs.serve.ensemble import EnsembleScorer, export_ensemble, publish_ensemble
from mnist_pairs.errors import ConfigError
from mnist_pairs.serve.images import ImageError, load_digit
from mnist_pairs.metrics import choose_threshold, probability
from mnist_pairs.paths import PROJECT_ROOT, REPORTS_DIR
from mnist_pairs.runs import Run

RUN = REPORTS_DIR / "runs" / "seed_siamese"
IMPROVED = REPORTS_DIR / "runs" / "improved"
N = 40


@pytest.fixture(scope="module")
def run():
    return Run.open(RUN)


@pytest.fixture(scope="module")
def heldout(run, mnist_root):
    return load_data(run.cfg, log=lambda m: None).sets["heldout"]


@pytest.fixture(scope="module")
def onnx_dir(run, tmp_path_factory):
    return export_onnx(run, tmp_path_factory.mktemp("onnx"), pair=True)


def test_onnx_graphs_match_pytorch_on_40000_heldout_pairs(run, heldout, onnx_dir):
    check = parity(run, onnx_dir, heldout)
    assert check["pairs"] == 40_000
    assert check["max_abs_logit_diff"] <= 1e-4, check
    assert check["pair_graph_max_abs_logit_diff"] <= 1e-4, check
    assert check["decisions_identical"], check
    # the exported model is the run's model: its held-out accuracy at the run's threshold
    assert check["onnx_acc"] == pytest.approx(run.results["best_heldout"]["acc_at_threshold"], abs=1e-4)
    meta = json.loads((onnx_dir / "meta.json").read_text())
    assert meta["threshold"] == run.results["threshold"] and meta["selection"] == "val"


def test_onnx_batch_size_is_dynamic(onnx_dir, heldout):
    scorer = OnnxScorer(onnx_dir)
    for n in (1, 5, 300):
        emb = scorer.embed(heldout.images[:n])
        assert emb.shape == (n, 128)
        assert scorer.logits(emb, emb[::-1].copy()).shape == (n,)


def test_export_refuses_a_concat_run(tmp_path):
    concat = Run.open(REPORTS_DIR / "runs" / "seed_concat")
    with pytest.raises(ConfigError, match="Siamese"):
        export_onnx(concat, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def pictures(heldout, tmp_path_factory):
    """The first N held-out digits as files, in five versions each."""
    folder = tmp_path_factory.mktemp("pictures")
    images, labels = heldout.images[:N, 0].numpy(), heldout.labels[:N]
    files = {}
    for i, x in enumerate(images):
        u = (x * 255).round().astype(np.uint8)
        off = np.zeros((90, 90), np.uint8)
        off[5:33, 55:83] = u                                     # top right of a larger canvas
        versions = {"plain.png": Image.fromarray(u), "inverted.png": Image.fromarray(255 - u),
                    "offcentre.png": Image.fromarray(off),
                    "big200.png": Image.fromarray(u).resize((200, 200), Image.BICUBIC),
                    "inverted200.jpg": Image.fromarray(255 - u).resize((200, 200), Image.BICUBIC)}
        for name, im in versions.items():
            im.save(folder / f"{i:02d}_{name}")
            files.setdefault(name, []).append(folder / f"{i:02d}_{name}")
    return folder, files, heldout.images[:N], labels


def test_a_png_of_an_mnist_digit_is_converted_back_to_that_digit(pictures):
    _, files, originals, _ = pictures
    plain = torch.stack([load_digit(f) for f in files["plain.png"]])
    assert plain.shape == (N, 1, 28, 28) and plain.dtype == torch.float32
    assert (plain - originals).abs().mean() < 0.005     # MNIST digits are already in MNIST's form
    inverted = torch.stack([load_digit(f) for f in files["inverted.png"]])
    assert (inverted - plain).abs().max() < 0.02
    offcentre = torch.stack([load_digit(f) for f in files["offcentre.png"]])
    assert (offcentre - plain).abs().max() < 0.02         # re-centred by centre of mass


@pytest.mark.parametrize("version", ["plain.png", "inverted.png", "offcentre.png", "big200.png", "inverted200.jpg"])
def test_compare_decides_like_the_model_on_the_original_digits(pictures, run, version):
    _, files, originals, labels = pictures
    scorer = TorchScorer(run)
    a, b = (t.reshape(-1) for t in torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij"))
    same = (labels[a] == labels[b]).numpy()
    original = probability(pair_logits(scorer, originals, a, b)) > scorer.threshold
    pics = torch.stack([load_digit(f) for f in files[version]])
    emb, ref = scorer.embed(pics), scorer.embed(originals)
    decided = probability(scorer.logits(emb[a.numpy()], ref[b.numpy()])) > scorer.threshold
    assert (decided == original).mean() >= 0.98, (decided == original).mean()
    assert (decided == same).mean() >= 0.97, (decided == same).mean()
    assert decided[a == b].all()                         # every picture matches its own digit


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_pairs", *map(str, args)], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=300)


def test_compare_cli_text_json_gallery_and_onnx(pictures, onnx_dir, forked_cli):
    folder, files, _, labels = pictures
    q, same_digit = files["plain.png"][0], files["inverted200.jpg"][0]
    proc = cli("compare", q, same_digit)                                    # a fresh interpreter, once
    assert proc.returncode == 0 and proc.stdout.startswith("P(same digit) = ") and "-> same" in proc.stdout, proc
    out = json.loads(forked_cli("compare", q, files["big200.png"][1], "--json", "--onnx", onnx_dir).stdout)
    assert out["same"] == bool(labels[0] == labels[1]) and out["threshold_chosen_on"] == "val"
    gallery = json.loads(forked_cli("compare", q, "--gallery", folder, "--top", "5", "--json").stdout)
    assert gallery["gallery_size"] == 5 * N and len(gallery["matches"]) == 5
    assert all(m["same"] for m in gallery["matches"])  # the query's own five versions, at least
    assert sorted(m["probability"] for m in gallery["matches"]) == [m["probability"] for m in gallery["matches"]][::-1]


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_compare_bad_pictures_fail_cleanly(pictures, tmp_path, forked_cli):
    good = pictures[1]["plain.png"][0]
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    white = tmp_path / "white.png"
    Image.new("L", (64, 64), 255).save(white)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.png"
    Image.new("1", (8000, 8000), 1).save(huge)
    for bad, says in ((tmp_path / "missing.png", "no such file"), (text, "not an image"), (empty, "not an image"),
                      (white, "no ink found"), (huge, "too large")):
        line = _one_line_error(forked_cli("compare", good, bad))
        assert str(bad) in line and says in line, line
    assert "two pictures" in _one_line_error(forked_cli("compare", good))
    assert "no such folder" in _one_line_error(forked_cli("compare", good, "--gallery", tmp_path / "nope"))
    assert cli("compare", good, white).stderr == forked_cli("compare", good, white).stderr   # as a fresh interpreter
    with pytest.raises(ImageError, match="no ink"):
        load_digit(white)


def test_heldout_embeddings_cluster_by_digit_and_the_figures_draw(run, mnist_root):
    from mnist_pairs.analysis import analyze

    a = analyze(run, log=lambda m: None)
    emb, labels, images = a.embeddings(n=1000)
    assert emb.shape == (1000, 128) and images.shape == (1000, 1, 28, 28)
    d = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() >= 0.95      # nearest neighbour shares the digit
    figs = a._draw_embeddings()
    assert set(figs) == {"embeddings", "retrieval"}
    assert len(figs["retrieval"].axes) == 10 * 7
    grid = np.array(figs["retrieval"].axes).reshape(10, 7)
    for row in grid:                                           # the last column: the best match of another digit
        query, other = row[0].get_title().split()[-1], row[-1].get_title().split(" · ")[0]
        assert other != query and float(row[-1].get_title().split(" · ")[1]) <= float(row[1].get_title().split(" · ")[1])


def test_the_default_model_is_the_best_published_one(tmp_path):
    from mnist_pairs.paths import Reports
    from mnist_pairs.serve.deploy import default_run

    reports = tmp_path / "reports"
    shutil.copytree(RUN, reports / "runs" / "seed_siamese")
    assert default_run(Reports(reports)).dir == reports / "runs" / "seed_siamese"
    shutil.copytree(RUN, reports / "runs" / "improved")
    assert default_run(Reports(reports)).dir == reports / "runs" / "improved"


def test_scorer_probability_of_two_pictures(run, heldout):
    scorer = TorchScorer(run)
    labels = heldout.labels
    i = 0
    same = int(np.flatnonzero((labels == labels[i]).numpy())[1])
    other = int(np.flatnonzero((labels != labels[i]).numpy())[0])
    p_same = scorer.probability(heldout.images[i], heldout.images[same][0])     # (1,28,28) and (28,28)
    p_other = scorer.probability(heldout.images[i], heldout.images[other])
    assert p_same > 0.5 > p_other
    z = pair_logits(scorer, heldout.images, torch.tensor([i]), torch.tensor([other]))
    assert p_other == pytest.approx(float(1 / (1 + np.exp(-z[0]))), abs=1e-6)


def _flip_middle_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_published_runs_carry_the_digests_of_their_weights():
    from mnist_pairs.runs import sha256

    for name in ("seed_siamese", "seed_concat", "improved"):
        d = REPORTS_DIR / "runs" / name
        assert json.loads((d / "digests.json").read_text()) == {"best.pt": sha256((d / "best.pt").read_bytes())}


def test_a_flipped_byte_in_published_weights_or_an_onnx_graph_is_refused(pictures, onnx_dir, tmp_path, forked_cli):
    from mnist_pairs.errors import DigestMismatch
    from mnist_pairs.serve.draw import DrawDemo

    published = REPORTS_DIR / "runs" / "improved"
    copy = Path(shutil.copytree(published, tmp_path / "improved"))
    q, other = pictures[1]["plain.png"][:2]
    assert forked_cli("compare", q, other, "--run", copy).returncode == 0      # the intact copy loads
    _flip_middle_byte(copy / "best.pt")
    torch.load(copy / "best.pt", weights_only=True)  # the damage is inside a tensor: torch alone reads it
    for args in (("compare", q, other, "--run", copy), ("export", copy, "--onnx", tmp_path / "out")):
        line = _one_line_error(forked_cli(*args))
        assert f"{copy / 'best.pt'} is not the file its folder recorded" in line, line
        expected = json.loads((published / "digests.json").read_text())["best.pt"]
        assert f"expected {expected}, found " in line and "git checkout" in line and "make study" in line, line
    assert not (tmp_path / "out").exists()
    with pytest.raises(DigestMismatch, match="best.pt"):
        DrawDemo(str(copy))
    onnx_copy = Path(shutil.copytree(onnx_dir, tmp_path / "onnx"))
    _flip_middle_byte(onnx_copy / "head.onnx")
    line = _one_line_error(forked_cli("compare", q, other, "--onnx", onnx_copy))
    assert f"{onnx_copy / 'head.onnx'} is not the file its folder recorded" in line, line


# ----------------------------------------------------------------------------- an ensemble of runs
@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory, mnist_root):
    """The two published Siamese runs (selected on the same validation pairs) as one ensemble."""
    return publish_ensemble([RUN, IMPROVED], tmp_path_factory.mktemp("ensemble") / "ensemble", log=lambda m: None)


def _member_logits(folder, images_a, images_b) -> np.ndarray:
    scorers = [TorchScorer(Run.open(folder / name)) for name in ("seed_siamese", "improved")]
    return np.mean([s.logits(s.embed(images_a), s.embed(images_b)) for s in scorers], axis=0)


def test_an_ensemble_scores_its_members_mean_logit_from_the_cli_and_from_onnx(ensemble_dir, heldout, pictures,
                                                                              tmp_path, forked_cli):
    ens = EnsembleScorer(ensemble_dir)
    first = _first_pairs(heldout, 500)  # only the images these pairs use: each member embeds them
    got = pair_logits(ens, first.images, first.a, first.b)
    assert np.allclose(got, _member_logits(ensemble_dir, first.images[first.a], first.images[first.b]), atol=1e-5)
    # the threshold: the runs' rule on the validation pairs' mean logit (the members' saved scores)
    manifest = json.loads((ensemble_dir / "ensemble.json").read_text())
    val = load_data(Run.open(RUN).cfg, log=lambda m: None).sets["val"]
    mean_val = np.mean([Run.open(ensemble_dir / n).scores()["best_val"] for n in manifest["members"]], axis=0)
    assert manifest["threshold"] == ens.threshold == choose_threshold(mean_val, val.y.numpy())
    assert manifest["selection"] == "val" and manifest["members"] == ["seed_siamese", "improved"]
    # its own row in the report: every pair set both members were scored on, from their saved logits
    members = [Run.open(ensemble_dir / n) for n in manifest["members"]]
    mean_heldout = np.mean([m.scores()["best_heldout"] for m in members], axis=0)
    h = manifest["sets"]["heldout"]
    assert h["acc"] == pytest.approx(float(((mean_heldout > 0) == heldout.y.numpy().astype(bool)).mean()), abs=1e-7)
    assert h["pairs"] == len(heldout.y) and h["ci95"][0] <= h["acc"] <= h["ci95"][1]
    assert manifest["sets"]["val"]["acc"] == manifest["val_acc"] and set(manifest["sets"]) >= {"val", "test", "heldout"}
    shared_confirm = len({m.cfg.confirm_pairs for m in members}) == 1 and members[0].cfg.confirm_pairs > 0
    assert ("confirm" in manifest["sets"]) == shared_confirm

    _, files, _, labels = pictures
    q, other = files["plain.png"][0], files["big200.png"][1]
    out = json.loads(forked_cli("compare", q, other, "--ensemble", ensemble_dir, "--json").stdout)
    pics = torch.stack([load_digit(q), load_digit(other)])
    assert out["probability"] == pytest.approx(float(probability(_member_logits(ensemble_dir, pics[:1], pics[1:]))[0]),
                                               abs=1e-6)
    assert "ensemble of 2" in out["scorer"] and out["threshold"] == ens.threshold
    # the ONNX export: parity with the PyTorch ensemble on the first 2,000 held-out pairs (the CLI's
    # `export --ensemble` checks all 40,000), then `compare --onnx` reads it as one run's export
    onnx = export_ensemble(ensemble_dir, tmp_path / "onnx")
    check = parity(ens, onnx, _first_pairs(heldout, 2000))
    assert check["max_abs_logit_diff"] <= 1e-4 and check["decisions_identical"], check
    via_onnx = json.loads(forked_cli("compare", q, other, "--onnx", onnx, "--json").stdout)
    assert via_onnx["probability"] == pytest.approx(out["probability"], abs=1e-5)
    assert via_onnx["threshold"] == ens.threshold


def _first_pairs(pairs, n: int):
    """The first n pairs of a PairSet, with only the images they use."""
    from mnist_pairs.data import PairSet

    used, where = torch.unique(torch.cat([pairs.a[:n], pairs.b[:n]]), return_inverse=True)
    return PairSet(pairs.images[used], pairs.labels[used], where[:n], where[n:], pairs.y[:n])


def test_an_ensemble_refuses_damaged_members_and_runs_selected_on_other_pairs(ensemble_dir, pictures, tmp_path,
                                                                              forked_cli):
    q, other = pictures[1]["plain.png"][:2]
    copy = Path(shutil.copytree(ensemble_dir, tmp_path / "ensemble"))
    _flip_middle_byte(copy / "improved" / "best.pt")
    line = _one_line_error(forked_cli("compare", q, other, "--ensemble", copy))
    assert f"{copy / 'improved' / 'best.pt'} is not the file its folder recorded" in line, line
    assert "no ensemble at" in _one_line_error(forked_cli("compare", q, other, "--ensemble", tmp_path / "none"))
    assert "do not go together" in _one_line_error(forked_cli("compare", q, other, "--ensemble", "--run", RUN))
    line = _one_line_error(forked_cli("export", "--ensemble", copy, "--onnx", tmp_path / "out"))   # before writing
    assert "best.pt is not the file its folder recorded" in line and not (tmp_path / "out").exists(), line
    assert "not both" in _one_line_error(forked_cli("export", RUN, "--ensemble", ensemble_dir, "--onnx", tmp_path / "out"))
    other_pairs = Path(shutil.copytree(IMPROVED, tmp_path / "other_pairs"))
    config = other_pairs / "config.yaml"
    config.write_text(config.read_text().replace("val_pairs: 4000", "val_pairs: 2000"))
    with pytest.raises(ConfigError, match="different pairs .*val_pairs"):
        publish_ensemble([RUN, other_pairs], tmp_path / "x", log=lambda m: None)
    with pytest.raises(ConfigError, match="concat"):
        publish_ensemble([RUN, REPORTS_DIR / "runs" / "seed_concat"], tmp_path / "x", log=lambda m: None)
    with pytest.raises(ConfigError, match="at least two"):
        publish_ensemble([RUN], tmp_path / "x", log=lambda m: None)
    assert not (tmp_path / "x").exists()
