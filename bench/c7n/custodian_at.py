"""Runs Cloud Custodian's CLI with its clock moved forward, as if run some days later.

    python bench/c7n/custodian_at.py DAYS custodian-arguments...

moto stamps instances and access keys with the time they are created, and Custodian's age filters and actions
(instance-age and `value_type: age` in c7n.filters.core, remove-keys in c7n.resources.iam) compare them with
`datetime.datetime.now()`. Palisade is told the time through its scheduled events; this gives Custodian the same
day by handing those two modules a `datetime` whose `now`, `utcnow` and `today` are moved by DAYS. Nothing else
changes. (libfaketime would do it from outside, but under it Custodian's threads burn 15 to 25 times the CPU,
which the benchmark would measure.)
"""
import datetime
import sys
import types

_real = datetime.datetime


class _SameClass(type):
    """`isinstance(x, datetime.datetime)` in the patched modules stays true for every real datetime."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, _real)

    def __subclasscheck__(cls, sub):
        return issubclass(sub, _real)


def shifted_datetime_module(days):
    offset = datetime.timedelta(days=days)

    class ShiftedDatetime(_real, metaclass=_SameClass):
        def __new__(cls, *args, **kwargs):
            return _real(*args, **kwargs)

        def __reduce_ex__(self, protocol):
            return (_real, *_real.__reduce_ex__(self, protocol)[1:])

        @classmethod
        def now(cls, tz=None):
            return _real.now(tz) + offset

        @classmethod
        def utcnow(cls):
            return _real.utcnow() + offset

        @classmethod
        def today(cls):
            return _real.today() + offset

    module = types.SimpleNamespace(**{k: getattr(datetime, k) for k in dir(datetime) if not k.startswith("__")})
    module.datetime = ShiftedDatetime
    return module


if __name__ == "__main__":
    import c7n.filters.core
    import c7n.resources.iam
    from c7n.cli import main

    clock = shifted_datetime_module(float(sys.argv[1]))
    for m in (c7n.filters.core, c7n.resources.iam):
        assert m.datetime is datetime, f"{m.__name__} no longer imports datetime as a module"
        m.datetime = clock
    sys.argv = ["custodian", *sys.argv[2:]]
    sys.exit(main())
