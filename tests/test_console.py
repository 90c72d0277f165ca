"""The quiet console: library chatter to OUT/artquant.log, the command's own output on the terminal."""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from artquant_core.console import is_quiet, library_logger, log_to_folder, pop_verbose, quiet_libraries


def _chatter() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("transformers.modeling_utils").warning("transformers says hello")
    diffusers_logging.get_logger("diffusers.pipelines").warning("diffusers says hello")
    warnings.warn("a harmless library warning", UserWarning)
    library_logger().info("trainer step 1: {'loss': 0.5}")


def test_chatter_goes_to_the_log_file_not_the_terminal(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    with quiet_libraries():
        assert is_quiet() and not hf_logging.is_progress_bar_enabled()
        _chatter()  # before the run folder is known: buffered
        print("step 1 ...")
        assert log_to_folder(tmp_path) == tmp_path / "artquant.log"
        hf_logging.get_logger("transformers").warning("after attaching")
    out, err = capfd.readouterr()
    assert out == "step 1 ...\n" and "hello" not in err and "harmless" not in err
    log = (tmp_path / "artquant.log").read_text()
    for text in ("transformers says hello", "diffusers says hello", "a harmless library warning",
                 "{'loss': 0.5}", "after attaching"):
        assert text in log, text


def test_everything_is_restored_afterwards(tmp_path):
    from transformers.utils import logging as hf_logging

    original = hf_logging.get_verbosity()  # other tests may have changed it: start from transformers' default
    hf_logging.set_verbosity_warning()
    library_root = logging.getLogger("transformers")
    try:
        before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(),
                  logging.getLogger("py.warnings").propagate, set(library_root.handlers))
        with quiet_libraries(tmp_path / "a.log"):
            pass
        assert not is_quiet() and log_to_folder(tmp_path) is None  # no console: nothing to attach
        assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(),
                logging.getLogger("py.warnings").propagate, set(library_root.handlers)) == before
        # a warning reaches the library's handlers again (probed directly: the default handler's stream
        # is whatever sys.stderr was when transformers first logged, possibly an earlier test's capture)
        received: list[logging.LogRecord] = []
        probe = logging.Handler()
        probe.emit = received.append
        library_root.addHandler(probe)
        try:
            hf_logging.get_logger("transformers").warning("shown again")
        finally:
            library_root.removeHandler(probe)
        assert [r.getMessage() for r in received] == ["shown again"]
    finally:
        hf_logging.set_verbosity(original)


def test_verbose_shows_the_chatter_live_and_logs_it(tmp_path, capfd):
    with quiet_libraries(tmp_path / "artquant.log", verbose=True):
        assert not is_quiet()
        _chatter()
    err = capfd.readouterr().err
    assert "transformers says hello" in err and "a harmless library warning" in err
    assert "diffusers says hello" in (tmp_path / "artquant.log").read_text()


def test_pop_verbose():
    assert pop_verbose(["--out", "d", "--verbose"]) == (["--out", "d"], True)
    assert pop_verbose(["--out", "d"]) == (["--out", "d"], False)
    assert pop_verbose(["--", "--verbose"]) == (["--", "--verbose"], False)


def test_dispatcher_writes_the_log_into_the_output_folder(tmp_path, capsys):
    from alignment.cli import main

    rows = [{"id": f"r{i}", "image": f"{i}.png", "gt_score": float(i + 1), "conversations": [
        {"from": "human", "value": "<image>Rate it."}, {"from": "gpt", "value": "Fair."}]} for i in range(6)]
    (tmp_path / "r.json").write_text(json.dumps(rows))
    (tmp_path / "p.json").write_text(json.dumps([{"id": f"r{i}", "score": i * 1.5} for i in range(6)]))
    code = main(["eval", "--gt", str(tmp_path / "r.json"), "--pred", str(tmp_path / "p.json"),
                 "--out", str(tmp_path / "o"), "--verbose"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["srcc"] == 1.0
    assert (tmp_path / "o" / "artquant.log").is_file() and not is_quiet()


def test_the_log_and_its_folder_appear_with_the_first_record_or_a_finished_run(tmp_path):
    with quiet_libraries():
        assert log_to_folder(tmp_path / "run") == tmp_path / "run" / "artquant.log"
        assert not (tmp_path / "run").exists()  # nothing logged yet: no folder
        library_logger().info("first record")
        assert "first record" in (tmp_path / "run" / "artquant.log").read_text()
    with quiet_libraries():  # a run that finishes keeps its (empty) log, as the commands' help promises
        log_to_folder(tmp_path / "quiet_run")
    assert (tmp_path / "quiet_run" / "artquant.log").read_text() == ""


def test_a_command_failing_on_its_input_leaves_no_default_out_folder(tmp_path, monkeypatch):
    """eval and rerank name their log folder (eval_out/, rerank_out/) before they have read all their input."""
    from artquant_core.commands import evaluate
    from reward.commands import rerank

    monkeypatch.chdir(tmp_path)
    rows = [{"id": f"r{i}", "image": f"{i}.png", "gt_score": float(i + 1), "conversations": [
        {"from": "human", "value": "<image>Rate it."}, {"from": "gpt", "value": "Fair."}]} for i in range(3)]
    (tmp_path / "r.json").write_text(json.dumps(rows))
    (tmp_path / "p.json").write_text(json.dumps([{"id": "someone else", "score": 1.0}]))
    (tmp_path / "no_images").mkdir()
    with pytest.raises(ValueError, match="no prediction for 3 of 3"), quiet_libraries():
        evaluate.main(["--gt", "r.json", "--pred", "p.json"])
    with pytest.raises(ValueError, match="no image files"), quiet_libraries():
        rerank.main(["--reward", "brightness", "--images", "no_images"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_images", "p.json", "r.json"]
