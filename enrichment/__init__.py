"""enrichment."""

from store.openmp import passive_waits

passive_waits()  # before enrichment.segments loads scikit-learn (store/openmp.py says why)
