"""The disk cache of compiled kernels under hostile conditions (SPEC §5: "where the package's
own folder is read-only the cache goes to a writable user cache folder instead of failing").

Every case runs a fresh interpreter on a temporary copy of the package, so the real cache in
``fastact/__pycache__`` is never touched:

- read-only package folder, writable ``HOME``: the cache goes to ``$HOME/.cache/numba`` and
  a second process loads from it;
- read-only package and unwritable ``HOME``: kernels compile in memory, no error;
- ``NUMBA_CACHE_DIR`` set (cache there) or unset (cache in the package's ``__pycache__``);
- corrupted cache files (truncated, garbled, emptied ``.nbi``/``.nbc``): still correct;
- a stale cache (the formulas changed since it was written): the new formulas run.

Read-only as root: CI runs as root, for whom ``chmod`` stops nothing. The child runs under
``setpriv --bounding-set=-dac_override,-dac_read_search``: still uid 0 (so it can read the
interpreter under ``/root``), but without the capabilities that bypass file permissions, so
a ``0555`` folder is as read-only for it as for any user. Without ``setpriv`` as root the
read-only cases are skipped (saying why); as a normal user ``chmod`` is enough.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fastact
from fastact import _cpu

PKG = Path(fastact.__file__).parent

# one worker runs this whole module: its module-scoped fixture (a subprocess) runs once
pytestmark = pytest.mark.xdist_group("cache")

# The child's work: flat kernels (serial and parallel, float64 and float32), each cached on
# disk; prints the results' bytes as hex.
CHILD = r"""
import json, sys
import numpy as np
import fastact

assert fastact.__file__.startswith(sys.argv[1]), fastact.__file__
x = np.linspace(-4, 4, 203)
res = [fastact.relu(x, target="cpu"), fastact.relu(x, target="parallel"),
       fastact.relu(x.astype(np.float32), target="cpu"), fastact.relu_grad(x, target="cpu")]
print(json.dumps([v.tobytes().hex() for v in res]))
"""


def expected() -> list:
    x = np.linspace(-4, 4, 203)
    res = [np.maximum(x, 0), np.maximum(x, 0), np.maximum(x.astype(np.float32), 0),
           (x > 0).astype(np.float64)]  # fmt: skip
    return [v.tobytes().hex() for v in res]


def _setpriv() -> list[str] | None:
    """A prefix that runs a command without permission-bypassing capabilities, or None if
    permissions cannot be enforced."""
    if os.geteuid() != 0:
        return []
    exe = shutil.which("setpriv")
    if exe is None:
        return None
    probe = subprocess.run(
        [exe, "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", "0"],
        capture_output=True,
    )
    return [exe, "--bounding-set=-dac_override,-dac_read_search"] if probe.returncode == 0 else None


@pytest.fixture
def work():
    """A temporary folder (0755: readable by the child) removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="fastact-cache-"))
    d.chmod(0o755)
    yield d
    for p in [d, *d.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
    shutil.rmtree(d)


def copy_package(root: Path) -> Path:
    dst = root / "src"
    shutil.copytree(PKG, dst / "fastact", ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def run_child(src: Path, home: Path, cache_dir: Path | None = None, prefix=()) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "FASTACT_"))}
    env.pop("XDG_CACHE_HOME", None)
    env.update(PYTHONPATH=str(src), HOME=str(home), PYTHONDONTWRITEBYTECODE="1",
               NUMBA_DEBUG_CACHE="1")  # fmt: skip
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", CHILD, str(src)],
        cwd=src, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == expected()
    return proc.stdout


def cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc"))


def loaded(stdout: str) -> bool:
    return "[cache] data loaded from" in stdout


def test_cache_in_package_pycache_and_reused(work):
    src = copy_package(work)
    home = work / "home"
    home.mkdir()
    assert not loaded(run_child(src, home))
    files = cache_files(src / "fastact" / "__pycache__")
    assert any(f.name.startswith("_cpu.relu_n1_par") for f in files)
    assert not cache_files(home)
    assert loaded(run_child(src, home))


@pytest.fixture(scope="module")
def seeded():
    """A package copy and a NUMBA_CACHE_DIR that one child run has filled. Tests copy the
    cache folder but share the package: Numba files the cache under a hash of the source
    folder's path, so a moved package would never see it."""
    d = Path(tempfile.mkdtemp(prefix="fastact-seed-"))
    d.chmod(0o755)
    src = copy_package(d)
    (d / "home").mkdir()
    assert not loaded(run_child(src, d / "home", d / "numba-cache"))
    yield d
    shutil.rmtree(d)


def from_seed(seeded: Path, work: Path) -> tuple[Path, Path, Path]:
    home, cdir = work / "home", work / "numba-cache"
    home.mkdir()
    shutil.copytree(seeded / "numba-cache", cdir)
    return seeded / "src", home, cdir


def test_numba_cache_dir_is_used_when_set(seeded, work):
    src, home, cdir = from_seed(seeded, work)
    assert any(f.name.startswith("_cpu.relu_n1_par") for f in cache_files(cdir))
    assert not cache_files(src) and not cache_files(seeded / "home")
    assert loaded(run_child(src, home, cdir))


def test_corrupted_cache_files_are_a_miss(seeded, work):
    """Index and data files truncated, garbled or emptied: correct results, no exception;
    the cache is rewritten and loads again afterwards."""
    src, home, cdir = from_seed(seeded, work)
    files = {f.name.split("-")[0].split(".")[1] + f.name[-3:]: f for f in cache_files(cdir)}
    ser = sorted(f for f in cache_files(cdir) if "relu_n1_ser" in f.name and f.suffix == ".nbc")
    assert len(ser) == 2, ser  # float64 and float32: damage the data, keep the index
    garble = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    ser[0].write_bytes(ser[0].read_bytes()[:100])
    ser[1].write_bytes(garble[: ser[1].stat().st_size])
    par_nbi = files["relu_n1_par" + "nbi"]  # the index itself: garbled, truncated, empty
    par_nbi.write_bytes(garble[: par_nbi.stat().st_size])
    grad_nbi = files["relu_grad_n1_ser" + "nbi"]
    grad_nbi.write_bytes(grad_nbi.read_bytes()[:40])
    out = run_child(src, home, cdir)  # results are checked in run_child
    assert not loaded(out)
    assert loaded(run_child(src, home, cdir))
    files["relu_n1_par" + "nbi"].write_bytes(b"")
    run_child(src, home, cdir)


def test_cache_entries_holding_other_code_are_a_miss(seeded, work):
    """The float64 and float32 entries of a kernel naming each other's data file (what two
    processes saving at once could leave with Numba's own save): correct results, no
    exception; the entries are rewritten and load again afterwards."""
    src, home, cdir = from_seed(seeded, work)
    ser = sorted(f for f in cache_files(cdir) if "relu_n1_ser" in f.name and f.suffix == ".nbc")
    assert len(ser) == 2, ser
    a, b = ser[0].read_bytes(), ser[1].read_bytes()
    ser[0].write_bytes(b)
    ser[1].write_bytes(a)
    run_child(src, home, cdir)  # results are checked in run_child
    assert loaded(run_child(src, home, cdir))


@pytest.mark.skipif(_cpu.fcntl is None, reason="no fcntl on this platform: saves take no lock")
def test_saving_waits_for_the_index_lock(work):
    """A save holds INDEX.lock from reading the index to writing it: one that finds the lock
    taken waits, then keeps the entry that the holder saved and takes the next data file."""
    import fcntl
    import threading

    def cache_file():
        return _cpu._RobustCacheFile(str(work), "k", "stamp")

    holder = cache_file()
    with open(holder._index_path + ".lock", "ab") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        saver = threading.Thread(target=cache_file().save, args=("b", ("B",)))
        saver.start()
        saver.join(0.5)
        assert saver.is_alive()  # waiting for the lock
        holder._save_data(holder._data_name(1), ("A",))  # the holder's own save
        holder._save_index({"a": holder._data_name(1)})
        fcntl.flock(fh, fcntl.LOCK_UN)
    saver.join(30)
    assert not saver.is_alive()
    reader = cache_file()
    assert reader.load("a") == ("A",) and reader.load("b") == ("B",)


def test_stale_cache_is_not_used_after_formulas_change(work):
    """The same package folder and cache, the formulas edited in between: the new formula
    runs (fastact's key holds a hash of the formula sources; Numba's only the kernel file's)."""
    src = copy_package(work)
    home, cdir = work / "home", work / "numba-cache"
    home.mkdir()
    run_child(src, home, cdir)
    formulas = src / "fastact" / "_formulas.py"
    text = formulas.read_text()
    old = "def relu(x):\n    return type(x)(0) if x <= 0 else x\n"
    assert old in text
    formulas.write_text(text.replace(old, "def relu(x):\n    return x + type(x)(1)\n"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "FASTACT_"))}
    env.update(PYTHONPATH=str(src), HOME=str(home), NUMBA_CACHE_DIR=str(cdir))
    code = (
        "import numpy as np, fastact; x = np.linspace(-4, 4, 203);"
        "print(np.array_equal(fastact.relu(x, target='cpu'), x + 1),"
        " np.array_equal(fastact.relu(x, target='parallel'), x + 1))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["True", "True"]


def _enforcing_prefix() -> list[str]:
    prefix = _setpriv()
    if prefix is None:
        pytest.skip(
            "running as root without a usable setpriv: file permissions cannot be enforced"
        )
    return prefix


def test_read_only_package_caches_in_user_folder(work):
    prefix = _enforcing_prefix()
    src = copy_package(work)
    read_only(src)
    home = work / "home"
    home.mkdir()
    assert not loaded(run_child(src, home, prefix=prefix))
    assert not cache_files(src)
    user = cache_files(home / ".cache" / "numba")
    assert any(f.name.startswith("_cpu.relu_n1_par") for f in user)
    assert loaded(run_child(src, home, prefix=prefix))


def test_read_only_package_and_home_compile_in_memory(work):
    """No writable cache folder at all (package, $HOME and NUMBA_CACHE_DIR read-only):
    kernels compile in memory, no RuntimeError."""
    prefix = _enforcing_prefix()
    src = copy_package(work)
    home, cdir = work / "home", work / "ro-cache"
    home.mkdir()
    cdir.mkdir()
    for p in (src, home, cdir):
        read_only(p)
    assert not loaded(run_child(src, home, cdir, prefix=prefix))
    assert not cache_files(work)


# Each name's result on 3 elements (shorter than a block: all in the padded last block).
PAIR = r"""
import json, sys
import numpy as np
import fastact

x = np.array([-1.0, 0.5, 7.0])
print(json.dumps({n: getattr(fastact, n)(x, target="cpu").tolist() for n in sys.argv[1:]}))
"""


def test_kernels_compiled_by_different_processes_keep_their_own_code(work):
    """relu_grad and relu6_grad compiled by two processes, each the same sequence of
    compilations (so the same per-process counters in Numba's symbol names), then loaded from
    the cache by a third: each runs its own code. When their generated last-block helpers
    shared a qualified name, both calls ran whichever loaded first."""
    src = copy_package(work)
    home, cdir = work / "home", work / "numba-cache"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "FASTACT_"))}
    env.update(PYTHONPATH=str(src), HOME=str(home), NUMBA_CACHE_DIR=str(cdir),
               NUMBA_DEBUG_CACHE="1")  # fmt: skip

    def child(*names):
        proc = subprocess.run([sys.executable, "-c", PAIR, *names], cwd=src, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    want = {"relu_grad": [0.0, 1.0, 1.0], "relu6_grad": [0.0, 1.0, 0.0]}
    for name in want:
        assert json.loads(child(name).strip().splitlines()[-1]) == {name: want[name]}
    for names in (["relu_grad", "relu6_grad"], ["relu6_grad", "relu_grad"]):
        out = child(*names)
        assert loaded(out)
        assert json.loads(out.strip().splitlines()[-1]) == want


UFUNC_CHILD = r"""
import numpy as np
import fastact
from fastact import _dispatch, _ufunc_loop

x = np.linspace(-4, 4, 203).astype(np.float32)[::-1]  # (strided: the loop's block path too)
g = np.ones_like(x)
for _ in range(_dispatch.SerialUfuncs.WARM_CALLS):
    y = fastact.relu_(x.copy())
    b = fastact.relu_backward(g, x)
print(_ufunc_loop._build.cache_info().currsize,
      np.array_equal(y, np.maximum(x, 0)), np.array_equal(b, (x > 0).astype(np.float32)),
      np.array_equal(fastact.relu(x), np.maximum(x, 0)))
"""


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="the small-call ufunc is built on x86-64 only (its loop clears the MXCSR flags)",
)
def test_small_call_ufunc_loops_are_cached_and_reused(work):
    """The ufuncs of the small calls (``_ufunc_loop``), forward and backward: their loops
    are saved to the disk cache by the first process, loaded by the next, and the loaded
    loops (which find the kernels through addresses handed to them at run time) compute
    the same values."""
    src = copy_package(work)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "FASTACT_"))}
    env.update(PYTHONPATH=str(src), HOME=str(work), NUMBA_CACHE_DIR=str(work / "nc"),
               NUMBA_DEBUG_CACHE="1")  # fmt: skip
    for verb in ("saved to", "loaded from"):
        proc = subprocess.run([sys.executable, "-c", UFUNC_CHILD], cwd=src, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stdout.strip().splitlines()
        assert lines[-1].split() == ["2", "True", "True", "True"], lines[-1]
        for loop in ("relu_uf1_float32", "relu_grad_uf2_float32"):
            assert any(f"data {verb}" in ln and loop in ln for ln in lines), (verb, loop)
