"""The one place every subprocess goes through.

argv lists only (no shell), C.UTF-8 locale, optional echo of the command, and on
failure a CommandError naming the command, its exit code and what it printed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

from ha_ingress_proxy.errors import CommandError, UserError

VERBOSE = bool(os.environ.get("HA_INGRESS_VERBOSE"))


def require_tool(name: str, package: str = "") -> str:
    """Return the path of a tool, or refuse with a one-line error naming the package to install."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not path:
        hint = f" (install the '{package}' package)" if package else ""
        raise UserError(f"required tool not found: {name}{hint}")
    return path


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: str | bytes | None = None,
    timeout: float | None = None,
    context: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run argv; return the CompletedProcess (stdout and stderr merged when captured).

    check=True raises CommandError on a non-zero exit. A missing executable is a
    UserError, not a FileNotFoundError traceback.
    """
    args = [os.fspath(a) for a in argv]
    full_env = dict(os.environ)
    full_env.update({"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
    if env:
        full_env.update(env)
    if VERBOSE:
        print(f"+ {shlex.join(args)}", file=sys.stderr, flush=True)
    text = not isinstance(input, bytes)
    try:
        proc = subprocess.run(
            args,
            env=full_env,
            cwd=cwd,
            input=input,
            timeout=timeout,
            text=text,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
        )
    except FileNotFoundError:
        raise UserError(f"required tool not found: {args[0]}") from None
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else (exc.output or "")
        raise CommandError(args, -1, out + f"\n(timed out after {timeout}s)", context) from None
    if check and proc.returncode != 0:
        out = proc.stdout if isinstance(proc.stdout, str) else (proc.stdout or b"").decode(errors="replace")
        raise CommandError(args, proc.returncode, out or "", context)
    return proc


def start(argv: Sequence[str | os.PathLike[str]], **kwargs) -> subprocess.Popen:
    """Start a long-running process (daemons in the lab, qemu); the caller stops it by PID."""
    args = [os.fspath(a) for a in argv]
    env = dict(os.environ)
    env.update({"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
    env.update(kwargs.pop("env", None) or {})
    if VERBOSE:
        print(f"+ {shlex.join(args)} &", file=sys.stderr, flush=True)
    try:
        return subprocess.Popen(args, env=env, **kwargs)
    except FileNotFoundError:
        raise UserError(f"required tool not found: {args[0]}") from None
