"""Versions registered in MLflow: a run's model registered as a new version, tagged with its metrics,
data range, protocol and source run; whether it becomes champion is `cryptolstm.registry.promotion`'s
rule (or the caller's decision: a refit's common evaluation), written with the version in one step.
Registration and promotion run under a file lock, so two registrations at once cannot leave the
alias on the worse model, nor add two versions of one run. Only a coin's own runs are registered
under its name, and a model is loaded to forecast only the coin it was trained on.
"""

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
from cryptolstm.tracking.registry.models import check_model_coin, load_pyfunc, resolve
from cryptolstm.tracking.runs import SEALED_FROM


def best_run(coin: str, experiment_name: str | None = None, study_name: str | None = None) -> Run:
    """The finished run with a model and the lowest value of what it is chosen on
    (`cryptolstm.registry.best`) for ``coin``: in a study (its parent run) or anywhere in an
    experiment (training runs and study runs alike)."""
    filters = [f"tags.coin = '{coin.upper()}'", "attributes.status = 'FINISHED'", f"metrics.`{METRIC}` >= 0"]
    if study_name:
        filters.append(f"tags.`cryptolstm.study` = '{study_name}'")
    experiments = None
    if experiment_name:
        experiment = mlflow.get_experiment_by_name(experiment_name)
        if experiment is None:
            raise ConfigError(f"MLflow experiment {experiment_name!r} does not exist.")
        experiments = [experiment.experiment_id]
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
    """``run`` as promotion compares it: on the metric its head is chosen on (`selection_metric`)."""
    from cryptolstm.heads import get

    head = run.data.params.get("config.head")
    metric = selection_metric(bool(head) and get(head).distribution)
    return Candidate(None, metric, run.data.metrics.get(metric, float("nan")), _evaluation(run.data.tags), run.info.run_id)


def _as_champion(version: ModelVersion) -> Candidate:
    """The champion ``version`` as promotion compares it: on its source run's exact figure (the tags
    are rounded), the tag's where that run is gone; a version of before distributions: MAE."""
    metric = version.tags.get("selection.metric", METRIC)
    value = float(version.tags.get(metric, "nan"))
    with contextlib.suppress(MlflowException):
        value = MlflowClient().get_run(version.tags.get("source_run", version.run_id)).data.metrics.get(metric, value)
    return Candidate(str(version.version), metric, value, _evaluation(version.tags))


def register(run: Run, coin: str, force: bool = False, decide: Decision | None = None,
             tags: dict[str, str] | None = None, chosen: bool = False, sealed_from: str | None = None) -> Registration:
    """Register ``run``'s model as a new version of ``cryptolstm-<coin>``, and make it champion as
    `cryptolstm.registry.promotion` decides (``chosen``: the user named the run; ``force``: anyway;
    ``decide(champion)``: a refit's common evaluation decides instead). ``tags``: more tags of the version.
    ``sealed_from``: a seal the user declares; a run whose data reached it is refused, and the version
    records the seal (`cryptolstm.registry.seal_of`) as its ``sealed_from`` tag.

    A run of another coin, one that names no coin and one without ``val/mae_ratio`` are refused
    (`ConfigError`, nothing registered). A run that already has a version gets that version back
    (``added`` False) and nothing is registered (`_again`). The decision is made first and the
    version is created with it in one write (``promotion``, ``promotion.decision``,
    ``promotion.over``); the alias moves after. A command killed in between leaves a version whose
    decision the next command completes (`reap_registrations`). The check, the registration and the
    promotion share one lock, so two registrations of one run at once add one version."""
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
        earlier = _version_of(client, name, run_id, source)
        if earlier is not None:
            if seal and earlier.tags.get(SEALED_FROM) != seal:
                client.set_model_version_tag(name, earlier.version, SEALED_FROM, seal)
            return _again(client, earlier, mine, force, beats, ratio, chosen)
        current = _champion(client, name)
        promoted, reason = _decide(current, mine, force, decide, chosen)
        version_tags = {
            **{k: rounded(metrics[k]) for k in (METRIC, "test/mae_ratio", "test/mae") if k in metrics},
            "beats_persistence": str(beats).lower(), "persistence_ratio": rounded(ratio), "source_run": run_id,
            "selection.metric": mine.metric, mine.metric: rounded(mine.value), **mine.evaluation, **(tags or {}),
            "promotion": short_reason(reason),
            "promotion.decision": "promote" if promoted else "keep",
            "promotion.over": str(current.version) if current is not None else "", SEALED_FROM: seal or "",
        }
        version = _register_model(source, name, {k: v for k, v in version_tags.items() if v != ""}, run_id)
        if promoted:
            client.set_registered_model_alias(name, ALIAS, version)
        describe_registered(client, name, version, run, reason)
    return Registration(name, version, promoted, reason, beats, ratio, run_id=run_id, ratio_split=split)


def _decide(current: ModelVersion | None, mine: Candidate, force: bool, decide: Decision | None,
            chosen: bool) -> tuple[bool, str]:
    """Whether the run becomes champion over ``current``, and why (nothing is written)."""
    if current is not None and decide is not None and not force:
        return decide(resolve(f"models:/{current.name}/{current.version}"))
    return promotion(mine, None if current is None else _as_champion(current), force, chosen)


def _again(client: MlflowClient, earlier: ModelVersion, mine: Candidate, force: bool, beats: bool,
           ratio: float, chosen: bool = False) -> Registration:
    """The `Registration` of a run already registered as ``earlier``: nothing is added. It is made
    champion only if asked (``force``, or named by the user) and the rule allows, or if its own
    registration was cut short before its decision was written (a version of before that was one write)."""
    name, version = earlier.name, str(earlier.version)
    reason = f"run {earlier.tags.get('source_run')} was already registered as version {version}; nothing was added"
    current = _champion(client, name)
    is_champion = current is not None and str(current.version) == version
    decision = registered_again(mine, None if current is None else _as_champion(current), is_champion, force, chosen,
                                "promotion" in earlier.tags)
    if decision is not None:
        promoted, why = decision
        if promoted:
            client.set_registered_model_alias(name, ALIAS, version)
        client.set_model_version_tag(name, version, "promotion", short_reason(why))
        reason += "; " + why
    return Registration(name, version, _champion_version(client, name) == version, reason, beats, ratio, added=False,
                        run_id=str(earlier.tags.get("source_run", "")))


def reap_registrations(name: str) -> int:
    """Complete the registrations of ``name`` a killed command left half done: a version decided to
    become champion over the version that still is (or over none) gets the alias; one whose champion
    moved meanwhile is told so. Returns how many it completed."""
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
    """Refuse (`ConfigError`) a run whose ``coin`` tag or ``config.coin`` param is another coin,
    one with neither, and one without ``val/mae_ratio`` (it holds no model to compare)."""
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


def _version_of(client: MlflowClient, name: str, run_id: str, source: str) -> ModelVersion | None:
    """The lowest version of ``name`` registered from run ``run_id``'s model ``source``, or None (a
    resumed study logs a newer model on the same run: that one is new)."""
    found = [v for v in client.search_model_versions(f"name = '{name}' and tags.source_run = '{run_id}'")
             if v.source == source]
    return min(found, key=lambda v: int(v.version)) if found else None


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def _champion_version(client: MlflowClient, name: str) -> str | None:
    current = _champion(client, name)
    return None if current is None else str(current.version)


def _register_model(source: str, name: str, tags: dict[str, str], run_id: str) -> str:
    """A new version of ``name`` (made if missing) from the logged model ``source``, with ``tags``,
    in one write (what `mlflow.register_model` does, without printing on the terminal); a run
    without a model (or an unreachable store) is one sentence."""
    client = MlflowClient()
    try:
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
        return str(client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id).version)
    except MlflowException as exc:
        raise ConfigError(f"cannot register run {run_id}'s model {source} as {name}: {first_line(exc)}.") from None


def load_champion(coin: str, model_uri: str | None = None):
    """(pyfunc model, version or URI label) for ``model_uri`` or ``coin``'s champion.

    A model that cannot be loaded (unknown, its files missing or truncated) and a model of
    another coin are refused with one sentence (`ConfigError`); the first names where the
    model's files are."""
    uri = model_uri or champion_uri(coin)
    model = load_pyfunc(uri)
    label = uri
    if model_uri is None:
        label = f"{uri} (version {_champion_version(MlflowClient(), model_name(coin))})"
    check_model_coin(model, coin, label)
    return model, label


def register_run(run_id: str, coin: str, force: bool = False, decide: Decision | None = None,
                 tags: dict[str, str] | None = None, chosen: bool = False, sealed_from: str | None = None) -> Registration:
    """`register` the run ``run_id`` (``chosen``: the user named it; ``sealed_from``: a seal the user
    declares); an unknown run is one sentence."""
    try:
        run = MlflowClient().get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - an unknown or malformed run id: one sentence
        raise ConfigError(f"cannot register a {coin.upper()} model: {first_line(exc)}.") from None
    return register(run, coin, force, decide, tags, chosen, sealed_from)


def register_best(options) -> Registration:
    """`cryptolstm register`: ``options.run_id``'s model, else the best run of the study or experiment
    (``options``: a `cryptolstm.options.RegisterOptions`)."""
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
    """(the run, the `Registration`) of the version a refit with ``key`` registered already, its
    decision completed first if it was cut short; None when there is none."""
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
    """Register a study's pick (its parent run ``run_id``) only if no other finished run of its
    experiment, validated on the same days and chosen on the same metric, did better: else nothing
    is registered and the sentence names that run."""
    client = MlflowClient()
    run = client.get_run(run_id)
    mine = _candidate(run)
    better = _better_comparable(run, mine)
    if better is None:
        return register(run, coin)
    value = better.data.metrics[mine.metric]
    ratio, split = persistence_ratio(run.data.metrics)
    reason = (f"the study's pick has {mine.metric} {mine.value:.4f}, and run {better.info.run_id} "
              f"({better.info.run_name}) has {value:.4f} on the same days; {_advice(better, coin)}")
    return Registration(model_name(coin), "", False, reason, ratio < 1.0, ratio, added=False, run_id=run_id,
                        ratio_split=split)


def _advice(run: Run, coin: str) -> str:
    """The command that registers ``run`` by name, with what it would do to the champion (as
    `cryptolstm.registry.promotion` decides for a run the user names; nothing is written)."""
    current = _champion(MlflowClient(), model_name(coin))
    becomes, why = promotion(_candidate(run), None if current is None else _as_champion(current), chosen=True)
    command = f"cryptolstm register --coin {coin.upper()} --run-id {run.info.run_id}"
    if becomes:
        return f"`{command}` would register that one as champion"
    return (f"`{command}` would register that one but not as champion ({short_reason(why)}); "
            f"add --force to make it champion")


def _better_comparable(run: Run, mine: Candidate) -> Run | None:
    """The run of ``run``'s experiment `cryptolstm.registry.better_comparable` finds (a finished run
    with a model, no trial), or None."""
    found = mlflow.search_runs(experiment_ids=[run.info.experiment_id], filter_string=(
        f"attributes.status = 'FINISHED' and metrics.`{mine.metric}` < {mine.value!r} and "
        f"tags.coin = '{run.data.tags.get('coin', '')}'"), output_format="list")
    runs = {r.info.run_id: r for r in found if "mlflow.parentRunId" not in r.data.tags and "model_uri" in r.data.tags}
    better = better_comparable(mine, [_candidate(r) for r in runs.values()])
    return None if better is None else runs[better.run_id]

