"""Chart labels a user named (columns, categories) reach Plotly as text, never as markup."""

from __future__ import annotations

import json

from app.ui.monitoring_charts import distribution, plain

HOSTILE = '<a href="https://evil.example/">click</a> %{y}'


def test_a_label_named_like_markup_or_a_template_is_escaped() -> None:
    escaped = plain(HOSTILE)
    assert "<" not in escaped and "%{" not in escaped
    figure = distribution(HOSTILE, [HOSTILE, "b"], [0.5, 0.5], [0.25, 0.75])
    text = json.dumps(figure)
    assert "<a " not in text and "%{y}" not in text
    assert figure["data"][0]["x"][0] == escaped
