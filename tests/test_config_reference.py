"""The config reference (`superfed_jax/config_reference.py`): every schema field in the terminal text and in
docs/config.md, the section filter and its one error, each family's own `space` fields, docs/config.md
as committed equal to what the schema generates, and the help of the training command (`--help`,
`--config_help`), which must print and exit without training."""
import os
import re
import subprocess
import sys

import pytest

from superfed_jax import config_reference as reference
from superfed_jax import config_schema
from superfed_jax.run import launch
from superfed_jax.supernet import family as family_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_FIELDS = [f.name for f in config_schema.FIELDS if f.section == "server"]


def overrides_in(text: str) -> list[str]:
    """The dotted field of every `--config.X=default` line of the terminal reference, in order."""
    return re.findall(r"^  --config\.([^=]+)=", text, re.MULTILINE)


# ------------------------------------------------------------------------------------------ the text


@pytest.mark.parametrize("family", list(family_lib.FAMILIES))
def test_every_field_of_the_family_is_listed_once_in_schema_order(family):
    fields = config_schema.schema_fields(family)
    listed = overrides_in(reference.format_text(family))
    # Grouped by section (top-level fields first), schema order inside each section.
    expected = [f.name for section in reference.section_names(family) for f in fields
                if (f.section or reference.TOP) == section]
    assert listed == expected and sorted(listed) == sorted(f.name for f in fields)


def test_each_field_shows_default_allowed_values_doc_and_resume_rule():
    text = reference.format_text()
    for entry in config_schema.FIELDS:
        block = text.split(f"  --config.{entry.name}={reference.default_text(entry)}\n", 1)[1]
        block = " ".join(block.split("\n  --config.", 1)[0].split())  # this field's lines, unwrapped
        assert " ".join(entry.doc.split()) in block, entry.name
        assert f"Allowed: {entry.allowed_text()}." in block, entry.name
        assert f"On resume: {'may change' if entry.resumable else 'fixed'}." in block, entry.name


def test_one_section_lists_only_its_fields_with_the_section_doc():
    text = reference.format_text(names=["server"])
    assert overrides_in(text) == SERVER_FIELDS and SERVER_FIELDS
    assert " ".join(text.split()).startswith("[server] " + " ".join(config_schema.SECTIONS["server"].split()))


def test_several_sections_and_single_fields_keep_schema_order():
    listed = overrides_in(reference.format_text(names=["dp", "fl.rounds", "top"]))
    top = [f.name for f in config_schema.FIELDS if not f.section]
    dp = [f.name for f in config_schema.FIELDS if f.section == "dp"]
    assert listed == top + ["fl.rounds"] + dp


def test_unknown_section_is_one_error_naming_every_section():
    with pytest.raises(ValueError) as error:
        reference.select(names=["sever"])
    message = str(error.value)
    assert "\n" not in message and "did you mean 'server'" in message
    for section in [reference.TOP, *config_schema.SECTIONS]:
        assert section in message


def test_unknown_field_names_the_nearest_field():
    with pytest.raises(ValueError, match=r"fl\.round: unknown field \(did you mean fl\.rounds\?\)"):
        reference.select(names=["fl.round"])


def test_another_family_lists_its_own_space_fields():
    text = reference.format_text("tcn", ["space"])
    tcn = [f.name for f in config_schema.schema_fields("tcn") if f.section == "space"]
    assert overrides_in(text) == tcn and "space.channels" in tcn
    assert "space.stem_width" not in text and "model.family='tcn'" in text


def test_allowed_values_of_each_kind():
    by_name = {f.name: f for f in config_schema.schema_fields("tcn")}
    assert by_name["model.dtype"].allowed_text() == "'float32', 'bfloat16'"
    assert by_name["fl.chunk_size"].allowed_text() == "integer >= 0 (0 = all of a round)"
    assert by_name["space.dropout"].allowed_text() == "number in [0, 1)"
    assert by_name["data.flip"].allowed_text() == "True or False"
    assert by_name["space.depth_choices"].allowed_text() == "tuple of integers"
    assert "'adam'" in by_name["server.optimizer"].allowed_text()
    assert reference.default_text(by_name["space.expand_choices"]) == "(0.1,0.2,0.25,0.5,1.0)"


# ------------------------------------------------------------------------------------ docs/config.md


def test_docs_config_md_is_what_the_schema_generates():
    path = os.path.join(ROOT, reference.DOC_PATH)
    with open(path) as f:
        committed = f.read()
    assert committed == reference.markdown(), (
        f"{reference.DOC_PATH} is not what superfed_jax/config_schema.py generates; regenerate it from the "
        f"repository root with: {reference.REGENERATE}")


def markdown_rows() -> dict:
    """{heading: [the field cell of each table row]} of the generated markdown."""
    rows, heading = {}, None
    for line in reference.markdown().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("| `"):
            rows.setdefault(heading, []).append(line.split("|")[1].strip().strip("`"))
    return rows


def test_markdown_has_one_table_per_section_with_its_doc_and_every_family_space():
    rows = markdown_rows()
    text = reference.markdown()
    for section, doc in config_schema.SECTIONS.items():
        assert f"## {section}\n\n{doc}\n" in text
        if section != "space":
            assert rows[section] == [f.name for f in config_schema.FIELDS if f.section == section]
    assert rows[reference.TOP] == [f.name for f in config_schema.FIELDS if not f.section]
    for family in family_lib.FAMILIES:
        space = [key for heading, keys in rows.items() if heading.startswith(f"space of `{family}`")
                 for key in keys]
        assert space == [f.name for f in config_schema.schema_fields(family) if f.section == "space"]


def test_markdown_rows_carry_the_resume_rule_and_escape_pipes():
    for line in reference.markdown().splitlines():
        if line.startswith("| `"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            assert len(cells) == 5, line  # no unescaped pipe splits a cell
            name = cells[0].strip().strip("`")
            entry = next(f for fam in family_lib.FAMILIES for f in config_schema.schema_fields(fam)
                         if f.name == name)
            assert cells[3].strip() == ("may change" if entry.resumable else "fixed")


def test_docs_link_the_reference():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    running = readme.split("## Running", 1)[1].split("\n## ", 1)[0]
    assert "docs/config.md" in running
    assert "`config.md`" in readme.split("## What exists", 1)[1].split("\n## ", 1)[0]


# ------------------------------------------------------------------------------------ the commands


def test_config_help_arguments_are_found():
    assert launch.config_help_sections(["p", "--config=digits"]) is None
    assert launch.config_help_sections(["p", "--config_help"]) == []
    assert launch.config_help_sections(["p", "--config_help=server,dp"]) == ["server", "dp"]
    assert launch.config_help_sections(["p", "--", "--config_help"]) is None  # positional after --


def test_help_text_names_the_commands_flags_and_how_to_list_fields():
    text = launch.help_text("superfed-train")
    for flag in ("--config=", "--workdir=", "--config.SECTION.FIELD=", "--config_help", "--flagfile",
                 "--helpfull"):
        assert flag in text
    assert "superfed-config" in text and "docs/config.md" in text
    assert ", ".join(reference.section_names()) in text


def run_python(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_launch_help_prints_its_flags_and_trains_nothing(tmp_path):
    result = run_python(os.path.join(ROOT, "launch.py"), "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("python launch.py: train")
    assert "--config_help" in result.stdout and "--workdir=DIR" in result.stdout
    assert "workdir:" not in result.stdout and os.listdir(tmp_path) == []  # nothing was run or written


def test_launch_config_help_lists_the_family_of_the_config_it_would_train(tmp_path):
    result = run_python(os.path.join(ROOT, "launch.py"), "--config=shakespeare", "--config_help=space",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert overrides_in(result.stdout) == [f.name for f in config_schema.schema_fields("tcn")
                                           if f.section == "space"]
    assert os.listdir(tmp_path) == []
    result = run_python(os.path.join(ROOT, "launch.py"), "--config_help=sever", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: 'sever': unknown config section (did you mean 'server'?)")


def test_superfed_config_command():
    result = run_python("-m", "superfed_jax.config_reference", "--section=server")
    assert result.returncode == 0, result.stderr
    assert overrides_in(result.stdout) == SERVER_FIELDS
    markdown = run_python("-c", "import sys; from superfed_jax import config_reference as r; "
                          "sys.argv = ['superfed-config', '--markdown']; r.console()")
    assert markdown.returncode == 0 and markdown.stdout == reference.markdown()
    for args, expected in ((["--section=nope"], "error: 'nope': unknown config section"),
                           (["server"], "error: unexpected argument 'server': this command takes only flags"),
                           (["--family=nope"], "error: model.family='nope'")):
        failed = run_python("-m", "superfed_jax.config_reference", *args)
        assert failed.returncode == 2 and failed.stderr.startswith(expected), failed.stderr
    helped = run_python("-m", "superfed_jax.config_reference", "--help")
    assert helped.returncode == 0 and "--section=" in helped.stdout and "--markdown" in helped.stdout
