"""``handgrad recipes``: the seed notebooks that ``handgrad train --recipe NAME`` reproduces."""

from __future__ import annotations

import argparse
import textwrap

from handgrad.train.recipes import RECIPES, figure_text, get_recipe


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recipes",
        help="list the seed recipes and the figures they are expected to reach",
        description="List the recipes, or show one in full (description, figures, config).",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="show this recipe in full")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.name is None:
        for recipe in RECIPES.values():
            print(f"{recipe.name:20s} {recipe.title}")
            expected = [
                f"{fig.label} {figure_text(fig.expected, fig.fmt)}"
                for fig in recipe.figures
                if fig.expected is not None
            ]
            print(f"{'':20s} expected: {'; '.join(expected) or 'the seed gives no figure'}")
            print(f"{'':20s} run: handgrad train --recipe {recipe.name}  ({recipe.duration})")
        print(
            "\n'handgrad recipes NAME' shows one in full; add --engine both to compare with torch."
        )
        return 0
    recipe = get_recipe(args.name)
    print(f"{recipe.name}: {recipe.title}")
    print(f"seed: {recipe.seed}")
    print(textwrap.fill(recipe.description, 96, initial_indent="  ", subsequent_indent="  "))
    for note in recipe.notes:
        print(textwrap.fill(note, 96, initial_indent="  note: ", subsequent_indent="  "))
    print("figures (expected; source):")
    for fig in recipe.figures:
        print(f"  {fig.label:34s} {figure_text(fig.expected, fig.fmt):>12s}  {fig.source}")
    print(f"run: handgrad train --recipe {recipe.name}  ({recipe.duration})")
    print("config:")
    print(textwrap.indent(recipe.config.to_json(), "  "), end="")
    return 0
