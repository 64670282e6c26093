"""The exception tree of datashare.

    DatashareError                      anything this package raises on purpose
    ├── ConfigurationError              bad or missing settings, reference data or contracts;
    │                                   the run cannot start (exit code 2)
    ├── WarehouseUnavailable            the warehouse cannot be reached (exit code 3)
    ├── RunLocked                       another run holds the warehouse's writer lock
    └── DeliveryError                   one delivery cannot be accepted; the run goes on and the
        │                               ledger records the reason
        ├── UnreadableDelivery          bytes that cannot be read: bad encoding, broken xlsx/json
        ├── LayoutError                 header row not found, required column missing
        └── GateFailed                  read fine, but a delivery-level gate failed (quarantine
                                        share, truncated snapshot, GX verdict)

Messages never contain personal data: values are masked before they reach an exception.
Every DeliveryError carries the department, dataset, file and, where it applies, row and column.
"""

from __future__ import annotations


class DatashareError(Exception):
    """Base class of every error datashare raises on purpose."""


class ConfigurationError(DatashareError):
    """Settings, reference data or contracts are missing or wrong; the run cannot start."""


class WarehouseUnavailable(DatashareError):
    """The warehouse database cannot be reached."""


class RunLocked(DatashareError):
    """Another run holds the writer lock on this warehouse."""


class DeliveryError(DatashareError):
    """A delivery cannot be accepted. Carries where the problem is, never a plain value."""

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
    ) -> None:
        self.reason = reason
        self.dept = dept
        self.dataset = dataset
        self.source_file = source_file
        self.row = row
        self.column = column
        self.rule = rule
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
