"""The project's template library: one `{% load chatsite %}` for every tag and filter."""

from __future__ import annotations

from django.template import engines


def test_one_library_holds_every_tag_and_filter():
    library = engines["django"].engine.template_libraries["chatsite"]
    assert set(library.filters) >= {"markdown", "model_label"}
    assert set(library.tags) >= {"model_banner"}
    for old in ("chat_extras", "model_banner"):
        assert old not in engines["django"].engine.template_libraries


def test_the_filters_render():
    template = engines["django"].from_string(
        "{% load chatsite %}{{ text|markdown }} {{ model|model_label }}"
    )
    rendered = template.render({"text": "**hi**", "model": "local:Tiny-Chat.Q8_0"})
    assert "<strong>hi</strong>" in rendered
    assert "Tiny-Chat (local)" in rendered
