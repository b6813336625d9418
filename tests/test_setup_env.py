"""scripts/setup_env.sh, run with bash in a controlled machine: a fake nvidia-smi (or none) on a
PATH that holds only the tools the script uses, HOME and HF_HOME in tmp_path, a checkout copy
under --root with a fake .venv whose python answers the torch probe with a canned line. No test
runs pip, creates a real venv or reads the real HF cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup_env.sh"
SECRET = "hf_SECRETtoken123"
TOOLS = (
    "bash",
    "sh",
    "dirname",
    "head",
    "grep",
    "awk",
    "df",
    "sed",
    "find",
    "id",
    "make",
    "timeout",
    "mkdir",
)
OPTIONS = (
    "--dry-run",
    "--cpu",
    "--python",
    "--root",
    "--min-disk-gb",
    "--min-cache-gb",
    "--min-gpu-gb",
    "--help",
)
GPU_4090 = "0, NVIDIA GeForce RTX 4090, 550.54.14, 24564, {free}"
TORCH_CUDA = "k12tune=yes torch=2.13.0+cu128 cuda=12.8 available=True"
TORCH_CPU = "k12tune=yes torch=2.13.0+cpu cuda=None available=False"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def write_exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


class Machine:
    """A fake machine in tmp_path: `tools/` (system tools), `bin/` (fake python3, nvidia-smi),
    `home/`, and `repo/` (the --root checkout: Makefile, pyproject.toml, requirements)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tools = tmp_path / "tools"
        self.bin = tmp_path / "bin"
        self.home = tmp_path / "home"
        self.repo = tmp_path / "repo"
        self.log = tmp_path / "calls.log"
        self.tools.mkdir()
        self.bin.mkdir()
        self.home.mkdir()
        self.repo.mkdir()
        for tool in TOOLS:
            found = shutil.which(tool)
            if found:
                (self.tools / tool).symlink_to(found)
        for name in ("Makefile", "pyproject.toml", "requirements.txt", "requirements-cpu.txt"):
            shutil.copy2(ROOT / name, self.repo / name)
        # Every call of the Python under check is logged, then run for real, except `-m venv`,
        # which fails: no test can build a real venv or reach pip through it.
        write_exe(
            self.bin / "python3",
            f'#!/bin/sh\necho "python3 $*" >> "{self.log}"\n'
            'case "$*" in *"-m venv"*) echo "venv refused in tests" >&2; exit 3 ;; esac\n'
            f'exec "{sys.executable}" "$@"\n',
        )
        self.env = {
            "PATH": f"{self.bin}:{self.tools}",
            "HOME": str(self.home),
            "HF_HOME": str(self.home / "hf"),
            "LC_ALL": "C",
        }

    def gpu(self, free_mib: int = 23987, rows: list[str] | None = None) -> None:
        rows = rows if rows is not None else [GPU_4090.format(free=free_mib)]
        table = " ".join(f"'{row}'" for row in rows)
        write_exe(
            self.bin / "nvidia-smi",
            "#!/bin/sh\n"
            'case "$*" in\n'
            f"  *--query-gpu=*) printf '%s\\n' {table} ;;\n"
            "  *) echo '| NVIDIA-SMI 550.54.14    Driver Version: 550.54.14    CUDA Version: 12.4 |' ;;\n"
            "esac\n",
        )

    def broken_gpu(self) -> None:
        write_exe(
            self.bin / "nvidia-smi",
            "#!/bin/sh\necho 'Failed to initialize NVML: Driver/library version mismatch'\nexit 18\n",
        )

    def venv(self, probe: str, stamp: str | None, stale: bool = False) -> None:
        """A fake .venv: its python logs its calls and prints `probe`; `stamp` is `.installed`
        (make's CPU stamp) or `.installed-gpu`, newer than its prerequisites unless `stale`."""
        venv = self.repo / ".venv"
        write_exe(
            venv / "bin" / "python", f'#!/bin/sh\necho "venv-python $*" >> "{self.log}"\necho "{probe}"\n'
        )
        if stamp:
            now = time.time()
            for name in ("Makefile", "pyproject.toml", "requirements.txt", "requirements-cpu.txt"):
                os.utime(self.repo / name, (now, now))
            (venv / stamp).touch()
            when = now + (-1000 if stale else 1000)
            os.utime(venv / stamp, (when, when))

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        cmd = ["bash", str(SCRIPT), "--root", str(self.repo), "--min-disk-gb", "0", "--min-cache-gb", "0"]
        return subprocess.run(
            [*cmd, *args], env={**self.env, **env}, capture_output=True, text=True, timeout=60, check=False
        )

    def calls(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def line(output: str, start: str) -> str:
    """The one report line of `start` (status and what, e.g. 'warn     gpu 0')."""
    found = [row for row in output.splitlines() if row.startswith(f"{start}:")]
    assert len(found) == 1, f"{start!r} not found once in:\n{output}"
    return found[0]


def summary(output: str) -> str:
    return output.split("== summary ==\n", 1)[1].splitlines()[0]


def tree(*roots: Path) -> dict[str, tuple[bool, int, float]]:
    return {
        str(path): (path.is_dir(), path.stat().st_size if path.is_file() else 0, path.stat().st_mtime)
        for root in roots
        for path in [root, *root.rglob("*")]
    }


def test_help_mentions_every_option_and_exits_0() -> None:
    result = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    for option in OPTIONS:
        assert option in result.stdout
    assert "Exit status" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--dry-run", "yes"],
        ["--min-gpu-gb", "lots"],
        ["--python"],
        ["--root", "/nonexistent/x"],
        ["--root", "/"],
    ],
)
def test_usage_errors_exit_2(machine: Machine, args: list[str]) -> None:
    result = subprocess.run(["bash", str(SCRIPT), *args], env=machine.env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "--help" in result.stderr


def test_gpu_with_enough_free_memory(machine: Machine) -> None:
    machine.gpu(free_mib=23987)
    machine.venv(TORCH_CUDA, ".installed-gpu")
    result = machine.run()
    out = result.stdout
    assert result.returncode == 0, out
    assert "driver 550.54.14, supports CUDA up to 12.4, 1 GPU(s)" in line(out, "ok       nvidia driver")
    assert "NVIDIA GeForce RTX 4090, 23.9 GiB total, 23.4 GiB free (>= 22 GiB)" in line(out, "ok       gpu 0")
    assert "torch.cuda.is_available() is True" in line(out, "ok       torch")
    assert "up to date" in line(out, "ok       venv")
    assert line(out, "ok       python").startswith(
        f"ok       python: {sys.version_info[0]}.{sys.version_info[1]}."
    )
    assert summary(out).endswith("0 missing")


def test_gpu_with_too_little_free_memory_warns_with_the_fixes(machine: Machine) -> None:
    machine.gpu(rows=[GPU_4090.format(free=23987), GPU_4090.format(free=6000).replace("0, ", "1, ", 1)])
    machine.venv(TORCH_CUDA, ".installed-gpu")
    result = machine.run()
    out = result.stdout
    assert result.returncode == 0, out  # a warning, not blocking
    line(out, "ok       gpu 0")
    assert "5.8 GiB free, under the 22 GiB" in line(out, "warn     gpu 1")
    after = out.split(line(out, "warn     gpu 1"), 1)[1]
    assert "nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv" in after
    assert "model.quantization=4bit" in after
    assert "CUDA_VISIBLE_DEVICES=<index>" in after
    # the threshold is an option
    assert machine.run("--min-gpu-gb=5").stdout.count("ok       gpu ") == 2


def test_small_card_gets_the_4bit_fix(machine: Machine) -> None:
    machine.gpu(rows=["0, NVIDIA GeForce RTX 4080, 550.54.14, 16376, 15800"])
    machine.venv(TORCH_CUDA, ".installed-gpu")
    out = machine.run().stdout
    assert "the card itself is under 22 GiB" in line(out, "warn     gpu 0")
    assert "model.quantization=4bit" in out


def test_no_nvidia_smi_blocks_the_gpu_workflow_but_not_the_cpu_path(machine: Machine) -> None:
    machine.venv(TORCH_CPU, ".installed")
    gpu_run = machine.run()
    assert gpu_run.returncode == 1
    assert "nvidia-smi not found" in line(gpu_run.stdout, "missing  gpu")
    assert "re-run with --cpu" in gpu_run.stdout
    assert "pip install torch==2.13.0 && pip install -r requirements-cpu.txt" in gpu_run.stdout
    assert "blocking: gpu" in gpu_run.stdout

    cpu_run = machine.run("--cpu")
    assert cpu_run.returncode == 0, cpu_run.stdout
    assert "make test and make demo" in line(cpu_run.stdout, "ok       gpu")
    assert "CPU stack (.venv/.installed, the Makefile's stamp), up to date" in line(
        cpu_run.stdout, "ok       venv"
    )


def test_failing_nvidia_smi_is_reported(machine: Machine) -> None:
    machine.broken_gpu()
    result = machine.run()
    assert result.returncode == 1
    assert "Driver/library version mismatch" in line(result.stdout, "missing  gpu")


def test_cpu_torch_on_a_gpu_machine_is_blocking(machine: Machine) -> None:
    machine.gpu()
    machine.venv(TORCH_CPU, ".installed-gpu")
    result = machine.run()
    assert result.returncode == 1
    assert "CPU-only build" in line(result.stdout, "missing  torch")
    assert "rm -rf .venv && scripts/setup_env.sh --dry-run false" in result.stdout


def test_venv_states(machine: Machine) -> None:
    machine.gpu()
    missing = machine.run()
    assert ".venv not created" in line(missing.stdout, "missing  venv")
    assert missing.returncode == 1
    machine.venv(TORCH_CUDA, ".installed-gpu", stale=True)
    stale = machine.run()
    assert "installed before pyproject.toml or the requirements changed" in line(
        stale.stdout, "warn     venv"
    )
    assert stale.returncode == 0


def test_old_python_is_blocking(machine: Machine) -> None:
    old = machine.bin / "python3.9"
    write_exe(old, '#!/bin/sh\necho "version=3.9.18 venv=yes ensurepip=yes pip=yes"\n')
    result = machine.run("--cpu", "--python", str(old))
    assert result.returncode == 1
    assert "3.9.18" in line(result.stdout, "missing  python")
    assert "--python" in result.stdout


def test_python_without_ensurepip_is_blocking(machine: Machine) -> None:
    debian = machine.bin / "python3.11"
    write_exe(debian, '#!/bin/sh\necho "version=3.11.2 venv=yes ensurepip=no pip=no"\n')
    result = machine.run("--cpu", "--python", str(debian))
    assert result.returncode == 1
    assert "sudo apt-get install python3.11-venv" in result.stdout


def test_too_little_disk_is_blocking(machine: Machine) -> None:
    machine.venv(TORCH_CPU, ".installed")
    result = machine.run("--cpu", "--min-disk-gb", "999999")
    assert result.returncode == 1
    assert "under the 999999 GiB needed" in result.stdout
    assert "HF_HOME" in result.stdout


@pytest.mark.parametrize("where", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "token file", "HF_TOKEN_PATH"])
def test_token_is_found_and_never_shown(machine: Machine, where: str) -> None:
    machine.venv(TORCH_CPU, ".installed")
    env: dict[str, str] = {}
    if where == "token file":
        token_file = machine.home / "hf" / "token"
    elif where == "HF_TOKEN_PATH":
        token_file = machine.home / "elsewhere" / "my-token"
        env["HF_TOKEN_PATH"] = str(token_file)
    else:
        token_file = None
        env[where] = SECRET
    if token_file:
        token_file.parent.mkdir(parents=True)
        token_file.write_text(SECRET + "\n")
    result = machine.run("--cpu", **env)
    assert SECRET not in result.stdout + result.stderr
    assert "SECRET" not in result.stdout + result.stderr
    login = line(result.stdout, "ok       hf login")
    assert (str(token_file) if token_file else f"environment variable {where}") in login
    assert "not shown" in login


def test_not_logged_in_is_a_warning(machine: Machine) -> None:
    machine.venv(TORCH_CPU, ".installed")
    (machine.home / "hf").mkdir()
    (machine.home / "hf" / "token").write_text("\n")  # empty: not logged in
    result = machine.run("--cpu", HF_TOKEN="")
    assert result.returncode == 0
    assert "is empty" in line(result.stdout, "warn     hf login")
    assert "hf auth login" in result.stdout
    assert "export HF_TOKEN=" in result.stdout


def test_offline_mode_says_what_must_be_on_disk(machine: Machine) -> None:
    machine.venv(TORCH_CPU, ".installed")
    result = machine.run("--cpu", HF_HUB_OFFLINE="1", HF_ENDPOINT="https://user:pw@hf-mirror.com")
    out = result.stdout
    assert result.returncode == 0  # warnings only
    assert "offline: HF_HUB_OFFLINE=1" in line(out, "ok       hub access")
    assert "https://hf-mirror.com" in out and "pw@" not in out
    assert "hf download Qwen/Qwen2.5-7B-Instruct" in out
    assert "hf download Mxode/Chinese-Instruct --repo-type dataset" in out
    assert (
        "hf download llamafactory/DPO-En-Zh-20k --repo-type dataset --local-dir data_raw/dpo_en_zh_20k" in out
    )
    line(out, "warn     model Qwen/Qwen2.5-7B-Instruct")

    # the model in the HF cache and the data in data_raw/ satisfy it
    snapshot = machine.home / "hf" / "hub" / "models--Qwen--Qwen2.5-7B-Instruct" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model-00001-of-00004.safetensors").write_text("")
    for name, file in (("chinese_instruct", "firefly/train.jsonl"), ("dpo_en_zh_20k", "dpo_zh.json")):
        (machine.repo / "data_raw" / name / file).parent.mkdir(parents=True, exist_ok=True)
        (machine.repo / "data_raw" / name / file).write_text("{}\n")
    ready = machine.run("--cpu", TRANSFORMERS_OFFLINE="true", HF_DATASETS_OFFLINE="1")
    assert "HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=true" in line(ready.stdout, "ok       hub access")
    line(ready.stdout, "ok       model Qwen/Qwen2.5-7B-Instruct")
    line(ready.stdout, "ok       data Mxode/Chinese-Instruct")
    line(ready.stdout, "ok       data llamafactory/DPO-En-Zh-20k")


def test_online_mode_reports_the_endpoint(machine: Machine) -> None:
    out = machine.run("--cpu", HF_ENDPOINT="https://hf-mirror.com").stdout
    assert "online" in line(out, "ok       hub access")
    assert "https://hf-mirror.com (HF_ENDPOINT)" in out


def test_dry_run_changes_nothing(machine: Machine) -> None:
    machine.gpu()
    machine.venv(TORCH_CUDA, ".installed-gpu", stale=True)
    before = tree(machine.repo, machine.home)
    for args in ([], ["--cpu", "--dry-run", "true"]):
        result = machine.run(*args)
        assert "dry run: reporting only" in result.stdout
    assert tree(machine.repo, machine.home) == before
    assert "-m pip" not in machine.calls() and "-m venv" not in machine.calls()
    assert "warn     folders: data_raw/ data_proc/ outputs/ absent" in result.stdout


@pytest.mark.parametrize(("cpu", "stamp"), [(True, ".installed"), (False, ".installed-gpu")])
def test_real_run_creates_folders_and_reinstalls_nothing_when_up_to_date(
    machine: Machine, cpu: bool, stamp: str
) -> None:
    machine.gpu()
    machine.venv(TORCH_CPU if cpu else TORCH_CUDA, stamp)
    venv_before = tree(machine.repo / ".venv")
    result = machine.run(*(["--cpu"] if cpu else []), "--dry-run", "false", HF_TOKEN=SECRET)
    assert result.returncode == 0, result.stdout
    assert SECRET not in result.stdout + result.stderr
    assert "did:     created data_raw/ data_proc/ outputs/" in result.stdout
    assert f".venv/{stamp} is up to date: nothing to install" in result.stdout
    for name in ("data_raw", "data_proc", "outputs"):
        assert (machine.repo / name).is_dir()
    assert tree(machine.repo / ".venv") == venv_before
    assert "-m pip" not in machine.calls() and "-m venv" not in machine.calls()
    line(result.stdout, "ok       folders")
    again = machine.run(*(["--cpu"] if cpu else []), "--dry-run", "false")
    assert "already exist" in again.stdout


def test_real_run_without_a_gpu_builds_no_venv(machine: Machine) -> None:
    result = machine.run("--dry-run", "false")
    assert result.returncode == 1
    assert "re-run with --cpu for the CPU path" in result.stdout
    assert not (machine.repo / ".venv").exists()
    assert "-m venv" not in machine.calls()


def test_token_is_not_traced_under_bash_x(machine: Machine) -> None:
    machine.venv(TORCH_CPU, ".installed")
    cmd = ["bash", "-x", str(SCRIPT), "--cpu", "--root", str(machine.repo), "--min-disk-gb", "0"]
    env = {**machine.env, "HF_TOKEN": SECRET}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "environment variable HF_TOKEN" in result.stdout
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("cpu", "attempt", "failure"),
    [
        (
            False,
            "-m venv .venv && .venv/bin/python -m pip install -r requirements.txt",
            "the install exited 3",
        ),
        (True, "make .venv/.installed PYTHON=", "make .venv/.installed exited 2"),
    ],
)
def test_real_run_installs_the_right_stack_and_reports_a_failure(
    machine: Machine, cpu: bool, attempt: str, failure: str
) -> None:
    machine.gpu()
    result = machine.run(*(["--cpu"] if cpu else []), "--dry-run", "false")
    assert result.returncode == 1  # the venv is still missing after the failed install
    assert any(row.startswith("do:") and attempt in row for row in result.stdout.splitlines())
    assert f"failed:  {failure}" in result.stdout
    assert "python3 -m venv .venv" in machine.calls()
    assert ".venv not created" in line(result.stdout, "missing  venv")


def test_real_run_leaves_a_cpu_stack_without_cuda_alone(machine: Machine) -> None:
    machine.gpu()
    machine.venv(TORCH_CPU, ".installed")
    result = machine.run("--dry-run", "false")
    assert "skip:    .venv holds make's CPU stack" in result.stdout
    assert "-m venv" not in machine.calls() and "-m pip" not in machine.calls()
    assert result.returncode == 1
    line(result.stdout, "missing  torch")
