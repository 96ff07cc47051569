"""The Optuna study behind a sweep, and the only code that changes trial states in its storage.

Storage: Optuna's RDBStorage, a SQLite file (runs/NAME/study.db) by default or any
`postgresql://` URL shared by workers on several machines; `optuna-dashboard URL` opens it as is.

Exactly once. Grid cells are enqueued as fixed trials once, by the worker whose `create_study`
won the unique study name (others wait for its "cells enqueued" mark). A worker claims a trial
by the storage's WAITING -> RUNNING transition (`set_trial_state_values`, which refuses a trial
that is no longer WAITING). On PostgreSQL that transition reads the row `FOR UPDATE`, so two
workers cannot both win it. On SQLite, Python's driver starts a transaction only at the first
write, so the read-then-write is not atomic by itself: `_serialize_sqlite` makes every
transaction `BEGIN IMMEDIATE` (SQLAlchemy's documented recipe), which takes the database's
write lock before the read. A worker that dies stops its heartbeat; the next `fail_stale_trials`
(any worker, any machine) marks its trial FAIL and `RetryFailedTrialCallback` enqueues a copy
with the same cell, which the next claim picks up.
"""

from __future__ import annotations

import fcntl
import json
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryFailedTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from loraqa.errors import ConfigError, LoraqaError
from loraqa.runs.files import STUDY_FILE
from loraqa.sweeps.space import Cell

DEFINITION_ATTR = "loraqa:definition"  # the sweep's grid/space: a second command must match it
CELLS_ATTR = "loraqa:cells_enqueued"  # set once every grid cell is in the queue
CELL_ATTR = "cell"  # user attr of each trial: the cell key (copied to retries)
FOUNDING_WAIT_S = 120  # how long a worker waits for the founder to finish enqueueing

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class SweepStorageError(LoraqaError):
    """The sweep's storage cannot be opened or holds a different sweep."""


def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{(sweep_dir / STUDY_FILE).resolve()}"


def open_storage(url: str, heartbeat_interval: int, grace_period: int) -> RDBStorage:
    """RDBStorage with heartbeats; a dead worker's trial is retried with the same cell (resumed)."""
    kwargs: dict = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}  # workers wait for the write lock, not fail
    try:
        with _local_lock(url):  # two first workers on one SQLite file would both create tables
            storage = _create_storage(url, kwargs, heartbeat_interval, grace_period)
    except ImportError:
        raise SweepStorageError(
            f"cannot open sweep storage {_redact(url)}: its database driver is not installed "
            "(pip install 'loraqa[postgres]' for PostgreSQL)"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        raise SweepStorageError(f"cannot open sweep storage {_redact(url)}: {reason}") from None
    if url.startswith("sqlite"):
        _serialize_sqlite(storage.engine)
    return storage


def open_study(
    storage: RDBStorage, name: str, direction: str, definition: dict, cells: list[Cell] | None, sampler, pruner
) -> optuna.Study:
    """Create the study and enqueue its cells once, or load it and check it is the same sweep."""
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction=direction, sampler=sampler, pruner=pruner
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        _check_same_sweep(storage, study, name, definition)
        _wait_for_founder(storage, study, name)
        return study
    study_id = storage.get_study_id_from_name(name)
    storage.set_study_system_attr(study_id, DEFINITION_ATTR, definition)
    for cell in cells or []:
        repeat = 0  # grid cells are all fixed in advance; `repeat` only counts a search's configurations
        study.enqueue_trial(cell.typed_params(), user_attrs=cell_attrs(cell, repeat), skip_if_exists=False)
    storage.set_study_system_attr(study_id, CELLS_ATTR, len(cells or []))
    return study


def claim(study: optuna.Study, storage: RDBStorage) -> optuna.Trial | None:
    """Mark stale trials failed (queuing their retries), then take one WAITING trial, or None."""
    fail_stale_trials(study)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                return optuna.Trial(study, frozen._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def ask_new(study: optuna.Study, space: dict, seeds: list[int]) -> optuna.Trial:
    """Searches: a fresh trial the sampler fills; its other seeds are queued as fixed trials."""
    with warnings.catch_warnings():  # we run the heartbeat ourselves, outside Study.optimize
        warnings.simplefilter("ignore")
        trial = study.ask()
    params = [(key, str(_suggest(trial, key, dist))) for key, dist in space.items()]
    for repeat, seed in enumerate(seeds):
        cell = Cell(tuple(params), seed)
        if repeat == 0:
            for key, item in cell_attrs(cell, repeat).items():
                trial.set_user_attr(key, item)
        else:
            study.enqueue_trial(trial.params, user_attrs=cell_attrs(cell, repeat), skip_if_exists=False)
    return trial


def configurations_started(study: optuna.Study) -> int:
    """Searches: sampled configurations so far (first seeds; a retry shares its original's cell)."""
    return len(
        {t.user_attrs.get(CELL_ATTR) for t in study.get_trials(deepcopy=False) if t.user_attrs.get("repeat") == 0}
    )


def cell_attrs(cell: Cell, repeat: int) -> dict:
    """What a worker needs to train a trial, kept on the trial itself (retries copy user attrs)."""
    return {
        CELL_ATTR: cell.key,
        "config": cell.config_key,
        "seed": cell.seed,
        "repeat": repeat,
        "overrides": cell.overrides(),
        "dirname": cell.dirname,
    }


def record_space_params(trial: optuna.Trial, space: dict) -> None:
    """Searches: suggest every key (a queued trial gets its fixed value back, a sampled one its sample)."""
    for key, dist in space.items():
        _suggest(trial, key, dist)


def _suggest(trial: optuna.Trial, key: str, dist):
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, log=dist.log)


def unfinished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))


def finish(
    study: optuna.Study, trial: optuna.Trial, state: TrialState, value: float | None = None, attrs: dict | None = None
) -> bool:
    """Record the trial's outcome; False when another worker already declared it dead."""
    try:
        for key, item in (attrs or {}).items():
            trial.set_user_attr(key, json.loads(json.dumps(item, default=str)))
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def give_back(study: optuna.Study, trial: optuna.Trial) -> None:
    """Ctrl-C: fail the trial and queue its retry now (instead of waiting for its heartbeat to go stale)."""
    if finish(study, trial, TrialState.FAIL, attrs={"error": "interrupted (Ctrl-C); re-queued"}):
        RetryFailedTrialCallback(inherit_intermediate_values=True)(study, study._storage.get_trial(trial._trial_id))


@contextmanager
def heartbeat(storage: RDBStorage, trial: optuna.Trial):
    """Beat for `trial` while the block runs (Optuna's own heartbeat thread, as Study.optimize uses)."""
    from optuna.storages._heartbeat import get_heartbeat_thread  # the thread Study.optimize runs

    with get_heartbeat_thread(trial._trial_id, storage):
        yield


def _check_same_sweep(storage: RDBStorage, study: optuna.Study, name: str, definition: dict) -> None:
    saved = storage.get_study_system_attrs(storage.get_study_id_from_name(name)).get(DEFINITION_ATTR)
    if saved is not None and saved != json.loads(json.dumps(definition)):
        changed = sorted(k for k in set(saved) | set(definition) if saved.get(k) != definition.get(k))
        raise ConfigError(
            "--name",
            f"sweep '{name}' already exists with a different {', '.join(changed)}; "
            "run it with its original arguments or choose another --name",
        )


def _wait_for_founder(storage: RDBStorage, study: optuna.Study, name: str) -> None:
    study_id = storage.get_study_id_from_name(name)
    deadline = time.monotonic() + FOUNDING_WAIT_S
    while CELLS_ATTR not in storage.get_study_system_attrs(study_id):
        if time.monotonic() > deadline:
            raise SweepStorageError(
                f"sweep '{name}' was created but its cells were never all queued (its first worker stopped "
                f"while starting); delete it (optuna delete-study --study-name {name} --storage URL) and run again"
            )
        time.sleep(0.5)


def _serialize_sqlite(engine) -> None:
    """Every SQLite transaction takes the write lock first (BEGIN IMMEDIATE): read-then-write is atomic."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # pysqlite would otherwise BEGIN late, at the first write

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners would keep the old behaviour


def _create_storage(url: str, kwargs: dict, heartbeat_interval: int, grace_period: int) -> RDBStorage:
    """RDBStorage, retried while another machine's first worker is creating the same tables: on a
    fresh PostgreSQL database two workers' CREATE TABLE race, and the loser sees a duplicate key on
    PostgreSQL's catalog (no lock file can span machines). Once the tables exist, creation skips them."""
    for attempt in range(6):
        try:
            return RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryFailedTrialCallback(inherit_intermediate_values=True),
            )
        except sqlalchemy.exc.SQLAlchemyError as exc:
            racing = any(word in str(exc).lower() for word in ("duplicate key", "already exists"))
            if not racing or attempt == 5:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


@contextmanager
def _local_lock(url: str):
    if not url.startswith("sqlite:///"):
        yield
        return
    path = Path(url[len("sqlite:///") :] + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _redact(url: str) -> str:
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url


def record_grid_params(trial: optuna.Trial, axes) -> None:
    """Grid trials: turn the queued fixed params into params (what the dashboard and samplers read)."""
    from loraqa.sweeps.space import typed

    for axis in axes:
        trial.suggest_categorical(axis.key, [typed(v) for v in axis.values])
