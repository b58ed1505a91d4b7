"""mnist-pairs: does a pair of MNIST digits show the same digit?

Modules by concept, lower ones never importing higher ones: paths, errors, config, mnist
(verified files), data (subset, pairs, pair sets), augment, models, hardware, metrics, plots,
runs (run folders), train (fit -> Run), analysis, tables, sweep (Optuna), summary, report
(facts + Jinja2 template), study (`make study`), cli (`python -m mnist_pairs`).
"""
