# The two commands of the README: `make study` (the full study) and `make test` (the tests,
# the study smoke included). Each creates .venv and installs what it needs when missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: lock sweep-best confirm-best confirm-fast-final study study-smoke test robustness demo browser confirm sweep sweep-beyond sweep-ablation sweep-levers sweep-fused sweep-fast confirm-fast summary lab data notebooks bench tensorboard clean-venv

# uv (from PyPI) installs the same pins as pip in less than half the time (about 90 s against about
# 200 s here: it unpacks torch's CUDA wheels in parallel). This machine sets PYTHONDONTWRITEBYTECODE=1,
# so a module without a .pyc is compiled again by every process that imports it (torch, pandas,
# matplotlib…: 21 s instead of 9 s per process). Make's processes are told to write the .pyc the first
# time a module is imported (unexport below): only what the project imports gets compiled, once
# (~13 s), where `uv --compile-bytecode` compiled the whole environment at install (36 s, most of it
# never imported). uv does not read pip's configuration:
# the indexes and wheel folders pip is configured with are passed on, with pip's rule (best version
# over all indexes). pip installs when uv cannot.
unexport PYTHONDONTWRITEBYTECODE
PIP_INDEXES = $(shell $(PY) -m pip config get global.extra-index-url 2>/dev/null)
PIP_LINKS   = $(shell $(PY) -m pip config get global.find-links 2>/dev/null)
UV_SOURCES  = --index-strategy unsafe-best-match $(foreach u,$(PIP_INDEXES),--extra-index-url $(u)) \
              $(foreach u,$(PIP_LINKS),--find-links $(u))
# requirements.lock (`make lock`) names every package's exact version and sha256; the install checks the
# hashes, then adds the project itself without dependencies.
$(STAMP): pyproject.toml constraints.txt requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet uv && \
	  $(BIN)/uv pip install --quiet --python $(BIN)/python $(UV_SOURCES) --require-hashes -r requirements.lock \
	  || $(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null || $(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mnist-pairs)"
	touch $(STAMP)

# requirements.lock from pyproject.toml (uv resolves with pip's indexes; tools/lock.py adds the header
# naming the dependency list it came from). Run it after changing pyproject.toml's dependencies.
lock:
	test -x $(BIN)/uv || { test -x $(BIN)/python || $(PY) -m venv $(VENV); $(BIN)/pip install --quiet uv; }
	$(BIN)/uv pip compile --quiet pyproject.toml --generate-hashes --python $(BIN)/python \
		$(UV_SOURCES) -c constraints.txt --no-header -o requirements.lock
	$(PY) tools/lock.py requirements.lock

data: $(STAMP)
	$(BIN)/python -m mnist_pairs fetch-data

# reports/ changes only when the whole study has finished (it works in .reports.staging/). Then the
# robustness table is measured again for a published model whose best.pt it did not measure (sha256; a few
# minutes each, none when the weights are the same), and the report rewritten from the files.
study: $(STAMP)
	$(BIN)/python -m mnist_pairs study
	$(BIN)/python -m mnist_pairs robustness --stale && $(BIN)/python -m mnist_pairs study --report-only

# The study's code path with tiny settings (2 epochs on a 2 % subset, every params file, 01 -> 02 ->
# 03 -> report) on a scratch copy of reports/ in a temporary folder: reports/ is never written.
# `make test` runs it (tests/test_study.py, killed once between notebooks, then to the end).
study-smoke: $(STAMP)
	$(BIN)/python -m mnist_pairs study --smoke

# The unit tests, the study smoke among them (tests/test_study.py), and the notebooks by nbval, in one
# session on TEST_WORKERS pytest-xdist workers, each test file whole on one worker (its module fixtures
# built once) and the notebooks together on one, in order (03 reads the run 02 trains; see conftest.py),
# each in one kernel: notebook 02's training overlaps the unit tests
# instead of running after them on one core. OMP_NUM_THREADS=1 gives every torch process of the tests
# (workers, trainings, notebook kernels) one thread, so two workers fill 2 cores without oversubscribing
# them (with torch's 2 threads each, waiting threads spin and the run is slower than serial).
# --durations=25: where the time goes, printed by every run (CI's log included).
# TEST_MALLOC: glibc keeps the memory a training step frees for the next step instead of unmapping it and
# faulting it in again (a 1-thread training here spent a fifth of its time in the kernel doing that: a
# 1-epoch fit took 14.8 s, 10.9 s with these); best.pt and scores.npz came out byte-identical with and
# without them, at 1 and 2 threads. Processes keep their peak heap until they exit.
TEST_WORKERS ?= 2
TEST_MALLOC  ?= MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000
test: $(STAMP) browser data
	$(TEST_MALLOC) OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25 \
		--nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg tests notebooks

# The report's robustness table (issue 21): both published models on held-out pairs drawn as pictures
# and perturbed as real input is; writes reports/robustness.json (a few minutes on 2 cores).
robustness: $(STAMP)
	$(BIN)/python -m mnist_pairs robustness

# The multi-seed results the report's headline reads (reports/summary.json): three groups, one
# Optuna study each, one run folder per training seed. Resumable: a re-run skips finished seeds
# and resumes killed ones. SEEDS=0-9 WORKERS=2 STORAGE=postgresql://… to change them.
SEEDS   ?= 0-4
WORKERS ?= 1
SWEEP    = $(BIN)/python -m mnist_pairs sweep --seeds $(SEEDS) --workers $(WORKERS) $(if $(STORAGE),--storage $(STORAGE))
sweep: $(STAMP)
	$(SWEEP) --params params/seed_siamese.yaml --protocol validation
	$(SWEEP) --params params/seed_siamese.yaml --protocol test
	$(SWEEP) --params params/seed_concat.yaml --protocol validation
	$(BIN)/python -m mnist_pairs summarize
	$(BIN)/python -m mnist_pairs calibrate

# The report's section 10 (issue 10): open set (trained on digits 0-7) and Fashion-MNIST, 3 seeds
# each; summarize merges them into reports/summary.json beside the groups of `make sweep`.
sweep-beyond: SEEDS = 0-2
sweep-beyond: $(STAMP)
	$(SWEEP) --params params/unseen_digits.yaml --protocol validation
	$(SWEEP) --params params/fashion_siamese.yaml --protocol validation
	$(BIN)/python -m mnist_pairs summarize

# The report's section 5 (issue 9): the seed's steps one change at a time (params/ablate_*.yaml,
# seeds 0-2; step 1, seed_concat, comes from `make sweep`), and the project's levers (params/lever_*.yaml: step 7 on seeds 0-2, step 8
# on seeds 0-4; mnist_pairs/study/ablation.py has the adoption rule). Each sweep resumes and skips what is done.
ABLATE  = ablate_bce_sigmoid ablate_adam ablate_fp32 ablate_random_pairs ablate_no_augment ablate_no_dropout \
          ablate_constant_lr ablate_epochs10 ablate_epochs50
LEVERS7 = lever_shared_e25 lever_cosine_ema
LEVERS8 = lever_shared_e100 lever_deep_shared_e100 lever_shared_cosine_e100 lever_shared_elastic_e100 \
          lever_shared_supcon_e100 lever_combined_e100
sweep-ablation: $(STAMP)
	for p in $(ABLATE); do $(BIN)/python -m mnist_pairs sweep --params params/$$p.yaml --protocol validation --seeds 0-2 || exit 1; done
	$(BIN)/python -m mnist_pairs summarize

sweep-levers: $(STAMP)
	for p in $(LEVERS7); do $(BIN)/python -m mnist_pairs sweep --params params/$$p.yaml --protocol validation --seeds 0-2 || exit 1; done
	for p in $(LEVERS8); do $(BIN)/python -m mnist_pairs sweep --params params/$$p.yaml --protocol validation --seeds 0-4 || exit 1; done
	$(BIN)/python -m mnist_pairs summarize

# Report section 12 (issue 11): the fused blocks' accuracy, each against its unfused control on this machine
sweep-fused: $(STAMP)
	for p in fused_fp32 fused_fp32_control fused_bf16 fused_bf16_control; do \
		$(BIN)/python -m mnist_pairs sweep --params params/$$p.yaml --protocol validation --seeds 0-2 || exit 1; done
	$(BIN)/python -m mnist_pairs summarize

# Issue 22, time to 99.3 %: the faster recipe's candidates (params/fast_*.yaml) on seeds 0-2, chosen
# on validation pairs by the rule registered before their runs in docs/plans/time_to_accuracy.md.
# summarize then adds their groups to reports/summary.json.
FAST = fast_a fast_b fast_c fast_d
sweep-fast: $(STAMP)
	for p in $(FAST); do $(BIN)/python -m mnist_pairs sweep --params params/$$p.yaml --protocol validation --seeds 0-2 || exit 1; done
	$(BIN)/python -m mnist_pairs summarize

# Issue 32: the `best` and `fast` candidates with the final-weights rule (docs/plans/best_and_fast.md,
# registered before their runs) on seeds 0-2; the plan's rule chooses among them on validation pairs.
BEST = best_a best_b best_c fast_e fast_f
sweep-best: $(STAMP)
	for p in $(BEST); do $(BIN)/python -m mnist_pairs sweep --params params/$$p.yaml --protocol validation --seeds 0-2 || exit 1; done
	$(BIN)/python -m mnist_pairs summarize

# The `best` recipe's confirmation (docs/plans/best_and_fast.md): the candidate its rule chose, written into
# params/confirm_best.yaml with the choice (that file does not exist before), and the seed configuration
# (params/confirm_best_seed.yaml) on the same fresh seeds 13-17, each scored once at the end on the held-out
# pairs and the confirmation set; then the five best runs published as one ensemble (reports/runs/ensemble,
# its held-out and confirmation figures in ensemble.json). The best runs go first: seed 13 is the model the
# plan publishes. Resumable: a re-run skips finished seeds and resumes a killed one from its last.pt.
# Its runs are the fp32 path's group (confirm_best__validation, committed): on a GPU or a CPU with native
# bf16 they would train at another precision into that same folder, and summarize would replace them; the
# target refuses there (for the fp32 path on a bf16 CPU: prefix ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2).
BEST_RUNS = $(foreach s,13 14 15 16 17,experiments/sweeps/confirm_best__validation/seed$(s))
confirm-best: $(STAMP)
	@test -f params/confirm_best.yaml || { echo "error: params/confirm_best.yaml does not exist: the best recipe has not been chosen yet (make sweep-best, then the plan's rule)" >&2; exit 2; }
	@$(BIN)/python -c "import sys; from mnist_pairs.config import load_config; from mnist_pairs.hardware import resolve_device, resolve_precision; \
	  cfg = load_config('params/confirm_best.yaml'); sys.exit(resolve_precision(cfg, resolve_device(cfg)) != 'fp32')" \
	  || { echo "error: here params/confirm_best.yaml would train in bf16 or fp16, but the best confirmation's runs (experiments/sweeps/confirm_best__validation, reports/sweeps/…) are the fp32 path; its bf16 path has no target yet. For the fp32 path on a CPU with native bf16, prefix ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2" >&2; exit 2; }
	$(BIN)/python -m mnist_pairs sweep --params params/confirm_best.yaml --protocol validation --seeds 13-17
	$(BIN)/python -m mnist_pairs sweep --params params/confirm_best_seed.yaml --protocol validation --seeds 13-17
	$(BIN)/python -m mnist_pairs publish-ensemble $(BEST_RUNS) --out reports/runs/ensemble
	$(BIN)/python -m mnist_pairs summarize

# The `fast` recipe's confirmation (docs/plans/best_and_fast.md): the candidate its rule chose, written into
# params/confirm_fast_final.yaml with the choice, on fresh seeds 18-20, each timed from process start by the
# benchmark into reports/benchmarks/time_to_accuracy_final_<bf16|fp32>.json; its runs are the summary group
# confirm_fast_final__validation (fp32 path) or ..._bf16 (a CPU with native bf16). Nothing else should run
# meanwhile; for the fp32 path on a bf16 CPU, prefix ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2.
FINAL_RUNS ?= experiments/sweeps/$(shell $(BIN)/python -c "from mnist_pairs.hardware import cpu_has_native_bf16; \
	from mnist_pairs.study.recipes import CONFIRM; print(CONFIRM['fast']['groups']['bf16' if cpu_has_native_bf16() else 'fp32'])")
confirm-fast-final: $(STAMP)
	$(BIN)/python benchmarks/bench_time_to_accuracy.py --params params/confirm_fast_final.yaml --seeds 18-20 \
		--out-dir $(FINAL_RUNS) --out "reports/benchmarks/time_to_accuracy_final_{precision}.json"
	$(BIN)/python -m mnist_pairs summarize

# Its confirmation: the chosen recipe (params/confirm_fast.yaml) on fresh seeds 10-12, each timed from
# process start by the benchmark, into reports/benchmarks/time_to_accuracy_<bf16|fp32>.json; its runs are
# the summary group confirm_fast__validation (fp32 path) or confirm_fast__validation_bf16 (bf16 path: a CPU
# with native bf16). Nothing else should run meanwhile. For the fp32 path on a bf16 CPU, prefix
# ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2.
TTA_RUNS ?= experiments/sweeps/$(shell $(BIN)/python -c "from mnist_pairs.hardware import cpu_has_native_bf16; \
	from mnist_pairs.study.speed import CONFIRM; print(CONFIRM['bf16' if cpu_has_native_bf16() else 'fp32'])")
confirm-fast: $(STAMP)
	$(BIN)/python benchmarks/bench_time_to_accuracy.py --params params/confirm_fast.yaml --seeds 10-12 \
		--out-dir $(TTA_RUNS) --out "reports/benchmarks/time_to_accuracy_{precision}.json"
	$(BIN)/python -m mnist_pairs summarize

# The improved model's confirmation (mnist_pairs/study/confirmation.py, registered before its runs): the
# seed configuration and the improved one on fresh training seeds 5-9, each run scored once at the
# end on the confirmation set (40,000 pairs among the MNIST training images outside the subset);
# then test-time augmentation and the 5-seed ensemble on those runs. (The model it once published,
# the run picked on validation accuracy, is no longer published: see `make confirm-best`.)
confirm: $(STAMP)
	$(BIN)/python -m mnist_pairs sweep --params params/confirm_seed.yaml --protocol validation --seeds 5-9
	$(BIN)/python -m mnist_pairs sweep --params params/confirm_improved.yaml --protocol validation --seeds 5-9
	$(BIN)/python -m mnist_pairs summarize
	$(BIN)/python -m mnist_pairs confirm-levers

summary: $(STAMP)
	$(BIN)/python -m mnist_pairs summarize

# Regenerate each notebook from its paired py:percent source (notebooks/*.py, the file to edit)
# and store the outputs of its default (quick) parameters, as committed: nbval compares against these.
notebooks: $(STAMP)
	cd notebooks && for nb in 01_data 02_train 03_analysis 04_draw; do \
		../$(BIN)/jupytext --to ipynb --update $$nb.py -o $$nb.ipynb && \
		../$(BIN)/jupyter nbconvert --to notebook --execute --inplace $$nb.ipynb || exit 1; done

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_epoch.py --out reports/benchmarks/bench_epoch.json
	$(BIN)/python benchmarks/bench_infer.py --out reports/benchmarks/bench_infer.json
	$(BIN)/python benchmarks/bench_levers.py --compile --out reports/benchmarks/bench_levers.json
	$(BIN)/python -m mnist_pairs readme

lab: $(STAMP)
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# notebooks/04_draw as a page (Voila) on 127.0.0.1:8866 behind a token, printed with the address.
demo: $(STAMP)
	$(BIN)/python -m mnist_pairs demo

# Debian's Chromium for the browser tests (tests/test_demo.py: the Voila page; tests/test_lab.py: the
# notebooks in JupyterLab) and a CJK font (fonts-noto-cjk) so that pages and screenshots show the Chinese
# text: installed when missing and this user may install packages; otherwise those tests are skipped
# and say why.
APT_GET = apt-get install -y -qq --no-install-recommends
browser:
	@command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q . || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  ($(APT_GET) chromium fonts-noto-cjk >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && $(APT_GET) chromium fonts-noto-cjk >/dev/null 2>&1)) \
	  || echo "chromium or a CJK font not installed: the browser tests will be skipped or show boxes for Chinese text"; }

# Runs trained with `tensorboard: true` (e.g. --set tensorboard=true) write <run>/tensorboard/.
tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir experiments --host 127.0.0.1 --port 6006

clean-venv:
	rm -rf $(VENV)
