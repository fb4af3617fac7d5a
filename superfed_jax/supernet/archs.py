"""Archs as configs and command lines name them, for any family: a default tracked name or the JSON form.

`fl.pool`, `cost.baseline`, `eval.tracked`, `--arch=...` and `:fedavg=ARCH` all go through here, so names
('smallest', 'largest', ...) are resolved against the final family (with the data's shape) in one place,
and every error names the config field and what is allowed.
"""
import json
from typing import Any

from superfed_jax.supernet import family as family_lib


def arch_from_spec(family: family_lib.Family, spec: Any):
    """An arch from its JSON form or a default tracked name ('smallest', 'small', ...)."""
    if isinstance(spec, str):
        named = family.default_tracked()
        if spec not in named:
            raise ValueError(f"unknown arch name {spec!r}; allowed names {list(named)} or an arch object")
        return named[spec]
    return family.arch_from_json(spec)


def parse_arch(family: family_lib.Family, text: str):
    """One arch from its JSON text, e.g. `'{"d":[0,1,0,1],"e":0.14}'` for the OFA-ResNet."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"arch {text!r} is not valid JSON ({error}); give the arch's JSON form, e.g. "
                         f"{json.dumps(family.arch_to_json(family.smallest()))}") from None
    return family.arch_from_json(spec)


def parse_archs(family: family_lib.Family, text: str, field: str) -> list:
    """A non-empty JSON list of archs (or names) from config field `field`; ValueError names the field."""
    try:
        specs = json.loads(text)
        if not isinstance(specs, list) or not specs:
            raise ValueError("need a non-empty JSON list of archs")
        return [arch_from_spec(family, spec) for spec in specs]
    except (ValueError, TypeError) as error:
        raise ValueError(f"{field}={text!r}: {error}") from None


def tracked_archs(family: family_lib.Family, text: str) -> dict:
    """Named archs to evaluate: config `eval.tracked` (JSON object name -> arch or name) or the defaults."""
    if not text:
        return family.default_tracked()
    try:
        specs = json.loads(text)
        if not isinstance(specs, dict) or not specs:
            raise ValueError("need a non-empty JSON object name -> arch")
        return {name: arch_from_spec(family, spec) for name, spec in specs.items()}
    except (ValueError, TypeError) as error:
        raise ValueError(f"eval.tracked={text!r}: {error}") from None


def arch_text(family: family_lib.Family, arch) -> str:
    """The canonical one-line JSON of one concrete arch (a key for caches and comparisons)."""
    return json.dumps(family.arch_to_json(arch), sort_keys=True)
