"""The status badge: an SVG in the flat style of the shields.io badges.

Two boxes, a grey label and a coloured message, each as wide as its text in
11 px Verdana (the widths below are Verdana's advance widths, so a badge sits
beside shields.io's ones without a seam). The text is the bot's own status
word, so it is escaped, and characters XML cannot carry are dropped.
"""

import html
import re
import unicodedata
from dataclasses import dataclass

# Advance widths of Verdana's printable ASCII characters, U+0020 to U+007E,
# in thousandths of an em.
_ASCII_WIDTHS = (
    351, 393, 458, 818, 635, 1076, 726, 268, 454, 454, 635, 818, 363, 454,
    363, 454, 635, 635, 635, 635, 635, 635, 635, 635, 635, 635, 454, 454,
    818, 818, 818, 545, 1000, 683, 685, 698, 770, 632, 574, 775, 751, 420,
    454, 692, 556, 842, 748, 787, 603, 787, 695, 683, 616, 731, 683, 988,
    685, 615, 685, 454, 454, 454, 818, 635, 635, 600, 623, 520, 623, 595,
    351, 623, 632, 274, 344, 591, 274, 972, 632, 606, 623, 623, 426, 520,
    394, 632, 591, 818, 591, 591, 525, 634, 454, 634, 818,
)  # fmt: skip
# Anything else: a full em for wide (CJK, emoji) characters, nothing for
# combining marks and format characters, a digit's width for the rest.
_WIDE_WIDTH = 1000
_OTHER_WIDTH = 635
FONT_SIZE_PX = 11
# Each box has this much room either side of its text, as shields.io's have.
PADDING_PX = 5
HEIGHT_PX = 20
MAX_TEXT_LENGTH = 64

# shields.io's named colours.
GREEN = "#4c1"
YELLOW = "#dfb317"
ORANGE = "#fe7d37"
RED = "#e05d44"
GREY = "#9f9f9f"
BLUE = "#007ec6"
LABEL_GREY = "#555"

# The status page's words and tones (static/js/format.js), as colours.
STATUS_COLOURS = {
    "online": GREEN,
    "conectado": GREEN,
    "connected": GREEN,
    "idle": YELLOW,
    "ausente": YELLOW,
    "dnd": RED,
    "offline": GREY,
    "desconectado": GREY,
    "disconnected": GREY,
    "invisible": GREY,
}
# Latency colours: under 200 ms is good for a Discord gateway, past a second
# the bot feels slow to its users.
LATENCY_COLOURS = ((200.0, GREEN), (500.0, YELLOW), (1000.0, ORANGE))

# XML 1.0 cannot carry these at all, even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Badge:
    label: str
    message: str
    colour: str


def status_badge(label: str, word: str | None, stale: bool) -> Badge:
    """The bot's status word in its colour; `silent` once it went stale."""
    if word is None:
        return Badge(label, "no data", GREY)
    if stale:
        return Badge(label, "silent", RED)
    shown = word.strip() or word
    return Badge(label, shown, STATUS_COLOURS.get(shown.lower(), BLUE))


def latency_badge(label: str, latency_ms: float | None, stale: bool) -> Badge:
    """The bot's latency, coloured by how long it is."""
    if latency_ms is None:
        return Badge(label, "no data", GREY)
    if stale:
        return Badge(label, "silent", RED)
    colour = next(
        (colour for bound, colour in LATENCY_COLOURS if latency_ms < bound), RED
    )
    return Badge(label, format_latency(latency_ms), colour)


def format_latency(latency_ms: float) -> str:
    """45 ms, 4.5 ms, 1.25 s: as many digits as a glance needs."""
    if latency_ms < 9.95:
        return f"{latency_ms:.1f} ms"
    if latency_ms < 999.5:
        return f"{latency_ms:.0f} ms"
    return f"{latency_ms / 1000:.3g} s"


def clean_text(text: str) -> str:
    """`text` on one line, without what XML cannot hold, at most 64 characters."""
    text = _NOT_XML.sub("", " ".join(text.split()))
    if len(text) > MAX_TEXT_LENGTH:
        text = text[: MAX_TEXT_LENGTH - 1] + "\u2026"
    return text


def text_width(text: str) -> float:
    """The width of `text` in pixels at 11 px Verdana, approximately."""
    thousandths = 0
    for char in text:
        code = ord(char)
        if 0x20 <= code <= 0x7E:
            thousandths += _ASCII_WIDTHS[code - 0x20]
        elif unicodedata.category(char) in {"Mn", "Me", "Cf"}:
            continue
        elif unicodedata.east_asian_width(char) in {"W", "F"}:
            thousandths += _WIDE_WIDTH
        else:
            thousandths += _OTHER_WIDTH
    return thousandths * FONT_SIZE_PX / 1000


def render(badge: Badge) -> str:
    """The badge as an SVG document."""
    label = clean_text(badge.label)
    message = clean_text(badge.message)
    label_text = round(text_width(label))
    message_text = round(text_width(message))
    label_box = label_text + 2 * PADDING_PX
    message_box = message_text + 2 * PADDING_PX
    width = label_box + message_box
    title = _escape(f"{label}: {message}")

    # The text is drawn at ten times the size and scaled down, which places
    # it to a tenth of a pixel; textLength makes it fill its box whatever
    # font the viewer has.
    def text(content: str, centre: float, length: int) -> str:
        x = round(centre * 10)
        escaped = _escape(content)
        return (
            f'<text aria-hidden="true" x="{x}" y="150" fill="#010101" '
            f'fill-opacity=".3" transform="scale(.1)" textLength="{length * 10}">'
            f"{escaped}</text>"
            f'<text x="{x}" y="140" transform="scale(.1)" fill="#fff" '
            f'textLength="{length * 10}">{escaped}</text>'
        )

    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{HEIGHT_PX}" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        '<linearGradient id="s" x2="0" y2="100%">'
        '<stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        '<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="{HEIGHT_PX}" rx="3" '
        'fill="#fff"/></clipPath>'
        '<g clip-path="url(#r)">'
        f'<rect width="{label_box}" height="{HEIGHT_PX}" fill="{LABEL_GREY}"/>'
        f'<rect x="{label_box}" width="{message_box}" height="{HEIGHT_PX}" '
        f'fill="{badge.colour}"/>'
        f'<rect width="{width}" height="{HEIGHT_PX}" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" '
        'font-family="Verdana,Geneva,DejaVu Sans,sans-serif" '
        'text-rendering="geometricPrecision" font-size="110">'
        f"{text(label, label_box / 2, label_text)}"
        f"{text(message, label_box + message_box / 2, message_text)}"
        "</g></svg>"
    )


def _escape(text: str) -> str:
    # Quotes too: the same text goes into attributes.
    return html.escape(text, quote=True)
