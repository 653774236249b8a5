"""The command line's plumbing over typer (`cryptolstm.cli` declares the commands with it): a text option per
options field (and for train per `RunConfig` field), booleans that work as bare flags, options read as ``--x_y``."""

import functools
import inspect
from dataclasses import fields
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from cryptolstm import options as opts
from cryptolstm.config import FIELD_NAMES, HELP, RunConfig, load_config
from cryptolstm.errors import CryptoLstmError
from cryptolstm.workflows import find_file

BOOLEAN = "[true|false]"  # a boolean option's metavar: its value may be left out (see `bare_flags`)
METAVARS = {"int": "INTEGER", "float": "NUMBER", "bool": BOOLEAN, "date": "YYYY-MM-DD", "str": "TEXT"}
HIDDEN = ("follower",)  # set by the search for the worker processes it starts
UNSET = ("", "None", "default")  # spellings of "not given" (-P x=None, and older text stores)


def bare_flags(args: list[str], booleans: set[str], valued: set[str]) -> list[str]:
    """``args`` with ``true`` after each boolean option given bare (``--force false``, as ``mlflow run`` passes
    it, stays); ``valued`` options' values are passed over, nothing after ``--`` is an option, and ``--x_y`` (an
    undeclared MLproject parameter) is ``--x-y``. Why here: typer 0.29's click has no option with an optional value."""
    out, rest = [], list(args)
    while rest:
        arg = rest.pop(0)
        if arg.startswith("--") and arg.replace("_", "-") in booleans | valued:  # --x_y, as `mlflow run` passes it
            arg = arg.replace("_", "-")
        out.append(arg)
        if arg == "--":
            return out + rest
        if arg in booleans:
            out.append("true" if not rest or rest[0].startswith("-") else rest.pop(0))
        elif arg in valued and rest:
            out.append(rest.pop(0))
    return out


class _PlainFlags:
    """Help that shows no type beside a real flag (``--help``; typer 0.29 writes ``<bool>`` there)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)  # never None: no command turns its --help off
        option.metavar = ""
        return option


class Group(_PlainFlags, TyperGroup):
    """A command group (``cryptolstm``, ``cryptolstm data``)."""


class Command(_PlainFlags, TyperCommand):
    """A command whose boolean options also work as bare flags and whose options read as ``--x_y`` too."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        options = [p for p in self.params if isinstance(p, TyperOption)]
        booleans = {name for p in options if p.metavar == BOOLEAN for name in p.opts}
        valued = {name for p in options if not p.is_flag and not p.count for name in p.opts}
        return super().parse_args(ctx, bare_flags(args, booleans, valued))


def option_for(f, panel: str | None = None, defaults: RunConfig | None = None):
    """A text option for dataclass field ``f`` whose help shows its type and default (its value in ``defaults``)."""
    value = getattr(defaults, f.name) if defaults else f.default
    if value is None:
        shown = "none" if defaults else False
    elif isinstance(value, tuple):
        shown = ",".join(value)
    else:
        shown = str(value).lower() if isinstance(value, bool) else str(value)
    text = f.metadata.get("help") or (HELP.get(f.name, "") if panel else "")
    option = typer.Option("--" + f.name.replace("_", "-"), help=text, metavar=METAVARS[opts.kind_of(f.name, f.type)],
                          show_default=shown, hidden=f.name in HIDDEN, rich_help_panel=panel)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[str], option])


def command(app: typer.Typer, name: str, cls, fail, run_config: bool = False):
    """``app``'s command ``name``, an option per field of ``cls`` (and of `RunConfig` with ``run_config``); it is
    called with ``options`` (a ``cls``), the run config's ``overrides`` and its own parameters; ``fail(sentence)``."""

    def decorate(func):
        own = [p for name, p in inspect.signature(func).parameters.items() if name not in ("options", "overrides")]
        extra = [option_for(f) for f in fields(cls)]
        if run_config:
            default = load_config(find_file(opts.DEFAULT_EXPERIMENT))
            panel = f"Run config (defaults from {opts.DEFAULT_EXPERIMENT})"
            extra += [option_for(f, panel, default) for f in fields(RunConfig)]

        @functools.wraps(func)
        def wrapper(**kwargs):
            if run_config:
                kwargs["overrides"] = opts.given({name: given(kwargs.pop(name)) for name in FIELD_NAMES})
            try:
                built = opts.from_text(cls, {f.name: given(kwargs.pop(f.name)) for f in fields(cls)})
            except CryptoLstmError as exc:
                fail(str(exc))
            return func(options=built, **kwargs)

        wrapper.__signature__ = inspect.Signature(own + extra)
        wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
        del wrapper.__wrapped__
        return app.command(name, cls=Command)(wrapper)

    return decorate


def given(text: str | None) -> str | None:
    """``text``, or None for a spelling of "not given" (`UNSET`)."""
    return None if text in UNSET else text
