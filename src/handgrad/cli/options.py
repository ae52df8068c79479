"""``handgrad train``'s options, generated from the metadata on ``TrainConfig``'s fields.

A field declared with ``handgrad.train.config.option(...)`` becomes ``--field-name`` (or its
``flag``) in its ``group``, its type and choices taken from the field: a bool that defaults to
False is a switch, one that defaults to True a ``--no-...`` switch, a dict a repeatable
``KEY=VALUE``, a pair ``nargs=2``; ``words`` maps command-line words to values (``--batch-size
full``). Each option's default is the field's, added to its help. So a new config field needs
no second edit. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any

from handgrad.train.config import GROUPS, TrainConfig

SUPPRESS = argparse.SUPPRESS


def cli_fields() -> list[dataclasses.Field[Any]]:
    """The config fields that are ``handgrad train`` options, in declaration order."""
    return [f for f in dataclasses.fields(TrainConfig) if "group" in f.metadata]


def flag_of(f: dataclasses.Field[Any]) -> str:
    default_flag = "--no-" if f.default is True else "--"
    return str(f.metadata.get("flag", default_flag + f.name.replace("_", "-")))


def key_value(word: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it is (``lr=0.1``), else as a string."""
    key, sep, value = word.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {word!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _scalar(hint: Any, words: dict[str, Any], name: str) -> Any:
    """An argparse ``type`` for a field of type ``hint`` (a union of int, float, str, None)."""
    options = typing.get_args(hint) or (hint,)
    # A field with words takes its strings from them (threads: an integer, 0 or auto).
    kinds = [k for k in (int, float, str) if k in options and not (k is str and words)]

    def parse(word: str) -> Any:
        if word in words:
            return words[word]
        for kind in kinds:
            try:
                return kind(word)
            except ValueError:
                continue
        expected = " or ".join(
            [{int: "an integer", float: "a number", str: "a word"}[k] for k in kinds]
            + [repr(w) for w in words]
        )
        raise argparse.ArgumentTypeError(f"expected {expected}, got {word!r}")

    parse.__name__ = name  # argparse names the type in its errors
    return parse


def _default_text(f: dataclasses.Field[Any]) -> str | None:
    if "default_text" in f.metadata:
        return str(f.metadata["default_text"])
    if f.default is dataclasses.MISSING or f.default is None or isinstance(f.default, bool):
        return None
    return str(f.default)


def add_config_options(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Add one option per config field, in ``GROUPS`` (returned by name, for a command's own
    options); an option not given leaves no attribute."""
    hints = typing.get_type_hints(TrainConfig)
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in cli_fields():
        meta, hint = f.metadata, hints[f.name]
        default = _default_text(f)
        help_text = meta["help"] + (f" (default {default})" if default else "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": SUPPRESS, "help": help_text}
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if hint is bool or (bool in args and len(args) == 2 and type(None) in args):
            kwargs["action"] = "store_false" if f.default is True else "store_true"
        elif origin is dict:
            kwargs.update(type=key_value, action="append", metavar="KEY=VALUE")
        elif tuple in (origin, *map(typing.get_origin, args)):
            kwargs.update(type=float, nargs=2)
        elif "choices" in meta:
            kwargs["choices"] = meta["choices"]
        else:
            kwargs["type"] = _scalar(hint, meta.get("words", {}), f.name)
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        groups[meta["group"]].add_argument(flag_of(f), **kwargs)
    return groups


def given_options(args: argparse.Namespace) -> list[str]:
    """The config fields the command line set."""
    given = vars(args)
    return [f.name for f in cli_fields() if f.name in given]


def resume_conflicts(args: argparse.Namespace) -> list[str]:
    """The flags of the options given that may not accompany ``--resume``."""
    by_name = {f.name: f for f in cli_fields()}
    return [
        flag_of(by_name[n]) for n in given_options(args) if not by_name[n].metadata.get("resume")
    ]


def apply_options(config: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """``config`` with the command line's options applied.

    Dict options merge into the config's own (``--optimizer-option``), except that a new
    ``--augment`` drops the base augmentation's magnitudes; a field with ``overrides`` unsets
    the other (``--steps`` unsets ``epochs``) unless both are given.
    """
    given = vars(args)
    names = given_options(args)
    changes: dict[str, Any] = {}
    for f in cli_fields():
        if f.name not in given:
            continue
        value = given[f.name]
        if isinstance(f.default, dict) or f.default is dataclasses.MISSING:
            value = {**getattr(config, f.name), **dict(value)}
        elif isinstance(value, list):
            value = tuple(value)
        changes[f.name] = value
        other = f.metadata.get("overrides")
        if other is not None and other not in names:
            changes[other] = None
    if changes.get("augment", config.augment) != config.augment:
        # The recipe's magnitudes belong to its own augmentation, not to another one.
        changes["augment_options"] = dict(given.get("augment_options", []))
    return config.replace(**changes)
