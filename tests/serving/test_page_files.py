"""The web page asks the server only for files it serves: no request of the page fails (a browser
asks for /favicon.ico unless the page names an icon)."""

from __future__ import annotations

import re

from loraqa.serving.app import STATIC_FILES, _static_text


def test_page_names_an_inline_icon_and_only_files_the_server_serves():
    page = _static_text("index.html")
    icons = re.findall(r'<link rel="icon" href="([^"]*)"', page)
    assert len(icons) == 1 and icons[0].startswith("data:image/svg+xml,"), icons  # inline: no request at all
    # what the browser fetches while loading the page (links the user follows, such as /docs, aside)
    fetched = re.findall(r'<link [^>]*href="(/[^"]*)"', page) + re.findall(r'src="(/[^"]*)"', page)
    assert fetched and all(url.removeprefix("/static/") in STATIC_FILES for url in fetched), fetched
