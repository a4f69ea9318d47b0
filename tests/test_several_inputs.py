"""Each interface's drops, when several are read (``-i eth1 -i eth2``): in the monitor's
status bar, one part each, fitted at 80 columns, and in the report's warning; added up over
engine processes by interface.  One interface keeps the status bar it always had.  The
capture itself is tests/test_live_interfaces.py's (it needs root); here a file stands in
for the sockets, saying what their kernel dropped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import synth

from smtptop.analysis import analyze_live
from smtptop.source import FileSource, Parallel, Source
from smtptop.tui.app import MonitorApp


class Dropping(FileSource):
    """A capture file read as if from interfaces whose kernel dropped ``lost`` packets."""

    def __init__(self, path: Path, lost: list[tuple[str, int]]) -> None:
        super().__init__([str(path)])
        self.lost = lost

    def drops(self) -> list[tuple[str, int]]:
        return list(self.lost)


def capture(path: Path, client: str) -> Path:
    conv = synth.Conversation(client, 40000, "198.51.100.7", 25, start=1_700_000_000.0)
    conv.smtp([("S", b"220 mx\r\n"), ("C", b"EHLO pc\r\n"), ("S", b"250 mx\r\n"),
               ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])  # fmt: skip
    conv.close()
    synth.write_pcap(path, conv.frames, synth.LINKTYPE_ETHERNET)
    return path


TWO = [("eth1", 0), ("eth2", 12)]


def test_a_report_names_each_interfaces_drops_in_one_process_and_added_over_engines(
    tmp_path: Path,
) -> None:
    one = analyze_live(Dropping(capture(tmp_path / "a.pcap", "192.168.1.5"), TWO), duration=30)
    assert (one.kernel_drops, one.source_drops) == (12, TWO)
    assert one.warnings == ["the kernel dropped 12 packets: the counts are low (eth1 0, eth2 12)"]
    engines = Parallel([Dropping(capture(tmp_path / "b.pcap", "192.168.1.6"), TWO),
                        Dropping(capture(tmp_path / "c.pcap", "192.168.1.7"), TWO)],
                       label="test", waiting="")  # fmt: skip
    forked = analyze_live(engines, duration=30)
    assert (forked.kernel_drops, forked.source_drops) == (24, [("eth1", 0), ("eth2", 24)])
    assert forked.warnings == [
        "the kernel dropped 24 packets: the counts are low (eth1 0, eth2 24)"
    ]
    assert sorted(forked.model.hosts) == ["192.168.1.6", "192.168.1.7"]


def test_one_interface_is_warned_of_as_before(tmp_path: Path) -> None:
    one = analyze_live(Dropping(capture(tmp_path / "a.pcap", "192.168.1.5"), [("eth1", 3)]),
                       duration=30)  # fmt: skip
    assert one.warnings == ["the kernel dropped 3 packets: the counts are low"]


async def status_at_80(source: Source) -> str:
    app = MonitorApp(source)
    async with app.run_test(size=(80, 24)) as pilot:
        deadline = time.monotonic() + 20
        while not app.progress.finished:
            assert time.monotonic() < deadline, "the capture did not finish"
            await pilot.pause(0.05)
        app.update_view()
        await pilot.pause(0.1)
        text = str(app.query_one("#status").render())
        await pilot.press("q")
    return text


@pytest.mark.parametrize("engines", [0, 2])
async def test_the_status_bar_shows_each_interface_and_its_drops_at_80_columns(
    tmp_path: Path, engines: int
) -> None:
    if engines:
        parts = [Dropping(capture(tmp_path / f"{n}.pcap", f"192.168.1.{10 + n}"), TWO)
                 for n in range(engines)]  # fmt: skip
        source: Source = Parallel(parts, label="interfaces eth1, eth2", waiting="")
    else:
        source = Dropping(capture(tmp_path / "a.pcap", "192.168.1.5"), TWO)
    text = await status_at_80(source)
    lost = 12 * max(engines, 1)
    assert f"drops 0  eth1 kernel drops 0  eth2 kernel drops {lost}  end of capture" in text
    assert "+" not in text.split("end of capture")[0], text  # not the one-interface form


async def test_one_interface_keeps_its_status_bar(tmp_path: Path) -> None:
    text = await status_at_80(Dropping(capture(tmp_path / "a.pcap", "192.168.1.5"), [("eth1", 5)]))
    assert "drops 0 +5 kernel  end of capture" in text and "eth1" not in text


def test_the_lan_is_every_interfaces_networks_and_lans(monkeypatch: pytest.MonkeyPatch) -> None:
    from smtptop import cli, files, live

    networks = {"eth1": ["192.168.1.0/24", "10.9.0.0/16"], "eth2": ["172.20.0.0/16"]}
    opened: list[tuple[list[str], int]] = []
    monkeypatch.setattr(live, "interface_networks", lambda iface: networks[iface])
    monkeypatch.setattr(live, "open_interfaces",
                        lambda ifaces, workers, **_: opened.append((ifaces, workers)))  # fmt: skip
    args = cli.parse_args(["report", "-i", "eth1", "-i", "eth2", "--lan", "10.9.0.0/16",
                           "--workers", "2"])  # fmt: skip
    _, lan = cli.open_live(args, args.interface, files.invoking_user())
    assert lan == ["10.9.0.0/16", "192.168.1.0/24", "172.20.0.0/16"]
    assert opened == [(["eth1", "eth2"], 2)]
