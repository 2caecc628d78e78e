"""The user guide's code examples run, and its links lead somewhere.

Conventions for docs/*.md (docs/operators.md is generated from the rule registry and
checked by test_catalog.py, so it is left out of the code checks):

* A ```python block is a complete, self-contained script: it is written to its own file
  and run with ``python FILE`` in a fresh process (s2sgrad reads the source of the
  functions it differentiates, which code passed to ``exec`` does not have), in an empty
  working directory, with its own empty ``S2SGRAD_CACHE_DIR``. It must exit with status 0;
  put the claims it illustrates in ``assert`` / ``np.testing`` lines so that they are
  checked too. A block whose imports are not installed (JAX, SciPy) is skipped.
* A ```py block is an illustrative fragment: it is not run, but it must be valid Python.
* Everything else (```sh, ```text, ...) is shown, not checked. Every fence names its
  language, so that nobody has to guess which kind a block is.

Links: every relative link in docs/*.md and README.md must point to a file or directory
that exists, and a ``#fragment`` pointing into a Markdown file must match one of its
headings (GitHub's anchor rules).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GENERATED = {"operators.md"}
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name not in GENERATED)
LINKED = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^`\s]*)[^`]*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with their info-string language."""
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, lang = len(opening[1]), opening[2], opening[3]
        body = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            text = lines[j]
            body.append(text[min(indent, len(text) - len(text.lstrip(" "))) :])
            j += 1
        else:
            raise AssertionError(f"{path.name}:{i + 1}: code fence is never closed")
        blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


BLOCKS = [b for page in PAGES for b in fenced_blocks(page)]
PYTHON = [b for b in BLOCKS if b.lang == "python"]
FRAGMENTS = [b for b in BLOCKS if b.lang == "py"]


def _missing_imports(code: str) -> list[str]:
    """Top-level packages the block imports that are not installed."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def test_the_docs_have_runnable_examples():
    assert PAGES and all(p.name != "operators.md" for p in PAGES)
    assert len(PYTHON) >= len(PAGES) - 1, "most pages should show a runnable example"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_every_fence_names_its_language(block):
    assert block.lang, (
        f"{block.id}: name the block's language: ```python (runs), ```py (a fragment), "
        "```sh or ```text"
    )


@pytest.mark.parametrize("block", FRAGMENTS, ids=[b.id for b in FRAGMENTS])
def test_fragments_are_valid_python(block):
    try:
        ast.parse(block.code)
    except SyntaxError as exc:
        pytest.fail(f"{block.id}: ```py fragment is not valid Python: {exc}")


def run_example(block: Block, directory: Path) -> subprocess.CompletedProcess:
    """Run a ```python block as a script in ``directory``, with its own empty s2sgrad cache."""
    script = directory / f"{block.page.stem.replace('-', '_')}_line{block.line}.py"
    script.write_text(block.code, encoding="utf-8")
    env = dict(os.environ, S2SGRAD_CACHE_DIR=str(directory / "cache"), JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def example_runs(request, tmp_path_factory):
    """``run(block)``: the finished run of an example.

    Each example is its own process, dominated by imports and one compilation, so
    without pytest-xdist the selected examples are all started at once, one per core,
    and each test waits for its own. Under xdist the workers already share the cores:
    each example runs when its test does.
    """
    cores = 1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=cores)
    futures: dict[Block, Future] = {}

    def start(block: Block) -> Future:
        if block not in futures:
            directory = tmp_path_factory.mktemp(f"doc_{block.page.stem}_{block.line}")
            futures[block] = pool.submit(run_example, block, directory)
        return futures[block]

    if cores > 1:
        for item in request.session.items:
            block = getattr(item, "callspec", None) and item.callspec.params.get("example")
            if isinstance(block, Block) and not _missing_imports(block.code):
                start(block)
    yield lambda block: start(block).result()
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("example", PYTHON, ids=[b.id for b in PYTHON])
def test_python_example_runs(example, example_runs):
    missing = _missing_imports(example.code)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    done = example_runs(example)
    assert done.returncode == 0, (
        f"the ```python block at docs/{example.id} failed (exit status {done.returncode}):\n"
        f"{done.stdout}{done.stderr}"
    )


# --------------------------------------------------------------------------- links

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")


def _prose_lines(path: Path):
    """(line number, text) of the lines outside fenced code blocks, code spans blanked."""
    fenced = set()
    for block in fenced_blocks(path):
        fenced.update(range(block.line, block.line + block.code.count("\n") + 2))
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if number not in fenced:
            yield number, CODE_SPAN.sub("``", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower-cased, punctuation dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: keep their text
    text = text.replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    prose = {n for n, _ in _prose_lines(path)}
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = HEADING.match(text)
        if match is None or number not in prose:
            continue
        slug = _slug(match[1])
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def relative_links(path: Path):
    for number, text in _prose_lines(path):
        targets = [m[1] for m in LINK.finditer(text)]
        reference = REFERENCE.match(text)
        if reference:
            targets.append(reference[1])
        for target in targets:
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            yield number, target


LINKS = [(page, number, target) for page in LINKED for number, target in relative_links(page)]


def test_the_docs_link_to_each_other():
    assert any(page.name == "README.md" for page, _, _ in LINKS)
    assert any(target.endswith("operators.md") for _, _, target in LINKS)


@pytest.mark.parametrize(
    "page, number, target",
    LINKS,
    ids=[f"{p.relative_to(ROOT)}:{n}:{t}" for p, n, t in LINKS],
)
def test_relative_link_points_to_something(page, number, target):
    where = f"{page.relative_to(ROOT)}:{number}"
    file_part, _, fragment = target.partition("#")
    destination = (page.parent / file_part).resolve() if file_part else page
    assert destination.exists(), f"{where}: link to {target!r}, but {destination} does not exist"
    if fragment and destination.suffix == ".md":
        assert fragment in anchors(destination), (
            f"{where}: link to {target!r}, but {destination.name} has no heading with anchor "
            f"#{fragment} (it has: {', '.join(sorted(anchors(destination)))})"
        )


def test_the_errors_page_lists_every_error_class():
    """docs/errors.md names every error s2sgrad raises, wherever the class is defined."""
    import s2sgrad
    import s2sgrad.backends.jax.lowering  # noqa: F401  (defines JaxLoweringError)
    import s2sgrad.cache  # noqa: F401  (defines UnsafeCacheDirError)
    import s2sgrad.codegen  # noqa: F401  (defines NoJaxEquivalentError)
    import s2sgrad.rules.checking  # noqa: F401  (defines RuleCheckError)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    page = (DOCS / "errors.md").read_text(encoding="utf-8")
    ours = {c for c in subclasses(s2sgrad.S2SGradError) if c.__module__.startswith("s2sgrad.")}
    missing = sorted(c.__name__ for c in ours if f"`{c.__name__}`" not in page)
    assert not missing, f"docs/errors.md does not list: {missing}"
    assert "`LoopBoundExceeded`" in page and "`S2SGradCacheWarning`" in page
