"""Live-capture setup without traffic: interfaces, error messages, privileges, the -w writer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smtptop import live, synth
from smtptop.capture import CaptureFile, PcapWriter

ROOT = Path(__file__).resolve().parent.parent


def smtptop(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "smtptop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_interfaces_are_listed_with_the_default_marked() -> None:
    names = [i.name for i in live.list_interfaces()]
    assert "lo" in names
    out = smtptop("interfaces")
    assert out.returncode == 0
    assert any(
        line.split()[:1] == ["lo"] and "127.0.0.1/8" in line for line in out.stdout.splitlines()
    )
    default = live.default_interface()
    if default is not None:
        assert f"* {default}" in out.stdout
    assert live.interface_networks("lo") == []


def test_unknown_interface_lists_the_real_ones() -> None:
    out = smtptop("report", "-i", "nosuchif0", "--duration", "1")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert "no interface 'nosuchif0'" in out.stderr and "lo" in out.stderr


def test_privilege_hint_names_the_python_in_use() -> None:
    hint = live.privilege_hint("eth0")
    assert "sudo" in hint
    assert f"setcap cap_net_raw,cap_net_admin+eip {os.path.realpath(sys.executable)}" in hint


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to withhold a capability")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
def test_without_privileges_one_line_says_how_to_get_them() -> None:
    """Root without CAP_NET_RAW is refused the socket, like an ordinary user."""
    drop = ("setpriv", "--bounding-set=-net_raw,-net_admin", "--inh-caps=-net_raw,-net_admin")
    out = smtptop("report", "-i", "lo", "--duration", "1", prefix=drop)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    assert "setcap cap_net_raw,cap_net_admin+eip" in out.stderr


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="dropping root needs root")
def test_root_is_dropped_after_the_socket_opens(tmp_path: Path) -> None:
    target = tmp_path / "evidence.pcap"
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]);"
        "from smtptop.live import LiveSource, drop_privileges;"
        "src = LiveSource('lo', ports=[25], write=sys.argv[2]);"
        "print(drop_privileges(None, owned_files=[sys.argv[2]]), os.getuid(), os.getgid());"
        "src.close()"
    )
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(target)],
        capture_output=True, text=True, timeout=60, env=env, check=True,
    )  # fmt: skip
    assert out.stdout.split() == ["nobody", "65534", "65534"]
    assert target.stat().st_uid == 65534


def test_custom_filter_without_libpcap_says_what_to_install(monkeypatch) -> None:
    import scapy.arch.common

    def missing(*args, **kwargs):
        raise ImportError("libpcap is not available. Cannot compile filter !")

    monkeypatch.setattr(scapy.arch.common, "compile_filter", missing)
    with pytest.raises(live.CaptureSetupError, match=r"apt-get install libpcap0\.8"):
        live.compile_expression("tcp port 25", "lo")


def test_pcap_writer_round_trip(tmp_path: Path) -> None:
    conv = synth.Conversation("192.168.1.2", 40000, "198.51.100.1", 25, start=1_700_000_000.25)
    conv.smtp([("S", b"220 mx\r\n"), ("C", b"QUIT\r\n")])
    path = tmp_path / "w.pcap"
    writer = PcapWriter(str(path), synth.LINKTYPE_ETHERNET)
    for frame in conv.frames:
        writer.write(frame.ts, frame.data)
    writer.flush()
    read = list(CaptureFile(str(path)))
    assert [(data, round(ts, 6)) for ts, _, data in read] == [(f.data, f.ts) for f in conv.frames]
    writer.close()
