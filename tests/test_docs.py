"""The README and docs/ hold together: every relative link and image resolves, and an #anchor names a
heading of its target (GitHub's slug rules) or an explicit id."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
FENCED = re.compile(r"^```.*?^```", flags=re.S | re.M)


def _slug(heading: str) -> str:
    s = re.sub(r"<[^>]+>", "", heading.strip().lower())
    s = "".join(c for c in s if c in " -_" or unicodedata.category(c)[0] in "LN")
    return s.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The #anchors a Markdown file offers: its headings' slugs (repeats numbered) and explicit ids."""
    text = path.read_text()
    seen: dict[str, int] = {}
    out = set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', text))
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", FENCED.sub("", text), flags=re.M):
        base = _slug(m.group(1).replace("`", ""))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(files: list[Path], root: Path = ROOT) -> list[str]:
    bad = []
    for f in files:
        text = re.sub(r"`[^`\n]*`", "", FENCED.sub("", f.read_text()))
        for m in LINK.finditer(text):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):
                continue
            path, _, frag = target.partition("#")
            dest = (f.parent / path).resolve() if path else f
            if not dest.exists() or root not in dest.parents:
                bad.append(f"{f.relative_to(root)}: {target}: no such file in the repository")
            elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                bad.append(f"{f.relative_to(root)}: {target}: no heading #{frag}")
    return bad


def test_the_check_sees_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Real heading\n[ok](#real-heading) [gone](b.md) [no](#nowhere)\n")
    assert broken_links([tmp_path / "a.md"], root=tmp_path) == [
        "a.md: b.md: no such file in the repository",
        "a.md: #nowhere: no heading #nowhere",
    ]


def test_every_relative_link_of_the_readme_and_docs_resolves() -> None:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert not broken_links(files)
