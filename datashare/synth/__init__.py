"""The synthetic county: ground truth, nightly deliveries and delivered files.

Used by `datashare demo`, the tests and the benchmarks. See `county` for the county and its
nights, `files` for how rows become delivered files (messy forms, defects, CSV/XLSX/JSON).
"""

from datashare.synth.county import (
    SCHEDULE,
    THRESHOLDS,
    County,
    Defect,
    DeliveredFile,
    Delivery,
    NightManifest,
    build_county,
    credit_code,
    dataset_rows,
    datasets_due,
    delivery_path,
    load_divisions,
    make_delivery,
    redeliver,
    roster_persons,
    truncated_snapshot,
    verification_rows,
    write_big_csv,
    write_big_delivery,
    write_delivery,
    write_night,
)
from datashare.synth.files import (
    DEFECT_RULES,
    corrupt_bytes,
    excel_general,
    prepare_delivery,
    render_delivery,
    source_row,
)

__all__ = [
    "DEFECT_RULES",
    "SCHEDULE",
    "THRESHOLDS",
    "County",
    "Defect",
    "DeliveredFile",
    "Delivery",
    "NightManifest",
    "build_county",
    "corrupt_bytes",
    "credit_code",
    "dataset_rows",
    "datasets_due",
    "delivery_path",
    "excel_general",
    "load_divisions",
    "make_delivery",
    "prepare_delivery",
    "redeliver",
    "render_delivery",
    "roster_persons",
    "source_row",
    "truncated_snapshot",
    "verification_rows",
    "write_big_csv",
    "write_big_delivery",
    "write_delivery",
    "write_night",
]
