"""The exception tree (datashare/errors.py) and the CLI's one mapping to exit codes (issue 12)."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

import datashare.errors as errors
from cli.app import EXIT_CODES, _guarded, exit_code
from datashare.errors import DatashareError, DeliveryError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("datashare", "domain", "expectations", "warehouse", "tasks", "flows", "portal", "cli")
# Modules not imported by the walk: Alembic's env and revisions run against a live context,
# `__main__` modules run the command.
SKIPPED = ("warehouse.migrations", "__main__")
# Exception classes of ours that are not errors on purpose, each with why.
NOT_IN_THE_TREE = {
    # Control flow inside the portal's request handling (a redirect to the login page),
    # never raised out of the portal's own handlers.
    "portal.app._LoginRequired",
}


def _modules() -> Iterator[str]:
    for package in PACKAGES:
        module = importlib.import_module(package)
        yield package
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if not any(part in info.name for part in SKIPPED):
                yield info.name


def _tree() -> set[type[DatashareError]]:
    found: set[type[DatashareError]] = set()
    todo: list[type[DatashareError]] = [DatashareError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.fixture(scope="module")
def exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in the packages, by qualified name (all modules imported,
    so that every subclass of DatashareError is known)."""
    classes: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == name:
                classes[f"{name}.{obj.__qualname__}"] = obj
    return classes


def test_every_exception_class_of_ours_is_in_the_tree(
    exception_classes: dict[str, type[BaseException]],
) -> None:
    outside = {
        name
        for name, cls in exception_classes.items()
        if not issubclass(cls, DatashareError) and name not in NOT_IN_THE_TREE
    }
    assert outside == set()
    assert set(exception_classes) >= NOT_IN_THE_TREE  # the walk saw the exceptions too
    # ...and they are all defined in one module: the others re-export them.
    homes = {
        cls.__module__ for cls in exception_classes.values() if issubclass(cls, DatashareError)
    }
    assert homes == {"datashare.errors"}
    assert len(_tree()) >= 16


def test_every_class_has_its_own_exit_code(
    exception_classes: dict[str, type[BaseException]],
) -> None:
    tree = _tree()
    assert set(EXIT_CODES) == tree  # listed, not inherited: a new class is a decision
    assert set(EXIT_CODES.values()) <= {1, 2, 3, 4}
    # the codes README.md promises
    assert EXIT_CODES[errors.ConfigurationError] == 2
    assert EXIT_CODES[errors.WarehouseUnavailable] == 3
    assert EXIT_CODES[errors.RunLocked] == 4
    assert EXIT_CODES[errors.LockLost] == 4
    assert EXIT_CODES[errors.PublishLocked] == 4
    assert EXIT_CODES[errors.AccountError] == 2


def test_the_docstring_draws_every_class() -> None:
    doc = errors.__doc__ or ""
    drawn = {
        line.split("──", 1)[1].split()[0]
        for line in doc.splitlines()
        if "──" in line and line.split("──", 1)[1].split()
    }
    assert drawn | {"DatashareError"} == {cls.__name__ for cls in _tree()}
    for cls in _tree():
        line = next(x for x in doc.splitlines() if f" {cls.__name__} " in f"{x} ")
        assert line.rstrip().endswith(str(EXIT_CODES[cls])) or cls is DatashareError, cls


def test_old_import_paths_still_work() -> None:
    from expectations.gx_custom import CheckFailed
    from tasks.validate import ConservationError
    from warehouse.history import HistoryError, MergeOrderError
    from warehouse.lock import LockLost
    from warehouse.portal_store import AccountError
    from warehouse.publish import PublishError
    from warehouse.published import PublishLocked

    moved = (CheckFailed, ConservationError, HistoryError, MergeOrderError, LockLost)
    moved += (AccountError, PublishError, PublishLocked)
    assert all(cls.__module__ == "datashare.errors" for cls in moved)
    # ...and so do the old catches: the second bases stay.
    assert issubclass(PublishLocked, RuntimeError) and issubclass(CheckFailed, RuntimeError)
    assert issubclass(ConservationError, AssertionError) and issubclass(AccountError, ValueError)


def _instance(cls: type[DatashareError], message: str) -> DatashareError:
    if issubclass(cls, DeliveryError):
        return cls(message, dept="MZ", dataset="MZ_DIBAO", source_file="MZ_DIBAO_20250312.csv")
    return cls(message)


@pytest.mark.parametrize("cls", sorted(_tree(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_the_cli_turns_each_error_into_one_line_and_its_code(
    cls: type[DatashareError], capsys: pytest.CaptureFixture[str]
) -> None:
    exc = _instance(cls, "第一行：出了什么错\n  第二行：怎么改")

    def boom() -> None:
        raise exc

    with pytest.raises(typer.Exit) as exited:
        _guarded(boom)
    assert exited.value.exit_code == EXIT_CODES[cls] == exit_code(exc)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "第一行：出了什么错 第二行：怎么改" in err
    assert "Traceback" not in err


def test_an_unlisted_subclass_gets_its_nearest_ancestors_code() -> None:
    class Later(errors.LockLost):
        pass

    assert exit_code(Later("x")) == 4


def test_delivery_error_carries_rows_in() -> None:
    exc = errors.UnreadableDelivery("内容太长", dataset="MZ_DIBAO", row=4, rows_in=12)
    assert exc.rows_in == 12
    assert errors.LayoutError("缺少必需列").rows_in == 0


def _raise_sites() -> Iterator[tuple[str, int, str]]:
    """Every `raise SomeError("literal …")` of ours whose message is a plain or f-string."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                    continue
                for arg in node.exc.args[:1]:
                    parts = arg.values if isinstance(arg, ast.JoinedStr) else [arg]
                    for part in parts:
                        if isinstance(part, ast.Constant) and isinstance(part.value, str):
                            yield str(path.relative_to(ROOT)), node.lineno, part.value


def test_raised_messages_are_one_line() -> None:
    sites = list(_raise_sites())
    assert len(sites) > 50  # the scan sees the raise statements
    assert [(f, n) for f, n, text in sites if "\n" in text] == []


def test_lock_lost_speaks_chinese() -> None:
    source = (ROOT / "warehouse" / "lock.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    texts = [
        part.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and getattr(node.exc.func, "id", "") == "LockLost"
        for arg in node.exc.args
        for part in (arg.values if isinstance(arg, ast.JoinedStr) else [arg])
        if isinstance(part, ast.Constant) and isinstance(part.value, str)
    ]
    assert texts and "写入锁已丢失" in "".join(texts)
    assert not any(c.isascii() and c.isalpha() for c in "".join(texts).replace("LockLost", ""))


def test_the_cli_passes_options_as_arguments_not_through_the_environment(tmp_path: Path) -> None:
    """`datashare demo --home X` builds its Settings from the option; DATASHARE_HOME is not
    written (a fresh process: the CLI sets Prefect's defaults in its own environment)."""
    script = (
        "import os, sys\n"
        "from cli.app import _settings\n"
        "before = {k: v for k, v in os.environ.items() if k.startswith('DATASHARE_')}\n"
        "s = _settings(home=sys.argv[1], environment='demo')\n"
        "after = {k: v for k, v in os.environ.items() if k.startswith('DATASHARE_')}\n"
        "print(s.home, s.environment, before == after)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATASHARE_")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no .env here
        env=env,
        check=True,
    )
    assert done.stdout.split() == [str(tmp_path / "demo"), "demo", "True"]


# --- messages speak Chinese (issue 14) ------------------------------------------------------------

# Where the errors of the tree are made; their messages reach the operator (`错误：…` on the
# command line), the ledger or the portal.
MESSAGE_PACKAGES = ("datashare", "domain", "expectations", "warehouse", "tasks", "flows", "portal")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")

# name -> (position, keyword) of the message argument of a call that makes an error of ours
Makers = dict[str, tuple[int, str]]


def _name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _message(call: ast.Call, makers: Makers) -> ast.expr | None:
    """The message argument of `call` if it makes an error of ours, else None."""
    name = _name(call)
    if name not in makers:
        return None
    position, keyword = makers[name]
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _makers(trees: list[ast.Module]) -> Makers:
    """The classes of the tree, and the functions that pass one of their parameters on as such
    an error's message (tasks.read's `where.unreadable(reason)`), to a fixed point."""
    makers: Makers = {cls.__name__: (0, "reason") for cls in _tree()}
    functions = [
        node for tree in trees for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
    ]
    grown = True
    while grown:
        grown = False
        for function in functions:
            if function.name in makers:
                continue
            params = [
                a.arg
                for a in (*function.args.posonlyargs, *function.args.args)
                if a.arg not in ("self", "cls")
            ]
            for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
                message = _message(call, makers)
                if isinstance(message, ast.Name) and message.id in params:
                    makers[function.name] = (params.index(message.id), message.id)
                    grown = True
                    break
    return makers


def _literal_text(message: ast.expr) -> str:
    """The literal text of a message: a string constant, the literal parts of an f-string, and
    both sides of a `+` (not the constants inside a subscript or a call: `fields["reason"]`)."""
    if isinstance(message, ast.Constant) and isinstance(message.value, str):
        return message.value
    if isinstance(message, ast.JoinedStr):
        return "".join(_literal_text(part) for part in message.values)
    if isinstance(message, ast.BinOp) and isinstance(message.op, ast.Add):
        return _literal_text(message.left) + _literal_text(message.right)
    return ""


def _messages(tree: ast.Module, makers: Makers) -> Iterator[tuple[int, str]]:
    """(line, literal text) of every error of ours made in `tree` with a literal message:
    `raise X(...)`, `X(...)` built and returned for a caller to raise, and calls of the
    functions that make one. A message that is only a variable (`GateFailed(reason, ...)`) is
    judged where its text is written."""
    for node in ast.walk(tree):
        message = _message(node, makers) if isinstance(node, ast.Call) else None
        if message is not None and (text := _literal_text(message)):
            yield node.lineno, text


def _english(source: str) -> list[int]:
    tree = ast.parse(source)
    return sorted(line for line, text in _messages(tree, _makers([tree])) if not HAN.search(text))


def test_every_error_message_of_ours_speaks_chinese() -> None:
    files = {
        str(path.relative_to(ROOT)): ast.parse(path.read_text(encoding="utf-8"))
        for package in MESSAGE_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    makers = _makers(list(files.values()))
    assert {"unreadable", "layout"} <= set(makers)  # tasks.read's helpers are followed
    sites = [
        (name, line, text) for name, tree in files.items() for line, text in _messages(tree, makers)
    ]
    assert len(sites) > 80  # the scan sees the messages
    assert {f.split("/")[0] for f, _, _ in sites} >= {"datashare", "warehouse", "tasks", "flows"}
    english = [f"{f}:{line}: {text!r}" for f, line, text in sites if not HAN.search(text)]
    assert english == []


def test_the_message_check_finds_english_in_every_form() -> None:
    source = textwrap.dedent("""
        raise ConfigurationError("DATASHARE_SECRET is not set")
        raise errors.PublishError(f"{table}: the input lacks columns {missing}")
        def refuse(who): return RunLocked("locked by " + who)
        raise HistoryError(f"{dataset}: " + "; ".join(problems))
        raise LayoutError(reason=f"{column} missing", dataset=ds)
        def bad(self, why, row=None): return UnreadableDelivery(why, row=row)
        raise where.bad("empty file", row=3)
        raise refuse(holder)
        raise GateFailed(reason, dept=dept)
        raise ConfigurationError(f"未设置 {name}：请设置")
        raise where.bad(why="文件为空")
        raise ValueError("not one of ours")
        raise where.bad(fields["reason"], row=fields["row"])
    """)
    assert _english(source) == [2, 3, 4, 5, 6, 8]
