"""models."""

from store.openmp import passive_waits

passive_waits()  # before any module of this package loads xgboost (store/openmp.py says why)
