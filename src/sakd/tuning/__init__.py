"""Hyperparameter search (``sakd tune``): a search space (:mod:`sakd.tuning.space`) and the
study that trains and scores its trials on validation data (:mod:`sakd.tuning.study`)."""
