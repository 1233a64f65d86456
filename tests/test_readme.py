"""The README's tour runs as written: every fenced block is run (on small settings) or listed as skipped with why.

Blocks are run in README order in one scratch folder, so a block can use what an earlier one wrote
(``gains.csv``, ``affinity.csv``, ``runs.db``) or defined (Python blocks share one namespace, as in a
session that follows the tour). `SMALL` shrinks sizes only (steps, seeds, runs, agents); `PRELUDE`
defines what a block leaves to the user (their loop's model and loader, their agents' folder) on
real data; `SKIPPED` gives the reason a block is not run.
"""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()

#: start of a block's first line → (old, new) substitutions of its sizes; every `old` must occur in the block.
SMALL = {
    "P=examples/etth1_problem.py:problem": [  # the pipeline keeps its 200 steps: ETAP needs validation progress
        ('"MUFL|OT" --max-steps 200', '"MUFL|OT" --max-steps 20'),
        ("--workers 2 --max-steps 200", "--workers 2 --max-steps 20"),
    ],
    "from taskrel.affinity import EtapAffinity": [
        ('load_problem("chemical")', 'load_problem("chemical", max_steps=200)'),
    ],
    "from taskrel.train.sweep import run_sweep": [("seeds=3", "seeds=1")],
    "taskrel sweep --problem chemical --groups random:100": [
        ("random:100 --seeds 3", "random:30 --seeds 1"),
        ("--workers 2 ", "--workers 2 --max-steps 200 "),
    ],
    "taskrel pipeline --problem chemical --train-groups 10": [
        ("--workers 2 --out report/", "--workers 2 --max-steps 200 --out report/"),
        ("--train-sizes 5,10 --repeats 10", "--train-sizes 5 --repeats 1"),
    ],
    "from taskrel.decentral import GMRFConfig, simulate": [("iters=6000, runs=40", "iters=600, runs=2")],
    "taskrel gmrf simulate --agents 10": [
        ("--iters 4000 --runs 20", "--iters 400 --runs 2"),
        ("--agents 10 --dim 50 --mu 0.01 --iters 4000 --json", "--agents 4 --dim 50 --mu 0.01 --iters 400 --json"),
        ('"agents": 10, "dim": 50, "mu": 0.01, "iters": 4000', '"agents": 4, "dim": 50, "mu": 0.01, "iters": 400'),
        ("torchrun --nproc_per_node=10", f"torchrun --master_port={PORT} --nproc_per_node=4"),
    ],
    "taskrel gmrf run --engine dist --dataset school": [("--iters 4000", "--iters 400")],
    "taskrel gmrf run --dataset landmine --tasks 0,1,2,3 --spec run.json": [
        ("HOST:29500", f"127.0.0.1:{PORT}"),
        ("--summary      # on machine 0", "--summary > node0.json &  # on machine 0"),
        ("--summary      # on machine 1", "--summary; wait $!       # on machine 1"),
    ],
}

#: start of a block's first line → code run just before it (what the block leaves to the user), on real data.
PRELUDE = {
    "from taskrel.weighting import AuxiNash, NashMTL, solve_bargaining": """
import numpy as np
import torch
from taskrel.weighting.toy import toy_data

data = toy_data(seed=0, n_train=512, n_test=256)          # AuxiNash's illustrative regression (3 tasks)
names = ["main", "aux1", "aux2"]

class Shared(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([4.0, -4.0]))
    def forward(self, x, task):
        return x @ self.w
    def shared_parameters(self):
        return [self.w]

model = Shared()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
loss_fn = torch.nn.functional.mse_loss
loader = [{t: (data.x_train[i:i + 128], data.y_train[k, i:i + 128]) for k, t in enumerate(names)}
          for i in range(0, 512, 128)]
main_loss_on_another_batch = lambda: loss_fn(model(data.x_test, "main"), data.y_test[0])  # noqa: E731
g = np.random.default_rng(0).standard_normal((3, 5))
gram, preferences = g @ g.T, np.array([1.0, 2.0, 1.0])
""",
    "taskrel gmrf run --engine dist --dataset school": """
import numpy as np
from pathlib import Path
from taskrel.decentral.sources import DatasetSource

Path("agents").mkdir()
for agent in DatasetSource.open("landmine", ["0", "1", "2", "3"]).load_all():   # one file per agent
    np.savez(f"agents/{agent.name}.npz", x=agent.x_train, y=agent.y_train, x_test=agent.x_test, y_test=agent.y_test)
""",
}

EXCERPT = "def model(group: tuple[str, ...], seed: int) -> MultiTaskModel:"
SKIPPED = {
    "make demo": "installs a virtual environment and runs the full demo; the demo's command is the pipeline "
    "command run below (small) and in tests/test_pipeline.py",
    EXCERPT: "an excerpt of examples/etth1_problem.py "
    "(checked line by line against the file below); the next block runs that file",
    "src/taskrel/": "a directory listing, not code",
}


def blocks() -> list[tuple[int, str, str]]:
    """(line, language, text) of every fenced block of README.md."""
    text = README.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def key(text: str) -> str:
    return text.splitlines()[0].strip()


def entry(table: dict, text: str, default=None):
    """The value of `table` whose key starts the block's first line."""
    hits = [value for start, value in table.items() if key(text).startswith(start)]
    assert len(hits) <= 1, key(text)
    return hits[0] if hits else default


def prepared(text: str) -> str:
    for old, new in entry(SMALL, text, []):
        text = text.replace(old, new)
    return text


def test_every_block_is_run_or_skipped_with_a_reason_and_every_substitution_applies():
    found = blocks()
    keys = [key(text) for _, _, text in found]
    assert len(set(keys)) == len(keys), "two README blocks start alike: give them distinct first lines"
    for table in (SKIPPED, SMALL, PRELUDE):
        for start in table:
            assert sum(k.startswith(start) for k in keys) == 1, f"{start!r} starts no block, or several"
    for _, language, text in found:
        assert language in ("bash", "python") or entry(SKIPPED, text), text
        for old, _ in entry(SMALL, text, []):
            assert old in text, f"substitution {old!r} no longer matches the block {key(text)!r}"


def test_the_example_excerpt_is_the_example_file():
    excerpt = next(t for _, _, t in blocks() if key(t).startswith(EXCERPT))
    code = lambda line: line.split("  #")[0].rstrip()  # noqa: E731 - the README's comments may differ
    source = [code(line) for line in (ROOT / "examples" / "etth1_problem.py").read_text().splitlines()]
    for line in excerpt.splitlines():
        assert code(line) in source, f"README line {code(line)!r} differs from examples/etth1_problem.py"


def test_the_benchmark_table_renders():
    text = README.read_text()
    table = text[text.index("## Benchmarks") :].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    cells = [len(re.split(r"(?<!\\)\|", row)) - 2 for row in rows]
    assert rows and set(cells) == {3}, [(n, row[:60]) for n, row in zip(cells, rows, strict=True) if n != 3]
    assert not any(re.match(r"\|\s*`?(taskrel|python|torchrun)\b", row) for row in rows)  # no command rows


@pytest.mark.slow
def test_the_tour_runs_as_written_on_small_settings(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "taskrel").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m taskrel "$@"\n')
    (bin_dir / "taskrel").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "torchrun").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m torch.distributed.run "$@"\n')
    (bin_dir / "torchrun").chmod(0o755)
    work = tmp_path / "tour"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(work)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    namespace: dict = {"__name__": "__readme__"}
    for line, language, text in blocks():
        if entry(SKIPPED, text):
            continue
        if entry(PRELUDE, text):
            exec(compile(entry(PRELUDE, text), f"prelude of README.md:{line}", "exec"), namespace)
        code = prepared(text)
        if language == "python":
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        else:
            log = tmp_path / f"README.md_{line}.log"
            with open(log, "w") as out:
                done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=subprocess.STDOUT, timeout=900)  # fmt: skip
            output = log.read_text()
            assert done.returncode == 0, f"README.md:{line}:\n{code}\n{output[-3000:]}"
            assert "Traceback" not in output, f"README.md:{line}:\n{output[-3000:]}"
