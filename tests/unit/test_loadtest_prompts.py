"""The load test's prompt reader, prompt schedule and routing/cost tally (no Locust, no gateway)."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from loadtest.prompts import (
    BUILTIN_PROMPTS,
    STRONG_MODEL,
    WEAK_MODEL,
    Label,
    LabelledPrompt,
    PromptMix,
    default_data_path,
    label_of,
    load_prompts,
    read_routellm,
)
from loadtest.summary import LatencyStats, Tally, build_report, format_report, summary_path

REPO = Path(__file__).resolve().parents[2]
REAL_DATA = default_data_path()
needs_data = pytest.mark.skipif(
    not (REAL_DATA / "mmlu").is_dir() or not (REAL_DATA / "gsm8k").is_dir(),
    reason=f"RouteLLM data not at {REAL_DATA}",
)


def write_csv(path: Path, rows: list[tuple[str, str, str]], extra: tuple[str, ...] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", WEAK_MODEL, STRONG_MODEL, *extra])
        for row in rows:
            writer.writerow([*row, *("x" * len(extra))])


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    write_csv(
        tmp_path / "mmlu" / "mmlu_astronomy.csv",
        [
            ("Why is the sky blue?\nA. Oceans\nB. Scattering\nAnswer:", "True", "True"),
            ("Hard one?\nA. x\nB. y\nAnswer:", "False", "True"),
            ("Nobody knows?\nA. x\nB. y\nAnswer:", "False", "False"),
            ("Lucky weak?\nA. x\nB. y\nAnswer:", "True", "False"),
        ],
    )
    write_csv(
        tmp_path / "gsm8k" / "gsm8k_responses.csv",
        [("Ann has 3 apples and buys " + "many " * 50 + "more. How many?", "false", "1"), ("2+2?", "1", "0")],
        extra=(f"{WEAK_MODEL}_response", f"{STRONG_MODEL}_response"),
    )
    return tmp_path


def test_labels_follow_the_weak_and_strong_models() -> None:
    assert label_of(True, True) == "easy"
    assert label_of(True, False) == "easy"
    assert label_of(False, True) == "hard"
    assert label_of(False, False) is None


def test_reader_labels_rows_drops_unlabelled_and_long_ones(data_dir: Path) -> None:
    prompts = read_routellm(data_dir)
    assert [(p.label, p.source) for p in prompts] == [
        ("easy", "mmlu:astronomy"),
        ("hard", "mmlu:astronomy"),
        ("easy", "mmlu:astronomy"),
        ("hard", "gsm8k"),
        ("easy", "gsm8k"),
    ]
    assert prompts[0].text == "Why is the sky blue?\nA. Oceans\nB. Scattering\nAnswer:"
    assert all(p.text != "x" for p in prompts)  # response columns are never read
    short = read_routellm(data_dir, max_chars=100)
    assert [p.text for p in short if p.source == "gsm8k"] == ["2+2?"]
    assert [p.source for p in read_routellm(data_dir, ["gsm8k"])] == ["gsm8k", "gsm8k"]


def test_reader_rejects_malformed_files(tmp_path: Path) -> None:
    write_csv(tmp_path / "mmlu" / "mmlu_x.csv", [("Q?", "maybe", "True")])
    with pytest.raises(ValueError, match=r"mmlu_x.csv:2: expected a boolean"):
        read_routellm(tmp_path, ["mmlu"])
    (tmp_path / "mmlu" / "mmlu_x.csv").write_text("prompt,other\nQ?,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns"):
        read_routellm(tmp_path, ["mmlu"])
    with pytest.raises(ValueError, match="unknown data set"):
        read_routellm(tmp_path, ["hellaswag"])


def test_missing_data_falls_back_to_the_builtin_prompts_with_a_warning(tmp_path: Path) -> None:
    prompts = load_prompts(tmp_path / "absent")
    assert prompts.origin == "builtin" and prompts.prompts == BUILTIN_PROMPTS
    assert prompts.warning is not None and "not found" in prompts.warning
    assert prompts.of("easy") and prompts.of("hard")


def test_the_data_path_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLM_ROUTER_DATA", str(tmp_path))
    assert default_data_path() == tmp_path
    monkeypatch.delenv("SLM_ROUTER_DATA")
    assert default_data_path() == REPO.parent / "shared" / "data" / "routellm"


@needs_data
def test_real_data_labels_agree_with_the_router_training_loader() -> None:
    from router_models.data import load_dataset  # the independent (numpy) reader the routers use

    mine = load_prompts(REAL_DATA)
    assert mine.origin == "routellm" and mine.warning is None
    ours = Counter((p.text, p.label) for p in mine.prompts)
    theirs: Counter[tuple[str, Label]] = Counter()
    for name in ("mmlu", "gsm8k"):
        data = load_dataset(name, REAL_DATA)
        for text, weak, strong in zip(data.prompts, data.weak, data.strong, strict=True):
            label = label_of(bool(weak), bool(strong))
            if label is not None:
                theirs[(text.strip(), label)] += 1
    # The routers' loader also drops RouteLLM's few contaminated prompts; the load test keeps them.
    assert not theirs - ours
    assert 0 < sum((ours - theirs).values()) <= 17
    hard, easy = mine.of("hard"), mine.of("easy")
    assert len(hard) > 2000 and len(easy) > 9000
    mmlu = [p for p in mine.prompts if p.source.startswith("mmlu:")]
    gsm8k = [p for p in mine.prompts if p.source == "gsm8k"]
    assert len({p.source for p in mmlu}) == 57 and len(gsm8k) > 1000
    assert all("\nA. " in p.text and p.text.endswith("Answer:") for p in mmlu)
    assert not any("####" in p.text for p in gsm8k)  # the question only, never a worked answer
    assert all(len(p.text) <= 2000 for p in load_prompts(REAL_DATA, max_chars=2000).prompts)


def pool(label: Label, n: int) -> list[LabelledPrompt]:
    return [LabelledPrompt(f"{label}-{i}", label, "test") for i in range(n)]


def test_mix_has_the_exact_hard_share_and_is_seeded() -> None:
    easy, hard = pool("easy", 900), pool("hard", 400)
    mix = PromptMix(easy, hard, hard_share=0.3, seed=7, length=1000)
    assert sum(p.label == "hard" for p in mix.schedule) == 300
    assert len(set(mix.schedule)) == 1000  # no repeats while the pools last
    assert mix.schedule == PromptMix(easy, hard, hard_share=0.3, seed=7, length=1000).schedule
    assert mix.schedule != PromptMix(easy, hard, hard_share=0.3, seed=8, length=1000).schedule
    served = [mix.next() for _ in range(1500)]
    assert served[:1000] == list(mix.schedule) and served[1000:] == list(mix.schedule[:500])


def test_mix_reuses_small_pools_and_rejects_impossible_requests() -> None:
    mix = PromptMix(pool("easy", 3), pool("hard", 2), hard_share=0.5, seed=0, length=20)
    assert Counter(p.label for p in mix.schedule) == {"easy": 10, "hard": 10}
    assert {p.text for p in mix.schedule} == {"easy-0", "easy-1", "easy-2", "hard-0", "hard-1"}
    assert all(p.label == "easy" for p in PromptMix(pool("easy", 3), [], hard_share=0, seed=0).schedule)
    with pytest.raises(ValueError, match="no prompts"):
        PromptMix(pool("easy", 3), [], hard_share=0.1, seed=0)
    with pytest.raises(ValueError, match="hard share"):
        PromptMix(pool("easy", 3), pool("hard", 3), hard_share=1.5, seed=0)


def test_tally_sums_the_gateway_figures_exactly() -> None:
    tally = Tally()
    headers = {
        "x-slm-router-tier": "small",
        "x-slm-router-cost-usd": "0.000000100",
        "x-slm-router-baseline-usd": "0.000000300",
        "x-slm-router-savings-usd": "0.000000200",
    }
    for _ in range(10):
        tally.record_headers(headers, "easy")
    # A stream's usage figures arrive as JSON numbers (parsed as Decimal or float).
    tally.record(tier="large", label="hard", cost=Decimal("0.1"), baseline=0.1, savings=0.0)
    tally.record(tier="large", label="easy", cost=0.2, baseline=0.2, savings=0.0)
    tally.record_headers({"x-slm-router-cost-usd": "0"}, "hard")  # a cache hit names no tier
    assert tally.cost_usd == Decimal("0.300001")  # 0.1 + 0.2 would not be exact in floats
    assert tally.savings_usd == Decimal("0.000002")
    assert tally.by_tier == {"small": 10, "large": 2, "none": 1}
    assert tally.large_by_label == {"hard": 1, "easy": 1}
    assert tally.priced == 13

    copy = Tally.from_dict(tally.as_dict())
    assert copy == tally
    copy.merge(tally)
    assert copy.requests == 26 and copy.cost_usd == 2 * tally.cost_usd and copy.by_tier["none"] == 2


def test_report_shares_and_failures() -> None:
    tally = Tally()
    for tier, label in [("small", "easy")] * 6 + [("large", "easy")] + [("large", "hard")] * 2 + [("small", "hard")]:
        tally.record(tier=tier, label=label, cost="0.001", baseline="0.004", savings="0.003")
    latencies = {
        "POST chat": LatencyStats(8, 1, 100.0, 300.0, 120.0),
        "POST chat-stream": LatencyStats(4, 1, 200.0, 400.0, 220.0),
        "TTFT chat-stream": LatencyStats(3, 0, 50.0, 90.0, 60.0),
    }
    report = build_report(tally, latencies, settings={"hard_share": 0.3})
    assert (report["requests"], report["failures"], report["successful"]) == (12, 2, 10)
    assert report["fail_ratio"] == pytest.approx(2 / 12)
    assert report["large_share"] == pytest.approx(0.3)
    assert report["routing_quality"]["easy"] == {"requests": 7, "to_large": 1, "large_share": pytest.approx(1 / 7)}
    assert report["routing_quality"]["hard"]["large_share"] == pytest.approx(2 / 3)
    assert report["cost"]["savings_usd"] == "0.030" and report["cost"]["savings_pct"] == pytest.approx(75.0)
    text = format_report(report)
    assert "large share 30.0%" in text and "TTFT chat-stream" in text
    empty = build_report(Tally(), {}, settings={})
    assert empty["large_share"] is None and empty["fail_ratio"] is None and empty["cost"]["savings_pct"] is None
    assert summary_path("out/run") == Path("out/run_slm_router.json") and summary_path(None) is None


def test_the_locustfile_imports_nothing_heavy() -> None:
    # A subprocess: importing Locust monkey-patches the interpreter with gevent.
    code = (
        "import runpy, sys; runpy.run_path('loadtest/locustfile.py'); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numpy', 'pandas', 'ray', 'litellm', 'torch', 'vllm', 'gateway', 'router_models', 'deployments'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
