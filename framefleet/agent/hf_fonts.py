"""Fonts for HyperFrames compositions, resolved as HyperFrames' compiler resolves them: offline,
the same faces on every machine.

A family the composition's CSS names (in ``font-family`` or ``font``, in ``<style>`` or a
``style`` attribute, through ``var(--x)`` too) that no ``@font-face`` of the project declares is
looked up among HyperFrames' bundled faces (``hf_fonts/faces.json``: Inter, Roboto, Montserrat, …
and the aliases HyperFrames maps to them, Helvetica and Arial to Inter, Georgia to EB Garamond,
Menlo to JetBrains Mono, …); each is the latin subset of an ``@fontsource`` package from npm
(``make setup``: scripts/build_npm.sh agent/hf_fonts), served to the page under the family's
own name. A
``font-family`` (or custom property) whose first family is generic (``sans-serif``,
``system-ui``, ``serif``, …) gets HyperFrames' primary face (Inter) put first, as HyperFrames
does; the ``font`` shorthand keeps its generic family, as in HyperFrames. A family first in some
declaration that resolves to nothing is reported (the agent logs it with the job); Chromium's
own fallback draws it, as HyperFrames' render does offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from framefleet.core.errors import ErrorClass, FramefleetError

FONTS = files("framefleet.agent").joinpath("hf_fonts")
PATH = "__framefleet/hf-fonts"  # where the page finds the faces, beside the bundle's files
GENERIC = {
    "sans-serif", "serif", "monospace", "cursive", "fantasy", "system-ui", "ui-sans-serif",
    "ui-serif", "ui-monospace", "emoji", "math", "fangsong", "-apple-system", "blinkmacsystemfont",
}  # fmt: skip
CSS_WIDE = {"inherit", "initial", "unset", "revert", "revert-layer"}
STYLE_BLOCK = re.compile(r"(<style\b[^>]*>)(.*?)(</style\s*>)", re.IGNORECASE | re.DOTALL)
STYLE_ATTRIBUTE = re.compile(r"""(\sstyle\s*=\s*)("[^"]*"|'[^']*')""", re.IGNORECASE)
# A declaration: font-family, the font shorthand, or a custom property (which may hold a stack).
DECLARATION = re.compile(r"(?<![\w-])(font-family|font|--[\w-]+)(\s*:\s*)([^;{}]+)", re.IGNORECASE)
# In the font shorthand, the families follow the size (and line height).
SHORTHAND_SIZE = re.compile(
    r"(?:^|\s)[\d.]+(?:px|em|rem|pt|%|vw|vh|vmin|vmax|ex|ch|q|cm|mm|in|pc)(?:\s*/\s*\S+)?\s+"
    r"|(?:^|\s)(?:xx-small|x-small|small|medium|large|x-large|xx-large|smaller|larger)"
    r"(?:\s*/\s*\S+)?\s+",
    re.IGNORECASE,
)
FONT_FACE = re.compile(r"@font-face\s*\{([^}]*)\}", re.IGNORECASE)
VAR = re.compile(r"^var\(\s*(--[\w-]+)\s*(?:,\s*(.*))?\)$", re.DOTALL)


@dataclass(frozen=True)
class Catalogue:
    primary: str  # the family put before a generic one
    unicode_range: str
    faces: dict[str, tuple[str, tuple[int, ...]]]  # slug -> (family, weights)
    aliases: dict[str, str]  # lower-case family -> slug


@cache
def catalogue() -> Catalogue:
    doc: dict[str, Any] = json.loads(FONTS.joinpath("faces.json").read_text())
    faces = {slug: (f["family"], tuple(f["weights"])) for slug, f in doc["faces"].items()}
    aliases = {family.lower(): slug for slug, (family, _) in faces.items()}
    for slug, names in doc["aliases"].items():
        aliases.update(dict.fromkeys(names, slug))
    return Catalogue(faces[doc["primary"]][0], doc["unicode_range"], faces, aliases)


def face_file(slug: str, weight: int) -> str:
    return f"{slug}-latin-{weight}-normal.woff2"


def split_families(value: str) -> list[str]:
    """A family list's names, unquoted (commas inside quotes or parentheses do not split)."""
    names, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(value):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            names.append(value[start:i])
            start = i + 1
    names.append(value[start:])
    return [n.strip().strip("'\"").strip() for n in names if n.strip().strip("'\"").strip()]


def shorthand_families(value: str) -> str | None:
    """The family list of a ``font`` shorthand, or None (``font: inherit``, a system font)."""
    match = SHORTHAND_SIZE.search(value)
    return value[match.end() :] if match else None


def css_texts(html: str) -> Iterator[str]:
    for match in STYLE_BLOCK.finditer(html):
        yield match[2]
    for match in STYLE_ATTRIBUTE.finditer(html):
        yield match[2][1:-1]


def with_primary(value: str, primary: str, custom: dict[str, str]) -> str | None:
    """``value`` with the primary family first when its first family is generic, else None."""
    var = VAR.match(value.strip())
    if var:
        if var[1] in custom or var[2] is None:
            return None  # the property's own value is rewritten where it is declared
        fallback = with_primary(var[2], primary, custom)
        return f"var({var[1]}, {fallback})" if fallback else None
    names = split_families(value)
    if not names or names[0].lower() not in GENERIC:
        return None
    return f"{primary}, {value.strip()}"


@dataclass
class Fonts:
    """What one composition's HTML files ask for."""

    custom: dict[str, str] = field(default_factory=dict)  # custom property -> value
    requested: dict[str, str] = field(default_factory=dict)  # lower-case family -> as written
    first: set[str] = field(default_factory=set)  # lower-case families first in a declaration
    declared: set[str] = field(default_factory=set)  # families the project's @font-face declare

    def read(self, html: str) -> None:
        for css in css_texts(html):
            for match in DECLARATION.finditer(css):
                if match[1].startswith("--"):
                    self.custom[match[1]] = match[3].strip()
            for block in FONT_FACE.finditer(css):
                for decl in DECLARATION.finditer(block[1]):
                    if decl[1].lower() == "font-family":
                        self.declared.update(n.lower() for n in split_families(decl[3])[:1])

    def collect(self, html: str) -> None:
        for css in css_texts(FONT_FACE.sub("", html)):
            for match in DECLARATION.finditer(css):
                prop, value = match[1].lower(), match[3]
                if prop == "font":
                    self._request(shorthand_families(value) or "", 0, shorthand=True)
                elif prop == "font-family":
                    self._request(value, 0)

    def _request(self, value: str, depth: int, shorthand: bool = False) -> None:
        var = VAR.match(value.strip())
        if var and depth < 8:
            self._request(self.custom.get(var[1], var[2] or ""), depth + 1, shorthand)
            return
        primary = catalogue().primary
        prefixed = None if shorthand else with_primary(value, primary, self.custom)
        names = split_families(prefixed or value)
        for i, name in enumerate(names):
            key = name.lower()
            if key in GENERIC or key in CSS_WIDE or key.startswith("var("):
                continue
            self.requested.setdefault(key, name)
            if i == 0:
                self.first.add(key)

    def rewrite(self, html: str) -> str:
        """``html`` with the primary family put before generic ones, as HyperFrames does."""
        primary = catalogue().primary

        def declaration(match: re.Match[str]) -> str:
            prop, value = match[1].lower(), match[3]
            # As HyperFrames: font-family and custom properties, never the font shorthand.
            if prop != "font-family" and not prop.startswith("--"):
                return match[0]
            new = with_primary(value, primary, self.custom)
            if new is None:
                return match[0]
            trailing = value[len(value.rstrip()) :]
            return f"{match[1]}{match[2]}{new}{trailing}"

        def css(text: str) -> str:
            return DECLARATION.sub(declaration, text)

        def block(m: re.Match[str]) -> str:
            return m[1] + css(m[2]) + m[3]

        def attribute(m: re.Match[str]) -> str:
            quote = m[2][0]
            return m[1] + quote + css(m[2][1:-1]) + quote

        return STYLE_ATTRIBUTE.sub(attribute, STYLE_BLOCK.sub(block, html))

    def faces_css(self, base: str) -> tuple[str, list[str]]:
        """@font-face rules for every requested family the bundled faces resolve (named as the
        page names it), and the families first in some declaration that nothing resolves."""
        c = catalogue()
        rules, unresolved = [], []
        for key, name in self.requested.items():
            if key in self.declared:
                continue
            slug = c.aliases.get(key)
            if slug is None:
                if key in self.first:
                    unresolved.append(name)
                continue
            for weight in c.faces[slug][1]:
                rules.append(
                    f'@font-face{{font-family:"{name}";'
                    f'src:url("{base}/{PATH}/{face_file(slug, weight)}") format("woff2");'
                    f"font-style:normal;font-weight:{weight};font-display:block;"
                    f"unicode-range:{c.unicode_range};}}"
                )
        return "\n".join(rules), sorted(unresolved)


# HyperFrames renders every composition's text with geometric precision.
TEXT_RENDERING = "html,body,*{text-rendering:geometricPrecision}"


def apply(bundle: dict[str, bytes], index: str, origin: str) -> list[str]:
    """Resolves the fonts of the HyperFrames composition in ``bundle`` (URL -> bytes, its entry
    page at ``index``) in place: every HTML file gets the primary family before generic ones,
    the entry page the @font-face rules and HyperFrames' text rendering, and the bundle the
    faces it names. Returns the families nothing resolves."""
    pages = {url: data.decode("utf-8", "replace") for url, data in bundle.items()}
    pages = {url: text for url, text in pages.items() if url.endswith((".html", ".htm"))}
    fonts = Fonts()
    for text in pages.values():
        fonts.read(text)
    for text in pages.values():
        fonts.collect(text)
    css, unresolved = fonts.faces_css(origin)
    for url, text in pages.items():
        rewritten = fonts.rewrite(text)
        if url == index:
            style = f"<style data-framefleet-hf-fonts>{TEXT_RENDERING}\n{css}</style>"
            rewritten = with_head_style(rewritten, style)
        if rewritten != text:
            bundle[url] = rewritten.encode()
    c = catalogue()
    for slug in {c.aliases[k] for k in fonts.requested if k in c.aliases}:
        for weight in c.faces[slug][1]:
            name = face_file(slug, weight)
            try:
                face = FONTS.joinpath("dist", name).read_bytes()
            except FileNotFoundError:  # the agent's install, not the composition: retryable
                raise FramefleetError(
                    ErrorClass.INTERNAL,
                    f"font face {name} is not installed on this agent "
                    "(make setup and the image build framefleet/agent/hf_fonts/dist)",
                ) from None
            bundle[f"{origin}/{PATH}/{name}"] = face
    return unresolved


HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)


def with_head_style(html: str, style: str) -> str:
    """``style`` after every stylesheet of the head (so its faces are the page's last word)."""
    match = HEAD_END.search(html)
    if match:
        return html[: match.start()] + style + html[match.start() :]
    return style + html
