"""Every declared signal just below, at and above each of its thresholds, and the policy as
data: settings from the command line and a file, the README's table written from it."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import smtptop

from smtptop.detect import (
    SIGNALS,
    DetectConfig,
    Detector,
    Evidence,
    Facts,
    Group,
    Rating,
    Reason,
    colours_text,
    load_settings,
    policy_text,
    signal_table,
)
from smtptop.model import AddressSet, Host, Identity, Model, ServerStats

NOW = 1_800_000_000.0
CONFIG = DetectConfig()
SPAMHAUS = "5.7.1 Client host [203.0.113.77] blocked using zen.spamhaus.org"
CBL = "5.7.1 Blocked - see https://www.abuseat.org/lookup.cgi?ip=203.0.113.77"


def facts(
    host: Host | None = None,
    evidence: Evidence | None = None,
    identity: Identity | None = None,
    *,
    direct: int = 0,
) -> Facts:
    detector = Detector(Model())
    return Facts(
        host or Host("192.168.0.9", True, NOW - 3600, NOW), evidence or Evidence(), identity,
        NOW, CONFIG.window, frozenset({"198.51.100.25"}), direct, direct * 2,
        detector._helo, detector._classify,
    )  # fmt: skip


def judge(name: str, found: Facts) -> list[Reason]:
    signal = CONFIG.signal(name)
    return signal.judge(found, signal)


def points(name: str, found: Facts) -> list[int]:
    return [r.points for r in judge(name, found)]


def host(**counts: int) -> Host:
    made = Host("192.168.0.9", True, NOW - 3600, NOW)
    for key, value in counts.items():
        setattr(made, key, value)
    return made


def with_servers(recent: int, old: int = 0) -> Host:
    made = host()
    for i in range(recent):
        made.servers[f"203.0.113.{i}"] = ServerStats(f"203.0.113.{i}", last_seen=NOW - 60)
    for i in range(old):
        made.servers[f"198.18.0.{i}"] = ServerStats(f"198.18.0.{i}", last_seen=NOW - 601)
    return made


def with_names(table: str, count: int) -> Host:
    made = host()
    getattr(made, table).update({f"name{i}.example": 1 for i in range(count)})
    return made


def started(count: int, *, seconds_ago: float = 30.0) -> Host:
    made = host()
    for _ in range(count):
        made.session_starts.append(NOW - seconds_ago)
    return made


def looked_up_mx(count: int, *, seconds_ago: float = 60.0) -> Identity:
    identity = Identity("192.168.0.9")
    for _ in range(count):
        identity.mx_times.append(NOW - seconds_ago)
    return identity


def refused(*texts: str) -> Host:
    made = host()
    for text in texts:
        made.refusals[(554, text)] = 2
    return made


def dialects(*families: str) -> Evidence:
    return Evidence(dialects=Counter(families), dialect_features=("HELO", "uppercase"))


Case = tuple[str, Callable[[], Facts], list[int]]
CASES: list[Case] = [
    ("direct-to-mx", lambda: facts(direct=0), []),
    ("direct-to-mx", lambda: facts(direct=1), [30]),
    ("direct-to-mx", lambda: facts(direct=2), [30]),
    ("many-destinations", lambda: facts(with_servers(5)), []),
    ("many-destinations", lambda: facts(with_servers(6)), [20]),
    ("many-destinations", lambda: facts(with_servers(7)), [20]),
    ("many-destinations", lambda: facts(with_servers(20)), [20]),
    ("many-destinations", lambda: facts(with_servers(21)), [35]),
    ("many-destinations", lambda: facts(with_servers(22)), [35]),
    ("many-destinations", lambda: facts(with_servers(5, old=10)), []),  # outside the window
    ("blocklist", lambda: facts(refused("5.7.1 Relaying denied")), []),
    ("blocklist", lambda: facts(refused(SPAMHAUS)), [40]),
    ("blocklist", lambda: facts(refused(SPAMHAUS, CBL)), [40, 0]),  # one list scores
    ("rejections", lambda: facts(host(rejected_sessions=2, sessions=2)), []),
    ("rejections", lambda: facts(host(rejected_sessions=3, sessions=10)), [15]),  # 30 %
    ("rejections", lambda: facts(host(rejected_sessions=3, sessions=11)), []),  # 27 %
    ("rejections", lambda: facts(host(rejected_sessions=4, sessions=10)), [15]),
    ("helo", lambda: facts(with_names("helos", 0)), []),
    ("helo", lambda: facts(host_named("pc-bernd.studio.lan")), []),
    ("helo", lambda: facts(host_named("PC-BERND")), []),  # through a relay: NetBIOS is fine
    ("helo", lambda: facts(host_named("PC-BERND"), direct=1), [15]),  # straight to MX
    ("helo", lambda: facts(host_named("localhost")), [15]),
    ("helo-changes", lambda: facts(with_names("helos", 3)), []),
    ("helo-changes", lambda: facts(with_names("helos", 4)), [10]),
    ("helo-changes", lambda: facts(with_names("helos", 5)), [10]),
    ("sender-domains", lambda: facts(with_names("sender_domains", 2)), []),
    ("sender-domains", lambda: facts(with_names("sender_domains", 3)), [10]),
    ("sender-domains", lambda: facts(with_names("sender_domains", 4)), [10]),
    ("sender-domains", lambda: facts(with_names("sender_domains", 9)), [10]),
    ("sender-domains", lambda: facts(with_names("sender_domains", 10)), [20]),
    ("sender-domains", lambda: facts(with_names("sender_domains", 11)), [20]),
    ("rate", lambda: facts(started(9)), []),
    ("rate", lambda: facts(started(10)), [10]),
    ("rate", lambda: facts(started(11)), [10]),
    ("rate", lambda: facts(started(20, seconds_ago=61)), []),  # not in the last minute
    ("rate", lambda: facts(host(max_parallel=9)), []),
    ("rate", lambda: facts(host(max_parallel=10)), [10]),
    ("rate", lambda: facts(host(max_parallel=11)), [10]),
    ("pregreet", lambda: facts(evidence=Evidence(pregreet=0)), []),
    ("pregreet", lambda: facts(evidence=Evidence(pregreet=1)), [20]),
    ("pregreet", lambda: facts(evidence=Evidence(pregreet=2)), [20]),
    ("no-quit", lambda: facts(evidence=Evidence(sessions=2, without_quit=2)), []),
    ("no-quit", lambda: facts(evidence=Evidence(sessions=3, without_quit=3)), [5]),
    ("no-quit", lambda: facts(evidence=Evidence(sessions=4, without_quit=2)), []),  # half
    ("no-quit", lambda: facts(evidence=Evidence(sessions=4, without_quit=3)), [5]),
    ("no-quit", lambda: facts(evidence=Evidence(sessions=10, without_quit=5)), []),
    ("no-quit", lambda: facts(evidence=Evidence(sessions=10, without_quit=6)), [5]),
    ("dns-mx", lambda: facts(), []),  # nothing known of its DNS
    ("dns-mx", lambda: facts(identity=looked_up_mx(9)), []),
    ("dns-mx", lambda: facts(identity=looked_up_mx(10)), [10]),
    ("dns-mx", lambda: facts(identity=looked_up_mx(11)), [10]),
    ("dns-mx", lambda: facts(identity=looked_up_mx(20, seconds_ago=601)), []),
    ("dialect", lambda: facts(evidence=dialects("unknown"), direct=0), []),
    ("dialect", lambda: facts(evidence=dialects("unknown"), direct=1), [10]),
    ("dialect", lambda: facts(evidence=dialects("unknown", "Outlook"), direct=1), []),
    ("dialect", lambda: facts(evidence=Evidence(), direct=1), []),  # no session seen ending
]


def host_named(name: str) -> Host:
    made = host()
    made.helos[name] = 1
    return made


@pytest.mark.parametrize(("name", "make", "expected"), CASES)
def test_signal_boundaries(name: str, make: Callable[[], Facts], expected: list[int]) -> None:
    assert points(name, make()) == expected


def test_every_signal_has_boundary_cases() -> None:
    covered = Counter(name for name, _, _ in CASES)
    assert set(covered) == {s.name for s in SIGNALS}
    assert all(count >= 3 for count in covered.values()), covered


def test_every_signal_names_itself_and_reads_something() -> None:
    names = [s.name for s in SIGNALS]
    assert len(set(names)) == len(names) == 12
    for signal in SIGNALS:
        assert signal.reads and signal.when and signal.points
        signal.describe(CONFIG.window)  # every placeholder is a limit or the window


def test_a_threshold_changed_by_a_setting_moves_the_boundary() -> None:
    config = CONFIG.with_settings({"rejections.sessions": "5", "rejections.share": "0.5"})
    signal = config.signal("rejections")
    four = facts(host(rejected_sessions=4, sessions=4))
    five = facts(host(rejected_sessions=5, sessions=10))
    assert signal.judge(four, signal) == []
    assert [r.points for r in signal.judge(five, signal)] == [15]
    assert CONFIG.signal("rejections")["sessions"] == 3  # the defaults are untouched


def test_points_are_set_per_level() -> None:
    config = CONFIG.with_settings({"many-destinations.points": "1,2"})
    signal = config.signal("many-destinations")
    assert [r.points for r in signal.judge(facts(with_servers(21)), signal)] == [2]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"nonsense": "1"}, "no setting 'nonsense'"),
        ({"spambot": "many"}, "spambot: 'many' is not a number"),
        ({"spambot": "-1"}, "must be 0 or more"),
        ({"nosignal.points": "1"}, "no signal 'nosignal'"),
        ({"rejections.nolimit": "1"}, "rejections has no setting 'nolimit'"),
        ({"many-destinations.points": "20"}, "many-destinations.points takes 2 numbers"),
        ({"rate.points": "x"}, "rate.points: 'x' is not a list of integers"),
        ({"rate.parallel": "nan"}, "must be 0 or more"),
    ],
)
def test_a_bad_setting_is_named(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CONFIG.with_settings(settings)


def test_settings_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "spambot = 70\nwindow = 300\n"
        "[signals.rejections]\nsessions = 5\n"
        "[signals.sender-domains]\npoints = [5, 15]\n"
    )
    config = CONFIG.with_settings(load_settings(str(path)))
    assert (config.spambot, config.window) == (70, 300.0)
    assert config.signal("rejections")["sessions"] == 5
    assert config.signal("sender-domains").points == (5, 15)
    path.write_text("spambot = [")
    with pytest.raises(ValueError, match=r"policy\.toml"):
        load_settings(str(path))


def rated(config: DetectConfig, sessions: int, pregreet_points: int) -> Rating:
    """A host whose only reason is talking before the greeting, worth ``pregreet_points``."""
    config = config.with_settings({"pregreet.points": str(pregreet_points)})
    model = Model()
    detector = Detector(model, config)
    detector.evidence["192.168.0.9"] = Evidence(pregreet=1)
    return detector.judge(host(sessions=sessions), NOW, frozenset()).verdict


@pytest.mark.parametrize(
    ("sessions", "score", "verdict"),
    [
        (3, 24, Rating.NORMAL),
        (3, 25, Rating.SUSPICIOUS),
        (3, 59, Rating.SUSPICIOUS),
        (3, 60, Rating.SPAMBOT),
        (3, 61, Rating.SPAMBOT),
        (2, 60, Rating.SUSPICIOUS),  # below min_sessions, and no blocklist named it
    ],
)
def test_verdict_thresholds(sessions: int, score: int, verdict: Rating) -> None:
    assert rated(CONFIG, sessions, score) is verdict


def test_volume_alone_never_makes_a_spambot() -> None:
    """A busy host with no misbehaviour stays suspicious, whatever its score."""
    config = CONFIG.with_settings({"direct-to-mx.points": "100"})
    detector = Detector(Model(), config)
    detector.evidence["192.168.0.9"] = Evidence(mx_sessions=5)
    for i in range(5):
        detector.evidence["192.168.0.9"].mx_servers.add(f"203.0.113.{i}")
    found = detector.judge(host(sessions=5), NOW, frozenset())
    assert (found.verdict, found.score) == (Rating.SUSPICIOUS, 100)


def test_a_mail_server_is_judged_on_misbehaviour_only() -> None:
    config = DetectConfig(mail_servers=("192.168.0.9",))
    detector = Detector(Model(), config)
    evidence = detector.evidence["192.168.0.9"] = Evidence(pregreet=1, mx_sessions=3)
    evidence.mx_servers = AddressSet()
    for i in range(3):
        evidence.mx_servers.add(f"203.0.113.{i}")
    found = detector.judge(host(sessions=3, max_parallel=50), NOW, frozenset())
    groups = {CONFIG.signal(r.signal).group for r in found.reasons}
    assert groups == {Group.MISBEHAVIOUR}


def test_the_readme_table_and_policy_are_the_declared_ones() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert signal_table() in readme
    words = " ".join(readme.split())
    assert " ".join(policy_text().split()) in words
    assert colours_text() in words


def test_verdicts_are_a_str_enum() -> None:
    assert [str(r) for r in Rating] == ["spambot", "suspicious", "normal", ""]
    verdict = Detector(Model()).judge(host(), NOW, frozenset())
    assert verdict.verdict is Rating.NORMAL and verdict.verdict == "normal"


def test_hosts_outside_the_lan_are_not_judged() -> None:
    outside = dataclasses.replace(host(), ip="203.0.113.5", lan=False)
    assert Detector(Model()).judge(outside, NOW, frozenset()).verdict is Rating.UNJUDGED


def test_settings_on_the_command_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("spambot = 500\n")
    raised = smtptop("report", "--sample", "--json", "--detect-config", str(policy))
    assert raised.returncode == 0, raised.stderr
    verdicts = {h["verdict"] for h in json.loads(raised.stdout)["hosts"]}
    assert "spambot" not in verdicts and "suspicious" in verdicts
    lowered = smtptop(
        "report", "--sample", "--json", "--detect-config", str(policy), "--detect", "spambot=60"
    )
    assert "spambot" in {h["verdict"] for h in json.loads(lowered.stdout)["hosts"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--detect", "spambot"], "--detect: expected NAME=VALUE, not 'spambot'"),
        (["--detect", "rate.bogus=1"], "--detect: rate has no setting 'bogus'"),
        (["--detect-config", "/nonexistent.toml"], "/nonexistent.toml: No such file"),
    ],
)
def test_a_bad_setting_on_the_command_line_is_one_line(args: list[str], message: str) -> None:
    done = smtptop("report", "--sample", *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_help_screen_states_the_policy_in_force() -> None:
    from smtptop.tui import help_screen
    from smtptop.tui.help_screen import help_text

    changed = help_text(CONFIG.with_settings({"rejections.sessions": "7", "spambot": "75"}))
    assert "7 or more rejected sessions" in changed and "spambot from 75 points" in changed
    assert all(f"\n{s.name} " in help_text(CONFIG) for s in SIGNALS)
    assert max(map(len, changed.splitlines())) <= help_screen.WIDTH
