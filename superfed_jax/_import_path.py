"""Finding a user's own object by its import path 'package.module:name' (a family class, an optimiser
factory), with one error message that names the config field, the value and what is allowed."""
import importlib


def load(field: str, value: str, allowed: str, noun: str = "name"):
    """The object that `value`, 'package.module:name', names; `field` and `allowed` (e.g. "allowed are
    ['sgd'] or an import path 'package.module:function'") make the message of the ValueError raised when
    the path is malformed, its module cannot be imported or has no such name; `noun` is what a registered
    value is ("not a registered family")."""
    module_name, colon, name = str(value).partition(":")
    if not colon or not module_name or not name:
        raise ValueError(f"{field}={value!r}: not a registered {noun}; {allowed}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{field}={value!r}: cannot import {module_name!r} ({error}); {allowed}") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"{field}={value!r}: module {module_name!r} has no {name!r}; {allowed}") from None
