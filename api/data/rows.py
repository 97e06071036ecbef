"""Model rows built without peewee's __init__, for the rows every movement writes.

`model(**fields)` costs a descriptor call per field on top of the default dict; for the
notice and the audit line of each accrual that was more than a tenth of the follow-up.
`new_row` leaves the instance exactly as that call would (the same __data__ in the same
order, the same related rows kept), so api.ledger.sql.insert_row writes the same INSERT.
"""
from __future__ import annotations

from functools import lru_cache

from peewee import ForeignKeyField, Model


@lru_cache(maxsize=None)
def _plain(model: type[Model]) -> frozenset[str]:
    """The fields whose descriptor only stores the value (not a foreign key)."""
    return frozenset(name for name, field in model._meta.fields.items()
                     if not isinstance(field, ForeignKeyField))


def _defaults(meta, values: dict) -> dict:
    """meta.get_default_dict(), in its order, without calling the defaults `values`
    replaces anyway (a clock read each: the notice's and the audit line's created_at)."""
    data = meta._default_by_name.copy()
    for name, default in meta._default_callable_list:
        data[name] = values[name] if name in values else default()
    return data


def new_row(model: type[Model], related: dict, values: dict) -> Model:
    """`model(**related, **values)`: `related` its foreign keys (a row, an id or None),
    `values` plain fields. Anything else (a name that is not a field) goes to peewee."""
    if not values.keys() <= _plain(model):
        return model(**related, **values)
    data = _defaults(model._meta, values)
    rel = {}
    for name, value in related.items():
        field = model._meta.fields[name]
        if isinstance(value, field.rel_model):  # as ForeignKeyAccessor.__set__ stores it
            data[name] = getattr(value, field.rel_field.name)
            rel[name] = value
        else:
            data[name] = value
    data.update(values)
    row = model.__new__(model)
    row.__data__, row._dirty, row.__rel__ = data, set(data), rel
    return row
