"""The files smtptop writes (-w, -o, the failure log) and the alert command's environment:
made 0600 for the user who ran smtptop, never through a planted link, checked before a
capture starts; the alert command gets a minimal environment.

The live runs use a network namespace of their own with only its loopback up: smtptop opens
its socket there and sees nothing but what the test itself sends inside it.  The namespace is
deleted even when a step fails.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_live_capture import remove_namespaces, run, tool

from smtptop import files
from smtptop.cli import main
from smtptop.errorlog import ErrorLog
from smtptop.source import FileSource
from smtptop.tui.app import MonitorApp

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "smtptop" / "data" / "office.pcap"
IP = tool("ip")
NOBODY = pwd.getpwnam("nobody")
DAEMON = pwd.getpwnam("daemon")  # a real user that is neither root nor nobody
TIMEOUT = 30.0
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: file owners, namespaces")
root_only = [pytest.mark.root, as_root]


def me() -> files.Owner:
    return files.Owner(os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name)


@pytest.fixture
def public() -> Iterator[Path]:
    """A folder under /tmp that every user can reach (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="smtptop-files-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def shared_folder(parent: Path) -> Path:
    """A folder like /tmp: everyone may write, the sticky bit set."""
    folder = parent / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


# -- files.create and files.Report, in process ---------------------------------------------


def test_a_new_file_is_private(tmp_path: Path) -> None:
    target = tmp_path / "evidence.pcap"
    fd = files.create(str(target), me())
    os.write(fd, b"secret")
    os.close(fd)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"secret"
    assert [p.name for p in tmp_path.iterdir()] == ["evidence.pcap"]  # no temporary left


def test_an_own_file_is_replaced_not_written_through(tmp_path: Path) -> None:
    """A world-readable file of the user's, hard-linked elsewhere: the name gets a new 0600
    file, and the other name keeps what it had."""
    target, other = tmp_path / "evidence.pcap", tmp_path / "other-name"
    target.write_bytes(b"old")
    target.chmod(0o644)
    os.link(target, other)
    os.close(files.create(str(target), me()))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b""
    assert other.read_bytes() == b"old"


def test_a_link_or_a_device_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(files.OutputError, match="is a symbolic link: refusing"):
        files.create(str(link), me())
    with pytest.raises(files.OutputError, match="not a regular file"):
        files.create(str(tmp_path), me())
    with pytest.raises(files.OutputError, match="is a symbolic link: refusing"):
        files.Report(str(link), me())
    assert victim.read_bytes() == b"keep" and link.is_symlink()


@pytest.mark.root
@as_root
def test_another_users_file_is_refused(tmp_path: Path) -> None:
    target = shared_folder(tmp_path) / "report.json"
    target.write_text("theirs")
    os.chown(target, NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(files.OutputError, match="belongs to nobody, not root: refusing"):
        files.Report(str(target), me())
    assert target.read_text() == "theirs"


def test_a_report_is_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("previous")
    report = files.Report(str(target), me())
    report.discard()
    assert target.read_text() == "previous" and len(list(tmp_path.iterdir())) == 1
    report = files.Report(str(target), me())
    report.commit("new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len(list(tmp_path.iterdir())) == 1


def test_report_to_standard_output_and_dev_null() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "smtptop", "report", "--csv", "--sample", "-o", "/dev/stdout"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ip,lan,verdict")
    assert main(["report", "--sample", "-o", os.devnull]) == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


# -- the failure log ----------------------------------------------------------------------


def test_failure_log_is_private_and_never_follows_a_link(tmp_path: Path) -> None:
    log = ErrorLog(str(tmp_path / "state" / "smtptop" / "errors.log"))
    log("packet 1: boom")
    assert stat.S_IMODE(Path(log.path).stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(log.path).parent.stat().st_mode) == 0o700
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    planted = tmp_path / "planted.log"
    planted.symlink_to(victim)
    refused = ErrorLog(str(planted))
    for n in range(3):
        refused(f"packet {n}: boom")
    assert victim.read_text() == "keep\n"
    assert (refused.written, refused.unlogged) == (0, 3)
    assert refused.problem == os.strerror(40)  # ELOOP: O_NOFOLLOW met the link


def test_a_log_that_cannot_be_written_is_said_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import smtptop.analyzer

    real = smtptop.analyzer.dec.decode
    calls = {"n": 0}

    def flaky(linktype, frame, ports):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] in (5, 9):
            raise RuntimeError("boom")
        return real(linktype, frame, ports)

    monkeypatch.setattr(smtptop.analyzer.dec, "decode", flaky)
    (tmp_path / ".local").write_text("not a folder")  # where the default log would go
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert main(["report", "--json", str(SAMPLE)]) == 0
    err = capsys.readouterr().err
    log = tmp_path / ".local" / "state" / "smtptop" / "errors.log"
    assert err == (
        "smtptop: 2 packets could not be analysed; their details could not be written to "
        f"{log} ({os.strerror(20)})\n"
    )


def test_a_planted_log_link_is_refused_before_the_work(tmp_path: Path) -> None:
    planted = tmp_path / "errors.log"
    planted.symlink_to(tmp_path / "victim")
    out = subprocess.run(
        [sys.executable, "-m", "smtptop", "report", "--sample", "--error-log", str(planted)],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (
        f"smtptop: --error-log {planted}: smtptop would not write through the symbolic link there\n"
    )
    assert not (tmp_path / "victim").exists()


@pytest.mark.root
@as_root
def test_the_default_log_is_chosen_for_the_user_smtptop_becomes(tmp_path: Path) -> None:
    """Root's home would be chosen before the drop, then fail silently: it is chosen after."""
    code = (
        "import sys, pwd; sys.path.insert(0, sys.argv[1]);"
        "from smtptop.cli import parse_args, _error_log;"
        "from smtptop.live import drop_privileges, run_as;"
        "drop_privileges(run_as('daemon'));"
        "log = _error_log(parse_args(['report', '-i', 'lo'])); log('packet 1: boom');"
        "print(log.path); print(log.problem or 'written')"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SUDO_USER", "XDG_STATE_HOME")}
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, check=True,
    )  # fmt: skip
    path, outcome = out.stdout.splitlines()
    assert path == f"{DAEMON.pw_dir}/.local/state/smtptop/errors.log"
    assert outcome == os.strerror(13)  # daemon may not write in /usr/sbin: counted, said


# -- the real command as root, capturing in a namespace of its own --------------------------


@pytest.fixture
def namespace() -> Iterator[str]:
    """A network namespace with only its loopback, up; deleted whatever happens."""
    if IP is None:
        pytest.skip("needs ip (iproute2)")
    name = f"smtptop-{secrets.token_hex(4)}-files"
    made: list[str] = []
    try:
        run(IP, "netns", "add", name)
        made.append(name)
        run(IP, "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        remove_namespaces(made)
        assert name not in run(IP, "netns", "list")


def live(
    namespace: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``smtptop report -i lo ARGS`` as root in the namespace, SUDO_USER as ``env`` says."""
    assert IP is not None
    base = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    command = [IP, "netns", "exec", namespace, sys.executable, "-m", "smtptop", "report"]
    return subprocess.run(
        [*command, "-i", "lo", *args],
        capture_output=True, text=True, timeout=TIMEOUT, cwd="/",
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
    )  # fmt: skip


@pytest.mark.root
@as_root
@pytest.mark.parametrize(("sudo_user", "owner"), [(None, "root"), ("daemon", "daemon")])
def test_capture_file_belongs_to_the_invoking_user(
    namespace: str, public: Path, sudo_user: str | None, owner: str
) -> None:
    """Not to nobody, who runs the capture: the file holds AUTH secrets."""
    folder = shared_folder(public)
    evidence, report = folder / "evidence.pcap", folder / "report.json"
    env = {"SUDO_USER": sudo_user} if sudo_user else {}
    done = live(
        namespace, "--duration", "0.5", "--user", "nobody", "-w", str(evidence), "--json",
        "-o", str(report), env=env,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    entry = pwd.getpwnam(owner)
    for path in (evidence, report):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (entry.pw_uid, entry.pw_gid), path
        assert stat.S_IMODE(info.st_mode) == 0o600, path
    assert evidence.read_bytes()[:4] == bytes.fromhex("d4c3b2a1")
    assert json.loads(report.read_text())["hosts"] == []


@pytest.mark.root
@as_root
def test_a_planted_link_is_not_followed_as_root(namespace: str, tmp_path: Path) -> None:
    """Finding #5: nobody's link in a shared folder to a root-only file."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    victim = private / "shadow"
    victim.write_text("root's secret\n")
    victim.chmod(0o600)
    link = shared_folder(tmp_path) / "evidence.pcap"
    link.symlink_to(victim)
    os.lchown(link, NOBODY.pw_uid, NOBODY.pw_gid)
    done = live(namespace, "--duration", "0.5", "-w", str(link))
    assert done.returncode == 1
    assert done.stderr == f"smtptop: {link} is a symbolic link: refusing to write through it\n"
    assert victim.read_text() == "root's secret\n"
    info = victim.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)


REFUSED = [("-o", ["--duration", "30"], "daemon"), ("--error-log", ["--user", "nobody"], "nobody")]


@pytest.mark.root
@as_root
@pytest.mark.parametrize(("flag", "options", "user"), REFUSED, ids=[r[0] for r in REFUSED])
def test_an_output_the_dropped_user_cannot_write_is_refused_at_once(
    namespace: str, public: Path, flag: str, options: list[str], user: str
) -> None:
    """Finding #12: refused before a 30-second capture, not after it; nothing left behind.
    Through sudo, smtptop becomes the caller, who renames the report into place at the end."""
    private = public / "private"
    private.mkdir(mode=0o700)
    target = private / "out"
    began = time.monotonic()
    done = live(
        namespace, "--duration", "30", *options, flag, str(target), env={"SUDO_USER": "daemon"}
    )
    assert time.monotonic() - began < 10
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"smtptop: {flag} {target}: running as {user}, smtptop cannot write in {private}\n"
    )
    assert list(private.iterdir()) == []


@pytest.mark.root
@as_root
def test_a_report_for_root_is_made_before_root_is_given_up(namespace: str, public: Path) -> None:
    """Run by root itself, smtptop becomes nobody, who could neither write in root's folder
    nor should own the report: root makes it (0600) before the capture, nobody fills it."""
    private = public / "private"
    private.mkdir(mode=0o700)
    target = private / "report.json"
    done = live(namespace, "--duration", "0.5", "--json", "-o", str(target))
    assert (done.returncode, done.stderr) == (0, "")
    info = target.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o600)
    assert json.loads(target.read_text())["hosts"] == []
    assert list(private.iterdir()) == [target]


# -- the alert command's environment --------------------------------------------------------


async def test_alert_command_gets_a_minimal_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding #16: no secret of smtptop's environment reaches the command."""
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    monkeypatch.setenv("PATH", f"/root/bin:{os.environ['PATH']}")
    monkeypatch.setenv("TZ", "Europe/Rome")
    target = tmp_path / "alert.env"
    app = MonitorApp(FileSource([str(SAMPLE)]), alert_exec=f"env > {target}")
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + TIMEOUT
        while not target.exists() or "SMTPTOP_SCORE" not in target.read_text():
            assert time.monotonic() < deadline, "the alert command never ran"
            await pilot.pause(0.05)
    seen = dict(line.split("=", 1) for line in target.read_text().splitlines())
    seen.pop("PWD", None)  # the shell's own
    seen.pop("SHLVL", None)
    seen.pop("_", None)
    score = app.verdicts["192.168.0.108"].score
    assert seen == {
        "PATH": "/usr/bin:/bin",
        "HOME": pwd.getpwuid(os.getuid()).pw_dir,
        "TZ": "Europe/Rome",
        **({"LANG": os.environ["LANG"]} if "LANG" in os.environ else {}),
        **({"LC_ALL": os.environ["LC_ALL"]} if "LC_ALL" in os.environ else {}),
        "SMTPTOP_IP": "192.168.0.108",
        "SMTPTOP_VERDICT": "spambot",
        "SMTPTOP_SCORE": str(score),
    }
