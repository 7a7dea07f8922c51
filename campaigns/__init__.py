"""The decision layer: what to show whom, on top of the scores ``models`` computes.

Request-time offer decision (``offers.Recommender``: reads, rules, ranking under the tenant's
rules, offer tokens, the recommend wire schema); campaigns, control groups and their
measurement build here too. ``models`` keeps learning and scoring only, the way a recommender
keeps its policy apart from its algorithms.
"""
