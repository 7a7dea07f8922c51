"""Issue 13 item 4: reasons come from the explanation of the score, and an explanation never
credits a feature the visitor does not have (missing or absent features contribute nothing)."""

from __future__ import annotations

import numpy as np

from models.fast_scorer import MultiProductScorer
from models.features import FeatureBuilder, draft_schema
from models.linear_model import LinearModel
from models.serving import Bundle


def _bundle() -> Bundle:
    schema = draft_schema(
        {"age": "numeric"}, products=["p1", "p2"], categories=["kids"], has_holdings=True,
        has_web=True,
    )  # fmt: skip
    builder = FeatureBuilder(schema)
    names = builder.feature_names
    coef = np.zeros(len(names))
    fill = np.zeros(len(names))
    # A model that leans on age (imputed at 60 when missing: a big coef x fill) and holdings.
    coef[names.index("crm_age")] = 0.05
    fill[names.index("crm_age")] = 60.0
    coef[names.index("holds_p2")] = 1.5
    coef[names.index("web_aff_kids")] = 0.8
    models = {"p1": LinearModel(coef, -2.0, fill), "p2": LinearModel(coef * 0.5, -1.0, fill)}
    scorer = MultiProductScorer.from_boosters(models, names)
    return Bundle(version="v1", builder=builder, scorer=scorer)


def _anonymous_row(bundle: Bundle, kids: float) -> np.ndarray:
    cols = {"has_crm": [0.0], "has_zip": [0.0], "has_web": [1.0], "web.aff.kids": [kids]}
    return bundle.builder.transform(cols, 1)[0]


def _told(bundle: Bundle, x: np.ndarray) -> list[str | None]:
    """The reason groups of every product, checked against the way serving asks for them
    (from the scoring walk, absent features left out of the sums)."""
    groups = bundle.reason_groups(bundle.contributions(x))
    rows = list(range(len(bundle.product_ids)))
    assert bundle.reasons(x, rows, bundle.walk(x)) == groups
    assert bundle.reasons(x, rows[::-1]) == groups[::-1]
    return groups


def test_missing_features_contribute_nothing_and_rows_still_sum_to_the_margin() -> None:
    bundle = _bundle()
    x = _anonymous_row(bundle, kids=0.9)
    contrib = bundle.contributions(x)
    names = bundle.builder.feature_names
    for j, name in enumerate(names):
        if not np.isfinite(x[j]) or x[j] == 0:
            assert np.all(contrib[:, j] == 0.0), name
    np.testing.assert_allclose(contrib.sum(axis=1), bundle.scorer.margins(x), rtol=1e-6)


def test_an_anonymous_visitor_is_never_explained_by_crm_or_holdings() -> None:
    bundle = _bundle()
    x = _anonymous_row(bundle, kids=0.9)
    for items in bundle.explain(x).values():
        assert all(not i["feature"].startswith(("crm_", "holds_", "has_")) for i in items), items
        assert [i["feature"] for i in items] == ["web_aff_kids"]
    assert _told(bundle, x) == ["web", "web"]
    # Nothing the visitor has raised the score: no group is credited.
    x0 = _anonymous_row(bundle, kids=0.0)
    assert _told(bundle, x0) == [None, None]


def test_a_customer_is_explained_by_what_they_have() -> None:
    bundle = _bundle()
    cols = {"has_crm": [1.0], "has_zip": [0.0], "has_web": [0.0], "crm.age": [30.0],
            "hold.p1": [0.0], "hold.p2": [1.0]}  # fmt: skip
    x = bundle.builder.transform(cols, 1)[0]
    contrib = bundle.contributions(x)
    # holds_p2 (1.5) beats age (0.05 x 30 = 1.5 for p1 ... 0.75 x 2 for p2): ties go to the
    # first group in REASON_GROUPS; with holdings only on p2's features the groups differ.
    groups = _told(bundle, x)
    assert set(groups) <= {"crm", "holdings"}
    names = bundle.builder.feature_names
    assert contrib[0, names.index("holds_p1")] == 0.0  # not held: not credited


def test_a_visitor_who_only_opened_a_page_is_not_told_of_browsing() -> None:
    """How a visitor visits (page views, first and last seen) may move the score, but is not
    "what you have been browsing": only what they looked at is."""
    schema = draft_schema({}, products=["p1"], categories=["kids"], has_web=True)
    builder = FeatureBuilder(schema)
    names = builder.feature_names
    coef = np.zeros(len(names))
    coef[names.index("web_log_n_page_view")] = 1.0
    coef[names.index("web_days_since_first_seen")] = 0.5
    coef[names.index("web_aff_kids")] = 0.2
    scorer = MultiProductScorer.from_boosters(
        {"p1": LinearModel(coef, -2.0, np.zeros(len(names)))}, names
    )
    bundle = Bundle(version="v1", builder=builder, scorer=scorer)
    visit = {"has_crm": [0.0], "has_zip": [0.0], "has_web": [1.0], "web.n_page_view": [3.0],
             "web.first_seen": [0.0]}  # fmt: skip
    x = builder.transform(visit, 1, as_of=86_400.0 * 2)[0]
    assert bundle.contributions(x)[0, names.index("web_log_n_page_view")] > 0
    assert _told(bundle, x) == [None]
    x = builder.transform({**visit, "web.aff.kids": [0.9]}, 1, as_of=86_400.0 * 2)[0]
    assert _told(bundle, x) == ["web"]
