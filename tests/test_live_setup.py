"""Live-capture setup without traffic: interfaces, error messages, privileges, the -w writer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import synth

from smtptop import live
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


SETCAP = "sudo setcap cap_net_raw,cap_net_admin+eip"
OWN_VENV = (
    "'python3 -m venv --copies ~/.local/share/smtptop && ~/.local/share/smtptop/bin/pip install ."
    f" && {SETCAP} ~/.local/share/smtptop/bin/python3'"
)


def interpreter(
    monkeypatch: pytest.MonkeyPatch, executable: Path, prefix: Path, base_prefix: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(executable))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(sys, "base_prefix", str(base_prefix))


def test_privilege_hint_grants_a_venvs_own_interpreter_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv made with --copies: its python is a file of its own, safe to give rights to."""
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    own = tmp_path / "venv" / "bin" / "python3"
    own.write_bytes(b"")
    interpreter(monkeypatch, own, tmp_path / "venv", tmp_path / "shared")
    hint = live.privilege_hint("eth0")
    assert hint.startswith("capturing on eth0 needs privileges: run it with sudo, or")
    assert hint.endswith(f"'{SETCAP} {own}'")
    assert "shared" not in hint


def test_privilege_hint_never_grants_a_shared_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv whose python links to a shared one, or no venv: the rights would reach every
    script of that Python, so the hint names the install that makes a copy instead."""
    shared = tmp_path / "shared" / "bin" / "python3.11"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    linked = tmp_path / "venv" / "bin" / "python3"
    linked.symlink_to(shared)
    for executable, prefix in ((linked, tmp_path / "venv"), (shared, tmp_path / "shared")):
        interpreter(monkeypatch, executable, prefix, tmp_path / "shared")
        hint = live.privilege_hint("eth0")
        assert hint.startswith("capturing on eth0 needs privileges: run it with sudo.")
        assert f"setcap on {shared} would let every script of that shared Python" in hint
        assert hint.endswith(OWN_VENV)
        assert f"+eip {shared}" not in hint and f"+eip {linked}" not in hint


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to withhold a capability")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
def test_without_privileges_one_line_says_how_to_get_them() -> None:
    """Root without CAP_NET_RAW is refused the socket, like an ordinary user."""
    drop = ("setpriv", "--bounding-set=-net_raw,-net_admin", "--inh-caps=-net_raw,-net_admin")
    out = smtptop("report", "-i", "lo", "--duration", "1", prefix=drop)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr == f"smtptop: {live.privilege_hint('lo')}\n"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="dropping root needs root")
def test_root_and_every_capability_are_dropped_after_the_socket_opens(tmp_path: Path) -> None:
    """To nobody without a sudo caller; the -w file stays root's (the invoking user), 0600."""
    target = tmp_path / "evidence.pcap"
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]);"
        "from smtptop.live import LiveSource, capabilities, drop_privileges, run_as;"
        "src = LiveSource('lo', ports=[25], write=sys.argv[2]);"
        "drop_privileges(run_as(None)); print(os.getuid(), os.getgid(), capabilities());"
        "print(open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0]);"
        "src.close()"
    )
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(target)],
        capture_output=True, text=True, timeout=60, env=env, check=True,
    )  # fmt: skip
    ids, no_new_privs = out.stdout.splitlines()
    assert ids == "65534 65534 {'CapInh': 0, 'CapPrm': 0, 'CapEff': 0, 'CapAmb': 0}"
    assert no_new_privs == "1"
    info = target.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, 0, 0o600)


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
    writer = PcapWriter(path.open("wb"), str(path), synth.LINKTYPE_ETHERNET)
    for frame in conv.frames:
        writer.write(frame.ts, frame.data)
    writer.flush()
    read = list(CaptureFile(str(path)))
    assert [(data, round(ts, 6)) for ts, _, data in read] == [(f.data, f.ts) for f in conv.frames]
    writer.close()
