"""SMS keywords a guest texts us: opt out (STOP), opt back in (START), ask for help (HELP).

The words are the carriers' and Twilio's defaults (CTIA; Twilio Advanced Opt-Out):

=====  =====================================================  ==============================
kind   words (the whole text, any case)                       effect
=====  =====================================================  ==============================
stop   STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT          the number is suppressed on SMS
                                                              (and calls) for the organization
start  START, UNSTOP, YES                                     the STOP suppression is lifted
help   HELP, INFO                                             the organization's help text is
                                                              sent back
=====  =====================================================  ==============================

The whole text must be the keyword (trimmed, any case, surrounding punctuation dropped), as
Twilio and the carriers match it: guests answer an invitation in sentences, and "Cancel my
plus-one" or "Yes, we'll be there" must not opt anyone out or in. When the provider has
already classified the text (Twilio's ``OptOutType``: STOP, START or HELP), its verdict wins.
Pure: no I/O.
"""

from __future__ import annotations

from enum import StrEnum


class SmsKeyword(StrEnum):
    """What a keyword asks for."""

    STOP = "stop"
    START = "start"
    HELP = "help"


STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})
_PUNCTUATION = ".,;:!?¡¿\"'()[]-*"


def classify(text: str | None, *, opt_out_type: str | None = None) -> SmsKeyword | None:
    """The keyword ``text`` is, or the provider's ``opt_out_type`` when it gave one
    (``None``: an ordinary message)."""
    verdict = (opt_out_type or "").strip().upper()
    if verdict in ("STOP", "START", "HELP"):
        return SmsKeyword(verdict.lower())
    word = (text or "").strip().strip(_PUNCTUATION).strip().upper()
    if word in STOP_WORDS:
        return SmsKeyword.STOP
    if word in START_WORDS:
        return SmsKeyword.START
    if word in HELP_WORDS:
        return SmsKeyword.HELP
    return None


def default_help_text(organization_name: str) -> str:
    """The reply to HELP when the organization set no ``sms_help_text``."""
    return f"{organization_name}: reply STOP to unsubscribe, START to resubscribe."
