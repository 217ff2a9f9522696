"""One-line, bounded descriptions of library exceptions, for user-facing messages."""
from __future__ import annotations

# words that mark the useful line of a long (ffmpeg) error dump
_USEFUL = ("invalid data", "moov atom", "error", "not found", "truncat", "corrupt")


def short_error(err: BaseException, limit: int = 200) -> str:
    """The most useful line of ``str(err)`` (one mentioning an error, else the first),
    whitespace collapsed and cut to ``limit`` characters."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    for ln in lines:
        if any(w in ln.lower() for w in _USEFUL):
            text = ln
            break
    else:
        text = lines[0] if lines else type(err).__name__
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
