"""mnist-pairs: does a pair of MNIST digits show the same digit?

The thin library the notebooks import sits flat here, lower modules never importing higher ones:
paths, errors, stats, seed_reference; paramfile, metrics; config, mnist, hardware, plots;
subset; data, optim; models, augment, tables; runs, shared_encoding, openset, tboard;
train (fit -> Run), analysis.
Three layers have folders of their own: accel/ (fused CPU kernels, data-parallel training; the
library uses them), serve/ (the published model on people's pictures, ONNX) and study/ (sweeps,
summary, ablation and confirmation rules, calibration, the report's figures, the report with its
Chinese labels, number formats and reproduction check, the `make study` pipeline),
which read what the library writes. cli (`python -m mnist_pairs`) sits on top of all of them.
"""
