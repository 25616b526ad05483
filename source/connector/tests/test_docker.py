"""The container image, checked without a Docker engine.

There is no Docker engine where these tests run, so they check what can be checked
without one: hadolint on the Dockerfile, its build inputs, the exec-form command, the
Dockerfile's own `pip install` lines reproduced on the host and the resulting command
started against the real test broker, the shipped `.env`, and the build script (with a
fake `docker` that records what it is asked to do).
"""

from __future__ import annotations

import ast
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO

import pytest
from dotenv import dotenv_values

import connector.settings
from connector.settings import Settings
from connector.tests.harness import WAIT_S, Mosquitto, free_port

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"
ENV_FILE = REPO / ".env"
BUILD_SCRIPT = REPO / "build_docker_image.sh"
# Not resolved: sys.executable may be a venv's symlink to the base interpreter.
VENV_BIN = Path(sys.executable).parent
# A first start from a fresh venv compiles every module; allow for a loaded machine.
START_TIMEOUT_S = 3 * WAIT_S
STOP_TIMEOUT_S = 5.0  # INTERFACE.md section 1: exit 0 within 5 seconds of SIGTERM

Instruction = tuple[str, str]  # (KEYWORD, arguments)


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions in order, continuation lines joined, comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops these, also between continuation lines
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def stages() -> list[list[Instruction]]:
    """The Dockerfile's build stages, each beginning with its FROM."""
    result: list[list[Instruction]] = []
    for keyword, arguments in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            result.append([])
        assert result, "the Dockerfile must begin with FROM (ARG before it is not used here)"
        result[-1].append((keyword, arguments))
    return result


def split_flags(arguments: str) -> tuple[list[str], str]:
    """(`--flag=value` options, the rest) of an instruction's arguments."""
    flags = []
    rest = arguments
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.lstrip()
    return flags, rest


def copy_operands(arguments: str) -> list[str]:
    """Sources and destination of a COPY/ADD, shell or JSON form."""
    _, rest = split_flags(arguments)
    operands = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    assert isinstance(operands, list)
    return [str(operand) for operand in operands]


def local_copies(stage: list[Instruction]) -> Iterator[tuple[list[str], str]]:
    """(sources, destination) of each COPY/ADD in a stage that takes from the build context."""
    for keyword, arguments in stage:
        if keyword in {"COPY", "ADD"} and not any(f.startswith("--from") for f in split_flags(arguments)[0]):
            *sources, destination = copy_operands(arguments)
            yield sources, destination


def container_command() -> list[str]:
    """ENTRYPOINT + CMD of the final stage, each of which must be exec form (a JSON list)."""
    command: dict[str, list[str]] = {}
    for keyword, arguments in stages()[-1]:
        if keyword in {"CMD", "ENTRYPOINT"}:
            try:
                parsed = json.loads(arguments)
            except ValueError:
                parsed = None
            assert isinstance(parsed, list), f"{keyword} {arguments} is shell form; a signal would reach /bin/sh"
            assert parsed and all(isinstance(part, str) for part in parsed), f"{keyword} {arguments}"
            command[keyword] = parsed
    return command.get("ENTRYPOINT", []) + command.get("CMD", [])


def package_version() -> str:
    """__version__ from source/connector/__init__.py, read the way setup.py reads it."""
    found = re.search(r'^__version__ = "([^"]+)"', (REPO / "source/connector/__init__.py").read_text(), re.M)
    assert found is not None
    return found.group(1)


class StderrLines:
    """A child's stderr, read line by line on a thread so the test can wait with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> str:
        """The first line containing `text`; fails with all of stderr after `timeout` or at EOF."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} on stderr within {timeout} s:\n{self.text()}") from None
            if line is None:
                raise AssertionError(f"stderr closed before {text!r}:\n{self.text()}")
            self.lines.append(line)
        return next(line for line in self.lines if text in line)

    def finish(self) -> None:
        """Wait for the reader to reach end of file, which follows the child's exit at once."""
        self._thread.join(timeout=WAIT_S)

    def text(self) -> str:
        """Everything read so far, for failure messages."""
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    """hadolint (from the dev requirements) reports nothing, down to info level, on the Dockerfile."""
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", str(DOCKERFILE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_path_the_dockerfile_copies_exists() -> None:
    """Each source of a COPY/ADD from the build context exists in the repository."""
    copied = [source for stage in stages() for sources, _ in local_copies(stage) for source in sources]
    assert copied, "the Dockerfile copies nothing from the repository"
    missing = [source for source in copied if not list(REPO.glob(source.lstrip("/")))]
    assert not missing, f"COPY/ADD sources missing from the repository: {missing}"


def test_container_command_is_exec_form() -> None:
    """The final stage's CMD/ENTRYPOINT are JSON lists, so the connector is PID 1 and gets SIGTERM."""
    assert container_command(), "the final stage has no CMD or ENTRYPOINT"


def reproduce_install(build_dir: Path, venv: Path) -> None:
    """Run the install stage's COPYs and `pip install` lines, in order, into `venv`."""
    install_stage = next(
        (stage for stage in stages() if any(k == "RUN" and a.startswith("pip install") for k, a in stage)), None
    )
    assert install_stage is not None, "no stage runs `pip install`"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    for keyword, arguments in install_stage:
        if keyword in {"COPY", "ADD"}:
            assert not any(f.startswith("--from") for f in split_flags(arguments)[0]), "unexpected COPY --from"
            *sources, destination = copy_operands(arguments)
            copy_into(build_dir, sources, destination)
        elif keyword == "RUN" and arguments.startswith("pip install"):
            command = [str(venv / "bin" / "pip"), *shlex.split(arguments)[1:]]
            result = subprocess.run(command, cwd=build_dir, capture_output=True, text=True, timeout=240, check=False)
            assert result.returncode == 0, f"{arguments} failed:\n{result.stdout}{result.stderr}"


def copy_into(build_dir: Path, sources: list[str], destination: str) -> None:
    """What `COPY sources destination` does with WORKDIR = build_dir."""
    assert not destination.startswith("/"), "install-stage COPYs are relative to its WORKDIR"
    for source in sources:
        origin, target = REPO / source, build_dir / destination
        if origin.is_dir():
            shutil.copytree(origin, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def healthcheck_command() -> list[str]:
    """The final stage's HEALTHCHECK command, which must be exec form (a JSON list after CMD)."""
    checks = [arguments for keyword, arguments in stages()[-1] if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "the final stage needs one HEALTHCHECK"
    _, rest = split_flags(checks[0])
    assert rest.startswith("CMD "), checks[0]
    command = json.loads(rest.removeprefix("CMD "))
    assert isinstance(command, list) and all(isinstance(part, str) for part in command), checks[0]
    return [str(part) for part in command]


def test_the_healthcheck_is_exec_form_on_the_images_python() -> None:
    """The HEALTHCHECK runs Python (the image has no curl) without a shell."""
    assert healthcheck_command()[0] == "python"


def assert_healthcheck_passes(workdir: Path, env: dict[str, str]) -> None:
    """Run the HEALTHCHECK command as Docker would (the container's environment, in WORKDIR): exit 0."""
    done = subprocess.run(
        healthcheck_command(), cwd=workdir, env=env, capture_output=True, text=True, timeout=WAIT_S, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("healthy: "), done.stdout


@pytest.mark.timeout(600)
def test_image_install_starts_and_stops_on_sigterm(broker: Mosquitto, tmp_path: Path) -> None:
    """The Dockerfile's install, redone on the host, yields a command that serves OCPP, passes the
    HEALTHCHECK and exits 0 on SIGTERM."""
    venv, build_dir, workdir = tmp_path / "venv", tmp_path / "build", tmp_path / "app"
    build_dir.mkdir()
    workdir.mkdir()
    reproduce_install(build_dir, venv)
    shutil.copy2(ENV_FILE, workdir / ".env")
    program, *arguments = container_command()
    executable = venv / "bin" / program
    assert executable.exists(), f"{program} is not in the installed venv"
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "OCPP_PORT": "0",
        # A fixed port, as in a container, for the HEALTHCHECK to find.
        "HTTP_PORT": str(free_port()),
        "HTTP_HOST": "127.0.0.1",
        "OCPP_HOST": "127.0.0.1",
        "MQTT_BROKER_HOST": "127.0.0.1",
        "MQTT_BROKER_PORT": str(broker.port),
        "STATE_DIR": str(tmp_path / "state"),
    }
    with subprocess.Popen(
        [str(executable), *arguments], cwd=workdir, env=env, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        stderr = StderrLines(process.stderr)
        try:
            # 127.0.0.1, not the .env's 0.0.0.0: set variables win over the .env file.
            listening = stderr.wait_for("OCPP server listening on", START_TIMEOUT_S)
            assert "OCPP server listening on ws://127.0.0.1:" in listening
            stderr.wait_for("connected to MQTT broker", START_TIMEOUT_S)
            assert_healthcheck_passes(workdir, env)
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"still running {STOP_TIMEOUT_S} s after SIGTERM:\n{stderr.text()}") from None
            stderr.finish()
            assert code == 0, f"exit status {code} after SIGTERM:\n{stderr.text()}"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            stderr.finish()  # before Popen's exit closes the pipe under the reader


def variables_settings_read() -> set[str]:
    """Every NAME in a `x.method("NAME", ...)` call in settings.py: the variables it reads."""
    tree = ast.parse(Path(connector.settings.__file__).read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and re.fullmatch(r"[A-Z][A-Z0-9_]*", node.args[0].value)
    }


def test_env_file_sets_exactly_the_defaults() -> None:
    """Loading the shipped .env yields the same settings as an empty environment."""
    values = {name: value for name, value in dotenv_values(ENV_FILE).items() if value is not None}
    # Compared as dicts so a failure shows which field differs.
    assert asdict(Settings.from_env(values)) == asdict(Settings())


def test_env_file_names_every_variable_and_only_those() -> None:
    """Every variable settings.py reads is in .env (set or commented out), and .env sets no other."""
    text = ENV_FILE.read_text()
    read = variables_settings_read()
    assert {"CONNECTOR_NAME", "MQTT_PASSWORD", "STATE_DIR"} <= read, "settings.py parsed wrongly"
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M))
    assert not read - listed, f"missing from .env: {sorted(read - listed)}"
    assigned = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M))
    assert not assigned - read, f".env sets variables the connector does not read: {sorted(assigned - read)}"


def test_build_script_is_valid_bash() -> None:
    """`bash -n` accepts build_docker_image.sh, and it is executable."""
    subprocess.run(["bash", "-n", str(BUILD_SCRIPT)], check=True, timeout=30)
    assert os.access(BUILD_SCRIPT, os.X_OK)


def fake_docker(bin_dir: Path, log: Path, info_status: int) -> None:
    """A `docker` that appends its arguments (one per line, then `--END--`) to `log`."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'for arg in "$@"; do printf \'%s\\n\' "$arg"; done >> {shlex.quote(str(log))}\n'
        f"echo --END-- >> {shlex.quote(str(log))}\n"
        f'if [ "$1" = info ]; then exit {info_status}; fi\n'
    )
    script.chmod(0o755)


def docker_calls(log: Path) -> list[list[str]]:
    """The argument lists the fake docker was called with, in order."""
    if not log.exists():
        return []
    calls: list[list[str]] = [[]]
    for line in log.read_text().splitlines():
        if line == "--END--":
            calls.append([])
        else:
            calls[-1].append(line)
    return calls[:-1]


def test_build_script_tags_the_package_version(tmp_path: Path) -> None:
    """From another directory, the script builds the repo as ocpp-connector:<__version__> and :latest."""
    log = tmp_path / "docker.log"
    fake_docker(tmp_path / "bin", log, info_status=0)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(BUILD_SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    builds = [call for call in docker_calls(log) if call[:1] == ["build"]]
    assert len(builds) == 1, docker_calls(log)
    build = builds[0]
    tags = {build[i + 1] for i, arg in enumerate(build) if arg in {"--tag", "-t"}}
    tags |= {arg.split("=", 1)[1] for arg in build if arg.startswith("--tag=")}
    assert tags == {f"ocpp-connector:{package_version()}", "ocpp-connector:latest"}
    assert Path(build[-1]).resolve() == REPO, "the build context must be the repository root"


@pytest.mark.parametrize("situation", ["docker missing", "no engine"])
def test_build_script_without_an_engine_fails_in_one_line(tmp_path: Path, situation: str) -> None:
    """With no docker command, or one whose engine does not answer, the script prints one line and exits 1."""
    log = tmp_path / "docker.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sed", "dirname"):  # all the script needs before it looks for docker
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    if situation == "no engine":
        fake_docker(bin_dir, log, info_status=1)
    result = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(BUILD_SCRIPT)],
        cwd=tmp_path,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "docker" in result.stderr.lower()
    assert not any(call[:1] == ["build"] for call in docker_calls(log))
