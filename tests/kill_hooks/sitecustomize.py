"""Stops a real `loraqa` process at a named point so a test can kill it exactly there.

On the PYTHONPATH of the processes `kill_helpers.start_loraqa` starts (sweep workers inherit it),
and inert unless LORAQA_TEST_HANG_AT names a point. At the point, the process writes a marker
file named by its pid into LORAQA_TEST_HANG_MARKERS and sleeps until killed, so the test's wait
for markers implies the process is there, however slow the machine. The product code is unchanged;
these wrappers sit where each phase writes or steps. LORAQA_TEST_HANG_RUN, when set, limits the
point to the run directory of that name (one run of a comparison).

Points: before-baseline, baseline-metrics (predictions written, metrics.json not), before-fit
(the baseline complete), step:N (training, after step N's checkpoint), checkpoint-save:N (inside
checkpoint N's save: weights written, optimizer state half), adapter-save (the adapter's weights
written into its temporary folder, loraqa.json not), final-metrics (the adapter saved, the test
predictions written, metrics.json not).
"""

import os

POINT = os.environ.get("LORAQA_TEST_HANG_AT")


def _install(point: str) -> None:
    import time
    from pathlib import Path

    markers, only_run = Path(os.environ["LORAQA_TEST_HANG_MARKERS"]), os.environ.get("LORAQA_TEST_HANG_RUN")

    def here(path) -> bool:
        return only_run is None or only_run in Path(path).parts

    def hang() -> None:
        (markers / str(os.getpid())).touch()
        time.sleep(3600)

    name, _, number = point.partition(":")
    if name in ("before-baseline", "before-fit"):
        import loraqa.pipeline.train as train

        phase_name = "baseline" if name == "before-baseline" else "fit"
        phase = getattr(train, phase_name)

        def hanging_phase(prepared, *args, **kwargs):
            if here(prepared.run.path):
                hang()
            return phase(prepared, *args, **kwargs)

        setattr(train, phase_name, hanging_phase)
    elif name in ("step", "checkpoint-save"):
        from loraqa.training.trainer import QATrainer

        if name == "step":
            step = QATrainer.training_step

            def hanging_step(self, *args, **kwargs):
                if self.state.global_step == int(number) and here(self.args.output_dir):
                    hang()
                return step(self, *args, **kwargs)

            QATrainer.training_step = hanging_step
        else:
            save = QATrainer._save_optimizer_and_scheduler

            def hanging_save(self, output_dir):
                if self.state.global_step == int(number) and here(output_dir):
                    Path(output_dir, "optimizer.pt").write_bytes(b"half")
                    hang()
                return save(self, output_dir)

            QATrainer._save_optimizer_and_scheduler = hanging_save
    elif name in ("baseline-metrics", "final-metrics", "adapter-save"):
        import loraqa.inference.evaluate as runner
        import loraqa.lora.adapter as adapter

        module = adapter if name == "adapter-save" else runner
        write = module.write_json_atomic

        def hanging_write(path, data):
            path = Path(path)
            if name == "adapter-save":
                stop = path.name == "loraqa.json"
            else:
                # baseline/metrics.json, or the test split's (beside the adapter; not validation/'s)
                wanted = "baseline" if name == "baseline-metrics" else "run"
                where = path.parent.name if path.parent.name in ("baseline", "validation") else "run"
                stop = path.name == "metrics.json" and where == wanted
            if stop and here(path):
                hang()
            return write(path, data)

        module.write_json_atomic = hanging_write
    else:
        raise SystemExit(f"LORAQA_TEST_HANG_AT: unknown point {point!r}")


if POINT:
    _install(POINT)
