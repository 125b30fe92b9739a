"""Views as data and the one renderer: ``records`` (the seeded policy, view records and the
table both stages read), ``randaugment`` (its recorded draws), ``dali_ops`` (their DALI
kernels) and ``renderer`` (records + image bytes -> normalised pixels).

The names below were ``proteus.common.views`` before 0.3 and stay importable from here.
"""

from proteus.common.views.records import (
    AUG_FIELDS,
    LEGACY_KEYS,
    LEGACY_POLICY,
    NO_AUGMENTATION,
    AugPolicy,
    ViewTable,
    parse_policy,
    sample_views,
    view_records,
)

__all__ = [
    "AUG_FIELDS",
    "LEGACY_KEYS",
    "LEGACY_POLICY",
    "NO_AUGMENTATION",
    "AugPolicy",
    "ViewTable",
    "parse_policy",
    "sample_views",
    "view_records",
]
