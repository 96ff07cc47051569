"""Every command of Getting started and of each guide runs as written (tests/doc_commands.py: the
README's mechanism), on tiny models and budgets, from a fresh directory that looks like the clone's
root; and every page of docs/ is on the site and every link of the README leads somewhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from doc_commands import NOT_RUN_HERE, read_page, run_page

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = [DOCS / "getting-started.md", *sorted((DOCS / "guides").glob("*.md"))]
WORKFLOWS = {
    "flan-t5-gpu-wandb",
    "gpt2-sweep",
    "squad-v2-no-answer",
    "compare-models",
    "serve",
    "your-own-data",
    "scale-out",
}


def test_each_seed_workflow_has_a_guide_with_commands():
    guides = {p.stem for p in PAGES if p.parent.name == "guides"}
    assert guides >= WORKFLOWS
    for page in PAGES:
        if page.stem != "index":
            assert read_page(page).commands, f"{page.name} has no loraqa command"


def test_a_command_line_the_suite_cannot_run_is_refused(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\nrm -rf runs/\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="does not know how to run: rm -rf runs/"):
        read_page(page)
    page.write_text("```bash\npip install x  # fine\nexport A=1\nloraqa configs\n```\n", encoding="utf-8")
    assert read_page(page).commands == [(["configs"], {"A": "1"})]
    assert NOT_RUN_HERE


@pytest.mark.integration
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_page_commands_run(page, tiny_model_dir, qa_files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")  # the W&B guide's runs never reach the network
    outputs = run_page(page, tiny_model_dir, qa_files, tmp_path, capsys)
    assert len(outputs) == len(read_page(page).commands) + len(read_page(page).requests)
    if page.stem == "serve":
        shown = json.loads(re.search(r"```json\n(.*?)```", page.read_text(encoding="utf-8"), re.S).group(1))
        answered = json.loads(next(out for argv, out in outputs if argv[0] == "curl"))
        assert set(answered) == set(shown), "the guide's example answer has the server's keys"
    if page.stem == "gpt2-sweep":
        assert json.loads((tmp_path / "runs" / "gpt2-grid" / "sweep.json").read_text())["best"]


def _nav_pages(nav) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_nav_pages(v) for v in nav.values()))
    return set().union(*(_nav_pages(v) for v in nav))


def test_every_page_is_in_the_site_nav():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8").replace("!!python", "#"))
    in_nav = _nav_pages(config["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "examples" not in p.parts}
    assert pages <= in_nav, f"pages missing from mkdocs.yml's nav: {sorted(pages - in_nav)}"
    assert in_nav <= pages, f"nav names pages that do not exist: {sorted(in_nav - pages)}"


def test_the_readme_links_lead_to_files():
    links = re.findall(r"\]\(([^)#]+)", (REPO / "README.md").read_text(encoding="utf-8"))
    assert links
    missing = [link for link in links if not link.startswith("http") and not (REPO / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_a_page_command_that_fails_fails_the_test(tmp_path, monkeypatch, capsys, qa_files):
    page = tmp_path / "page.md"
    page.write_text("```bash\nloraqa configs\nloraqa report no-such-run\n```\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="page.md: loraqa report no-such-run failed"):
        run_page(page, lambda family: "unused", qa_files, tmp_path, capsys)
