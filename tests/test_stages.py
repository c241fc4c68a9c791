import os

import pytest

from eventseg.run.stages import Stage, StageRunner


def test_stage_skips_when_up_to_date_and_reruns_on_change(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a")
    out = tmp_path / "out.txt"
    calls = []

    def work():
        calls.append(1)
        out.write_text(src.read_text().upper())

    def stage(k):
        return Stage("s", work, config={"k": k}, inputs=[src], outputs=[out])

    runner = StageRunner(tmp_path, log=lambda m: None)
    assert runner.run(stage(1))
    assert not runner.run(stage(1))
    assert runner.run(stage(2))  # config changed
    src.write_text("bb")
    assert runner.run(stage(2))  # input changed
    out.unlink()
    assert runner.run(stage(2))  # output missing
    assert StageRunner(tmp_path, force=True, log=lambda m: None).run(stage(2))
    assert len(calls) == 5


def test_fingerprint_follows_content_not_paths_or_timestamps(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a")
    calls = []
    runner = StageRunner(tmp_path, log=lambda m: None)

    def stage(path):
        return Stage("s", lambda: calls.append(1), config={"k": 1}, inputs=[path], outputs=[src])

    assert runner.run(stage(src)) and not runner.run(stage(src))
    os.utime(src, (1, 1))  # touched, same bytes: still up to date
    assert not runner.run(stage(src))
    moved = tmp_path / "elsewhere" / "in.txt"
    moved.parent.mkdir()
    moved.write_text("a")  # the same input at another path: still up to date
    assert not runner.run(stage(moved))
    src.write_text("b")  # new bytes: reruns
    assert runner.run(stage(src)) and len(calls) == 2


def test_failed_stage_is_not_recorded_and_forgets_an_old_record(tmp_path):
    runner = StageRunner(tmp_path, log=lambda m: None)
    runner.run(Stage("s", lambda: None))
    assert (tmp_path / ".stages" / "s.json").exists()

    def boom():
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        runner.run(Stage("s", boom, config={"changed": True}))
    assert not (tmp_path / ".stages" / "s.json").exists()
