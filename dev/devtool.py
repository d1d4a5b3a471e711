#!/usr/bin/env python3
"""Developer commands behind the Makefile: test, run, bench, i18n.

Runs with any Python 3.10+ and the standard library only; everything else
(Odoo's requirements, pytest, linters, click-odoo-contrib, whool) goes into
one virtual environment in a cache folder (OCA's checks into a second one),
so a fresh machine needs nothing but Python, git and a PostgreSQL server;
as root it adds the Debian packages it misses (build headers, Chromium,
gettext).

Odoo 18 comes from, in this order: a Python given as ODOO_PYTHON (or the
`python3` on PATH) that can already `import odoo`; a source tree in
ODOO_SRC or the cache folder; a shallow clone of the official 18.0 branch
into the cache folder. When none of these works the command says what is
missing.
"""

import argparse
import ast
import email.parser
import fnmatch
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDON = "sicantik_connector"
CACHE = Path(
    os.environ.get("SICANTIK_CACHE") or Path.home() / ".cache" / "sicantik_connector"
)
VENV = CACHE / "venv"
VENV_PY = VENV / "bin" / "python"
OCA_VENV = CACHE / "venv-oca"
ODOO_SRC = Path(os.environ.get("ODOO_SRC") or CACHE / "odoo-18.0")
ODOO_GIT = "https://github.com/odoo/odoo.git"
DATA_DIR = CACHE / "odoo-data"
DEV = ROOT / "dev"
SANDBOX_PORT = int(os.environ.get("SANDBOX_PORT", "8765"))
ODOO_PORT = int(os.environ.get("ODOO_PORT", "8069"))
# The loopback WhatsApp gateways of `make run`; the demo provider
# (data/sicantik_whatsapp_provider_demo.xml) sends to this port and these
# demo values sign its receipts.
GATEWAY_PORT = 8766
DEMO_WEBHOOK_TOKEN = "sicantik-demo-webhook-token-0123456789abcdef"
DEMO_WEBHOOK_SECRET = "sicantik-demo-webhook-secret"


def say(msg):
    print(msg, flush=True)


def die(msg):
    say(f"error: {msg}")
    sys.exit(2)


def run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=False, **kw)


def quiet_ok(cmd, timeout=120):
    try:
        return (
            run(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------


def _stamp_ok(name, *files, venv=VENV):
    digest = hashlib.sha256()
    for f in files:
        digest.update(Path(f).read_bytes() if Path(f).exists() else b"-")
    stamp = venv / f".stamp-{name}"
    value = digest.hexdigest()
    return stamp, value, stamp.exists() and stamp.read_text() == value


def _pip(*args, python=None):
    res = run(
        [
            python or VENV_PY,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *args,
        ]
    )
    return res.returncode == 0


def _make_venv(venv, base, system_site=False):
    cmd = [base, "-m", "venv", venv]
    if system_site:
        cmd.append("--system-site-packages")
    if run(cmd).returncode != 0:
        die(
            f"could not create a virtual environment with {base} "
            "(is python3-venv installed?)"
        )
    # pip >= 25.3 for --build-constraint. Odoo 18's pinned requirements
    # predate setuptools 81 (setup.py changes) and 82 (no pkg_resources).
    tools = ["pip>=25.3", "setuptools<81", "wheel"]
    _pip("--upgrade", *tools, python=venv / "bin" / "python")


def ensure_venv():
    """Create the cache venv and install the test tools into it (once)."""
    if not VENV_PY.exists():
        base = os.environ.get("ODOO_PYTHON") or sys.executable
        # A base Python that already imports Odoo lends it to the venv.
        system_site = quiet_ok([base, "-c", "import odoo"])
        say(
            f"setup: creating {VENV}"
            + (" (with the Odoo found in " + base + ")" if system_site else "")
        )
        VENV.parent.mkdir(parents=True, exist_ok=True)
        _make_venv(VENV, base, system_site)
    reqs = DEV / "requirements-dev.txt"
    cons = DEV / "odoo-constraints.txt"
    stamp, value, ok = _stamp_ok("dev", reqs, cons)
    if not ok:
        ensure_build_deps()  # psycopg2 builds against libpq
        say("setup: installing the test tools (pytest, ruff, pylint-odoo, click-odoo)")
        if not _pip("-r", reqs, "-c", cons):
            die("could not install the test tools from PyPI (see pip's message above)")
        stamp.write_text(value)
    return VENV_PY


def ensure_oca_venv():
    """OCA's module and PO checks live in a venv of their own, as pre-commit
    would keep them: they pin a polib newer than the one Odoo 18 pins."""
    py = OCA_VENV / "bin" / "python"
    if not py.exists():
        say(f"setup: creating {OCA_VENV} for OCA's checks")
        _make_venv(OCA_VENV, sys.executable)
    reqs = DEV / "requirements-oca.txt"
    stamp, value, ok = _stamp_ok("oca", reqs, venv=OCA_VENV)
    if not ok:
        if not _pip("-r", reqs, python=py):
            die("could not install OCA's checks from PyPI (see pip's message above)")
        stamp.write_text(value)
    return OCA_VENV / "bin"


def _odoo_tree_ok(src):
    return (src / "odoo-bin").exists() and (src / "odoo" / "release.py").exists()


def _odoo_series(py):
    res = run(
        [py, "-c", "import odoo.release as r; print(r.serie)"],
        capture_output=True,
        text=True,
    )
    return res.stdout.strip() if res.returncode == 0 else None


def ensure_odoo(py, allow_clone=True):
    """Make `import odoo` work in the venv.

    Returns (command that starts Odoo, None) or (None, why it cannot)."""
    series = _odoo_series(py)
    if series and series != "18.0":
        return None, f"the Odoo found is {series}, this addon needs 18.0"
    if not series:
        if not _odoo_tree_ok(ODOO_SRC):
            if not allow_clone:
                return None, f"no Odoo 18 importable and no source tree in {ODOO_SRC}"
            say(f"setup: no Odoo 18 found; cloning the 18.0 branch into {ODOO_SRC}")
            res = run(
                [
                    "git",
                    "clone",
                    "--depth",
                    "1",
                    "--branch",
                    "18.0",
                    ODOO_GIT,
                    ODOO_SRC,
                ],
                timeout=1800,
            )
            if res.returncode != 0 or not _odoo_tree_ok(ODOO_SRC):
                shutil.rmtree(ODOO_SRC, ignore_errors=True)
                return None, (
                    f"Odoo 18 is not importable and cloning {ODOO_GIT} failed; "
                    f"put an Odoo 18.0 source tree in {ODOO_SRC} (or set ODOO_SRC)"
                )
        req = ODOO_SRC / "requirements.txt"
        stamp, value, ok = _stamp_ok("odoo", req, DEV / "odoo-constraints.txt")
        if not ok:
            say(f"setup: installing Odoo's requirements from {req}")
            clean = CACHE / "odoo-requirements.txt"
            # Some trees ship CRLF files; pip wants plain lines.
            clean.write_text(req.read_text(errors="replace").replace("\r", ""))
            ensure_build_deps()
            cons = DEV / "odoo-constraints.txt"
            # The constraints bind the isolated build environments too, so
            # the sdists are built with the setuptools they were written for.
            if not _pip("-r", clean, "-c", cons, "--build-constraint", cons):
                return (
                    None,
                    "installing Odoo's Python requirements failed (see pip above)",
                )
            stamp.write_text(value)
        site = run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        Path(site, "odoo18-source.pth").write_text(f"{ODOO_SRC}\n")
        series = _odoo_series(py)
        if series != "18.0":
            return None, f"Odoo in {ODOO_SRC} does not import as 18.0 (got {series})"
    odoo_dir = Path(
        run(
            [py, "-c", "import odoo, os; print(os.path.dirname(odoo.__file__))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    odoo_bin = odoo_dir.parent / "odoo-bin"
    # An installed (pip/deb) Odoo has no odoo-bin beside it: use its CLI module.
    return ([py, odoo_bin] if odoo_bin.exists() else [py, "-m", "odoo"]), None


def addons_path(py):
    """Odoo's own addons folders plus a folder where this checkout is named
    `sicantik_connector`, whatever the checkout folder is called."""
    link_home = CACHE / "addons" / hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]
    link_home.mkdir(parents=True, exist_ok=True)
    link = link_home / ADDON
    if link.is_symlink() and Path(os.readlink(link)) != ROOT:
        link.unlink()
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    odoo_dir = Path(
        run(
            [py, "-c", "import odoo, os; print(os.path.dirname(odoo.__file__))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    paths = [odoo_dir / "addons"]
    if (odoo_dir.parent / "addons").is_dir():
        paths.insert(0, odoo_dir.parent / "addons")
    paths.append(link_home)
    return ",".join(str(p) for p in paths), link


def postgres_problem(py):
    probe = (
        "import psycopg2\n"
        "psycopg2.connect(dbname='postgres', connect_timeout=5).close()\n"
    )
    res = run([py, "-c", probe], capture_output=True, text=True, timeout=30)
    if res.returncode == 0:
        return None
    last = (res.stderr.strip().splitlines() or ["no answer"])[-1]
    return f"PostgreSQL does not answer ({last}); start it or set PGHOST/PGPORT/PGUSER"


def odoo_config(paths, *options):
    """A config file for Odoo and the click-odoo tools, which take the addons
    path, the data dir and log handlers only from one."""
    conf = CACHE / f"odoo-{os.getpid()}.conf"
    lines = ["[options]", f"addons_path = {paths}", f"data_dir = {DATA_DIR}"]
    conf.write_text("\n".join(lines + list(options)) + "\n")
    return conf


def click_odoo(py, tool, conf, *args, quiet=False, env=None):
    """Run click-odoo-<tool> (click-odoo-contrib) from the venv."""
    cmd = [Path(py).parent / f"click-odoo-{tool}", "--config", conf, *args]
    out = subprocess.DEVNULL if quiet else None
    return run(cmd, cwd=CACHE, stdout=out, env=env).returncode == 0


def drop_db(py, conf, name):
    """Drop the database and its filestore (click-odoo-dropdb)."""
    click_odoo(py, "dropdb", conf, "--if-exists", name, quiet=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# Test tiers
# --------------------------------------------------------------------------


class Tally:
    def __init__(self, name):
        self.name, self.passed, self.failed, self.skipped = name, 0, 0, 0
        self.skip_reason = None

    def line(self):
        if self.skip_reason:
            return f"{self.name} tier: skipped ({self.skip_reason})"
        text = f"{self.name} tier: {self.passed} passed, {self.failed} failed"
        return text + (f", {self.skipped} skipped" if self.skipped else "")


def tier_pure(py):
    tally = Tally("pure")
    report = CACHE / f"pure-{os.getpid()}.xml"
    say("== pure tier: pytest tests/pure (no Odoo)")
    # Run from inside tests/pure: the addon root has an __init__ that needs Odoo.
    res = run(
        [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=ROOT / "tests" / "pure",
    )
    if not report.exists():
        tally.failed = 1
        say(f"pytest did not run (exit {res.returncode})")
        return tally
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total = int(suite.get("tests", 0))
    bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    tally.skipped = int(suite.get("skipped", 0))
    tally.failed = bad
    tally.passed = total - bad - tally.skipped
    report.unlink()
    if res.returncode not in (0, 1) and not bad:
        tally.failed += 1  # pytest itself broke (usage error, crash, no tests)
    if total == 0:
        tally.failed += 1
        say("no pure test ran")
    return tally


def _manifest():
    return ast.literal_eval((ROOT / "__manifest__.py").read_text())


def stage_addon(dest):
    """Copy the files git would commit (tracked or new, not ignored) to
    dest/sicantik_connector, committed in a throwaway repository at dest.

    whool names the wheel after the addon's folder and OCA's checks look for
    addons below a repository's root, while this checkout is the addon itself
    under whatever name it was cloned to."""
    listed = run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
    )
    if listed.returncode:
        return None
    addon = dest / ADDON
    for rel in filter(None, os.fsdecode(listed.stdout).split("\0")):
        if (ROOT / rel).is_file():  # skips tracked files deleted in the tree
            (addon / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, addon / rel)
    git = ["git", "-c", "user.name=devtool", "-c", "user.email=devtool@localhost"]
    git += ["-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "stage", "-n"]):
        if run(git + args, cwd=dest).returncode:
            return None
    return addon


def oca_checks(addon):
    """OCA's oca-checks-odoo-module and oca-checks-po, configured by
    .oca_hooks.cfg. They print paths as sicantik_connector/<path in repo>."""
    bindir = ensure_oca_venv()
    config = ["--config", ROOT / ".oca_hooks.cfg"]
    catalogues = sorted(addon.glob("i18n/*.po*"))
    return [
        ("oca-checks-odoo-module", [bindir / "oca-checks-odoo-module", *config, ADDON]),
        ("oca-checks-po", [bindir / "oca-checks-po", *config, *catalogues]),
    ]


def _png_size(path):
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# A src/href leaving the addon, or a stylesheet or script to fetch: the Apps
# screen must show the description offline and Odoo sanitizes the rest.
EXTERNAL = re.compile(
    r"""(?:src|href)\s*=\s*["']?(?:[a-z]+:)?//|url\(|<(?:link|script)\b""", re.I
)


def check_description(addon):
    """What the Apps screen shows; nothing maintained checks it."""
    problems = []
    icon = addon / "static" / "description" / "icon.png"
    size = _png_size(icon) if icon.is_file() else None
    if not size or size[0] != size[1] or size[0] < 64:
        problems.append(f"static/description/icon.png is not a square PNG (got {size})")
    index = addon / "static" / "description" / "index.html"
    if not index.is_file():
        problems.append("static/description/index.html is missing")
    elif EXTERNAL.search(index.read_text()):
        problems.append("static/description/index.html loads an external resource")
    return problems


def check_wheel(py, addon, tmp):
    """Build the wheel as `pip wheel --no-deps .` in a checkout named
    sicantik_connector does (whool, taken from the venv so it runs offline),
    then check its metadata and that it holds exactly the staged files."""
    dist = tmp / "dist"
    res = run(
        [py, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--wheel-dir", dist, "."],
        cwd=addon,
    )  # fmt: skip
    wheels = sorted(dist.glob("*.whl"))
    if res.returncode or len(wheels) != 1:
        return ["whool built no wheel (see pip's message above)"]
    manifest = _manifest()
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.parser.HeaderParser().parsestr(whl.read(meta_name).decode())
    problems = []
    expected = {
        "Name": f"odoo-addon-{ADDON}",
        "Version": manifest["version"],
        "License": manifest["license"],
    }
    for key, value in expected.items():
        if meta[key] != value:
            problems.append(f"wheel {key} is {meta[key]!r}, expected {value!r}")
    requires = set(meta.get_all("Requires-Dist") or [])
    for dep in ["odoo==18.0.*", *manifest["external_dependencies"]["python"]]:
        if dep not in requires:
            problems.append(f"wheel does not require {dep}")
    prefix = f"odoo/addons/{ADDON}/"
    packed = {n[len(prefix) :] for n in names if n.startswith(prefix)}
    staged = {
        p.relative_to(addon).as_posix() for p in addon.rglob("*") if p.is_file()
    } - {"pyproject.toml"}
    problems += [f"{rel}: in git, not in the wheel" for rel in sorted(staged - packed)]
    problems += [f"{rel}: in the wheel, not in git" for rel in sorted(packed - staged)]
    # What Odoo loads must be there even if .gitignore hid it from git.
    needed = ["__init__.py", "__manifest__.py", "i18n/id.po", f"i18n/{ADDON}.pot"]
    needed += manifest.get("data", []) + manifest.get("demo", [])
    problems += [f"{rel}: not in the wheel" for rel in needed if rel not in packed]
    for bundle, globs in manifest.get("assets", {}).items():
        for pattern in globs:
            # As in a glob, **/ may stand for no folder at all.
            local = pattern.removeprefix(f"{ADDON}/")
            flat = local.replace("**/", "")
            if not any(
                fnmatch.fnmatch(rel, local) or fnmatch.fnmatch(rel, flat)
                for rel in packed
            ):
                problems.append(f"{bundle}: nothing in the wheel matches {pattern}")
    site = tmp / "site"
    res = run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", site, wheels[0]],
    )  # fmt: skip
    if res.returncode or not (site / prefix / "__manifest__.py").is_file():
        problems.append(f"pip could not install {wheels[0].name}")
    return problems


def tier_static(py, link):
    tally = Tally("static")
    bindir = Path(py).parent
    say("== static tier: ruff, pylint-odoo, OCA's checks, the wheel (whool)")

    def record(name, ok, problems=()):
        for problem in problems:
            say(f"{name}: {problem}")
        say(f"{name}: {'ok' if ok else 'FAILED'}")
        tally.passed += ok
        tally.failed += not ok

    commands = [
        ("ruff", [bindir / "ruff", "check", "."], ROOT),
        ("ruff format", [bindir / "ruff", "format", "--check", "."], ROOT),
        (
            "pylint-odoo",
            [py, "-m", "pylint", f"--rcfile={ROOT / '.pylintrc'}", link.name],
            link.parent,
        ),
    ]
    for name, cmd, cwd in commands:
        record(name, run(cmd, cwd=cwd).returncode == 0)
    with tempfile.TemporaryDirectory(prefix="sicantik-static-") as tmp:
        addon = stage_addon(Path(tmp) / "stage")
        if addon is None:
            record("stage", False, ["git could not list or stage the addon's files"])
            return tally
        for name, cmd in oca_checks(addon):
            record(name, run(cmd, cwd=addon.parent).returncode == 0)
        problems = check_description(addon)
        record("description", not problems, problems)
        problems = check_wheel(py, addon, Path(tmp))
        record("wheel", not problems, problems)
    return tally


def apt_install(packages, why):
    """Install Debian packages when we may (root with apt-get). True when
    apt-get ran and succeeded."""
    if not (shutil.which("apt-get") and os.geteuid() == 0):
        return False
    say(f"setup: installing {' '.join(packages)} for {why} (apt-get)")
    quiet = {
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "env": dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
    }
    install = ["apt-get", "install", "-y", "-q", *packages]
    # A fresh container has no package lists yet: update once and retry.
    if run(install, **quiet).returncode == 0:
        return True
    run(["apt-get", "update", "-q"], **quiet)
    return run(install, **quiet).returncode == 0


# What pip compiles Odoo's requirements against where PyPI has no wheel for
# this Python: python-ldap (OpenLDAP and Cyrus SASL headers) and psycopg2
# (libpq). Debian package -> a header it installs.
BUILD_HEADERS = {
    "libldap2-dev": "/usr/include/ldap.h",
    "libsasl2-dev": "/usr/include/sasl/sasl.h",
    "libpq-dev": "/usr/include/postgresql/libpq-fe.h",
}


def ensure_build_deps():
    missing = [pkg for pkg, hdr in BUILD_HEADERS.items() if not Path(hdr).exists()]
    if missing and not apt_install(missing, "building Odoo's requirements"):
        say(
            f"setup: {' '.join(missing)} not installed (needs root and apt-get): "
            "pip may fail to build python-ldap or psycopg2"
        )


def ensure_gettext():
    """click-odoo-makepot checks and merges the catalogues with gettext."""
    if not shutil.which("msgmerge"):
        apt_install(["gettext"], "merging translations")
    if not shutil.which("msgmerge"):
        die("make i18n needs gettext's msgmerge: install Debian's gettext package")


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def ensure_chromium():
    """The browser tours of the Odoo tier need a headless Chromium: install
    Debian's package when it is missing and we may (root with apt-get), else
    say once that the tours will be skipped."""
    if any(shutil.which(name) for name in BROWSERS):
        return
    apt_install(["chromium"], "the browser tours")
    if any(shutil.which(name) for name in BROWSERS):
        return
    say(
        "odoo tier: no Chromium (chromium, chromium-browser or google-chrome): "
        "the browser tours will be skipped"
    )


LOG_LINE = re.compile(
    r"^\S+ \S+ \d+ (?P<level>[A-Z]+) (?P<db>\S+) (?P<logger>[\w.]+): "
)
# Odoo's closing summary, read for the figures only: the verdict is its exit
# status (server.preload_registries returns non-zero when a test failed).
RESULT_LINE = re.compile(
    r"odoo\.tests\.result: (\d+) failed, (\d+) error\(s\) of (\d+) tests when loading"
)


def _odoo_test_run(cmd):
    """Run Odoo, echo its log; return its exit status, the summary's figures
    (failed, errors, total) or None, and the addon's install warnings."""
    result = None
    install_noise = []
    in_tests = False
    with subprocess.Popen(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=CACHE,
    ) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            if "Starting post tests" in line or "odoo.tests" in line:
                in_tests = True
            m = LOG_LINE.match(line)
            # Nothing maintained fails an install that logs warnings.
            if (
                m
                and not in_tests
                and m["level"] in ("WARNING", "ERROR", "CRITICAL")
                and "sicantik" in line.lower()
            ):
                install_noise.append(line.rstrip())
            found = RESULT_LINE.search(line)
            if found:
                result = tuple(int(x) for x in found.groups())
        return proc.wait(), result, install_noise


def tier_odoo(py, allow_clone=True, tags=None):
    tally = Tally("odoo")
    odoo, why = ensure_odoo(py, allow_clone=allow_clone)
    why = why or postgres_problem(py)
    if why:
        tally.skip_reason = why
        return tally
    ensure_chromium()
    paths, _link = addons_path(py)
    conf = odoo_config(paths)
    db = f"sicantik_test_{os.getpid()}"
    say(f"== odoo tier: install {ADDON} into a fresh database {db} and run its tests")
    cmd = odoo + [
        "--config", conf,
        "--database", db,
        "--init", ADDON,
        "--test-enable",
        "--test-tags", tags or f"/{ADDON}",
        "--stop-after-init",
        "--http-interface", "127.0.0.1",
        "--http-port", free_port(),
        "--max-cron-threads", "0",
        "--log-level", "info",
        "--log-handler", "werkzeug:WARNING",
    ]  # fmt: skip
    try:
        drop_db(py, conf, db)
        # base comes from a template database that click-odoo-initdb keeps
        # per hash of its code: later runs copy it instead of installing it
        # again. mail and what it auto-installs (sms, ...) are installed with
        # the addon, as `make i18n` does: had sms been installed first, Odoo
        # would file the field it adds to mail.thread models under this addon.
        if not click_odoo(
            py, "initdb", conf, "--new-database", db, "--modules", "base",
            "--no-demo", "--cache-prefix", "sicantik",
        ):  # fmt: skip
            say("odoo: click-odoo-initdb could not create the database (see above)")
            tally.failed += 1
            return tally
        rc, result, install_noise = _odoo_test_run(cmd)
    finally:
        drop_db(py, conf, db)
        conf.unlink(missing_ok=True)
    if install_noise:
        say("odoo: the install logged warnings or errors from the addon:")
        for line in install_noise:
            say(f"  {line}")
    tally.failed += bool(install_noise)
    tally.passed += not install_noise
    if rc:
        say(f"odoo: Odoo exited {rc}: a test failed or the install broke")
    if result is None:
        say("odoo: Odoo printed no test summary: the install or the run broke")
        tally.failed += 1
        return tally
    failed, errors, total = result
    tally.failed += failed + errors
    # Failed subtests count one each, so they may outnumber the tests.
    tally.passed += max(0, total - failed - errors)
    if total == 0:
        say("odoo: no Odoo test ran (tags matched nothing)")
        tally.failed += 1
    elif rc and not (failed or errors):
        tally.failed += 1
    return tally


def cmd_test(args):
    py = ensure_venv()
    _, link = addons_path(py)
    tiers = args.tier or ["pure", "static", "odoo"]
    tallies = []
    if "pure" in tiers:
        tallies.append(tier_pure(py))
    if "static" in tiers:
        tallies.append(tier_static(py, link))
    if "odoo" in tiers:
        odoo_tier = tier_odoo(py, allow_clone=not args.no_clone, tags=args.tags)
        if odoo_tier.skip_reason and os.environ.get("REQUIRE_ODOO") == "1":
            say(
                f"odoo tier: skipped ({odoo_tier.skip_reason}); "
                "REQUIRE_ODOO=1 fails it"
            )
            odoo_tier.failed, odoo_tier.skip_reason = 1, None
        tallies.append(odoo_tier)
    say("")
    for tally in tallies:
        say(tally.line())
    passed = sum(t.passed for t in tallies)
    failed = sum(t.failed for t in tallies)
    skipped = sum(t.skipped for t in tallies)
    say(
        f"{passed} passed, {failed} failed"
        + (f", {skipped} skipped" if skipped else "")
    )
    return 1 if failed else 0


# --------------------------------------------------------------------------
# Run and bench
# --------------------------------------------------------------------------


def _port_busy(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_sandbox(py, port, permits):
    if _port_busy(port):
        die(f"port {port} is taken: stop what uses it or set SANDBOX_PORT")
    proc = subprocess.Popen(
        [str(py), "-m", "sandbox", "--port", str(port), "--permits", str(permits),
         "--latency", "0.05", "--jitter", "0.02"],
        cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not _port_busy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            die("the SICANTIK sandbox did not start (see its message above)")
        time.sleep(0.1)
    return proc


def _db_has_addon(py, db):
    code = (
        "import psycopg2, sys\n"
        "try:\n"
        "    c = psycopg2.connect(dbname=sys.argv[1])\n"
        "except psycopg2.OperationalError:\n"
        "    sys.exit(1)\n"
        "cr = c.cursor()\n"
        "cr.execute(\n"
        "    'SELECT state FROM ir_module_module WHERE name=%s', (sys.argv[2],))\n"
        "row = cr.fetchone()\n"
        "sys.exit(0 if row and row[0] == 'installed' else 1)\n"
    )
    return quiet_ok([py, "-c", code, db, ADDON])


# Run in `odoo-bin shell` after the install: the demo connector at the port
# the sandbox listens on (SANDBOX_PORT), then a real Test Connection, so the
# schedule (which only uses a tested address) syncs the demo by itself.
DEMO_CONNECTOR_SCRIPT = """
config = env.ref("sicantik_connector.sicantik_config_demo_sandbox", False)
if config:
    url = "http://127.0.0.1:%d/backoffice/api"
    if config.api_url != url:
        config.api_url = url
    try:
        config.action_test_connection()
        print("run: demo connector tested at " + url)
    except Exception as err:
        print("run: Test Connection of the demo connector failed: %%s" %% err)
    env.cr.commit()
"""


def point_demo_at_sandbox(odoo, options, port):
    """Write the sandbox's port into the demo connector (and test it)."""
    script = DEMO_CONNECTOR_SCRIPT % port
    res = run(
        odoo + ["shell", *options, "--log-level", "warn"],
        cwd=CACHE,
        input=script,
        text=True,
    )
    if res.returncode != 0:
        say("run: could not point the demo connector at the sandbox (see above)")


def cmd_run(args):
    py = ensure_venv()
    odoo, why = ensure_odoo(py)
    if why:
        die(why)
    problem = postgres_problem(py)
    if problem:
        die(problem)
    if _port_busy(ODOO_PORT):
        die(f"port {ODOO_PORT} is taken: stop what uses it or set ODOO_PORT")
    paths, _link = addons_path(py)
    db = args.database
    sandbox = start_sandbox(py, SANDBOX_PORT, args.permits)
    # Receipts of the demo reminders come back once Odoo listens (retried).
    gateways = subprocess.Popen(
        [str(py), "-m", "sandbox.gateway_demo", "--port", str(GATEWAY_PORT),
         "--receipts-to", f"http://127.0.0.1:{ODOO_PORT}/sicantik/whatsapp/"
         f"{DEMO_WEBHOOK_TOKEN}", "--secret", DEMO_WEBHOOK_SECRET],
        cwd=ROOT,
    )  # fmt: skip
    base = odoo + [
        "--database", db, "--addons-path", paths, "--data-dir", DATA_DIR,
        "--http-interface", "127.0.0.1", "--http-port", ODOO_PORT,
        "--db-filter", f"^{re.escape(db)}$",
    ]  # fmt: skip
    try:
        step = ["--update", ADDON] if _db_has_addon(py, db) else ["--init", ADDON]
        say(f"run: preparing database {db} ({' '.join(step)})")
        if run(base + step + ["--stop-after-init"], cwd=CACHE).returncode != 0:
            die(f"installing {ADDON} into {db} failed (see the log above)")
        point_demo_at_sandbox(odoo, base[len(odoo) :], SANDBOX_PORT)
        say(
            f"run: Odoo on http://127.0.0.1:{ODOO_PORT} (login admin / admin), "
            f"sandbox on http://127.0.0.1:{SANDBOX_PORT}/backoffice/api; "
            "Ctrl+C stops both"
        )
        server = subprocess.Popen([str(c) for c in base], cwd=CACHE)
        try:
            server.wait()
        except KeyboardInterrupt:
            server.send_signal(signal.SIGINT)
            server.wait()
    finally:
        sandbox.terminate()
        sandbox.wait()
        gateways.terminate()
        gateways.wait()
    return 0


def cmd_bench(args):
    py = ensure_venv()
    env = dict(os.environ)
    odoo, why = ensure_odoo(py)
    if not why and not postgres_problem(py):
        paths, _link = addons_path(py)
        env.update(
            SICANTIK_ODOO_CMD=" ".join(str(c) for c in odoo),
            SICANTIK_ADDONS_PATH=paths,
            SICANTIK_DATA_DIR=str(DATA_DIR),
        )
    return run([py, "-m", "bench", *args.names], cwd=ROOT, env=env).returncode


def _run_with_odoo(script, options):
    """A dev/ script with the Odoo and PostgreSQL found here."""
    py = ensure_venv()
    odoo, why = ensure_odoo(py)
    why = why or postgres_problem(py)
    if why:
        die(why)
    paths, _link = addons_path(py)
    env = dict(
        os.environ,
        SICANTIK_ODOO_CMD=" ".join(str(c) for c in odoo),
        SICANTIK_ADDONS_PATH=paths,
        SICANTIK_DATA_DIR=str(DATA_DIR),
    )
    return run([py, DEV / script, *options], cwd=ROOT, env=env).returncode


def cmd_kill_test(args):
    """dev/kill_test.py with the Odoo and PostgreSQL found here."""
    return _run_with_odoo("kill_test.py", args.options)


def cmd_deploy_test(args):
    """dev/deploy_test.py: 2 prefork servers, 2 connectors, one sandbox."""
    return _run_with_odoo("deploy_test.py", args.options)


# --------------------------------------------------------------------------
# Translations
# --------------------------------------------------------------------------

I18N = ROOT / "i18n"


def cmd_i18n(args):
    """Export the addon's terms with click-odoo-makepot (Odoo's own exporter)
    to i18n/sicantik_connector.pot and merge them into each i18n/*.po with
    gettext's msgmerge: translations kept, new terms added untranslated,
    obsolete ones dropped."""
    py = ensure_venv()
    odoo, why = ensure_odoo(py)
    why = why or postgres_problem(py)
    if why:
        die(why)
    ensure_gettext()
    paths, link = addons_path(py)
    # Babel's own deprecation warnings are not the addon's business here.
    conf = odoo_config(paths, "log_handler = py.warnings:ERROR")
    db = f"sicantik_i18n_{os.getpid()}"
    try:
        drop_db(py, conf, db)
        say(f"i18n: installing {ADDON} into a throwaway database {db}")
        if not click_odoo(
            py, "initdb", conf, "--new-database", db, "--modules", ADDON,
            "--no-demo", "--no-cache",
        ):  # fmt: skip
            die(f"installing {ADDON} into {db} failed (see the log above)")
        say("i18n: exporting the terms (click-odoo-makepot), merging them (msgmerge)")
        if not click_odoo(
            py, "makepot", conf, "--database", db, "--addons-dir", link.parent,
            "--modules", ADDON, "--msgmerge", "--no-fuzzy-matching",
            "--purge-old-translations",
            # msgmerge -U would leave an id.po~ backup behind.
            env=dict(os.environ, VERSION_CONTROL="none"),
        ):  # fmt: skip
            die("exporting or merging the translations failed (see above)")
    finally:
        drop_db(py, conf, db)
        conf.unlink(missing_ok=True)
    for po in sorted(I18N.glob("*.po")):
        stats = run(
            ["msgfmt", "--statistics", "--output-file", os.devnull, po],
            capture_output=True,
            text=True,
        )
        say(f"i18n: {po.relative_to(ROOT)}: {stats.stderr.strip()}")
        untranslated = run(
            ["msgattrib", "--untranslated", "--no-obsolete", "--no-wrap", po],
            capture_output=True,
            text=True,
        ).stdout
        for line in untranslated.splitlines():
            if line.startswith('msgid "') and line != 'msgid ""':
                say(f"  untranslated: {line[6:106]}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    test = sub.add_parser("test", help="run the three test tiers")
    test.add_argument("--no-clone", action="store_true", help="never clone Odoo")
    test.add_argument(
        "--tier",
        action="append",
        choices=["pure", "static", "odoo"],
        help="run only this tier (repeatable; default: all three)",
    )
    test.add_argument(
        "--tags",
        help="Odoo --test-tags for a narrower run, e.g. /sicantik_connector:TestX",
    )
    test.set_defaults(func=cmd_test)
    runp = sub.add_parser("run", help="run Odoo with the addon and the sandbox")
    runp.add_argument("--database", default=os.environ.get("DB", "sicantik_demo"))
    runp.add_argument(
        "--permits", type=int, default=int(os.environ.get("PERMITS", "2000"))
    )
    runp.set_defaults(func=cmd_run)
    bench = sub.add_parser("bench", help="run the benchmarks")
    bench.add_argument("names", nargs="*")
    bench.set_defaults(func=cmd_bench)
    i18n = sub.add_parser("i18n", help="export the .pot and merge it into i18n/id.po")
    i18n.set_defaults(func=cmd_i18n)
    kill = sub.add_parser(
        "kill-test", help="SIGKILL a real Odoo during its jobs, then check"
    )
    kill.add_argument("options", nargs=argparse.REMAINDER, help="e.g. --seed 2")
    kill.set_defaults(func=cmd_kill_test)
    deploy = sub.add_parser(
        "deploy-test",
        help="2 prefork Odoo servers, 2 connectors, one rate limit; then kills",
    )
    deploy.add_argument("options", nargs=argparse.REMAINDER, help="e.g. --seed 2")
    deploy.set_defaults(func=cmd_deploy_test)
    # argparse's REMAINDER does not take options ("--seed 7") as the first
    # words after a subcommand: the scripts get every word after theirs.
    argv = sys.argv[1:]
    if argv[:1] and argv[0] in ("kill-test", "deploy-test"):
        args = parser.parse_args(argv[:1])
        args.options = argv[1:]
    else:
        args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
