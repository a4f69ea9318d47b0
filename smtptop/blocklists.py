"""Name the blocklist or reputation system behind a server's refusal.

A refusal that names a blocklist is the strongest evidence an office has: the office's public
IP is listed, and the LAN host whose session drew the refusal is the likely spambot.  Wording
changes between providers and over the years, so this matches list host names, URLs and
provider codes, never whole sentences (research and sources: shared/notes/detection.md).

Unlike Zeek's ``blocklists.zeek`` it looks at 421 deferrals too (Gmail 4.7.0/4.7.28 and Yahoo
TSS04 are 421s), matches the whole multi-line reply, and knows host names without a URL.
A generic phrase ("blocked using", "listed in", "blacklist", ...) gives one generic hit only
when no list is named.  Greylisting, unknown users, relay denial and plain rate limits give
no hit.  Pure: stdlib only.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_I = re.IGNORECASE


@dataclass(frozen=True, slots=True)
class BlocklistHit:
    """One list or reputation policy named by a 4xx/5xx reply."""

    name: str  # e.g. "Spamhaus ZEN", "Microsoft block list (S3140)", "generic blocklist"
    provider: str  # who runs the list or the refusing server: "Spamhaus", "Google", ...
    permanent: bool  # 5xx (True) or 4xx (False)
    evidence: str  # the token(s) that matched, as found in the text
    listed_ip: str | None  # the IP address the reply names, if any


@dataclass(frozen=True, slots=True)
class _Rule:
    """``name`` may hold ``{code}``: the upper-cased ``code`` group of the match."""

    name: str
    provider: str
    pattern: re.Pattern[str]
    also: re.Pattern[str] | None = None  # a second token that must be present too
    context: re.Pattern[str] | None = None  # must be present too: who sent the reply
    unless: str = ""  # skip when the name of an earlier hit matches this regex


def _rule(
    name: str,
    provider: str,
    pattern: str,
    also: str = "",
    unless: str = "",
    context: str = "",
    flags: int = _I,
) -> _Rule:
    return _Rule(
        name,
        provider,
        re.compile(pattern, flags),
        re.compile(also, _I) if also else None,
        re.compile(context, _I) if context else None,
        unless,
    )


_CODE = r"(?<![\d.])"  # an enhanced status code is not part of a longer number
_END = r"(?![\d.]*\d)"
_GOOGLE = r"gsmtp|google\.com"  # every Gmail reply ends "- gsmtp" or links support.google.com
_CODED = r"^(?:Yahoo|Comcast) Spamhaus"  # a provider's own code for a Spamhaus listing
_SPAMHAUS_LISTS = {
    "zen": "Spamhaus ZEN",
    "sbl-xbl": "Spamhaus SBL-XBL",
    "xbl": "Spamhaus XBL",
    "pbl": "Spamhaus PBL",
    "sbl": "Spamhaus SBL",
    "css": "Spamhaus CSS",
    "dbl": "Spamhaus DBL",
    "zrd": "Spamhaus ZRD",
    "authbl": "Spamhaus AuthBL",
}

# Specific rules, most specific first: an earlier hit can suppress a later fallback (unless=).
_RULES: tuple[_Rule, ...] = (
    # Provider codes: these name both the refusing provider and, often, the list.
    _rule("Yahoo Spamhaus (BL21)", "Yahoo", r"\bBL21\b", flags=0),
    _rule("Yahoo Spamhaus XBL (BL23)", "Yahoo", r"\bBL23\b", flags=0),
    _rule("Yahoo blocklist ({code})", "Yahoo", r"\[(?P<code>BL2\d)\]", unless="Yahoo", flags=0),
    _rule("Yahoo deferral ({code})", "Yahoo", r"\b(?P<code>TSS?0\d)\b", flags=0),
    _rule("Comcast Spamhaus ZEN (BL000001)", "Comcast", r"\bBL000001\b", flags=0),
    _rule("Comcast Cloudmark CSI (BL000010)", "Comcast", r"\bBL000010\b", flags=0),
    _rule("Comcast SenderScore (BL000100)", "Comcast", r"\bBL000100\b", flags=0),
    _rule("Comcast dynamic IP (ES000010)", "Comcast", r"\bES000010\b", flags=0),
    _rule(
        "Comcast block list ({code})",
        "Comcast",
        r"\b(?P<code>BL[01]{6})\b",
        unless="Comcast",
        flags=0,
    ),
    _rule("Microsoft block list ({code})", "Microsoft", r"\b(?P<code>S3140|S3150)\b", flags=0),
    _rule("Microsoft block list ({code})", "Microsoft", r"\((?P<code>S3\d{3})\)", flags=0),
    _rule("Microsoft block list ({code})", "Microsoft", r"\b(?P<code>SC-00[1-4])\b", flags=0),
    _rule("Microsoft dynamic IP ({code})", "Microsoft", r"\b(?P<code>DY-00[12])\b", flags=0),
    _rule("Microsoft policy block ({code})", "Microsoft", r"\b(?P<code>OU-00[12])\b", flags=0),
    _rule(
        "Microsoft banned sending IP ({code})",
        "Microsoft",
        _CODE + r"(?P<code>5\.7\.6(?:0[6-9]|[1-4]\d))" + _END,
    ),
    _rule("Microsoft IP reputation (5.7.708)", "Microsoft", _CODE + r"5\.7\.708" + _END),
    _rule("AOL block list ({code})", "Yahoo", r"\b(?P<code>RLY:B[L1-9])\b", flags=0),
    _rule("AOL dynamic IP ({code})", "Yahoo", r"\b(?P<code>DYN:T1)\b", flags=0),
    _rule("Gmail rate limit (4.7.28)", "Google", _CODE + r"4\.7\.28" + _END),
    _rule(
        "Gmail reputation (4.7.0)",
        "Google",
        _CODE + r"4\.7\.0" + _END,
        also=r"reputation|unsolicited mail originating from your IP",
        context=_GOOGLE,
    ),
    _rule(
        "Gmail unsolicited mail (5.7.1)",
        "Google",
        _CODE + r"5\.7\.1" + _END,
        also=r"likely unsolicited mail|UnsolicitedMessageError",
        context=_GOOGLE,
    ),
    _rule(
        "Gmail IP not authorized to send directly (5.7.1)",
        "Google",
        _CODE + r"5\.7\.1" + _END,
        also=r"not authorized to\s+send email directly|NotAuthorizedError",
        context=_GOOGLE,
    ),
    _rule(
        "AT&T",
        "AT&T",
        r"ou=rblmx|DNSBL:ATTRBL|abuse_rbl@abuse-att\.net|rbl\.att\.net",
    ),
    # Lists named by host name, URL or brand (a provider's code that names the list wins).
    _rule(
        "{code}",
        "Spamhaus",
        r"(?<![\w-])(?P<code>sbl-xbl|zen|xbl|pbl|sbl|css|dbl|zrd|authbl)\.(?:[\w-]+\.)*?"
        r"spamhaus\.(?:org|net)",
        unless=_CODED,
    ),
    _rule("{code}", "Spamhaus", r"spamhaus\.org/(?P<code>sbl|pbl|xbl|css|dbl)\b", unless=_CODED),
    _rule(
        "{code}",
        "Spamhaus",
        r"\bSpamhaus(?:'s)?\s+(?P<code>ZEN|XBL|PBL|SBL|CSS|DBL)\b",
        unless=_CODED,
    ),
    _rule("{code}", "Spamhaus", r"spamhaus\.org/query/(?P<code>dbl)\b", unless=_CODED),
    _rule("Spamhaus SBL", "Spamhaus", r"\bSBL\d{3,}\b", unless=_CODED, flags=0),
    _rule("Spamhaus DBL", "Spamhaus", r"helo domain\b[^\n]{0,80}?\bspamhaus", unless=_CODED),
    _rule("CBL (abuseat)", "Spamhaus", r"cbl\.abuseat\.org|abuseat\.org|\bCBL\b"),
    _rule("SpamCop", "SpamCop", r"bl\.spamcop\.net|spamcop\.net/\w+|\bspamcop\b"),
    _rule(
        "Barracuda BRBL",
        "Barracuda",
        r"b\.barracudacentral\.org|barracudacentral\.(?:org|com)|\bBRBL\b"
        r"|barracudanetworks\.com/reputation|Barracuda Reputation",
    ),
    _rule("SORBS", "SORBS", r"\bsorbs\b"),
    _rule("UCEPROTECT", "UCEPROTECT", r"uceprotect"),
    _rule("PSBL", "PSBL", r"psbl\.surriel\.com|\bPSBL\b"),
    _rule("Cloudmark CSI", "Cloudmark", r"csi\.cloudmark\.com|\bcloudmark\s+CSI\b"),
    _rule("SenderScore", "Validity", r"senderscore"),
    _rule(
        "Trend Micro ERS",
        "Trend Micro",
        r"Trend\s?Micro\s+(?:Email\s+)?Reputation|Email Reputation (?:Service|database)"
        r"|mail-abuse\.(?:com|org)",
    ),
    _rule("Proofpoint", "Proofpoint", r"ipcheck\.proofpoint\.com|proofpoint\.com/\S*ip"),
    _rule(
        "Cisco reputation (SenderBase)",
        "Cisco",
        r"senderbase\.org|talosintelligence\.com|sending MTA's poor reputation",
    ),
    _rule("Sophos", "Sophos", r"sophos\.com/(?:security|en-us/threat-center)"),
    _rule("Mailspike", "Mailspike", r"mailspike"),
    _rule("SpamRATS", "SpamRATS", r"spamrats"),
    _rule("Invaluement", "Invaluement", r"invaluement"),
    _rule("NiX Spam", "manitu", r"ix\.dnsbl\.manitu\.net|nixspam"),
    _rule("Hostkarma", "Junk Email Filter", r"hostkarma|junkemailfilter\.com"),
    _rule("Abusix", "Abusix", r"abusix"),
    _rule("SURBL", "SURBL", r"\bsurbl\b"),
    _rule("URIBL", "URIBL", r"\buribl\b"),
    _rule("ImproWare", "ImproWare", r"antispam\.imp\.ch"),
    # Fallbacks: a provider named without the list.
    _rule("Spamhaus", "Spamhaus", r"spamhaus", unless="Spamhaus|CBL"),
    _rule(
        "Microsoft block list ({code})",
        "Microsoft",
        r"\b(?P<code>AS1601\d{4})\b",
        unless="Microsoft|Spamhaus",
        flags=0,
    ),
)

_GENERIC = re.compile(
    r"blocked\s+using|\blisted\s+(?:in|on|at|by)\b|\bblack[ -]?list(?:ed)?\b"
    r"|\bblock[ -]?list(?:ed)?\b|\bdeny[ -]?list(?:ed)?\b|\bRBL\b|\bDNSBL\b"
    r"|\b(?:poor|low|bad)\s+(?:\w+\s+){0,2}reputation\b|\bIP\s+reputation\b",
    _I,
)
_NOT_LISTED = re.compile(r"\bnot\s+listed\b", _I)
_DYNAMIC = re.compile(
    r"\bdynamic(?:ally)?[- ](?:assigned[- ])?(?:ip|address|range|space|pool|host)s?\b"
    r"|\bdial-?up\b|\bresidential\s+ip",
    _I,
)
_PROVIDERS = (
    ("Google", re.compile(r"gsmtp|google\.com|gmail", _I)),
    ("Microsoft", re.compile(r"outlook\.com|hotmail|live\.com|microsoft", _I)),
    ("Yahoo", re.compile(r"yahoo|\baol\b", _I)),
    ("Comcast", re.compile(r"comcast", _I)),
    ("Mail.ru", re.compile(r"mail\.ru", _I)),
    ("GMX", re.compile(r"\bgmx\b|web\.de", _I)),
    ("T-Online", re.compile(r"t-online", _I)),
)
_BRACKETED = re.compile(r"\[\s*(?:IPv6:)?([0-9A-Fa-f:.]+)(?:\s+\d+)?\s*\]", _I)
_AFTER_WORD = re.compile(
    r"\b(?:from|host|address|ip|client)\b\s*[=:]?\s*[<(\[]?\s*(?:IPv6:)?([0-9A-Fa-f:.]*[0-9A-Fa-f])",
    _I,
)
_ANY_IP = re.compile(
    r"(?<![\w.:])((?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![\w:]|\.\d)"
)


def classify(code: int, text: str) -> list[BlocklistHit]:
    """Blocklist/reputation hits in one (multi-line, '\\n'-joined) reply; [] if none.
    Only 4xx/5xx replies; 421 included (Zeek's script skips it; we must not)."""
    if not 400 <= code <= 599:
        return []
    text = re.sub(rf"(?m)^{code}[ -]", "", text)
    permanent = code >= 500
    listed_ip = _listed_ip(text)
    found: list[tuple[int, BlocklistHit]] = []
    names: set[str] = set()
    for rule in _RULES:
        if rule.unless and any(re.search(rule.unless, name) for name in names):
            continue
        match = rule.pattern.search(text)
        if match is None:
            continue
        evidence = match.group(0)
        if rule.context is not None and rule.context.search(text) is None:
            continue
        if rule.also is not None:
            second = rule.also.search(text)
            if second is None:
                continue
            evidence = f"{evidence} … {second.group(0)}"
        name = _name(rule, match)
        if name in names:
            continue
        names.add(name)
        found.append(
            (match.start(), BlocklistHit(name, rule.provider, permanent, evidence, listed_ip))
        )
    if not found:
        generic = _generic(text, permanent, listed_ip)
        return [generic] if generic is not None else []
    return [hit for _, hit in sorted(found, key=lambda item: item[0])]


def _name(rule: _Rule, match: re.Match[str]) -> str:
    if "{code}" not in rule.name:
        return rule.name
    token = match.group("code")
    if rule.name == "{code}":
        return _SPAMHAUS_LISTS.get(token.lower(), f"Spamhaus {token.upper()}")
    return rule.name.format(code=token.upper())


def _generic(text: str, permanent: bool, listed_ip: str | None) -> BlocklistHit | None:
    """One hit for a refusal that says it is a list or reputation block without naming it."""
    provider = next((name for name, pattern in _PROVIDERS if pattern.search(text)), "unknown")
    dynamic = _DYNAMIC.search(text)
    if dynamic is not None:
        return BlocklistHit("dynamic IP policy", provider, permanent, dynamic.group(0), listed_ip)
    for match in _GENERIC.finditer(text):
        if match.group(0).lower().startswith("listed") and _NOT_LISTED.search(
            text, max(0, match.start() - 5), match.end()
        ):
            continue
        return BlocklistHit("generic blocklist", provider, permanent, match.group(0), listed_ip)
    return None


def _listed_ip(text: str) -> str | None:
    """The address a reply names: in brackets first, then after from/host/address/IP, then
    any address.  Loopback and unspecified addresses (DNSBL answers, placeholders) are not."""
    for pattern in (_BRACKETED, _AFTER_WORD, _ANY_IP):
        for match in pattern.finditer(text):
            candidate = match.group(1).rstrip(".")
            try:
                address = ipaddress.ip_address(candidate)
            except ValueError:
                continue
            if address.is_loopback or address.is_unspecified:
                continue
            return str(address)
    return None
