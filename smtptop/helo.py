"""HELO/EHLO names of the kinds spambots send, judged apart from the detector.

RFC 5321 wants an FQDN or an address literal; CBL and Haraka's helo.checks list what spambots
send instead.  Most kinds are plain rules.  "Random-looking" is measured: a letter model of
real host names (Witten-Bell interpolated 4-grams with start and end markers, trained on
``data/helo_names.txt``) scores each run of letters against the letters' own frequencies, so
that a string of common letters in an order no name has scores low.  The threshold is set
so that FALSE_ALARM of real names the model has not seen fall below it (5-fold
cross-validation on the training names, :func:`fit`); ``python bench/helo_names.py`` measures
the rest.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

BIG_COMPANIES = (
    "gmail.com", "google.com", "yahoo.com", "outlook.com", "hotmail.com", "live.com",
    "microsoft.com", "apple.com", "icloud.com", "amazon.com", "paypal.com", "dhl.com",
    "fedex.com", "ups.com", "ebay.com", "facebook.com", "aol.com", "yandex.ru", "mail.ru",
    "docusign.net", "wetransfer.com", "aexp.com", "chase.com", "wellsfargo.com",
)  # fmt: skip
ORDER = 4  # letters of context, the predicted one included
MIN_LETTERS = 6  # fewer letters are too little to judge
MIN_RUN = 2  # single letters (initials, model suffixes like the L of HL-L2350DW) say nothing
INITIAL = 0.05  # prior that a run is an initial glued to a name (kbrandt)
MIN_WORD = 4  # letters the name after such an initial has at least
FALSE_ALARM = 0.02  # share of held-out real names the threshold may call random
# Both from fit(training_words(), FALSE_ALARM); tests/test_helo.py checks they still match:
CENTRE = 0.5798  # median score per letter of held-out names
THRESHOLD = -3.2148  # FALSE_ALARM quantile of held-out names' (score - CENTRE) * sqrt(letters)
SECTIONS = ("prefix", "suffix", "first", "surname", "word")

_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_EMBEDDED_IP = re.compile(r"\d{1,3}[-.]\d{1,3}[-.]\d{1,3}[-.]\d{1,3}")
_TOKEN = re.compile(r"[a-z0-9]+")
_LETTERS = re.compile(r"[a-z]+")
_MIXED_LETTERS = re.compile(r"[A-Za-z]+")
# A MAC address or serial at a token's end: HP's NPI3F4A2B, Brother's BRN30055C6A8B2F, android-<hex>
_HEX_TAIL = re.compile(r"[0-9a-f]*[0-9][0-9a-f]*$")
# Names Windows gives by itself: random on purpose, and normal for a fresh install
_WINDOWS_DEFAULT = re.compile(r"desktop-[a-z0-9]{7}|laptop-[a-z0-9]{8}|win-[a-z0-9]{11}")
_HUMP = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")  # MacBook: Mac, Book; TrueNAS: True, NAS
_START, _END = "^", "$"
_SYMBOLS = "abcdefghijklmnopqrstuvwxyz" + _END
_LOG_INITIAL, _LOG_WORD = math.log(INITIAL), math.log(1 - INITIAL)


def helo_anomalies(helo: str, client_ip: str, *, direct_to_mx: bool) -> list[str]:
    """The kinds of bad HELO/EHLO name this is.  "No dot" counts only for a host that talks
    straight to foreign MX servers: through a smarthost or the office's own server, Outlook
    always sends the PC's NetBIOS name, and that is normal."""
    name = helo.strip().lower()
    if not name:
        return []
    found = []
    if name in ("localhost", "localhost.localdomain") or name.startswith("localhost."):
        found.append("localhost")
    if _DOTTED_QUAD.fullmatch(name):
        found.append("bare IP address")
    elif name.startswith("[") and name.endswith("]"):
        literal = name[1:-1].removeprefix("ipv6:")
        if literal != client_ip.lower():
            found.append("address literal that is not the host's")
    elif "." not in name and direct_to_mx:
        found.append("no dot")
    if any(name == d or name.endswith("." + d) for d in BIG_COMPANIES):
        found.append("a big company's domain")
    if _EMBEDDED_IP.search(name) and not _DOTTED_QUAD.fullmatch(name.strip("[]")):
        found.append("an ISP's dynamic-address name")
    if not name.startswith("[") and random_looking(helo.strip().split(".", 1)[0]):
        found.append("random-looking")
    return found


def random_looking(label: str) -> bool:
    """Whether one DNS label looks generated rather than named by a person."""
    judged = letter_runs(label)
    if judged is None:
        return False
    if _case_scrambled(label):
        return True
    total, count = _model().score(judged)
    return total - CENTRE * count < THRESHOLD * math.sqrt(count)


def letter_runs(label: str) -> list[str] | None:
    """The runs of letters the model judges, or None when the label is not to be judged:
    a name Windows gives by itself, or fewer than MIN_LETTERS letters once digits and
    hexadecimal serials are set aside."""
    lower = label.lower()
    if _WINDOWS_DEFAULT.fullmatch(lower):
        return None
    runs, letters = [], 0
    for token in _TOKEN.findall(lower):
        serial = _HEX_TAIL.search(token)
        if serial and len(serial.group()) >= 6:
            token = token[: serial.start()]
        for run in _LETTERS.findall(token):
            letters += len(run)
            if len(run) >= MIN_RUN:
                runs.append(run)
    return runs if letters >= MIN_LETTERS else None


def _case_scrambled(label: str) -> bool:
    """People write a name in lower case, upper case, Capitalised or CamelCase (MacBook,
    iPhone, TrueNAS); case that flips every letter or two (vKdVzAhG) is a generator's."""
    short = 0
    for run in _MIXED_LETTERS.findall(label):
        if run.islower() or run.isupper():
            continue
        humps = _HUMP.findall(run)
        if len(humps[0]) == 1 and humps[0].islower():
            humps = humps[1:]  # iPhone, eMachines
        short += sum(1 for hump in humps if len(hump) <= 2)
    return short >= 3


def training_words() -> dict[str, list[str]]:
    """The data file's words by section (prefix, suffix, first, surname, word)."""
    words: dict[str, list[str]] = {section: [] for section in SECTIONS}
    section = None
    text = resources.files("smtptop").joinpath("data", "helo_names.txt").read_text("utf-8")
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section is not None:
            words[section] += line.split()
    return words


def training_names(words: Mapping[str, Sequence[str]]) -> list[str]:
    """Host names as offices write them: every word alone, and every other first name with a
    prefix or suffix glued on (pcanna, annapc).  Hyphenated forms add nothing (the model
    judges each run of letters), nor do glued initials (LetterModel.score reads those)."""
    names = [word for section in SECTIONS for word in words[section]]
    first, prefixes, suffixes = words["first"], words["prefix"], words["suffix"]
    for i, name in enumerate(first):
        if i % 4 == 0:
            names.append(prefixes[i // 4 % len(prefixes)] + name)
        elif i % 4 == 1:
            names.append(name + suffixes[i // 4 % len(suffixes)])
    return names


@dataclass(frozen=True, slots=True)
class LetterModel:
    """Log-ratios of P(letter | the ORDER - 1 before it) to P(letter), for the n-grams seen
    in training (every order, markers included); an unseen one backs off to its shorter
    context, at the cost the context leaves for unseen letters."""

    ratio: dict[str, float]
    backoff: dict[str, float]

    @classmethod
    def train(cls, names: Iterable[str]) -> LetterModel:
        """Witten-Bell interpolation: a context seen followed by T different letters in C
        counts gives unseen letters T / (C + T) of its mass."""
        pad = _START * (ORDER - 1)
        top: Counter[str] = Counter()
        for name in names:
            for run in _LETTERS.findall(name.lower()):
                padded = pad + run + _END
                top.update(padded[i - ORDER : i] for i in range(ORDER, len(padded) + 1))
        counts: list[Counter[str]] = [Counter() for _ in range(ORDER + 1)]
        counts[ORDER] = top
        for gram, count in top.items():
            for order in range(1, ORDER):
                counts[order][gram[-order:]] += count
        total = sum(counts[1].values())
        prob = {s: math.log((counts[1][s] + 1) / (total + len(_SYMBOLS))) for s in _SYMBOLS}
        unigram = dict(prob)
        ratio: dict[str, float] = {}
        backoff: dict[str, float] = {}
        for order in range(2, ORDER + 1):
            seen: defaultdict[str, int] = defaultdict(int)
            kinds: defaultdict[str, int] = defaultdict(int)
            for gram, count in counts[order].items():
                seen[gram[:-1]] += count
                kinds[gram[:-1]] += 1
            for context, count in seen.items():
                backoff[context] = math.log(kinds[context] / (count + kinds[context]))
            for gram, count in counts[order].items():
                context = gram[:-1]
                shorter = math.exp(prob[gram[1:]])
                p = (count + kinds[context] * shorter) / (seen[context] + kinds[context])
                prob[gram] = math.log(p)
                ratio[gram] = prob[gram] - unigram[gram[-1]]
        return cls(ratio, backoff)

    def score(self, runs: Iterable[str]) -> tuple[float, int]:
        """Summed log-ratio over the runs' letters and end markers, and how many there are.
        A run may also be an initial glued to a name (kbrandt, jsmith): with prior INITIAL it
        is read as any letter (as likely as letters are) and a word, and the two readings'
        probabilities add, so a random string gains little from the second one."""
        total, count = 0.0, 0
        for run in runs:
            whole = self._ratio(run)
            if len(run) > MIN_WORD:
                whole = _log_add(whole + _LOG_WORD, self._ratio(run[1:]) + _LOG_INITIAL)
            total += whole
            count += len(run) + 1
        return total, count

    def _ratio(self, run: str) -> float:
        padded = _START * (ORDER - 1) + run + _END
        ratio, backoff = self.ratio, self.backoff
        total = 0.0
        for i in range(ORDER, len(padded) + 1):
            gram = padded[i - ORDER : i]
            while gram not in ratio and len(gram) > 1:
                total += backoff.get(gram[:-1], 0.0)
                gram = gram[1:]
            total += ratio.get(gram, 0.0)
        return total


def _log_add(a: float, b: float) -> float:
    high = max(a, b)
    return high + math.log(math.exp(a - high) + math.exp(b - high))


def fit(
    words: Mapping[str, Sequence[str]], false_alarm: float, folds: int = 5, seed: int = 1
) -> tuple[float, float]:
    """CENTRE and THRESHOLD from cross-validation: each fold's names, scored by a model
    trained on the other folds (prefixes and suffixes always in), stand for real names the
    data file does not hold."""
    held_out: list[tuple[float, int]] = []
    for fold in range(folds):
        kept: dict[str, list[str]] = {}
        tested: list[str] = []
        for section in SECTIONS:
            shuffled = sorted(words[section])
            random.Random(f"{seed}:{section}").shuffle(shuffled)
            if section in ("prefix", "suffix"):
                kept[section] = shuffled
                continue
            kept[section] = [w for i, w in enumerate(shuffled) if i % folds != fold]
            tested += [w for i, w in enumerate(shuffled) if i % folds == fold]
        model = LetterModel.train(training_names(kept))
        for word in tested:
            runs = letter_runs(word)
            if runs:
                held_out.append(model.score(runs))
    centre = statistics.median(total / count for total, count in held_out)
    scores = sorted((total - centre * count) / math.sqrt(count) for total, count in held_out)
    return centre, scores[int(false_alarm * len(scores))]


@cache
def _model() -> LetterModel:
    return LetterModel.train(training_names(training_words()))
