"""The train / evaluate / models commands, through the CLI as a user runs them."""

from __future__ import annotations

from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_evaluate_without_a_model_says_how_to_train_one(home):
    result = runner.invoke(app, ["evaluate"])
    assert result.exit_code == 2
    assert "clue-triage train" in result.stderr
    assert "Traceback" not in result.output


def test_train_registers_a_champion_and_evaluate_writes_a_report(home, small_corpus):
    result = runner.invoke(app, ["train", "--data", str(small_corpus), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "model v1" in result.stdout and "(champion)" in result.stdout
    assert (home.models / "v1" / "manifest.json").exists()

    result = runner.invoke(app, ["evaluate", "--split", "test"])
    assert result.exit_code == 0, result.output
    assert "keyword rules" in result.stdout and "majority class" in result.stdout
    reports = sorted(p.name for p in home.reports.iterdir())
    assert any(n.endswith(".md") for n in reports)
    assert sum(n.endswith("-confusion.png") for n in reports) == 2
    md = next(p for p in home.reports.iterdir() if p.suffix == ".md").read_text(encoding="utf-8")
    assert "further" in md and "ECE" in result.stdout

    # a second train is a candidate unless asked to promote
    result = runner.invoke(app, ["train", "--data", str(small_corpus)])
    assert "(candidate)" in result.stdout
    result = runner.invoke(app, ["models", "list"])
    assert "v2" in result.stdout and "candidate" in result.stdout


def test_confusion_matrix_uses_a_cjk_font():
    from pipeline.model.report import cjk_font

    assert cjk_font() is not None


def test_models_commands(model_home):
    assert runner.invoke(app, ["models", "current"]).stdout.strip() == "v1"
    shown = runner.invoke(app, ["models", "show", "v1"])
    assert shown.exit_code == 0 and "artifact sha256" in shown.stdout
    missing = runner.invoke(app, ["models", "show", "v7"])
    assert missing.exit_code == 2 and "no model version 'v7'" in missing.stderr


def test_evaluate_unknown_split_is_an_input_error(model_home):
    result = runner.invoke(app, ["evaluate", "--split", "holdout"])
    assert result.exit_code == 2
    assert "unknown split 'holdout'" in result.stderr


def test_bad_corpus_line_names_file_and_row(home, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x1", "text": "测试"}\n', encoding="utf-8")
    result = runner.invoke(app, ["train", "--data", str(bad)])
    assert result.exit_code == 2
    assert "bad.jsonl, row 1: missing field(s)" in result.stderr
    assert "Traceback" not in result.output
