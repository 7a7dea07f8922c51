"""The recommend query fast path agrees with RecommendArgsSchema wherever it answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError
from werkzeug.datastructures import MultiDict

from campaigns.schemas import RecommendArgsSchema, fast_recommend_args

SCHEMA = RecommendArgsSchema()
text = st.one_of(
    st.sampled_from(["v1", "visitor-9", "a" * 64, "a" * 65, "", "bad id", "x/y", "ü", "3", "07"]),
    st.text(max_size=70),
)
n_text = st.one_of(st.integers(-3, 60).map(str), st.sampled_from(["", "03", " 3", "2.0", "x"]))
keys = st.sampled_from(["site", "visitor", "n", "explain", "exclude", "dnt", "other"])


@settings(max_examples=600, deadline=None)
@given(
    pairs=st.lists(
        st.one_of(
            st.tuples(st.just("visitor"), text),
            st.tuples(st.just("site"), text),
            st.tuples(st.just("n"), n_text),
            st.tuples(keys, text),
        ),
        max_size=5,
    )
)
def test_fast_path_answers_exactly_as_the_schema(pairs):
    query = MultiDict(pairs)
    fast = fast_recommend_args(query)
    if fast is None:
        return
    try:
        slow = SCHEMA.load(query)
    except ValidationError as err:
        pytest.fail(f"fast path accepted {pairs!r}; the schema says {err.messages}")
    assert fast == slow


def test_fast_path_takes_the_everyday_query_and_declines_the_rest():
    assert fast_recommend_args(MultiDict({"site": "s", "visitor": "v", "n": "5"}))["n"] == 5
    assert fast_recommend_args(MultiDict({"visitor": "v"})) == SCHEMA.load({"visitor": "v"})
    assert fast_recommend_args(MultiDict({"visitor": "v", "explain": "1"})) is None
    assert fast_recommend_args(MultiDict([("visitor", "v"), ("visitor", "w")])) is None
    assert fast_recommend_args(MultiDict({"visitor": "v", "n": "51"})) is None
