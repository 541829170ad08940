"""The packaged price table (`prices.json`): list prices of well-known upstream models.

A target that names a model the table knows may leave out `price`; a target's own
`price` always wins. The table says where its prices come from and their date
(`gateway check` prints both); a target priced by neither is reported there, so a
cost of 0 is never silent.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from gateway.config import Config, Price, Target

_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|latest)$")   # a dated snapshot or the moving alias


@dataclass(frozen=True)
class PriceTable:
    date: str
    source: str
    models: dict[str, Price]

    def lookup(self, model: str) -> Price | None:
        """The model's price: its exact name, else without a trailing date or `-latest`."""
        found = self.models.get(model)
        if found is None:
            found = self.models.get(_SUFFIX.sub("", model))
        return found


@cache
def packaged() -> PriceTable:
    """The table shipped in the package (read once; it never changes while the process runs)."""
    data = json.loads(resources.files("gateway").joinpath("prices.json").read_text(encoding="utf-8"))
    models = {name: Price(**{k: v for k, v in entry.items() if k != "note"})
              for name, entry in data["models"].items()}
    return PriceTable(data["date"], data["source"], models)


def target_price(target: Target) -> tuple[Price, str]:
    """(price, where it came from): "config" (the target's own), "table", or "none" (bills 0)."""
    if target.price is not None:
        return target.price, "config"
    found = packaged().lookup(target.model)
    return (found, "table") if found is not None else (Price(), "none")


def price_report(config: Config) -> list[str]:
    """What `gateway check` says of prices: the targets priced from the table, and a warning for each target
    priced by nothing (its requests would cost 0, and no budget could stop them)."""
    table, lines = packaged(), []
    for name, route in config.routes.items():
        for i, target in enumerate(route.targets):
            price, source = target_price(target)
            where = f"routes.{name}.targets[{i}]"
            if source == "table":
                lines.append(f"{where}: {target.model} priced from the price table of {table.date} "
                             f"(input {price.input:g}, output {price.output:g} USD per 1M tokens)")
            elif source == "none":
                lines.append(f"warning: {where}: no price for {target.model!r} (not in the price table of "
                             f"{table.date}): its requests cost 0 and no budget limits them; give it a `price`")
    return lines
