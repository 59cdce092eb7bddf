"""The store: hash banks in SQLite or PostgreSQL (SQLAlchemy 2 + Alembic).

>>> from rempart.store import Store, NewEntry
>>> store = Store.open("sqlite://")
>>> bank = store.create_bank("ncii-reports")
>>> store.add_entries(bank, [NewEntry("md5", "d41d8cd98f00b204e9800998ecf8427e")]).added
1
"""

from rempart.store import cases as _cases  # noqa: F401  (registers the cases tables)
from rempart.store import instance_secrets, previews, reviews, users  # noqa: F401  (UI tables)
from rempart.store import notices as _notices  # noqa: F401  (registers notices)
from rempart.store.faces import FaceTemplates as FaceTemplates  # registers face_templates
from rempart.store.records import (
    AddResult,
    BankInfo,
    BankKind,
    Change,
    ChangeOp,
    EntryInfo,
    NewEntry,
    RemoveResult,
    SignalArrays,
)
from rempart.store.repository import BankRef, Store

__all__ = [
    "AddResult",
    "BankInfo",
    "BankKind",
    "BankRef",
    "Change",
    "ChangeOp",
    "EntryInfo",
    "NewEntry",
    "RemoveResult",
    "SignalArrays",
    "Store",
]
