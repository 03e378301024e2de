"""What a new name, label or tag may not look like.

``cas.refs.check_name`` and ``check_label`` say what can be stored and looked
up. The rules here say what may be *created*: a name that passes them can not
be read as a hash, hide characters, imitate another name in a listing, or
become another file on Windows. Names already in a store that break them stay
readable; only creating them is refused (see ``cas.refs.check_new_name``).

The script rule is deliberately simple (Unicode's UTS #39 "highly
restrictive" level, applied per ``/``-separated component, with each letter's
script read from its Unicode name): a component that is wholly in another
script (Cyrillic ``модель``) is allowed, one mixing Latin and Cyrillic letters
(``mоdel``) is not. Whole-script look-alikes (a Cyrillic word that happens to
look Latin throughout) are not detected.
"""

from __future__ import annotations

import re
import unicodedata

from cas.errors import InvalidNameError
from cas.objects import is_device_name

# As many hex digits as a hash prefix may have (hashing.MIN_PREFIX = 6), in
# either case: upper case does not resolve as a prefix, but reads as one.
_HEXISH = re.compile(r"[0-9a-fA-F]{6,}")
# Windows device names: reserved as a file name with or without an extension.
# Control, format (bidi overrides, zero-width), private-use, surrogate,
# unassigned code points and every kind of space or line separator.
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zs", "Zl", "Zp"})
# Letters and marks that draw nothing (Unicode's Default_Ignorable_Code_Point
# outside Cf), and letters drawn like the separators '/', '|' and '!'.
_BLANK = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164, 0xFFA0]
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0100, 0xE01F0))
)
_SEPARATOR_LOOKALIKES = frozenset([0x01C0, 0x01C1, 0x01C2, 0x01C3, 0x2571, 0x2572])
# Scripts that may share one component (UTS #39 "highly restrictive").
_SCRIPT_MIXES = (
    frozenset({"LATIN", "CJK", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "CJK", "BOPOMOFO"}),
    frozenset({"LATIN", "CJK", "HANGUL"}),
)
_SCRIPT_ALIASES = {"IDEOGRAPHIC": "CJK"}


def check_hashlike(name: str) -> None:
    """Refuse a name that could be read as a hash or hash prefix (6 or more hex digits)."""
    if _HEXISH.fullmatch(name):
        raise InvalidNameError(
            f"name {name!r} could be read as a hash or hash prefix; add a character other than "
            f"0-9 and a-f (e.g. {'n-' + name!r})"
        )


def check_component(part: str, text: str, kind: str) -> None:
    """Refuse a name component (or a whole label or tag) that looks like something else."""
    if is_device_name(part):
        raise InvalidNameError(f"{kind} {text!r}: {part!r} is a reserved device name on Windows")
    if part.endswith((".", " ")):
        raise InvalidNameError(f"{kind} {text!r}: a component must not end with '.' or a space (Windows drops them)")
    if not part.isascii():
        _check_unicode(part, text, kind)


def _check_unicode(part: str, text: str, kind: str) -> None:
    scripts: set[str] = set()
    zeros: set[int] = set()
    for i, ch in enumerate(part):
        if ch.isascii():
            if ch.isalpha():
                scripts.add("LATIN")
            elif ch.isdigit():
                zeros.add(0x30)
            continue
        cat = unicodedata.category(ch)
        code = ord(ch)
        if cat in _INVISIBLE or code in _BLANK:
            what = (
                "a lone surrogate (not valid Unicode text)" if cat == "Cs" else "an invisible or formatting character"
            )
            raise InvalidNameError(f"{kind} {text!r} contains {what}, U+{code:04X}")
        if cat[0] == "M":
            if i == 0:
                raise InvalidNameError(f"{kind} {text!r}: a component must not begin with a combining mark")
            continue
        if (cat[0] not in "LN" and cat not in ("So", "Sc")) or code in _SEPARATOR_LOOKALIKES:
            raise InvalidNameError(
                f"{kind} {text!r} contains U+{code:04X} ({unicodedata.name(ch, '?').lower()}): outside ASCII, "
                "only letters, digits and symbols such as emoji may be used (punctuation can imitate '-', '/', '.')"
            )
        if cat == "Nd":
            zeros.add(code - unicodedata.decimal(ch))
        elif cat[0] == "L" and cat != "Lm":
            word = re.split("[ -]", unicodedata.name(ch, "?"), maxsplit=1)[0]
            scripts.add(_SCRIPT_ALIASES.get(word, word))
    if not unicodedata.is_normalized("NFKC", part):
        nfc = unicodedata.normalize("NFC", part)
        if nfc != part:
            raise InvalidNameError(f"{kind} {text!r} is not in Unicode NFC form; write it as {nfc!r}")
        raise InvalidNameError(
            f"{kind} {text!r} contains compatibility characters (full-width, ligatures, superscripts...); "
            f"write it as {unicodedata.normalize('NFKC', part)!r}"
        )
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _SCRIPT_MIXES):
        raise InvalidNameError(
            f"{kind} {text!r}: {part!r} mixes letters of the scripts {', '.join(sorted(scripts))}, "
            "so it can imitate another name; keep one script per '/'-separated component"
        )
    if len(zeros) > 1:
        raise InvalidNameError(f"{kind} {text!r}: {part!r} mixes digits of several numbering systems")


def fold(text: str) -> str:
    """The form two names share when a case-insensitive, normalizing disk (macOS, Windows) sees one file."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
