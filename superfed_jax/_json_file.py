"""Reading one of the small JSON files a run keeps (config.json, space.json, cost.json, model.json, ...).

These files can be hand-edited, truncated by a full disk, overwritten with other bytes or made unreadable
by permissions. Each case must end in one message naming the file, what is wrong with it and what to do
(the caller's `advice`), never in a bare `JSONDecodeError`, a `UnicodeDecodeError` without a file name, a
`PermissionError` traceback, or an `AttributeError` further on because a list stood where an object was
expected. `read_object` is that one reader; it imports nothing of the package, so every layer may use it.
"""
import json

__all__ = ["JsonFileError", "read_object"]

# How a JSON value that is not an object is named in messages.
_JSON_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false",
               type(None): "null"}


class JsonFileError(ValueError):
    """A JSON file that cannot be read, is not JSON, or is not a JSON object; the message names the file.

    A ValueError, so every command line that turns ValueError into one `error:` line (exit status 2)
    reports it without a traceback.
    """


def read_object(path: str, advice: str) -> dict:
    """The JSON object in the file at `path`.

    Args:
      path: the file; a missing file raises FileNotFoundError unchanged (callers say what its absence
        means, e.g. "not the work directory of a finished run").
      advice: what the user should do about a damaged file, appended to the message (a full sentence
        without the final period, e.g. "re-export the model").

    Raises:
      JsonFileError: the file cannot be read (permissions, a directory, an I/O error), is not UTF-8, is
        empty, is not valid JSON, or holds a JSON value other than an object.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise JsonFileError(f"{path}: cannot be read ({error.strerror or error}); {advice}") from error
    problem, value = _problem(raw)
    if problem:
        raise JsonFileError(f"{path}: {problem}; {advice}")
    return value


def _problem(raw: bytes) -> tuple[str | None, dict | None]:
    """(what is wrong with the bytes of a file meant to hold one JSON object or None, the object)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return (f"not text (byte {error.start} is {raw[error.start:error.start + 1]!r}, not UTF-8), so not "
                "JSON: the file is damaged or is not what its name says"), None
    if not text.strip():
        return "empty (0 bytes of JSON): the file is damaged, e.g. written when the disk was full", None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return f"not valid JSON ({error}): the file is damaged or was edited by hand", None
    if not isinstance(value, dict):
        return f"holds {_JSON_KINDS.get(type(value), type(value).__name__)}, not a JSON object", None
    return None, value
