from eventseg.stages import StageRunner


def test_stage_skips_when_up_to_date_and_reruns_on_change(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a")
    out = tmp_path / "out.txt"
    calls = []

    def stage():
        calls.append(1)
        out.write_text(src.read_text().upper())

    runner = StageRunner(tmp_path, log=lambda m: None)
    assert runner.run("s", stage, config={"k": 1}, inputs=[src], outputs=[out])
    assert not runner.run("s", stage, config={"k": 1}, inputs=[src], outputs=[out])
    assert runner.run("s", stage, config={"k": 2}, inputs=[src], outputs=[out])  # config changed
    src.write_text("bb")
    assert runner.run("s", stage, config={"k": 2}, inputs=[src], outputs=[out])  # input changed
    out.unlink()
    assert runner.run("s", stage, config={"k": 2}, inputs=[src], outputs=[out])  # output missing
    assert StageRunner(tmp_path, force=True, log=lambda m: None).run("s", stage, config={"k": 2}, inputs=[src], outputs=[out])
    assert len(calls) == 5


def test_failed_stage_is_not_recorded(tmp_path):
    runner = StageRunner(tmp_path, log=lambda m: None)

    def boom():
        raise RuntimeError("x")

    try:
        runner.run("s", boom, config={}, inputs=[], outputs=[])
    except RuntimeError:
        pass
    assert not (tmp_path / ".stages" / "s.json").exists()
