"""A report as a list of blocks, rendered to Markdown and to a self-contained HTML page.

One structure, two renderers: the Markdown and the HTML of a report can never disagree about a number.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from gradguard.atomic import atomic_write_text

__all__ = ["Heading", "Paragraph", "Table", "Image", "Flags", "Code", "Document"]


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Code:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Image:
    path: Path  # a PNG beside the report; Markdown links it, HTML embeds it
    alt: str


@dataclass
class Flags:
    """Masking-check flags: each (name, triggered, message)."""

    items: list[tuple[str, bool, str]]


Block = Heading | Paragraph | Code | Table | Image | Flags


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Document:
        self.blocks.extend(blocks)
        return self

    # -- Markdown --
    def to_markdown(self, base: Path) -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            if isinstance(b, Heading):
                out += ["#" * b.level + " " + b.text, ""]
            elif isinstance(b, Paragraph):
                out += [b.text, ""]
            elif isinstance(b, Code):
                out += ["```", b.text, "```", ""]
            elif isinstance(b, Table):
                if b.caption:
                    out += [f"*{b.caption}*", ""]
                out.append("| " + " | ".join(b.header) + " |")
                out.append("|" + "|".join(" --- " for _ in b.header) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
                out.append("")
            elif isinstance(b, Image):
                out += [f"![{b.alt}]({_relative(b.path, base)})", ""]
            elif isinstance(b, Flags):
                for name, triggered, message in b.items:
                    mark = "**WARNING**" if triggered else "ok"
                    out.append(f"- {mark} `{name}`: {message}")
                out.append("")
        return "\n".join(out).rstrip() + "\n"

    # -- HTML --
    def to_html(self) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for b in self.blocks:
            if isinstance(b, Heading):
                level = min(max(b.level, 2), 6)
                body.append(f"<h{level}>{_inline_html(b.text)}</h{level}>")
            elif isinstance(b, Paragraph):
                body.append(f"<p>{_inline_html(b.text)}</p>")
            elif isinstance(b, Code):
                body.append(f"<pre><code>{e(b.text)}</code></pre>")
            elif isinstance(b, Table):
                cap = f"<caption>{_inline_html(b.caption)}</caption>" if b.caption else ""
                head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
                rows = "".join("<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in row) + "</tr>"
                               for row in b.rows)
                body.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(b, Image):
                data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{e(b.alt)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{e(b.alt)}</figcaption></figure>")
            elif isinstance(b, Flags):
                items = "".join(
                    f'<li class="{"warn" if t else "ok"}"><strong>{"WARNING" if t else "ok"}</strong> '
                    f"<code>{e(n)}</code>: {_inline_html(m)}</li>"
                    for n, t, m in b.items
                )
                body.append(f'<ul class="flags">{items}</ul>')
        return _PAGE.format(title=e(self.title), body="\n".join(body))

    def write(self, directory: Path, stem: str = "report") -> tuple[Path, Path]:
        """Write `stem`.md and `stem`.html atomically into `directory`."""
        md = atomic_write_text(directory / f"{stem}.md", self.to_markdown(directory))
        page = atomic_write_text(directory / f"{stem}.html", self.to_html())
        return md, page


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _inline_html(text: str) -> str:
    """The inline Markdown reports use, as HTML: `code`, **bold** and [links](url); everything else escaped.

    Code spans are taken first, so that `**` or brackets inside them stay literal, as in Markdown.
    """
    out, pos = [], 0
    for m in _CODE.finditer(text):
        out += [_bold_and_links(text[pos : m.start()]), f"<code>{html.escape(m.group(1))}</code>"]
        pos = m.end()
    out.append(_bold_and_links(text[pos:]))
    return "".join(out)


def _bold_and_links(text: str) -> str:
    def link(m: re.Match[str]) -> str:
        url = html.unescape(m.group(2))
        if re.match(r"^[a-z][a-z0-9+.-]*:", url, re.I) and not url.lower().startswith(("http:", "https:")):
            return m.group(0)  # javascript: and the like stay text
        return f'<a href="{html.escape(url)}">{m.group(1)}</a>'

    escaped = html.escape(text, quote=False)
    return _LINK.sub(link, _BOLD.sub(r"<strong>\1</strong>", escaped))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #bbb; padding: .3rem .6rem; text-align: right; }}
th {{ background: #f0f0f0; }} td:first-child, th:first-child {{ text-align: left; }}
caption {{ caption-side: top; font-style: italic; padding: .3rem; }}
figure {{ margin: 1rem 0; }} img {{ max-width: 100%; }}
pre {{ background: #f6f6f6; padding: .6rem; overflow-x: auto; }}
.flags li.warn {{ color: #a40000; }} .flags li.ok {{ color: #2a6a2a; }}
</style></head>
<body>
{body}
</body></html>
"""
