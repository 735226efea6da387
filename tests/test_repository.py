"""The repository as a student meets it: the README's links and pictures exist, the top-level modules
import without a circle, and `train.py --help` groups the flags by task."""
import ast
import os
import re

from conftest import ROOT, run_script

PAGES = ["README.md"] + [os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(ROOT, "docs")))
                         if f.endswith(".md")]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def local_links(page: str) -> list[tuple[str, str]]:
    """(target path, anchor) of every link of a page that is not a web address."""
    text = open(os.path.join(ROOT, page)).read()
    links = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        links.append((os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page, anchor))
    return links


def anchors(page: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"(?m)^#+ (.+)$", open(os.path.join(ROOT, page)).read())
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_linked_page_and_picture_exists():
    missing = [(page, target) for page in PAGES for target, _ in local_links(page)
               if not os.path.exists(os.path.join(ROOT, target))]
    assert not missing, missing


def test_every_link_anchor_is_a_heading():
    bad = [(page, target, anchor) for page in PAGES for target, anchor in local_links(page)
           if anchor and target.endswith(".md") and anchor not in anchors(target)]
    assert not bad, bad


def test_the_readme_links_every_docs_page_and_stays_short():
    readme = open(os.path.join(ROOT, "README.md")).read()
    linked = {target for target, _ in local_links("README.md")}
    assert {p for p in PAGES if p != "README.md"} <= linked
    assert len(readme) <= 15_500, len(readme)
    for name in ("style", "inpaint", "photo", "digits", "video", "register"):  # a picture for every task
        start = readme.index(f"(`--task {name}`")
        end = readme.find("(`--task ", start + 1)
        pictures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", readme[start:end if end > 0 else None])
        assert pictures and os.path.isfile(os.path.join(ROOT, pictures[0])), name


def imports_of(path: str, modules: set[str]) -> set[str]:
    """The project modules a file imports, at the top or inside functions."""
    tree = ast.parse(open(path).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & modules


def test_the_top_level_stays_short_enough_to_read():
    """The method at the top level, what runs around it in extras/: no file over 400 lines, 2,500 in all."""
    lengths = {f: len(open(os.path.join(ROOT, f)).readlines()) for f in os.listdir(ROOT) if f.endswith(".py")}
    assert max(lengths.values()) <= 400, lengths
    assert sum(lengths.values()) <= 2_500, sum(lengths.values())


def test_no_import_circle_between_top_level_files():
    modules = {f[:-3] for f in os.listdir(ROOT) if f.endswith(".py")}
    graph = {m: imports_of(os.path.join(ROOT, m + ".py"), modules) - {m} for m in modules}
    assert "evaluate" not in graph["train"] and "train" not in graph["evaluate"]

    def cycle_from(node, path):
        for nxt in graph[node]:
            if nxt in path:
                return path[path.index(nxt):] + [nxt]
            found = cycle_from(nxt, path + [nxt])
            if found:
                return found
        return None

    for m in sorted(modules):
        cycle = cycle_from(m, [m])
        assert cycle is None, " -> ".join(cycle)


def test_help_lists_about_thirty_flags_grouped_and_every_other_setting_by_set():
    result = run_script("train.py", "--help")
    assert result.returncode == 0
    groups = re.findall(r"(?m)^(\S.*):$", result.stdout)
    assert groups[:4] == ["options", "the run", "Algorithm 1 and SAC (every task)", "data and weights"], groups
    for task in ("style", "video", "photo", "digits", "register"):
        assert any(g.startswith("--task") and task in g for g in groups), (task, groups)
    flags = set(re.findall(r"(?m)^  (--[a-z-]+)", result.stdout)) - {"--help"}
    assert 25 <= len(flags) <= 32 and "--set" in flags, sorted(flags)
    assert "--kmeans" not in result.stdout and "--set NAME=VALUE" in result.stdout
