"""A report as a list of blocks, rendered to Markdown and to a self-contained HTML page.

One structure, two renderers: the Markdown and the HTML of a report can never disagree about a number.
"""

from __future__ import annotations

import base64
import html
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
                body.append(f"<h{level}>{e(b.text)}</h{level}>")
            elif isinstance(b, Paragraph):
                body.append(f"<p>{_inline_html(b.text)}</p>")
            elif isinstance(b, Code):
                body.append(f"<pre><code>{e(b.text)}</code></pre>")
            elif isinstance(b, Table):
                cap = f"<caption>{e(b.caption)}</caption>" if b.caption else ""
                head = "".join(f"<th>{e(h)}</th>" for h in b.header)
                rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b.rows)
                body.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(b, Image):
                data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{e(b.alt)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{e(b.alt)}</figcaption></figure>")
            elif isinstance(b, Flags):
                items = "".join(
                    f'<li class="{"warn" if t else "ok"}"><strong>{"WARNING" if t else "ok"}</strong> '
                    f"<code>{e(n)}</code>: {e(m)}</li>"
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


def _inline_html(text: str) -> str:
    """Escape, then turn `code` spans into <code> (the only inline markup reports use)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


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
