"""The study layer: multi-seed sweeps and their summary, the ablation and confirmation rules,
calibration, the report, and the pipeline behind `make study`. It reads runs the library wrote;
nothing in the library imports it."""
