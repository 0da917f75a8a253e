"""A report as a list of blocks, written out as Markdown or as self-contained HTML.

The report's content is built once (:mod:`inq_hw.report.sections`) and rendered twice, so
``report.md`` and ``report.html`` cannot disagree about a number. Images are PNG bytes:
Markdown links them by relative file name, HTML embeds them as ``data:`` URIs, and the HTML
carries its own style sheet, so the one file is the whole report.
"""

import base64
import html
from dataclasses import dataclass

__all__ = [
    "Block",
    "Bullets",
    "Heading",
    "Image",
    "Note",
    "Paragraph",
    "Table",
    "to_html",
    "to_markdown",
]


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Note:
    """A call-out (a block quote in Markdown): used to label figures that are not ours."""

    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.headers):
                raise ValueError(f"Table row must have {len(self.headers)} cells, not {row!r}")


@dataclass(frozen=True)
class Image:
    """A PNG shown in the report: ``file`` beside report.md, ``data`` its bytes."""

    file: str
    caption: str
    data: bytes


Block = Heading | Paragraph | Note | Bullets | Table | Image


def to_markdown(blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown; images by relative path."""
    return "\n\n".join(_markdown(block) for block in blocks) + "\n"


def _markdown(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Note):
        return f"> {block.text}"
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        lines = [_md_row(block.headers), "|" + "---|" * len(block.headers)]
        return "\n".join(lines + [_md_row(row) for row in block.rows])
    return f"![{block.caption}]({block.file})\n\n*{block.caption}*"


def _md_row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
blockquote { border-left: 4px solid #c60; background: #fff6ec; margin: 1rem 0;
             padding: 0.4rem 0.8rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
figcaption { font-style: italic; color: #555; }
"""


def to_html(blocks: list[Block], *, title: str) -> str:
    """One self-contained HTML page: inline style, images as base64 ``data:`` URIs."""
    body = "\n".join(_html(block) for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _html(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Note):
        return f"<blockquote>{html.escape(block.text)}</blockquote>"
    if isinstance(block, Bullets):
        items = "".join(f"<li>{html.escape(item)}</li>" for item in block.items)
        return f"<ul>{items}</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block.headers)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    data = base64.b64encode(block.data).decode("ascii")
    caption = html.escape(block.caption)
    return (
        f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )
