#!/usr/bin/env bash
# Check (and with --dry-run false, prepare) a machine for k12tune. Runs on a fresh machine before
# anything is installed: plain bash plus small `python3 -c` probes; it never imports k12tune.
# `scripts/setup_env.sh --help` explains every option; the README's "Check the machine" section
# says when to run it.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/setup_env.sh [--dry-run true|false] [--cpu] [--python PATH] [--root DIR]
                            [--min-disk-gb N] [--min-cache-gb N] [--min-gpu-gb N]

Checks what k12tune needs on this machine and prints one line per check,
  ok|warn|missing  <what>: <detail>
with "  fix: <command or step>" under every problem, then a summary.

Checks: Python >= 3.10 with venv and pip; the NVIDIA driver and each GPU (name, total and
free memory, from nvidia-smi); whether torch in .venv sees the GPU; free disk where the
repository and the Hugging Face cache live; Hugging Face login (the token is never shown);
HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE and HF_ENDPOINT, and in offline
mode whether the model and data are already on disk; make; .venv and its install stamp;
the folders data_raw/, data_proc/, outputs/.

Options:
  --dry-run true|false  true (default): only report; nothing is created or changed.
                        false: also do the safe fixes, then check again:
                          - create data_raw/, data_proc/, outputs/ under the root;
                          - create .venv and install into it: the GPU stack
                            (pip install -r requirements.txt, with the CUDA build of torch from
                            the default index) when nvidia-smi finds a GPU, or with --cpu the
                            CPU stack through the Makefile's own target (make .venv/.installed:
                            torch==2.13.0 first, then requirements-cpu.txt). An install whose
                            stamp is up to date is left alone.
                        It never logs in, never downloads a model or data set, never installs
                        drivers or system packages, and never deletes anything.
  --cpu                 Check for the CPU path only (make test, make demo: the tests and the
                        demo on a tiny model). No GPU is then not a problem. Without --cpu
                        the checks are for the GPU workflow (training Qwen2.5-7B), where a
                        missing GPU is blocking.
  --python PATH         The Python to check and to build .venv with (default: $PYTHON, else
                        python3, as in the Makefile).
  --root DIR            The k12tune checkout to check and prepare (default: the folder above
                        this script).
  --min-disk-gb N       GiB that must be free where the checkout lives (default 35): the CUDA
                        .venv (~8), raw and prepared data (~5), three kept checkpoints of SFT
                        and of alignment (~3) and one merged bf16 export of the 7B (~14.2).
  --min-cache-gb N      GiB that must be free where the Hugging Face cache lives (default 20):
                        Qwen2.5-7B-Instruct in bf16 (15.2 GB = 14.2 GiB) plus data sets. When the
                        cache and the checkout share a file system, the two are added (55).
  --min-gpu-gb N        GiB of free memory a GPU should have (default 22): the README's 24 GB
                        bf16 LoRA presets peak at 20.4 GiB (SFT) and 21.4 GiB (DPO, ORPO);
                        an idle 24 GB card shows about 23.5 GiB free. Below it, the 4-bit
                        presets (model.quantization=4bit, up to 18.8 GiB) may still fit.
  -h, --help            Show this help and exit.

Exit status: 0 when nothing blocking is missing (warnings allowed), 1 when something is
missing (a "missing" line), 2 for a usage error. Blocking: Python older than 3.10 or without
venv, too little disk, no usable .venv, torch in .venv unable to use the GPU, and for the GPU
workflow (no --cpu) no working nvidia-smi; with --cpu, no make. Warnings: little free GPU
memory, not logged in to the hub, offline mode without the model or data on disk, missing
data folders, a stale install stamp.

Environment read: PYTHON, HF_HOME (default $XDG_CACHE_HOME/huggingface, else
~/.cache/huggingface), HF_HUB_CACHE, HF_TOKEN, HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH,
HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE, HF_ENDPOINT, CUDA_VISIBLE_DEVICES.
EOF
}

die_usage() {
    echo "setup_env.sh: $1" >&2
    echo "Run scripts/setup_env.sh --help for the options." >&2
    exit 2
}

# ---------------------------------------------------------------- options
DRY_RUN=true
CPU_ONLY=false
PY="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MIN_DISK_GB=35
MIN_CACHE_GB=20
MIN_GPU_GB=22

need_value() {
    # $1 option, $2 number of remaining arguments
    [[ "$2" -ge 2 ]] || die_usage "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
    arg="$1"
    value=""
    if [[ "$arg" == --*=* ]]; then
        value="${arg#*=}"
        arg="${arg%%=*}"
        shift
    else
        case "$arg" in
            --dry-run | --python | --root | --min-disk-gb | --min-cache-gb | --min-gpu-gb)
                need_value "$arg" "$#"
                value="$2"
                shift 2
                ;;
            *) shift ;;
        esac
    fi
    case "$arg" in
        -h | --help)
            usage
            exit 0
            ;;
        --dry-run)
            case "$value" in
                true | false) DRY_RUN="$value" ;;
                *) die_usage "--dry-run takes true or false, not '$value'" ;;
            esac
            ;;
        --cpu) CPU_ONLY=true ;;
        --python) PY="$value" ;;
        --root) ROOT="$value" ;;
        --min-disk-gb | --min-cache-gb | --min-gpu-gb)
            [[ "$value" =~ ^[0-9]+$ ]] || die_usage "$arg takes a whole number of GiB, not '$value'"
            case "$arg" in
                --min-disk-gb) MIN_DISK_GB="$value" ;;
                --min-cache-gb) MIN_CACHE_GB="$value" ;;
                --min-gpu-gb) MIN_GPU_GB="$value" ;;
            esac
            ;;
        *) die_usage "unknown option '$arg'" ;;
    esac
done

[[ -d "$ROOT" ]] || die_usage "--root $ROOT is not a folder"
ROOT="$(cd "$ROOT" && pwd)"
grep -q '^name = "k12tune"' "$ROOT/pyproject.toml" 2>/dev/null ||
    die_usage "--root $ROOT is not a k12tune checkout (no pyproject.toml naming k12tune)"
VENV="$ROOT/.venv"
VENV_PY="$VENV/bin/python"
CPU_STAMP="$VENV/.installed"     # the Makefile's stamp: the CPU stack
GPU_STAMP="$VENV/.installed-gpu" # this script's stamp: pip install -r requirements.txt
DATA_DIRS=(data_raw data_proc outputs)
BASE_MODEL="Qwen/Qwen2.5-7B-Instruct"

HF_HOME_DIR="${HF_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/huggingface}"
HUB_CACHE="${HF_HUB_CACHE:-${HUGGINGFACE_HUB_CACHE:-$HF_HOME_DIR/hub}}"
TOKEN_FILE="${HF_TOKEN_PATH:-$HF_HOME_DIR/token}"

# ---------------------------------------------------------------- reporting
N_OK=0
N_WARN=0
N_MISSING=0
BLOCKING=()

# report STATUS WHAT DETAIL [FIX ...]: one line, then one "fix:" line per FIX.
report() {
    local status="$1" what="$2" detail="$3"
    shift 3
    printf '%-9s%s: %s\n' "$status" "$what" "$detail"
    case "$status" in
        ok) N_OK=$((N_OK + 1)) ;;
        warn) N_WARN=$((N_WARN + 1)) ;;
        missing)
            N_MISSING=$((N_MISSING + 1))
            BLOCKING+=("$what")
            ;;
    esac
    local fix
    for fix in "$@"; do
        printf '  fix: %s\n' "$fix"
    done
}

have() { command -v "$1" >/dev/null 2>&1; }

# Run a probe with a time limit where `timeout` exists (a broken driver can hang nvidia-smi).
limited() {
    if have timeout; then
        timeout "$@"
    else
        shift
        "$@"
    fi
}

is_true() {
    case "${1^^}" in
        1 | ON | YES | TRUE) return 0 ;;
        *) return 1 ;;
    esac
}

# ---------------------------------------------------------------- facts (no output)
PY_VERSION=""
PY_HAS_VENV=no
PY_HAS_ENSUREPIP=no
PY_HAS_PIP=no
PY_OK=false

probe_python() {
    PY_VERSION=""
    PY_OK=false
    have "$PY" || return 0
    local line
    # Written to run on any Python, so that an old one reports its version instead of crashing.
    line="$(limited 60 "$PY" -c '
import sys
v = sys.version_info
out = ["version=%d.%d.%d" % (v[0], v[1], v[2])]
for name in ("venv", "ensurepip", "pip"):
    try:
        __import__(name)
        out.append(name + "=yes")
    except Exception:
        out.append(name + "=no")
print(" ".join(out))
' 2>/dev/null)" || return 0
    local word
    for word in $line; do
        case "$word" in
            version=*) PY_VERSION="${word#version=}" ;;
            venv=*) PY_HAS_VENV="${word#venv=}" ;;
            ensurepip=*) PY_HAS_ENSUREPIP="${word#ensurepip=}" ;;
            pip=*) PY_HAS_PIP="${word#pip=}" ;;
        esac
    done
    local major minor
    IFS=. read -r major minor _ <<<"$PY_VERSION"
    if [[ -n "$major" && -n "$minor" ]] && ((major > 3 || (major == 3 && minor >= 10))); then
        PY_OK=true
    fi
}

GPU_ROWS=()
GPU_ERROR=""
GPU_PRESENT=false

probe_gpu() {
    GPU_ROWS=()
    GPU_ERROR=""
    GPU_PRESENT=false
    have nvidia-smi || return 0
    local out
    if ! out="$(limited 30 nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.free \
        --format=csv,noheader,nounits 2>&1)"; then
        GPU_ERROR="$(head -n 1 <<<"$out")"
        return 0
    fi
    local row
    while IFS= read -r row; do
        [[ -n "${row//[[:space:]]/}" ]] && GPU_ROWS+=("$row")
    done <<<"$out"
    if [[ ${#GPU_ROWS[@]} -gt 0 ]]; then
        GPU_PRESENT=true
    else
        GPU_ERROR="nvidia-smi lists no GPU"
    fi
}

# stamp_state TARGET -> none | stale | current
stamp_state() {
    local stamp prereqs
    if [[ "$1" == cpu ]]; then
        stamp="$CPU_STAMP"
        [[ -f "$stamp" ]] || {
            echo none
            return
        }
        # The Makefile knows its own prerequisites: ask it (question mode runs nothing).
        if have make && [[ -f "$ROOT/Makefile" ]]; then
            if make -q -C "$ROOT" .venv/.installed >/dev/null 2>&1; then echo current; else echo stale; fi
            return
        fi
        prereqs=(pyproject.toml requirements-cpu.txt)
    else
        stamp="$GPU_STAMP"
        [[ -f "$stamp" ]] || {
            echo none
            return
        }
        prereqs=(pyproject.toml requirements.txt)
    fi
    local file
    for file in "${prereqs[@]}"; do
        if [[ "$ROOT/$file" -nt "$stamp" ]]; then
            echo stale
            return
        fi
    done
    echo current
}

target() { if [[ "$CPU_ONLY" == true ]]; then echo "the CPU path (--cpu)"; else echo "the GPU workflow"; fi; }

# ---------------------------------------------------------------- checks (print)
check_python() {
    if ! have "$PY"; then
        report missing python "'$PY' not found" \
            "install Python 3.10 or newer with venv (Debian/Ubuntu: sudo apt-get install python3 python3-venv; or conda create -n k12tune python=3.11), then pass it with --python PATH"
        return
    fi
    if [[ -z "$PY_VERSION" ]]; then
        report missing python "'$PY' did not run" "check '$PY --version'; pass a working Python 3.10+ with --python PATH"
        return
    fi
    local where
    where="$(command -v "$PY")"
    if [[ "$PY_OK" != true ]]; then
        report missing python "$PY_VERSION at $where is older than 3.10 (pyproject.toml: requires-python >=3.10)" \
            "install Python 3.10 or newer (Ubuntu 22.04+: sudo apt-get install python3.11 python3.11-venv; or conda create -n k12tune python=3.11) and re-run with --python /path/to/python3.11"
        return
    fi
    report ok python "$PY_VERSION at $where"
    local minor="${PY_VERSION#*.}"
    minor="${minor%%.*}"
    if [[ "$PY_HAS_VENV" != yes || "$PY_HAS_ENSUREPIP" != yes ]]; then
        report missing "venv and pip" "$PY cannot create a virtual environment with pip (module venv: $PY_HAS_VENV, ensurepip: $PY_HAS_ENSUREPIP)" \
            "Debian/Ubuntu: sudo apt-get install python3.$minor-venv; elsewhere use a Python from python.org, pyenv or conda, which ship both"
    elif [[ "$PY_HAS_PIP" == yes ]]; then
        report ok "venv and pip" "venv and ensurepip available, pip installed"
    else
        report ok "venv and pip" "venv and ensurepip available (no pip in $PY itself; the .venv gets its own)"
    fi
}

check_gpu() {
    local cpu_path="the CPU path (pip install torch==2.13.0 && pip install -r requirements-cpu.txt, what make test and make demo install) runs the tests and the demo on a tiny model only; training Qwen2.5-7B needs a CUDA GPU"
    if ! have nvidia-smi; then
        if [[ "$CPU_ONLY" == true ]]; then
            report ok gpu "no nvidia-smi, so no NVIDIA GPU: fine for --cpu; $cpu_path"
        else
            report missing gpu "nvidia-smi not found: no NVIDIA driver, so no CUDA GPU for training" \
                "on a GPU machine install the NVIDIA driver (Ubuntu: sudo ubuntu-drivers install; or the driver from nvidia.com), reboot, and check that nvidia-smi lists the GPU" \
                "on a machine without a GPU re-run with --cpu: $cpu_path"
        fi
        return
    fi
    if [[ "$GPU_PRESENT" != true ]]; then
        local status=missing
        [[ "$CPU_ONLY" == true ]] && status=warn
        report "$status" gpu "nvidia-smi failed: $GPU_ERROR" \
            "run nvidia-smi and read its error; after a driver upgrade reboot (a 'Driver/library version mismatch' clears with a reboot), else reinstall the driver"
        return
    fi
    local cuda_line cuda=""
    cuda_line="$(limited 30 nvidia-smi 2>/dev/null | grep -o 'CUDA Version: *[0-9.]*' | head -n 1)" || true
    cuda="${cuda_line##*: }"
    cuda="${cuda// /}"
    local driver
    IFS=, read -r _ _ driver _ <<<"${GPU_ROWS[0]}"
    driver="$(trim "$driver")"
    local detail="driver $driver"
    [[ -n "$cuda" ]] && detail+=", supports CUDA up to $cuda"
    detail+=", ${#GPU_ROWS[@]} GPU(s)"
    [[ -n "${CUDA_VISIBLE_DEVICES+x}" ]] && detail+=" (CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; nvidia-smi lists all)"
    report ok "nvidia driver" "$detail"

    local need_mib=$((MIN_GPU_GB * 1024)) row index name total free
    for row in "${GPU_ROWS[@]}"; do
        IFS=, read -r index name _ total free <<<"$row"
        index="$(trim "$index")"
        name="$(trim "$name")"
        total="$(trim "$total")"
        free="$(trim "$free")"
        if ! [[ "$total" =~ ^[0-9]+$ && "$free" =~ ^[0-9]+$ ]]; then
            report warn "gpu $index" "$name: nvidia-smi gave no memory figures ('$total', '$free')" \
                "run nvidia-smi to see the card's memory"
            continue
        fi
        local memory="$name, $(gib "$total") GiB total, $(gib "$free") GiB free"
        if ((free >= need_mib)); then
            report ok "gpu $index" "$memory (>= $MIN_GPU_GB GiB)"
        elif ((total < need_mib)); then
            report warn "gpu $index" "$memory: the card itself is under $MIN_GPU_GB GiB, so the 24 GB bf16 LoRA presets do not fit" \
                "use QLoRA: model.quantization=4bit (the 24 GB 4-bit presets peak at 17.2-18.8 GiB) and take the micro-batch the stage's dry run proposes for gpu_memory_gb=$((total / 1024))"
        else
            report warn "gpu $index" "$memory, under the $MIN_GPU_GB GiB the 24 GB bf16 LoRA presets need (they peak at 20.4-21.4 GiB)" \
                "list what holds its memory: nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv; stop those processes (a desktop session also takes some)" \
                "or train on another GPU: CUDA_VISIBLE_DEVICES=<index> ..." \
                "or use QLoRA: model.quantization=4bit (the 24 GB 4-bit presets peak at 17.2-18.8 GiB)"
        fi
    done
}

trim() {
    local text="$1"
    text="${text#"${text%%[![:space:]]*}"}"
    text="${text%"${text##*[![:space:]]}"}"
    printf '%s' "$text"
}

# gib MIB -> GiB with one decimal
gib() { printf '%d.%d' $(($1 / 1024)) $((($1 % 1024) * 10 / 1024)); }

check_make() {
    if have make; then
        report ok make "$(command -v make)"
    elif [[ "$CPU_ONLY" == true ]]; then
        report missing make "not found: make test, make demo and the CPU install (make .venv/.installed) need it" \
            "Debian/Ubuntu: sudo apt-get install make"
    else
        report warn make "not found: make test and make demo need it (the GPU stages do not)" \
            "Debian/Ubuntu: sudo apt-get install make"
    fi
}

VENV_TORCH=""
VENV_CUDA=""
VENV_CUDA_OK=""
VENV_K12TUNE=""

probe_venv() {
    VENV_TORCH=""
    VENV_CUDA=""
    VENV_CUDA_OK=""
    VENV_K12TUNE=""
    [[ -x "$VENV_PY" ]] || return 0
    local line word
    line="$(limited 180 "$VENV_PY" -c '
import importlib.util as util
out = ["k12tune=" + ("yes" if util.find_spec("k12tune") else "no")]
if util.find_spec("torch") is None:
    out.append("torch=none")
else:
    import torch
    out += ["torch=" + torch.__version__, "cuda=" + str(torch.version.cuda), "available=" + str(torch.cuda.is_available())]
print(" ".join(out))
' 2>/dev/null)" || return 0
    for word in $line; do
        case "$word" in
            k12tune=*) VENV_K12TUNE="${word#k12tune=}" ;;
            torch=*) VENV_TORCH="${word#torch=}" ;;
            cuda=*) VENV_CUDA="${word#cuda=}" ;;
            available=*) VENV_CUDA_OK="${word#available=}" ;;
        esac
    done
}

check_venv() {
    local rel=".venv" install_fix
    if [[ "$CPU_ONLY" == true ]]; then
        install_fix="scripts/setup_env.sh --cpu --dry-run false (runs make .venv/.installed: torch==2.13.0, then requirements-cpu.txt)"
    else
        install_fix="scripts/setup_env.sh --dry-run false (python3 -m venv .venv && .venv/bin/pip install -r requirements.txt)"
    fi
    if [[ ! -x "$VENV_PY" ]]; then
        report missing venv "$rel not created" "$install_fix"
        return
    fi
    if [[ -z "$VENV_K12TUNE" ]]; then
        report missing venv "$rel/bin/python does not run" "remove the broken venv (rm -rf .venv), then $install_fix"
        return
    fi
    local cpu_state gpu_state
    cpu_state="$(stamp_state cpu)"
    gpu_state="$(stamp_state gpu)"
    local mine theirs mine_name theirs_name
    if [[ "$CPU_ONLY" == true ]]; then
        mine="$cpu_state" theirs="$gpu_state" mine_name="CPU stack (.venv/.installed, the Makefile's stamp)" theirs_name="GPU stack"
    else
        mine="$gpu_state" theirs="$cpu_state" mine_name="GPU stack (.venv/.installed-gpu)" theirs_name="CPU stack (make's .venv/.installed)"
    fi
    if [[ "$VENV_K12TUNE" != yes ]]; then
        report missing venv "$rel exists but k12tune is not installed in it" "$install_fix"
    elif [[ "$mine" == current ]]; then
        report ok venv "$rel has k12tune and the $mine_name, up to date"
    elif [[ "$mine" == stale ]]; then
        report warn venv "$rel has the $mine_name, installed before pyproject.toml or the requirements changed" "$install_fix"
    elif [[ "$theirs" != none ]]; then
        if [[ "$CPU_ONLY" == true ]]; then
            report ok venv "$rel has k12tune from the $theirs_name; make test and make demo add the CPU pins (torch==2.13.0, dev and eval extras) on first use"
        else
            # pip would keep the CPU torch (it satisfies torch>=2.4): only a fresh venv gets the CUDA build.
            report warn venv "$rel has k12tune from the $theirs_name, not requirements.txt (bitsandbytes, liger-kernel)" \
                "if the torch line says CPU-only build: rm -rf .venv && scripts/setup_env.sh --dry-run false on the GPU machine (pip keeps an installed CPU torch); otherwise: .venv/bin/pip install -r requirements.txt && touch .venv/.installed-gpu"
        fi
    else
        report warn venv "$rel has k12tune but no install stamp (installed by hand?)" "$install_fix"
    fi
}

check_torch() {
    [[ -x "$VENV_PY" && -n "$VENV_K12TUNE" ]] || return 0
    if [[ "$VENV_TORCH" == none || -z "$VENV_TORCH" ]]; then
        report missing torch "not installed in .venv" \
            "$([[ "$CPU_ONLY" == true ]] && echo ".venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -r requirements-cpu.txt" || echo ".venv/bin/pip install -r requirements.txt")"
        return
    fi
    local build="CUDA $VENV_CUDA build"
    [[ "$VENV_CUDA" == None ]] && build="CPU-only build"
    if [[ "$VENV_CUDA_OK" == True ]]; then
        if [[ "$GPU_PRESENT" == true ]]; then
            report ok torch "$VENV_TORCH in .venv ($build) sees the GPU: torch.cuda.is_available() is True"
        else
            report warn torch "$VENV_TORCH in .venv says CUDA is available but nvidia-smi finds no GPU" \
                "run nvidia-smi; check PATH (nvidia-smi is usually /usr/bin/nvidia-smi)"
        fi
        return
    fi
    if [[ "$GPU_PRESENT" != true ]]; then
        report ok torch "$VENV_TORCH in .venv ($build); no GPU here, so it runs on the CPU"
    elif [[ "$CPU_ONLY" == true ]]; then
        report ok torch "$VENV_TORCH in .venv ($build), as asked with --cpu; it will not use the GPU"
    elif [[ "$VENV_CUDA" == None ]]; then
        report missing torch "$VENV_TORCH in .venv is a CPU-only build: training would not use the GPU" \
            "rm -rf .venv && scripts/setup_env.sh --dry-run false (a fresh venv with requirements.txt takes the CUDA build from the default index; pip keeps an installed CPU torch because it satisfies torch>=2.4)"
    else
        report missing torch "$VENV_TORCH in .venv is built for CUDA $VENV_CUDA but torch.cuda.is_available() is False" \
            "a driver that supports CUDA $VENV_CUDA or newer (nvidia-smi shows what the driver supports), or a torch built for an older CUDA: .venv/bin/pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu<version>"
    fi
}

# free_kib PATH -> "KIB MOUNT" of the file system holding PATH (or its nearest existing parent)
free_kib() {
    local path="$1"
    while [[ ! -e "$path" && "$path" != / && -n "$path" ]]; do
        path="$(dirname "$path")"
    done
    df -Pk "$path" 2>/dev/null | awk 'NR == 2 { print $4, $6 }'
}

check_disk() {
    local repo_free repo_mount cache_free cache_mount
    read -r repo_free repo_mount <<<"$(free_kib "$ROOT")"
    read -r cache_free cache_mount <<<"$(free_kib "$HUB_CACHE")"
    local fix_disk="free space there (old checkpoints in outputs/, pip cache: pip cache purge, unused models: hf cache ls / hf cache rm), or put the HF cache on a larger disk: export HF_HOME=/big/disk/huggingface"
    if [[ -z "$repo_free" || -z "$cache_free" ]]; then
        report warn disk "df could not measure free space under $ROOT or $HUB_CACHE" "df -h $ROOT"
        return
    fi
    if [[ "$repo_mount" == "$cache_mount" ]]; then
        disk_line "disk (checkout and HF cache)" "$repo_free" "$repo_mount" $((MIN_DISK_GB + MIN_CACHE_GB)) \
            "$ROOT and $HUB_CACHE" "$fix_disk"
    else
        disk_line "disk (checkout)" "$repo_free" "$repo_mount" "$MIN_DISK_GB" "$ROOT" "$fix_disk"
        disk_line "disk (HF cache)" "$cache_free" "$cache_mount" "$MIN_CACHE_GB" "$HUB_CACHE" "$fix_disk"
    fi
}

disk_line() {
    local what="$1" kib="$2" mount="$3" need_gib="$4" where="$5" fix="$6"
    local free_gib
    free_gib="$(gib $((kib / 1024)))"
    if ((kib >= need_gib * 1024 * 1024)); then
        report ok "$what" "$free_gib GiB free on $mount (>= $need_gib GiB) for $where"
    else
        report missing "$what" "$free_gib GiB free on $mount, under the $need_gib GiB needed for $where" "$fix"
    fi
}

check_login() {
    # Under `bash -x` the tests below would trace the token's value: switch tracing off here.
    local traced=false
    if [[ $- == *x* ]]; then
        traced=true
        set +x
    fi
    check_login_untraced
    if [[ "$traced" == true ]]; then set -x; fi
}

check_login_untraced() {
    local name
    for name in HF_TOKEN HUGGING_FACE_HUB_TOKEN; do
        # ${!name} is only tested for emptiness, never printed.
        if [[ -n "${!name:-}" && -n "${!name//[[:space:]]/}" ]]; then
            report ok "hf login" "token in the environment variable $name (not shown; check it online with: hf auth whoami)"
            return
        fi
    done
    if [[ -f "$TOKEN_FILE" ]]; then
        if [[ ! -r "$TOKEN_FILE" ]]; then
            report warn "hf login" "token file $TOKEN_FILE is not readable by $(id -un 2>/dev/null || echo this user)" \
                "ls -l $TOKEN_FILE; or log in again: hf auth login"
            return
        fi
        if grep -q '[^[:space:]]' "$TOKEN_FILE" 2>/dev/null; then
            report ok "hf login" "token file $TOKEN_FILE (not shown; check it online with: hf auth whoami)"
            return
        fi
        report warn "hf login" "token file $TOKEN_FILE is empty" \
            "hf auth login (huggingface_hub < 0.34: huggingface-cli login), or export HF_TOKEN=<your token>"
        return
    fi
    report warn "hf login" "not logged in (no HF_TOKEN, no HUGGING_FACE_HUB_TOKEN, no $TOKEN_FILE); the model and data sets are public, so only rate limits and private repos need it" \
        "hf auth login (huggingface_hub < 0.34: huggingface-cli login), or export HF_TOKEN=<your token>"
}

# model_cached: the base's snapshot has its config and at least one safetensors file
model_cached() {
    local dir="$HUB_CACHE/models--${BASE_MODEL//\//--}/snapshots" snap
    [[ -d "$dir" ]] || return 1
    for snap in "$dir"/*/; do
        if [[ -e "$snap/config.json" ]] && compgen -G "$snap*.safetensors" >/dev/null; then
            return 0
        fi
    done
    return 1
}

# local_data NAME: data_raw/NAME holds .json/.jsonl/.parquet files (what prepare_data reads)
local_data() {
    local dir="$ROOT/data_raw/$1"
    [[ -d "$dir" ]] || return 1
    [[ -n "$(find "$dir" -type f \( -name '*.json' -o -name '*.jsonl' -o -name '*.parquet' \) -print -quit 2>/dev/null)" ]]
}

check_hub() {
    local endpoint="${HF_ENDPOINT:-}"
    # Never echo credentials that a mirror URL might carry (https://user:pass@host).
    endpoint="$(sed -E 's#(://)[^/@]*@#\1#' <<<"$endpoint")"
    local offline_vars=() name
    for name in HF_HUB_OFFLINE HF_DATASETS_OFFLINE TRANSFORMERS_OFFLINE; do
        if [[ -n "${!name:-}" ]] && is_true "${!name}"; then
            offline_vars+=("$name=${!name}")
        fi
    done
    if [[ ${#offline_vars[@]} -eq 0 ]]; then
        local hub="https://huggingface.co (default)"
        [[ -n "$endpoint" ]] && hub="$endpoint (HF_ENDPOINT)"
        report ok "hub access" "online: HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE not set; hub $hub (not contacted by this check)"
        if model_cached; then
            report ok "model $BASE_MODEL" "in the HF cache $HUB_CACHE"
        else
            report ok "model $BASE_MODEL" "not in the HF cache yet; the first run downloads it (15.2 GB) into $HUB_CACHE"
        fi
        return
    fi
    local detail="offline: ${offline_vars[*]}"
    [[ -n "$endpoint" ]] && detail+=" (HF_ENDPOINT=$endpoint is not used while offline)"
    report ok "hub access" "$detail; the model and data sets must already be on this machine"
    if model_cached; then
        report ok "model $BASE_MODEL" "in the HF cache $HUB_CACHE"
    else
        report warn "model $BASE_MODEL" "not in the HF cache $HUB_CACHE, and offline mode forbids downloading it" \
            "on a connected machine: hf download $BASE_MODEL (huggingface_hub < 0.34: huggingface-cli download, same arguments), then copy its folder $HUB_CACHE/models--${BASE_MODEL//\//--} to the same place here" \
            "or download with --local-dir /models/Qwen2.5-7B-Instruct, copy that folder here and set model.base=/models/Qwen2.5-7B-Instruct"
    fi
    local source hub_id include
    for source in "chinese_instruct Mxode/Chinese-Instruct --include \"stem_zh/*\" --include \"coig-cqia/*\" --include \"firefly/*\"" \
        "dpo_en_zh_20k llamafactory/DPO-En-Zh-20k"; do
        read -r name hub_id include <<<"$source"
        if local_data "$name"; then
            report ok "data $hub_id" "local files in data_raw/$name/ (prepare_data reads them and never the hub)"
        else
            report warn "data $hub_id" "no data files in data_raw/$name/, and offline mode forbids reading the hub" \
                "on a connected machine: hf download $hub_id --repo-type dataset${include:+ $include} --local-dir data_raw/$name, then copy data_raw/$name/ here (or set that source's weight: 0)"
        fi
    done
}

check_dirs() {
    local absent=() dir
    for dir in "${DATA_DIRS[@]}"; do
        [[ -d "$ROOT/$dir" ]] || absent+=("$dir/")
    done
    if [[ ${#absent[@]} -eq 0 ]]; then
        report ok folders "data_raw/ data_proc/ outputs/ exist under $ROOT"
    else
        report warn folders "${absent[*]} absent under $ROOT (the stages create their outputs; data_raw/ is where local data goes)" \
            "scripts/setup_env.sh --dry-run false, or: mkdir -p ${absent[*]}"
    fi
}

run_checks() {
    N_OK=0 N_WARN=0 N_MISSING=0
    BLOCKING=()
    probe_python
    probe_gpu
    probe_venv
    check_python
    check_gpu
    check_make
    check_venv
    check_torch
    check_disk
    check_login
    check_hub
    check_dirs
}

# ---------------------------------------------------------------- fixes (--dry-run false)
apply_fixes() {
    echo "== fixes =="
    local dir made=()
    for dir in "${DATA_DIRS[@]}"; do
        if [[ ! -d "$ROOT/$dir" ]]; then
            mkdir -p "$ROOT/$dir"
            made+=("$dir/")
        fi
    done
    if [[ ${#made[@]} -gt 0 ]]; then
        echo "did:     created ${made[*]} under $ROOT"
    else
        echo "skip:    data_raw/ data_proc/ outputs/ already exist"
    fi

    probe_python
    probe_gpu
    if [[ "$PY_OK" != true || "$PY_HAS_VENV" != yes || "$PY_HAS_ENSUREPIP" != yes ]]; then
        echo "skip:    .venv not built: $PY is not a Python 3.10+ with venv (see the checks below)"
        return 0
    fi
    if [[ "$CPU_ONLY" == true ]]; then
        if ! have make; then
            echo "skip:    .venv not built: the CPU install is the Makefile's target and make is missing"
        elif [[ "$(stamp_state cpu)" == current ]]; then
            echo "skip:    .venv/.installed is up to date: nothing to install"
        else
            echo "do:      make .venv/.installed PYTHON=$PY (torch==2.13.0, then requirements-cpu.txt)"
            if make -C "$ROOT" PYTHON="$PY" .venv/.installed; then
                echo "did:     CPU stack installed in .venv"
            else
                echo "failed:  make .venv/.installed exited $?; on a slow or closed network set a reachable index (pip config set global.index-url <mirror>) or a wheel folder (export PIP_FIND_LINKS=<dir>) and re-run"
            fi
        fi
        return 0
    fi
    if [[ "$GPU_PRESENT" != true ]]; then
        echo "skip:    .venv not built: no working nvidia-smi, and the GPU stack without a GPU would hide the problem (a CPU torch in .venv stays there once the driver works); re-run with --cpu for the CPU path"
        return 0
    fi
    if [[ "$(stamp_state gpu)" == current ]]; then
        echo "skip:    .venv/.installed-gpu is up to date: nothing to install"
        return 0
    fi
    if [[ -f "$CPU_STAMP" && ! -f "$GPU_STAMP" ]]; then
        probe_venv
        if [[ "$VENV_CUDA_OK" != True ]]; then
            echo "skip:    .venv holds make's CPU stack with a torch that cannot use the GPU, and pip would keep that torch; see the venv and torch lines below"
            return 0
        fi
    fi
    echo "do:      $PY -m venv .venv && .venv/bin/python -m pip install -r requirements.txt"
    if (
        cd "$ROOT" &&
            "$PY" -m venv .venv &&
            .venv/bin/python -m pip install --upgrade --quiet pip &&
            .venv/bin/python -m pip install -r requirements.txt &&
            touch .venv/.installed-gpu
    ); then
        echo "did:     GPU stack installed in .venv"
    else
        echo "failed:  the install exited $?; on a slow or closed network set a reachable index (pip config set global.index-url <mirror>) or a wheel folder (export PIP_FIND_LINKS=<dir>) and re-run"
    fi
}

# ---------------------------------------------------------------- main
mode="dry run: reporting only, nothing is changed"
[[ "$DRY_RUN" == false ]] && mode="fixing what is safe to fix, then checking again"
echo "k12tune machine check for $(target) in $ROOT ($mode)"
if [[ "$DRY_RUN" == false ]]; then
    apply_fixes
fi
echo "== checks =="
run_checks
echo "== summary =="
echo "$N_OK ok, $N_WARN warnings, $N_MISSING missing"
if [[ $N_MISSING -gt 0 ]]; then
    blocking="$(printf '%s, ' "${BLOCKING[@]}")"
    echo "blocking: ${blocking%, }"
    [[ "$DRY_RUN" == true ]] && echo "scripts/setup_env.sh --dry-run false does the automatic fixes (folders, .venv); the others need the steps above."
    exit 1
fi
exit 0
