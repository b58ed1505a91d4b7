"""mnist-pairs: does a pair of MNIST digits show the same digit?

Modules, one job each: paths, config, data, models, train, metrics, plots, analysis,
report, notebook (glue for notebooks/), study (`make study`), cli (`python -m mnist_pairs`).
"""
