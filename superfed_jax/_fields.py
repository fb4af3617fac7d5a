"""A config field's declaration: default, one-line doc, check and resume rule (`Field`, `Range`).

The schema of the package's own fields (`config_schema.FIELDS`) and each supernet family's `space` fields
(`supernet.family.Family.space_fields`) are written with these, so a family declares its fields exactly as
the package does; this module is at the bottom of the import graph for that reason.
"""
import dataclasses
import difflib
import math
from typing import Any, Optional, Sequence, Union

# int: an integer (not a bool); number: a finite int or float; flag: True or False; text: a string;
# choice: one of `allowed`; ints / numbers: a tuple of them (checked by the module that reads it).
KINDS = ("int", "number", "flag", "text", "choice", "ints", "numbers")
_REQUIRED = object()  # `Field.absent` of a field every config must have


@dataclasses.dataclass(frozen=True)
class Range:
    """An interval of allowed numbers, open or closed at either end, plus single extra values.

    `text` replaces the generated description (e.g. 'in [0, 2**63)' rather than 19 digits).
    """

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    also: tuple = ()  # single values allowed outside the interval (e.g. -1 = "derive it")
    text: str = ""

    def __contains__(self, value) -> bool:
        if value in self.also:
            return True
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.text:
            return self.text
        low, high = _format(self.low), _format(self.high)
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _format(bound: float) -> str:
    """A range bound as written in messages: integers without a decimal point."""
    return str(int(bound)) if math.isfinite(bound) and bound == int(bound) else f"{bound:g}"


def suggestion(value, allowed: Sequence[str], prefix: Optional[str] = None) -> str:
    """' (did you mean X?)' for a near miss among `allowed`, else ''.

    X is quoted (a value), or, with `prefix`, the dotted field name `prefix + X`.
    """
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if prefix is None else f" (did you mean {prefix}{close[0]}?)"


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field: its dotted name, default, documentation, check and resume rule."""

    name: str  # dotted, e.g. 'fl.rounds'
    default: Any
    doc: str  # one line, as shown to users
    kind: str  # one of KINDS
    allowed: Union[Range, tuple, None] = None  # a Range (int, number) or the allowed names (choice)
    hint: str = ""  # appended to the range in messages, e.g. ' (0 disables Cutout)'
    resumable: bool = False  # may differ between a checkpointed run and the run that resumes it
    absent: Any = _REQUIRED  # the value loaders use when a config lacks the field (older configs)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: kind={self.kind!r}; allowed kinds are {list(KINDS)}")
        if self.kind == "choice" and self.default not in self.allowed:
            raise ValueError(f"field {self.name}: default {self.default!r} is not among {self.allowed}")
        if isinstance(self.allowed, Range) and self.default not in self.allowed:
            raise ValueError(f"field {self.name}: default {self.default!r} is not {self.allowed}")

    @property
    def section(self) -> str:
        """The section holding the field ('' for a top-level field)."""
        return self.name.rpartition(".")[0]

    @property
    def key(self) -> str:
        """The field's name inside its section."""
        return self.name.rpartition(".")[2]

    @property
    def optional(self) -> bool:
        """Whether a config may lack the field (loaders then read `absent`)."""
        return self.absent is not _REQUIRED

    def requirement(self) -> str:
        """What a value must be, as the end of a 'field=value: ...' message."""
        if self.kind == "int":
            return f"must be an integer {self.allowed}{self.hint}"
        if self.kind == "number":
            return f"must be a number {self.allowed}{self.hint}"
        if self.kind == "flag":
            return "must be True or False"
        if self.kind == "text":
            return f"must be a string{self.hint}"
        if self.kind == "choice":
            return f"allowed values are {list(self.allowed)}"
        noun = "integers" if self.kind == "ints" else "numbers"
        return f"must be a tuple of {noun}, e.g. {str(tuple(self.default)).replace(' ', '')!r}{self.hint}"

    def allowed_text(self) -> str:
        """What a value may be, as a noun phrase for the config reference, e.g. 'integer >= 1 (0 = all of a
        round)', "'sgd', 'adam'" (`requirement` says the same as the end of an error message)."""
        bounds = f" {self.allowed}" if isinstance(self.allowed, Range) else ""
        if self.kind in ("int", "number"):
            return f"{'integer' if self.kind == 'int' else 'number'}{bounds}{self.hint}"
        if self.kind == "flag":
            return "True or False"
        if self.kind == "choice":
            return ", ".join(repr(value) for value in self.allowed)
        if self.kind == "text":
            return f"string{self.hint}"
        return f"tuple of {'integers' if self.kind == 'ints' else 'numbers'}{self.hint}"

    def problem(self, value) -> str:
        """The one-line message for a bad `value` of this field: 'field=value: what is allowed'."""
        hint = suggestion(value, self.allowed) if self.kind == "choice" else ""
        return f"{self.name}={value!r}: {self.requirement()}{hint}"
