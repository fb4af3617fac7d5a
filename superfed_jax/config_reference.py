"""The config reference: every field of the schema with its default, allowed values, doc and resume rule.

One source, three views, all generated from `superfed_jax.config_schema` (nothing is written by hand):

* the terminal, all fields or some sections (`format_text`): `superfed-config [--section=server,dp]
  [--family=tcn]`, or `superfed-train --config_help[=SECTION,...]`, which takes the family of the config
  being trained (its `space` fields);
* `docs/config.md` (`markdown`): one table per section, the `space` section once per registered family.
  `tests/test_config_reference.py` fails when the committed file differs from what the schema generates;
  regenerate it with `python -m superfed_jax.config_reference --markdown > docs/config.md`
  (or `superfed-config --markdown > docs/config.md`, or `make config-docs`).

    superfed-config [--section=SECTION[,SECTION...]] [--family=NAME] [--markdown]

A section is `top` (the fields outside any section: seed, dry_run, ...), a config section (`server`) or
one dotted field (`fl.rounds`); an unknown one is one `error:` line naming the sections, exit status 2.
"""
import sys
import textwrap
from typing import Optional, Sequence

from superfed_jax import _cli
from superfed_jax import _console
from superfed_jax import config_schema
from superfed_jax._fields import Field, suggestion
from superfed_jax.supernet import family as family_lib

__all__ = ["TOP", "TOP_DOC", "DOC_PATH", "REGENERATE", "section_names", "select",
           "resume_text", "default_text", "format_text", "markdown", "help_text", "main", "console"]

TOP = "top"  # the name under which the fields outside any section are listed and selected
TOP_DOC = ("The fields outside any section: the seed, the kind of run (dry run, start over), what the "
           "console prints and where compiled programs are kept.")
DOC_PATH = "docs/config.md"  # relative to the repository root
REGENERATE = "python -m superfed_jax.config_reference --markdown > docs/config.md"


# ------------------------------------------------------------------------------------------ selection


def _section_of(entry: Field) -> str:
    return entry.section or TOP


def section_names(family: str = family_lib.DEFAULT_FAMILY) -> list[str]:
    """The sections of a config of `family`, `top` first, then in the order of the base config."""
    names = [TOP]
    for entry in config_schema.schema_fields(family):
        if _section_of(entry) not in names:
            names.append(_section_of(entry))
    return names


def section_doc(section: str) -> str:
    """The one-line documentation of `section` (config_schema.SECTIONS; TOP_DOC for `top`)."""
    return TOP_DOC if section == TOP else config_schema.SECTIONS.get(section, "")


def select(family: str = family_lib.DEFAULT_FAMILY,
           names: Optional[Sequence[str]] = None) -> list[tuple[str, list[Field]]]:
    """(section, its fields) for every section of `family`'s config, or for `names` only, in schema order.

    `names`: sections (`top`, `server`) or dotted fields (`fl.rounds`, listed alone in their section).
    Raises ValueError, one line, for a name that is neither (naming the sections, with a near miss).
    """
    fields = config_schema.schema_fields(family)
    sections = section_names(family)
    wanted_sections, wanted_fields = set(), set()
    for name in names or ():
        name = name.strip()
        if name in sections:
            wanted_sections.add(name)
        elif "." in name and name in {f.name for f in fields}:
            wanted_fields.add(name)
        elif "." in name:
            config_schema.field(name, family)  # raises: unknown field, with the nearest one
        else:
            raise ValueError(f"{name!r}: unknown config section{suggestion(name, sections)}; the sections "
                             f"are {', '.join(sections)} (or a field, e.g. fl.rounds)")
    chosen = []
    for section in sections:
        members = [f for f in fields if _section_of(f) == section
                   and (not names or section in wanted_sections or f.name in wanted_fields)]
        if members:
            chosen.append((section, members))
    return chosen


# --------------------------------------------------------------------------------------- one field


def resume_text(entry: Field) -> str:
    """The resume rule: whether a resumed run may give the field another value."""
    return "may change" if entry.resumable else "fixed"


def default_text(entry: Field) -> str:
    """The default as written in a config or on the command line (a tuple without spaces)."""
    if isinstance(entry.default, tuple):
        return str(entry.default).replace(" ", "")
    return repr(entry.default)


# ---------------------------------------------------------------------------------------- terminal


def format_text(family: str = family_lib.DEFAULT_FAMILY, names: Optional[Sequence[str]] = None,
                width: int = 100) -> str:
    """The reference for the terminal: per section its doc, then per field its override, default,
    allowed values, resume rule and doc (wrapped to `width`)."""
    lines = []
    for section, fields in select(family, names):
        title = f"[{section}]" + (f" (model.family={family!r})" if section == "space" else "")
        lines += textwrap.wrap(f"{title} {section_doc(section)}", width, subsequent_indent="  ")
        for entry in fields:
            lines.append(f"  --config.{entry.name}={default_text(entry)}")
            lines += textwrap.wrap(f"{entry.doc}. Allowed: {entry.allowed_text()}. On resume: "
                                   f"{resume_text(entry)}.", width,
                                   initial_indent="      ", subsequent_indent="      ")
        lines.append("")
    lines += textwrap.wrap("On resume: 'fixed' fields must keep their value when a run is resumed (the run "
                           "refuses otherwise); 'may change' ones may differ. The whole reference: "
                           f"{DOC_PATH}.", width)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- markdown


def _cell(text: str) -> str:
    """Text for a markdown table cell: pipes escaped, no line breaks."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """Inline code for a table cell (a double backtick fence when the text holds a backtick)."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{_cell(text)}{fence}"


def _table(fields: Sequence[Field]) -> list[str]:
    lines = ["| field | default | allowed | on resume | what it is |", "|---|---|---|---|---|"]
    for entry in fields:
        lines.append(f"| {_code(entry.name)} | {_code(default_text(entry))} | {_cell(entry.allowed_text())} "
                     f"| {resume_text(entry)} | {_cell(entry.doc)} |")
    return lines


def markdown() -> str:
    """docs/config.md: an introduction, then one table per section of the default family's config, the
    `space` section once per registered family (`supernet.family.FAMILIES`)."""
    default = family_lib.DEFAULT_FAMILY
    lines = [
        "# Config reference",
        "",
        f"<!-- Generated from superfed_jax/config_schema.py; do not edit. Regenerate: {REGENERATE} -->",
        "",
        "Every field of an experiment config: its default, the values it allows, whether a resumed run "
        "may change it, and what it does. The schema, `superfed_jax/config_schema.py`, declares each "
        "field once; this page, the command-line checks and the resume rules are all read from it.",
        "",
        "Override any field on the command line as `--config.SECTION.FIELD=VALUE` (`--config.fl.rounds=10`, "
        "`--config.server.optimizer=adam`); the same list in the terminal: `superfed-config` (all of it), "
        "`superfed-config --section=server` (one section; `--family=tcn` for that family's `space` "
        "fields), or `superfed-train --config_help[=SECTION]` for the config being trained. A misspelt "
        "field or a value outside what is allowed stops the command before anything runs, with one "
        "`error:` line naming the field and what is allowed.",
        "",
        "**On resume**: *fixed* fields must keep their value when a run in a work directory is resumed "
        "(a changed one is refused, naming the field); *may change* fields (rounds, evaluation and "
        "checkpoint cadence, chunking and layout, ...) may differ, because results do not depend on them. "
        "Structured values (lists of archs) are JSON strings, so every field can be given on the command "
        "line.",
        "",
        "Sections: " + ", ".join(f"[{s}](#{s})" for s in section_names(default)) + ".",
        "",
    ]
    for section, fields in select(default):
        if section != "space":
            lines += [f"## {section}", "", section_doc(section), "", *_table(fields), ""]
            continue
        lines += ["## space", "", section_doc(section), "",
                  "Each supernet family declares its own `space` fields (`Family.space_fields`); "
                  "`model.family` chooses the family (docs/families.md).", ""]
        for family in family_lib.FAMILIES:
            space = [f for f in config_schema.schema_fields(family) if f.section == "space"]
            which = "the default" if family == default else f"`model.family={family!r}`"
            lines += [f"### space of `{family}` ({which})", "", *_table(space), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------- command


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("section", None, "Only these sections (comma-separated): top, a config section "
                        "(server, dp, ...) or a dotted field (fl.rounds). Default: every section.")
    flags.DEFINE_string("family", family_lib.DEFAULT_FAMILY, "The model.family whose space fields are "
                        "listed: a registered name (ofa_resnet, tcn) or 'package.module:ClassName'.")
    flags.DEFINE_bool("markdown", False, f"Print {DOC_PATH} (every section, every registered family's "
                      f"space) instead: {REGENERATE}")


def _main(argv: Sequence[str]) -> None:
    from absl import flags

    del argv  # a positional argument was refused by `_cli.parse_flags`, as by every command
    options = flags.FLAGS
    with _cli.user_errors():
        if options.markdown:
            sys.stdout.write(markdown())
            return
        names = options.section.split(",") if options.section else None
        sys.stdout.write(format_text(options.family, names))


def help_text(program: str = "superfed-config") -> str:
    """What `--help` prints: the usage, each flag, and where else the reference is."""
    return (f"{program}: the config reference, every field with its default, allowed values, doc and "
            f"resume rule.\n\n"
            f"usage: {program} [--section=SECTION[,SECTION...]] [--family=NAME] [--markdown]\n\n"
            f"flags:\n"
            f"  --section=S[,S...]  only these: {', '.join(section_names())}, or a dotted field "
            f"(fl.rounds); default: all\n"
            f"  --family=NAME       whose space fields to list: {', '.join(family_lib.FAMILIES)} or "
            f"'package.module:ClassName' (default: {family_lib.DEFAULT_FAMILY})\n"
            f"  --markdown          print {DOC_PATH} instead ({REGENERATE})\n\n"
            f"The same from the training command, for the config it would train: superfed-train "
            f"[--config=...] --config_help[=SECTION]. As a document: {DOC_PATH}.\n")


def main(argv: Sequence[str]) -> None:
    """The `superfed-config` command for `argv` (program name first); exits 0, or 2 with one `error:`."""
    _console.quiet_backend_probe()
    if any(arg in _cli.HELP_ARGUMENTS for arg in argv[1:]):
        sys.stdout.write(help_text())
        sys.exit(0)
    _cli.run(_main, _define_flags, argv=argv)


def console() -> None:
    """The `superfed-config` console script: `main(sys.argv)`."""
    main(sys.argv)


if __name__ == "__main__":
    console()
