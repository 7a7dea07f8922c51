"""The collect fast path must accept exactly what marshmallow accepts, with the same result."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from clickstream.schemas import (
    EVENT_TYPES,
    _batch_schema,
    _fast_batch,
    clean_url,
    fast_event,
    marshmallow_event,
)

NOW = int(time.time() * 1000)
# Half of a UTF-16 pair, as a client's "\ud800" escape arrives once parsed; hypothesis's text
# leaves surrogates out unless asked.
_lone = st.characters(categories=["Cs"])
_with_lone = st.tuples(st.text(max_size=4), _lone, st.text(max_size=4)).map("".join)
_urls = st.tuples(
    st.sampled_from(["https://", "http://", "HTTPS://", "//", ""]),
    st.sampled_from(["", "user:pass@", "token@", "a@b@", "u;x@"]),
    st.sampled_from(["shop.example", "shop.example:8443", ""]),
    st.lists(
        st.sampled_from(["/a", "/b;jsessionid=S", ";x=1", "/%3Fq=a", "/%3f", "/%23f", "/%20",
                         "?q=1", "#f", "/p@x", "/%2F", "/%3"]),
        max_size=4,
    ).map("".join),
).map("".join)  # fmt: skip
_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**42), st.floats(allow_nan=True),
    st.text(max_size=70), st.text(alphabet="abcXYZ019._:-", min_size=0, max_size=70),
    st.sampled_from(["https://s.example/a?b=c#d", "", "x" * 2049, *EVENT_TYPES]),
    _with_lone, _urls,
    st.just(NOW), st.integers(NOW - 10**9, NOW + 2 * 86_400_000),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)  # fmt: skip
_keys = st.sampled_from(
    [
        "id",
        "type",
        "ts",
        "product_id",
        "category",
        "query",
        "token",
        "url",
        "referrer",
        "page_type",
        "placement",
        "zip",
        "extra",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=7))
def test_fast_event_agrees_with_marshmallow(raw):
    fast = fast_event(raw, NOW)
    if fast is None:
        return  # marshmallow decides; nothing to compare
    assert fast == marshmallow_event(raw, NOW)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "id": st.text(alphabet="abc123-", min_size=1, max_size=64),
            "type": st.sampled_from(EVENT_TYPES),
        },
        optional={
            "ts": st.integers(NOW - 10**9, NOW),
            "product_id": st.text(alphabet="pq12", min_size=1, max_size=8),
            "query": st.text(min_size=1, max_size=20) | _with_lone,
            "url": st.just("https://a.example/x?y=1") | _urls,
            "category": st.text(min_size=1, max_size=10) | _with_lone,
        },
    )
)
def test_common_events_take_the_fast_path_when_valid(raw):
    try:
        expected = marshmallow_event(raw, NOW)
    except ValidationError:
        assert fast_event(raw, NOW) is None
        return
    assert fast_event(raw, NOW) == expected


@settings(max_examples=2000, deadline=None)
@given(st.one_of(_urls, st.text(max_size=40)))
def test_cleaned_urls_keep_no_credentials_parameters_or_query(url):
    kept = clean_url(url)
    assert clean_url(kept) == kept
    assert not any(c in kept for c in "?#;")
    assert "%3f" not in kept.lower() and "%23" not in kept
    scheme, sep, rest = kept.partition("//")
    if sep and (not scheme or scheme.endswith(":")):
        assert "@" not in rest.partition("/")[0]
    # Nothing is added, and what is kept of the path is the client's.
    assert all(part in url for part in kept.split("/") if part)


@settings(max_examples=1000, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["site", "visitor", "events", "dnt", "other"]),
        st.one_of(
            _values, st.lists(st.dictionaries(st.text(max_size=3), st.integers()), max_size=3)
        ),
        max_size=4,
    )
)
def test_fast_batch_agrees_with_marshmallow(payload):
    fast = _fast_batch(payload)
    if fast is not None:
        assert fast == _batch_schema.load(payload)


def test_a_lone_surrogate_is_left_to_marshmallow():
    event = {"id": "e1", "type": "search", "ts": NOW, "query": "a\ud800"}
    assert fast_event(event, NOW) is None
    assert _fast_batch({"site": "\udfff", "visitor": "v1", "events": [event]}) is None


def test_a_null_site_is_left_to_marshmallow():
    # Found by the property above: the fast path took {"site": null} for no site at all.
    payload = {"site": None, "visitor": "v1", "events": [{}]}
    assert _fast_batch(payload) is None
