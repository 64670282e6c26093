"""The exception tree of datashare: every error raised on purpose is a `DatashareError`.

    DatashareError                      anything this package raises on purpose
    ├── ConfigurationError              bad or missing settings, reference data or contracts,   2
    │   │                               or an operator mistake: refused before any work
    │   └── AccountError (ValueError)   a portal account or token operation that cannot be    2
    │                                   done (unknown account, duplicate name, bad role)
    ├── WarehouseUnavailable            the warehouse cannot be reached                         3
    ├── RunLocked                       another run holds the warehouse's writer lock           4
    │   ├── LockLost                    this run held the lock and lost it (PostgreSQL session  4
    │   │                               ended): it stopped before writing more
    │   └── PublishLocked (RuntimeError) another process is publishing into the same folder     4
    ├── DeliveryError                   one delivery cannot be accepted; the run goes on and    1
    │   │                               the ledger records the reason
    │   ├── UnreadableDelivery          bytes that cannot be read: bad encoding, broken xlsx    1
    │   ├── LayoutError                 header row not found, required column missing           1
    │   └── GateFailed                  read fine, but a delivery-level gate failed (quarantine 1
    │                                   share, truncated snapshot, GX verdict)
    ├── HistoryError                    a dataset's history cannot be changed as asked (bad     1
    │   │                               input, a lake file missing)
    │   └── MergeOrderError             a delivery for a date before the last merged one        1
    │                                   (the intake records it and replays with rebuild_from)
    ├── PublishError                    a publication cannot be made from its input             1
    ├── CheckFailed (RuntimeError)      a datashare check inside GX raised; names the check     1
    └── ConservationError (AssertionError)  rows_in != loaded + quarantined + duplicates: a bug 1

The numbers are the `datashare` command's exit codes (`cli.app.EXIT_CODES`, one mapping; 0 is
a completed run, 1 anything unexpected). A bare `DatashareError` (exit 1) is a run-level failure
with nothing more specific to say, e.g. the local Prefect server of `datashare serve` not
starting. The second bases in brackets are kept so that code
written against the old classes (`except RuntimeError`, `except ValueError`, `except
AssertionError`) still catches them. The classes used to live beside the code that raises them
(warehouse.history, warehouse.publish, warehouse.published, warehouse.lock,
warehouse.portal_store, tasks.validate, expectations.gx_custom); those modules re-export them,
so the old import paths keep working.

Messages are one line, in Chinese where departments or officials read them, and never contain
personal data: values are masked before they reach an exception. Every DeliveryError carries
the department, dataset, file and, where it applies, row and column.
"""

from __future__ import annotations


class DatashareError(Exception):
    """Base class of every error datashare raises on purpose."""


class ConfigurationError(DatashareError):
    """Settings, reference data or contracts are missing or wrong; the run cannot start."""


class AccountError(ConfigurationError, ValueError):
    """An account operation that cannot be done (message in Chinese, for the operator)."""


class WarehouseUnavailable(DatashareError):
    """The warehouse database cannot be reached."""


class RunLocked(DatashareError):
    """Another run holds the writer lock on this warehouse."""


class LockLost(RunLocked):
    """The writer lock was held and is gone (its PostgreSQL session ended): stop writing."""


class PublishLocked(RunLocked, RuntimeError):
    """Another process is publishing into the same folder."""


class DeliveryError(DatashareError):
    """A delivery cannot be accepted. Carries where the problem is, never a plain value.

    `rows_in` is how many rows the reader counted before refusing (0: it refused before
    counting); the intake records them as delivered and rejected.
    """

    def __init__(
        self,
        reason: str,
        *,
        dept: str | None = None,
        dataset: str | None = None,
        source_file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        rule: str | None = None,
        rows_in: int = 0,
    ) -> None:
        self.reason = reason
        self.dept = dept
        self.dataset = dataset
        self.source_file = source_file
        self.row = row
        self.column = column
        self.rule = rule
        self.rows_in = rows_in
        super().__init__(str(self))

    def __str__(self) -> str:
        """The reason and where, in Chinese: it is the ledger's reason, which departments read
        in their published 交换台账 and the reports, e.g. `缺少必需列：身份证号（id_number）
        （部门 MZ，数据集 MZ_DIBAO，文件 MZ_DIBAO_20250312.csv，列 id_number）`.
        """
        where = [
            text
            for text, present in (
                (f"部门 {self.dept}", self.dept),
                (f"数据集 {self.dataset}", self.dataset),
                (f"文件 {self.source_file}", self.source_file),
                (f"第 {self.row} 行", self.row),
                (f"列 {self.column}", self.column),
            )
            if present is not None
        ]
        return f"{self.reason}（{'，'.join(where)}）" if where else self.reason

    @staticmethod
    def reason_of(text: str) -> str:
        """The reason part of a recorded `str(error)`, without the where (for narrow tables)."""
        return text.split("（部门 ")[0]


class UnreadableDelivery(DeliveryError):
    """The file cannot be decoded or parsed at all."""


class LayoutError(DeliveryError):
    """The file reads, but its layout is wrong: no header row, a required column missing."""


class GateFailed(DeliveryError):
    """A delivery-level gate rejected the whole delivery."""


class HistoryError(DatashareError):
    """The history of a dataset cannot be changed as asked (bad input, missing lake file)."""


class MergeOrderError(HistoryError):
    """A delivery for a date before the last merged one: use rebuild_from instead."""


class PublishError(DatashareError):
    """A publication cannot be made from its input (names tables and columns, never values)."""


class CheckFailed(DatashareError, RuntimeError):
    """A datashare check raised inside GX; the message names the check, never a value."""


class ConservationError(DatashareError, AssertionError):
    """rows_in != loaded + rejected + duplicates: a bug, never a data problem."""
