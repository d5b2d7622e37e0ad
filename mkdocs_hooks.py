"""mkdocs hooks (mkdocs.yml's ``hooks:``): docs/*.md stay GitHub Markdown, and the site still works.

On GitHub, docs/*.md link to files beside docs/ (``../benchmarks/results/x.json``,
``../CONTRIBUTING.md``, ``../src/...``). For the site, this hook

* adds README.md as the home page (``index.md``) and CONTRIBUTING.md as ``contributing.md``; a
  link to either of them, or from them into docs/, becomes a link to that page, which mkdocs then
  checks like any other (anchors too);
* checks every other relative link that leaves docs/: it must name a file or folder of the
  repository, or the build warns, naming the page and the link (a warning fails the strict build);
  and points it at the repository (``repo_url``/blob/main/..., ``raw`` for an image, ``tree`` for
  a folder).

Links within docs/ are left as written, to mkdocs' own validation (mkdocs.yml's ``validation:``).
The repository is the folder that holds ``docs_dir``; links in fenced code blocks are not links.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

BRANCH = "main"
PAGES = {"README.md": "index.md", "CONTRIBUTING.md": "contributing.md"}  # repository file -> site page
LINK = re.compile(r"(!?)(\[([^\]]*)\]\()([^)\s]+)\)")  # [text](url) or ![alt](url): "!"/"", "[text](", text, url
FENCED = re.compile(r"(^[ \t]*```.*?^[ \t]*```)", re.MULTILINE | re.DOTALL)  # split on it: odd parts are code
log = logging.getLogger("mkdocs.hooks.sakd")


def on_files(files, config):
    root = Path(config.docs_dir).parent
    for source, page in PAGES.items():
        files.append(File.generated(config, page, abs_src_path=str(root / source)))
    return files


def on_page_markdown(markdown, page, config, files):
    root = Path(config.docs_dir).parent
    source = Path(os.path.relpath(page.file.abs_src_path, root)).as_posix()  # the page's file in the repository
    here, site_dir = posixpath.dirname(source), posixpath.dirname(page.file.src_uri)
    repo = (config.repo_url or "").rstrip("/")
    if source in PAGES and repo:
        page.edit_url = f"{repo}/edit/{BRANCH}/{source}"

    def rewrite(match: re.Match) -> str:
        image, head, text, url = match.groups()
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:|[#/]", url):  # a scheme (https:, mailto:), an anchor, absolute
            return match.group(0)
        path, hash_, anchor = url.partition("#")
        target = posixpath.normpath(posixpath.join(here, path))
        if target in PAGES:
            new = PAGES[target]
        elif target == "docs" or target.startswith("docs/"):
            if here == "docs" or here.startswith("docs/"):
                return match.group(0)  # within docs/: mkdocs checks it
            new = posixpath.relpath(target, "docs")
        elif target.split("/")[0] == ".." or not (root / target).exists():
            log.warning(
                f"Doc file '{page.file.src_uri}' links to '{url}', which is no file or folder of the repository"
            )
            return match.group(0)
        elif not repo:  # no repository address set: the file's path in the repository, as text
            return f"{text} (`{target}` in the repository)"
        else:
            kind = "raw" if image else "tree" if (root / target).is_dir() else "blob"
            return f"{image}{head}{repo}/{kind}/{BRANCH}/{target}{hash_}{anchor})"
        return f"{image}{head}{posixpath.relpath(new, site_dir or '.')}{hash_}{anchor})"

    parts = FENCED.split(markdown)
    return "".join(part if i % 2 else LINK.sub(rewrite, part) for i, part in enumerate(parts))
