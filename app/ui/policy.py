"""The dashboard's Content Security Policy: scripts, styles, images and requests from this
site only, no plugins, no ``<base>``, forms posted here only, and never framed. Inline
scripts never run (what stops injected markup from executing); inline style attributes
are allowed (the bars and Plotly's own styles use them, and a style runs no code). A page
that draws a WebGL chart (parallel coordinates) also allows ``eval``: Plotly compiles its
WebGL shaders' wrappers with ``new Function``; its other charts need nothing more."""

from __future__ import annotations

HEADER = "Content-Security-Policy"


def policy(*, webgl: bool) -> str:
    scripts = "'self' 'unsafe-eval'" if webgl else "'self'"
    return (
        f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
