"""Security of the derivative-module cache: nobody but the user chooses the code it runs.

The threat (docs/caching.md, "Threat model"): another local user who can write
the cache directory, a directory above it, or an entry, swaps in a directory,
a symlink or a file of theirs, and gets their code run in the victim's process.
Before issue 14 the cache checked the directory by path and then imported the
entry by path, so a symlink swapped in between the two won the race in under a
second.

The race tests run that attack for real: an attacker *process* (as the
unprivileged user ``nobody`` where the tests run as root, else as the same user)
swaps the cache path between the real directory, a symlink to its directory
and a directory of its own, both holding a module with the entry's exact name
and a valid seal that writes a marker file when run, while this process calls
``grad`` again and again. The marker must never appear, and every gradient must
be right. The other tests check each rule of the walk on its own.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import stat
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import s2sgrad
from s2sgrad import cache, memos

POSIX = hasattr(os, "geteuid") and hasattr(os, "O_NOFOLLOW")
ROOT = POSIX and os.geteuid() == 0
RACE_SECONDS = 2.5

pytestmark = pytest.mark.skipif(not POSIX, reason="POSIX ownership and modes")

USER_SOURCE = """\
import numpy as np


def loss(x):
    return np.sum(np.sin(x) * x**2)
"""

X = np.array([0.3, -1.2, 2.0])


def expected_grad(x):
    return np.cos(x) * x**2 + 2 * x * np.sin(x)


def _other_user() -> tuple[int, int] | None:
    """(uid, gid) of an unprivileged second user, if this process can act as one."""
    if not ROOT:
        return None
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


needs_root = pytest.mark.skipif(
    _other_user() is None, reason="needs root, to act as a second user (nobody)"
)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def loss(tmp_path_factory):
    """The user's function, in a file (s2sgrad reads its source); compiled once per module."""
    directory = tmp_path_factory.mktemp("user")
    (directory / "secmod.py").write_text(USER_SOURCE)
    sys.path.insert(0, str(directory))
    try:
        import secmod

        yield secmod.loss
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("secmod", None)


@pytest.fixture
def base(monkeypatch):
    """A fresh directory another user can traverse (not pytest's private tmp), with a
    clean in-process cache state."""
    directory = Path(tempfile.mkdtemp(prefix="s2sgrad-sec-")).resolve()
    os.chmod(directory, 0o755)
    memos.clear_all()
    cache._warned.clear()
    monkeypatch.setattr(cache, "stats", {"generated": 0, "loaded": 0, "memo": 0})
    yield directory
    memos.clear_all()
    shutil.rmtree(directory, ignore_errors=True)


def _use(monkeypatch, path: Path) -> None:
    monkeypatch.setenv(cache.ENV_VAR, str(path))
    memos.clear_all()


def _grad(loss):
    memos.clear_all()  # as a fresh process would: go to the disk cache
    g = s2sgrad.grad(loss)(X)
    np.testing.assert_allclose(g, expected_grad(X), rtol=1e-12)
    return g


def _real_entry(loss, base: Path, monkeypatch) -> Path:
    """Generate the entry in a private cache and return its file."""
    private = base / "private" / "cache"
    _use(monkeypatch, private)
    _grad(loss)
    [entry] = [p for p in private.iterdir() if p.name.startswith("secmod_loss_")]
    return entry


_SEAL = re.compile(r"# s2sgrad-cache key=([0-9a-f]{64}) sha256=[0-9a-f]{64}\n\Z")


def _malicious(entry: Path, marker: Path) -> bytes:
    """The real entry with code that writes ``marker`` on top, sealed again with the right
    key (the seal format of docs/caching.md): only ownership and descriptor checks can
    keep it out, not the seal."""
    text = entry.read_text()
    payload = f"open({str(marker)!r}, 'w').write('attacker code ran')\n"
    seal = _SEAL.search(text)
    if seal is None:  # an unsealed cache (before issue 14): nothing to forge
        return (payload + text).encode()
    body = (payload + text[: seal.start()]).encode()
    digest = hashlib.sha256(body).hexdigest()
    return body + f"# s2sgrad-cache key={seal[1]} sha256={digest}\n".encode()


def _plant(path: Path, data: bytes, owner: tuple[int, int] | None = None) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o644)
    if owner is not None:
        os.chown(path, *owner)


def _warnings_during(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if issubclass(w.category, cache.S2SGradCacheWarning)]


# ----------------------------------------------------------------------------- the walk


def test_missing_parents_are_created_private_even_under_umask_000(base, monkeypatch):
    """Before: parents were made with the umask (0777 under umask 000)."""
    target = base / "a" / "b" / "cache"
    _use(monkeypatch, target)
    old = os.umask(0)
    try:
        assert cache.cache_dir() == target
    finally:
        os.umask(old)
    for path in (base / "a", base / "a" / "b", target):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_parent_writable_by_others_is_refused(loss, base, monkeypatch):
    """Before: only the cache directory itself was checked, so anyone who can write a
    parent can swap the directory (same user here: the dir-check logic on its own)."""
    entry = _real_entry(loss, base, monkeypatch)
    shared = base / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # writable by everyone, not sticky
    (shared / "cache").mkdir(mode=0o700)
    marker = base / "marker"
    _plant(shared / "cache" / entry.name, _malicious(entry, marker))
    os.chmod(shared / "cache" / entry.name, 0o600)
    _use(monkeypatch, shared / "cache")
    caught = _warnings_during(lambda: _grad(loss))
    assert not marker.exists()
    [warning] = caught
    assert f"{shared} is writable by others (mode 0o777) and is not sticky" in str(warning.message)
    assert cache.stats["loaded"] == 0
    with pytest.raises(cache.UnsafeCacheDirError):
        cache.cache_dir()


@needs_root
def test_parent_writable_by_another_group_is_refused(base, monkeypatch):
    shared = base / "shared"
    shared.mkdir(mode=0o770)
    os.chmod(shared, 0o770)
    os.chown(shared, -1, _other_user()[1])
    _use(monkeypatch, shared / "cache")
    with pytest.raises(cache.UnsafeCacheDirError, match="writable by group"):
        cache.cache_dir()


def test_sticky_shared_parent_is_fine_with_our_own_directory_below(loss, base, monkeypatch):
    shared = base / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    _use(monkeypatch, shared / "me" / "cache")
    assert not _warnings_during(lambda: _grad(loss))
    _grad(loss)
    assert cache.stats["loaded"] >= 1


@needs_root
def test_parent_owned_by_another_user_is_refused_without_a_chmod_hint(loss, base, monkeypatch):
    shared = base / "theirs"
    shared.mkdir(mode=0o755)
    os.chown(shared, *_other_user())
    (shared / "cache").mkdir(mode=0o700)  # ours, but they can rename it away
    _use(monkeypatch, shared / "cache")
    with pytest.raises(
        cache.UnsafeCacheDirError, match=r"owned by .*uid \d+\), not by you"
    ) as info:
        cache.cache_dir()
    assert "chmod" not in str(info.value)
    assert cache.ENV_VAR in info.value.hint
    [warning] = _warnings_during(lambda: _grad(loss))
    assert "chmod" not in str(warning.message)


def test_a_symlinked_cache_path_is_followed_and_said(loss, base, monkeypatch):
    real = base / "real"
    real.mkdir(mode=0o700)
    link = base / "link"
    link.symlink_to(real)
    _use(monkeypatch, link / "cache")
    [warning] = _warnings_during(lambda: _grad(loss))
    assert f"cache path {link} is a symlink to {real}" in str(warning.message)
    assert [p.name for p in (real / "cache").iterdir()][0].startswith("secmod_loss_")
    assert not _warnings_during(lambda: _grad(loss))  # said once
    assert cache.stats["loaded"] == 1


@needs_root
def test_a_symlink_another_user_planted_in_a_sticky_dir_is_refused(loss, base, monkeypatch):
    sticky = base / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    theirs = base / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, *_other_user())
    link = sticky / "cache"
    link.symlink_to(theirs)
    os.lchown(link, *_other_user())
    _use(monkeypatch, link)
    with pytest.raises(cache.UnsafeCacheDirError, match="is a symlink owned by"):
        cache.cache_dir()


# ----------------------------------------------------------------------------- entries


def test_a_symlinked_entry_is_not_followed(loss, base, monkeypatch):
    """Before: the entry was imported through the symlink (an our-own, sealed file)."""
    entry = _real_entry(loss, base, monkeypatch)
    marker = base / "marker"
    elsewhere = base / "elsewhere.py"
    _plant(elsewhere, _malicious(entry, marker))
    os.chmod(elsewhere, 0o600)
    entry.unlink()
    entry.symlink_to(elsewhere)
    _grad(loss)
    assert not marker.exists()
    assert stat.S_ISREG(os.lstat(entry).st_mode)  # the link was replaced, not written through


@needs_root
def test_an_entry_owned_by_another_user_is_not_run(loss, base, monkeypatch):
    entry = _real_entry(loss, base, monkeypatch)
    marker = base / "marker"
    _plant(entry, _malicious(entry, marker), owner=_other_user())
    _grad(loss)
    assert not marker.exists()
    assert entry.stat().st_uid == os.geteuid()  # replaced


def test_an_unsealed_or_missealed_entry_is_not_run(loss, base, monkeypatch):
    entry = _real_entry(loss, base, monkeypatch)
    marker = base / "marker"
    forged = _malicious(entry, marker)
    for data in (forged.rsplit(b"# s2sgrad-cache", 1)[0], forged.replace(b"attacker", b"Attacker")):
        _plant(entry, data)
        os.chmod(entry, 0o600)
        _grad(loss)
        assert not marker.exists()


# ----------------------------------------------------------------------------- the race


def _renameat2():
    """libc's renameat2, resolved here (before forking), or None."""
    try:
        import ctypes

        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except (ImportError, OSError):
        return None


def _attacker(shared: Path, evil: Path, seconds: float, exchange) -> None:
    """Swap ``shared/cache`` with a symlink to ``evil`` and with a directory of ours, as
    fast as possible, for ``seconds``; write how many swaps to ``shared/swaps``."""
    os.chdir(shared)
    os.symlink(evil, "decoy_link")

    def swap(a: str, b: str) -> None:
        nonlocal exchange
        # Atomically exchange two names (Linux renameat2 RENAME_EXCHANGE), else 3 renames.
        if exchange is not None and exchange(-100, a.encode(), -100, b.encode(), 2) == 0:
            return
        exchange = None
        os.rename(a, "parked")
        os.rename(b, a)
        os.rename("parked", b)

    with open("ready", "w"):
        pass
    swaps = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for decoy in ("decoy_link", "decoy_dir"):
            for _ in range(2):
                swap("cache", decoy)
                swaps += 1
    with open("swaps", "w") as handle:
        handle.write(str(swaps))


def _skip_unless_the_other_user_can_act_in(base: Path) -> None:
    """Skip (with the reason) where this process cannot run code as the second user, or
    that user cannot reach ``base`` (a rootless container, a private $TMPDIR)."""
    uid, gid = _other_user()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX, if imported, warns about fork()
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.chdir(base)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        pytest.skip(f"cannot run a process as uid {uid} that reaches {base}")


def _start_attacker(shared: Path, evil: Path, ids: tuple[int, int] | None) -> int:
    """Fork the attacker process (as ``ids``, unprivileged, when given); return its pid.

    Forked rather than exec'd: the second user may not be able to run this
    interpreter (it can live in root's home). The child only makes system calls.
    """
    exchange = _renameat2()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX, if imported, warns about fork()
        pid = os.fork()
    if pid == 0:  # the attacker
        code = 1
        try:
            if ids is not None:
                os.setgroups([])
                os.setgid(ids[1])
                os.setuid(ids[0])
            _attacker(shared, evil, RACE_SECONDS, exchange)
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported through the exit code
            os.write(2, f"attacker failed: {exc!r}\n".encode())
        finally:
            os._exit(code)
    return pid


def _race(loss, base, monkeypatch, *, attacker_ids, parent_mode, trust_parent):
    """Set the stage, run the attacker process, call grad in a loop; return the stats."""
    entry = _real_entry(loss, base, monkeypatch)
    marker = base / "marker"
    owner = attacker_ids  # None: the attacker is this same user
    shared = base / "shared"
    shared.mkdir()
    os.chmod(shared, parent_mode)
    if owner is not None:
        os.chown(shared, *owner)
    cache_dir = shared / "cache"
    cache_dir.mkdir(mode=0o700)  # the victim's own directory, with its real entry
    shutil.copy2(entry, cache_dir / entry.name)
    for evil in (base / "evil", shared / "decoy_dir"):  # the attacker's: both kinds of swap
        evil.mkdir(mode=0o755)
        _plant(evil / entry.name, _malicious(entry, marker), owner)
        if owner is not None:
            os.chown(evil, *owner)

    if trust_parent:
        # As if the walk's parent check had a hole: the descriptor-relative opens, the
        # ownership checks on what was opened, must keep the attacker out on their own.
        real_problem = getattr(cache, "_dir_problem", None)  # (a cache without the walk: none)

        def lenient(path, st, me, *, final):
            return None if path == str(shared) else real_problem(path, st, me, final=final)

        monkeypatch.setattr(cache, "_dir_problem", lenient, raising=False)
    _use(monkeypatch, cache_dir)
    cache._warned.clear()
    monkeypatch.setattr(cache, "stats", {"generated": 0, "loaded": 0, "memo": 0})

    attacker = _start_attacker(shared, base / "evil", owner)
    calls = 0
    status = None
    try:
        deadline = time.monotonic() + 30
        while not (shared / "ready").exists():
            assert os.waitpid(attacker, os.WNOHANG) == (0, 0), "the attacker died"
            assert time.monotonic() < deadline, "the attacker did not start"
            time.sleep(0.01)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cache.S2SGradCacheWarning)
            while status is None:
                _grad(loss)  # asserts the gradient
                calls += 1
                assert not marker.exists(), f"attacker code ran, after {calls} calls"
                done, code = os.waitpid(attacker, os.WNOHANG)
                if done:
                    status = code
    finally:
        if status is None:
            os.kill(attacker, 9)
            os.waitpid(attacker, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the attacker failed"
    swaps = int((shared / "swaps").read_text())
    assert not marker.exists()
    assert swaps > 100 and calls > 20, (swaps, calls)  # the race really ran
    return dict(cache.stats)


@needs_root
@pytest.mark.parametrize("trust_parent", [False, True], ids=["walk", "descriptors-only"])
def test_symlink_swap_race_by_another_user(loss, base, monkeypatch, trust_parent):
    """The attacker (``nobody``) owns a parent of the cache directory and swaps the cache
    path for a symlink to, or a directory of, theirs, holding a sealed module that
    writes a marker. The walk refuses the parent outright; with that check disabled
    the descriptor checks alone still never run the attacker's module."""
    _skip_unless_the_other_user_can_act_in(base)
    stats = _race(
        loss,
        base,
        monkeypatch,
        attacker_ids=_other_user(),
        parent_mode=0o755,
        trust_parent=trust_parent,
    )
    if trust_parent:
        assert stats["loaded"] > 0  # the victim did use its real directory mid-race
    else:
        assert stats["loaded"] == 0  # refused: the parent is another user's


def test_symlink_swap_race_through_an_other_writable_parent(loss, base, monkeypatch):
    """The same race where the parent is writable by everyone (an attacker running as
    this same user stands in for any other user): the walk refuses the parent."""
    stats = _race(loss, base, monkeypatch, attacker_ids=None, parent_mode=0o777, trust_parent=False)
    assert stats["loaded"] == 0
