"""Versions registered in MLflow, tagged with their metrics, data and source run, and the champion alias
moved as `cryptolstm.registry.promotion` (or the caller) decides, under a file lock: two registrations at
once cannot leave the alias on the worse model, nor add two versions of one run."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from cryptolstm.errors import ConfigError, first_line, with_article
from cryptolstm.registry import (ALIAS, EVALUATION_TAGS, METRIC, Candidate, Decision, Registration, best,
                                 better_comparable, champion_uri, model_name, persistence_ratio, promotion,
                                 registered_again, rounded, seal_of, selection_metric, short_reason)
from cryptolstm.tracking.describe import describe_registered
from cryptolstm.tracking.registry.models import logged_model_id, check_model_coin, load_pyfunc, resolve
from cryptolstm.tracking.runs import SEALED_FROM


def best_run(coin: str, experiment_name: str | None = None, study_name: str | None = None) -> Run:
    """``coin``'s `cryptolstm.registry.best` finished run with a model, in a study, an experiment or anywhere."""
    filters = [f"tags.coin = '{coin.upper()}'", "attributes.status = 'FINISHED'", f"metrics.`{METRIC}` >= 0"]
    if study_name:
        filters.append(f"tags.`cryptolstm.study` = '{study_name}'")
    experiment = mlflow.get_experiment_by_name(experiment_name) if experiment_name else None
    if experiment_name and experiment is None:
        raise ConfigError(f"MLflow experiment {experiment_name!r} does not exist.")
    experiments = [experiment.experiment_id] if experiment else None
    runs = mlflow.search_runs(experiment_ids=experiments, search_all_experiments=experiments is None,
                              filter_string=" and ".join(filters), output_format="list")
    runs = {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags}  # trial runs hold no model
    where = f"study {study_name!r}" if study_name else f"experiment {experiment_name!r}" if experiment_name else "any experiment"
    if not runs:
        raise ConfigError(f"no finished {coin.upper()} run with {METRIC} and a model in {where}; train or search first.")
    return runs[best([_candidate(r) for r in runs.values()], where).run_id]


def _lock(name: str) -> FileLock:
    """A lock per registered model and tracking store, beside a local SQLite store when there is one."""
    uri = mlflow.get_tracking_uri()
    key = hashlib.sha256(f"{uri}|{name}".encode()).hexdigest()[:16]
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else Path(tempfile.gettempdir())
    return FileLock(str(folder / f".cryptolstm-registry-{key}.lock"), timeout=300)


def _evaluation(tags: dict[str, str]) -> dict[str, str]:
    return {k: tags.get(k, "") for k in EVALUATION_TAGS}


def _candidate(run: Run) -> Candidate:
    """``run`` as promotion compares it, on the metric its head is chosen on."""
    from cryptolstm.heads import get

    head = run.data.params.get("config.head")
    metric = selection_metric(bool(head) and get(head).distribution)
    return Candidate(None, metric, run.data.metrics.get(metric, float("nan")), _evaluation(run.data.tags), run.info.run_id)


def _as_champion(version: ModelVersion | None) -> Candidate | None:
    """The champion ``version`` (None: none) as promotion compares it: on its source run's exact figure
    (the tags are rounded), else the tag's."""
    if version is None:
        return None
    metric = version.tags.get("selection.metric", METRIC)
    value = float(version.tags.get(metric, "nan"))
    with contextlib.suppress(MlflowException):
        value = MlflowClient().get_run(version.tags.get("source_run", version.run_id)).data.metrics.get(metric, value)
    return Candidate(str(version.version), metric, value, _evaluation(version.tags))


def register(run: Run, coin: str, force: bool = False, decide: Decision | None = None,
             tags: dict[str, str] | None = None, chosen: bool = False, sealed_from: str | None = None) -> Registration:
    """Register ``run``'s model as a new version of ``cryptolstm-<coin>``, champion as `promotion` decides
    (``chosen``: the user named the run; ``decide(champion)``: a refit's common evaluation instead), under
    the seal `seal_of` finds. A run registered already gets its version back (`_again`). The decision is
    written with the version; a command killed before the alias moves is completed by `reap_registrations`."""
    client, name = MlflowClient(), model_name(coin)
    _check_run(run, name, coin)
    metrics, run_id = run.data.metrics, run.info.run_id
    seal = seal_of(run_id, run.data.tags.get("data.last_date"), run.data.tags.get(SEALED_FROM), sealed_from)
    ratio, split = persistence_ratio(metrics)
    beats = ratio < 1.0
    source = run.data.tags.get("model_uri", f"runs:/{run_id}/model")
    mine = _candidate(run)
    with _lock(name):
        reap_registrations(name)
        # the lowest version of this run's model (a resumed study logs a newer model on the same run: that one is new)
        earlier = min((v for v in client.search_model_versions(f"name = '{name}' and tags.source_run = '{run_id}'")
                       if v.source == source), key=lambda v: int(v.version), default=None)
        if earlier is not None:
            if seal and earlier.tags.get(SEALED_FROM) != seal:
                client.set_model_version_tag(name, earlier.version, SEALED_FROM, seal)
            return _again(client, earlier, mine, force, ratio, split, chosen)
        current = _champion(client, name)
        if current is not None and decide is not None and not force:
            promoted, reason = decide(resolve(f"models:/{current.name}/{current.version}"))
        else:
            promoted, reason = promotion(mine, _as_champion(current), force, chosen)
        version_tags = {
            **{k: rounded(metrics[k]) for k in (METRIC, "test/mae_ratio", "test/mae") if k in metrics},
            "beats_persistence": str(beats).lower(), "persistence_ratio": rounded(ratio), "source_run": run_id,
            "selection.metric": mine.metric, mine.metric: rounded(mine.value), **mine.evaluation, **(tags or {}),
            "promotion": short_reason(reason), "promotion.decision": "promote" if promoted else "keep",
            "promotion.over": str(current.version) if current is not None else "", SEALED_FROM: seal or "",
        }
        version = _register_model(source, name, {k: v for k, v in version_tags.items() if v != ""}, run_id)
        if promoted:
            client.set_registered_model_alias(name, ALIAS, version)
        describe_registered(client, name, version, run, reason)
    return Registration(name, version, promoted, reason, beats, ratio, run_id=run_id, ratio_split=split)


def _again(client: MlflowClient, earlier: ModelVersion, mine: Candidate, force: bool, ratio: float, split: str,
           chosen: bool = False) -> Registration:
    """The `Registration` of a run already registered as ``earlier`` (`registered_again` decides)."""
    name, version = earlier.name, str(earlier.version)
    reason = f"run {earlier.tags.get('source_run')} was already registered as version {version}; nothing was added"
    current = _champion(client, name)
    is_champion = current is not None and str(current.version) == version
    decision = registered_again(mine, _as_champion(current), is_champion, force, chosen, "promotion" in earlier.tags)
    if decision is not None:
        promoted, why = decision
        if promoted:
            client.set_registered_model_alias(name, ALIAS, version)
        client.set_model_version_tag(name, version, "promotion", short_reason(why))
        reason += "; " + why
    return Registration(name, version, _champion_version(client, name) == version, reason, ratio < 1.0, ratio,
                        added=False, run_id=str(earlier.tags.get("source_run", "")), ratio_split=split)


def reap_registrations(name: str) -> int:
    """Complete the promotions of ``name`` a killed command left half done (unless the champion moved
    meanwhile); how many it completed."""
    client, done = MlflowClient(), 0
    current = _champion_version(client, name)
    try:
        pending = client.search_model_versions(f"name = '{name}' and tags.`promotion.decision` = 'promote'")
    except MlflowException:
        return 0
    for version in pending:
        number = str(version.version)
        if number == current or "promotion.completed" in version.tags or int(number) < int(current or 0):
            continue
        if version.tags.get("promotion.over", "") == (current or ""):
            client.set_registered_model_alias(name, ALIAS, number)
            current, done = number, done + 1
            client.set_model_version_tag(name, number, "promotion.completed", "by the next command (its own was cut short)")
        else:
            client.set_model_version_tag(name, number, "promotion.completed",
                                         f"not made champion: version {current} became champion first")
    return done


def _check_run(run: Run, name: str, coin: str) -> None:
    """Refuse a run of another coin or of none (its tag and param), and one without ``val/mae_ratio``."""
    run_id = run.info.run_id
    said = {run.data.tags.get("coin"), run.data.params.get("config.coin")} - {None, ""}
    if not said:
        raise ConfigError(f"run {run_id} names no coin (no coin tag, no config.coin param); "
                          f"it cannot be registered as {name}.")
    other = sorted(c for c in said if c.upper() != coin.upper())
    if other:
        raise ConfigError(f"run {run_id} is {with_article(other[0])} run; it cannot be registered as {name}.")
    if METRIC not in run.data.metrics:
        raise ConfigError(f"run {run_id} has no {METRIC}: only a training run or a study's parent run "
                          f"holds a model to register as {name}.")


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def _champion_version(client: MlflowClient, name: str) -> str | None:
    current = _champion(client, name)
    return None if current is None else str(current.version)


def _register_model(source: str, name: str, tags: dict[str, str], run_id: str) -> str:
    """A new version of ``name`` (made if missing) with ``tags``, in one write: `mlflow.register_model`
    without its printing."""
    client = MlflowClient()
    try:
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        version = client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=logged_model_id(source))
        return str(version.version)
    except MlflowException as exc:
        raise ConfigError(f"cannot register run {run_id}'s model {source} as {name}: {first_line(exc)}.") from None


def load_champion(coin: str, model_uri: str | None = None):
    """(pyfunc model, label) of ``model_uri`` or ``coin``'s champion; refused if unloadable or another coin's."""
    uri = model_uri or champion_uri(coin)
    model = load_pyfunc(uri)
    label = uri if model_uri else f"{uri} (version {_champion_version(MlflowClient(), model_name(coin))})"
    check_model_coin(model, coin, label)
    return model, label


def register_run(run_id: str, coin: str, force: bool = False, decide: Decision | None = None,
                 tags: dict[str, str] | None = None, chosen: bool = False, sealed_from: str | None = None) -> Registration:
    """`register` the run ``run_id``; an unknown run is one sentence."""
    try:
        run = MlflowClient().get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - an unknown or malformed run id: one sentence
        raise ConfigError(f"cannot register a {coin.upper()} model: {first_line(exc)}.") from None
    return register(run, coin, force, decide, tags, chosen, sealed_from)


def register_best(options) -> Registration:
    """`cryptolstm register` (`cryptolstm.options.RegisterOptions`): the run named, else the best one."""
    model_name(options.coin)
    if options.run_id:
        return register_run(options.run_id, options.coin, options.force, chosen=True, sealed_from=options.sealed_from)
    return register(best_run(options.coin, options.experiment_name, options.study_name), options.coin, options.force,
                    sealed_from=options.sealed_from)


def forecast_with(coin: str, model_uri: str | None, rows):
    """(the forecast of ``model_uri``, or of ``coin``'s champion, from daily ``rows``; its label)."""
    model, label = load_champion(coin, model_uri)
    schema = model.metadata.get_input_schema()
    if schema is not None and schema.has_input_names():  # only the columns it reads (MLflow warns of the others)
        rows = rows[[c for c in rows.columns if c in set(schema.input_names())]]
    try:
        return model.predict(rows), label
    except Exception as exc:  # noqa: BLE001 - e.g. a model logged before the forecaster existed: one sentence
        raise ConfigError(f"{label} could not forecast: {first_line(exc)}.") from None


def find_refit(key: str, coin: str) -> tuple[str, Registration] | None:
    """(the run, the `Registration`) of the version a refit with ``key`` registered already, or None."""
    client, name = MlflowClient(), model_name(coin)
    with _lock(name):
        reap_registrations(name)
        found = client.search_model_versions(f"name = '{name}' and tags.`refit.key` = '{key}'")
    if not found:
        return None
    version = min(found, key=lambda v: int(v.version))
    number, tags = str(version.version), version.tags
    ratio, split = persistence_ratio(client.get_run(tags["source_run"]).data.metrics)  # exact: the tags are rounded
    reason = (f"this refit was made already, from the same model and data, as version {number} "
              f"(run {tags.get('source_run')}); nothing was trained or added")
    return tags["source_run"], Registration(name, number, _champion_version(client, name) == number, reason,
                                            ratio < 1.0, ratio, added=False, ratio_split=split)


def register_pick(run_id: str, coin: str) -> Registration:
    """Register a study's pick (its parent run) unless a run of its experiment (`better_comparable`) did better."""
    run = MlflowClient().get_run(run_id)
    mine = _candidate(run)
    found = mlflow.search_runs(experiment_ids=[run.info.experiment_id], filter_string=(
        f"attributes.status = 'FINISHED' and metrics.`{mine.metric}` < {mine.value!r} and "
        f"tags.coin = '{run.data.tags.get('coin', '')}'"), output_format="list")
    runs = {r.info.run_id: r for r in found if "mlflow.parentRunId" not in r.data.tags and "model_uri" in r.data.tags}
    better = better_comparable(mine, [_candidate(r) for r in runs.values()])
    if better is None:
        return register(run, coin)
    ratio, split = persistence_ratio(run.data.metrics)
    reason = (f"the study's pick has {mine.metric} {mine.value:.4f}, and run {better.run_id} "
              f"({runs[better.run_id].info.run_name}) has {better.value:.4f} on the same days; "
              f"{_advice(runs[better.run_id], coin)}")
    return Registration(model_name(coin), "", False, reason, ratio < 1.0, ratio, added=False, run_id=run_id,
                        ratio_split=split)


def _advice(run: Run, coin: str) -> str:
    """The command that registers ``run`` by name, and what it would do to the champion."""
    current = _champion(MlflowClient(), model_name(coin))
    becomes, why = promotion(_candidate(run), _as_champion(current), chosen=True)
    command = f"cryptolstm register --coin {coin.upper()} --run-id {run.info.run_id}"
    if becomes:
        return f"`{command}` would register that one as champion"
    return (f"`{command}` would register that one but not as champion ({short_reason(why)}); "
            f"add --force to make it champion")

