"""Writing weir functions in Python.

A function is a class that subclasses one of the base classes here and
declares what it reads, writes and accepts as class attributes:

    class MaxTemperature(WindowFunction):
        name = "max-temperature-py"
        inputs = {"temperature": "f64"}
        outputs = {"max_temperature": "f64", "count": "i64"}

        def apply(self, key, window, inputs):
            temps = inputs.f64("temperature")
            return [(max(temps), len(temps))] if temps else []

`weir plugin build module.py --world window-function` (or `map-function`,
`aggregate-function`) turns the module into
a component. The base classes implement the contract's calls: the batched
ones (`apply-many`) are built from the single-window `apply`, the way
`guest-support` does it for Rust guests.

Field types are written as in job files: "f64", "i64", "string", "bool".
Raise `FunctionError("message")` to fail a call with a message (the window
goes to the dead-letter output); any other exception traps the instance,
and weir reports the exception's last line.
"""

import json as _json

from wit_world.imports import types as _t
from componentize_py_types import Err as _Err

__all__ = [
    "WindowFunction",
    "MapFunction",
    "AggregateFunction",
    "Inputs",
    "Param",
    "FunctionError",
    "Window",
]

_FIELD_TYPES = {
    "f64": _t.FieldType.F64,
    "i64": _t.FieldType.I64,
    "string": _t.FieldType.STRING,
    "bool": _t.FieldType.BOOL,
}

_COLUMNS = {
    "f64": _t.Column_F64,
    "i64": _t.Column_I64,
    "string": _t.Column_String,
    "bool": _t.Column_Bool,
}

_VALUES = {
    "f64": _t.Value_F64,
    "i64": _t.Value_I64,
    "string": _t.Value_String,
    "bool": _t.Value_Bool,
}

_COLUMN_TYPE_NAMES = {cls: name for name, cls in _COLUMNS.items()}

#: The window bounds type passed to `apply`: `.start` and `.end`, in ms.
Window = _t.Window


class FunctionError(Exception):
    """Fails the call with a message, without trapping the instance."""


class Param:
    """A parameter a function accepts, declared in its `params` list."""

    def __init__(self, name, ty, required=False, default=None, description=""):
        if ty not in _FIELD_TYPES:
            raise ValueError(f"parameter '{name}': unknown type '{ty}'")
        self.name = name
        self.ty = ty
        self.required = required
        self.default = default
        self.description = description

    def _spec(self):
        default = None if self.default is None else _VALUES[self.ty](self.default)
        return _t.ParamSpec(
            name=self.name,
            ty=_FIELD_TYPES[self.ty],
            required=self.required,
            default=default,
            description=self.description,
        )


class Inputs:
    """The events of one window (or one batch), by column.

    `inputs["temperature"]` is the column's values in arrival order;
    `inputs.f64("temperature")` is the same, checked to be an f64 column.
    `inputs.timestamps` holds each event's time in ms, and `len(inputs)` is
    the number of events.
    """

    __slots__ = ("timestamps", "_columns", "_types")

    def __init__(self, timestamps, columns, types):
        self.timestamps = timestamps
        self._columns = columns
        self._types = types

    def __len__(self):
        return len(self.timestamps)

    def __getitem__(self, name):
        return self._columns[name]

    def __contains__(self, name):
        return name in self._columns

    def _typed(self, name, ty):
        found = self._types[name]
        if found != ty:
            raise TypeError(f"input '{name}' is {found}, not {ty}")
        return self._columns[name]

    def f64(self, name):
        """The values of f64 input `name`."""
        return self._typed(name, "f64")

    def i64(self, name):
        """The values of i64 input `name`."""
        return self._typed(name, "i64")

    def string(self, name):
        """The values of string input `name`."""
        return self._typed(name, "string")

    def bool(self, name):
        """The values of bool input `name`."""
        return self._typed(name, "bool")

    def rows(self):
        """Each event as a dict of its inputs (slower than the columns)."""
        names = list(self._columns)
        for values in zip(*(self._columns[n] for n in names)):
            yield dict(zip(names, values))


def _fields(declared, what, cls):
    if not isinstance(declared, dict) or not declared:
        raise TypeError(f"{cls.__name__}.{what} must be a dict of field name to type")
    fields = []
    for name, ty in declared.items():
        if ty not in _FIELD_TYPES:
            raise TypeError(f"{cls.__name__}.{what}: field '{name}' has unknown type '{ty}'")
        fields.append(_t.Field(name=name, ty=_FIELD_TYPES[ty]))
    return fields


class _Function:
    """What every kind of function shares: the descriptor and `configure`."""

    #: A short name, unique in a plugin store.
    name = None
    #: The function's own version.
    version = "0.1.0"
    #: One line on what it computes.
    description = ""
    #: The fields it reads: {name: type}, in the order it reads them.
    inputs = None
    #: The fields it writes: {name: type}, in the order it returns them.
    outputs = None
    #: The parameters it accepts: a list of `Param`.
    params = ()

    _kind = None

    def configure(self, params):
        """Called once before any data with the job's parameters (a dict,
        defaults filled in). Raise `FunctionError` to reject them."""
        self.params_values = params

    def _descriptor(self):
        cls = type(self)
        if not cls.name:
            raise TypeError(f"{cls.__name__} has no `name`")
        return _t.Descriptor(
            name=cls.name,
            version=cls.version,
            kind=self._kind,
            description=cls.description,
            inputs=_fields(cls.inputs, "inputs", cls),
            outputs=_fields(cls.outputs, "outputs", cls),
            params=[p._spec() for p in cls.params],
            state_version=0,
        )

    def _inputs(self, events, start=0, end=None):
        names = list(type(self).inputs)
        columns = {}
        types = {}
        for name, column in zip(names, events.columns):
            values = column.value
            columns[name] = values if start == 0 and end is None else values[start:end]
            types[name] = _COLUMN_TYPE_NAMES[type(column)]
        timestamps = events.timestamps
        if not (start == 0 and end is None):
            timestamps = timestamps[start:end]
        return Inputs(timestamps, columns, types)

    def _columns(self, rows):
        """Rows (tuples in `outputs` order) to the contract's columns."""
        types = list(type(self).outputs.values())
        values = [[] for _ in types]
        for row in rows:
            if len(row) != len(types):
                raise FunctionError(f"a row has {len(row)} values for {len(types)} outputs")
            for column, value in zip(values, row):
                column.append(value)
        return [_COLUMNS[ty](v) for ty, v in zip(types, values)]


class WindowFunction(_Function):
    """A function called once per fired window with all its events.

    Implement `apply(self, key, window, inputs)`: `key` is the window's key
    (a number, string or bool), `window` has `.start` and `.end` in ms, and
    `inputs` is an `Inputs`. Return the window's output rows: a list of
    tuples, one value per declared output, in order.
    """

    _kind = _t.FunctionKind.WINDOW

    def apply(self, key, window, inputs):
        raise NotImplementedError(f"{type(self).__name__} does not implement apply")

    def _apply(self, key, window, events):
        rows = list(self.apply(key.value, window, self._inputs(events)))
        return _t.Rows(len=len(rows), columns=self._columns(rows))

    def _apply_many(self, keys, windows, ranges, events):
        # Each window's rows are sliced from the shared batch; ranges may
        # overlap (a sliding window's panes are passed once).
        rows = []
        ends = []
        for key, window, r in zip(keys, windows, ranges):
            rows.extend(self.apply(key.value, window, self._inputs(events, r.start, r.end)))
            ends.append(len(rows))
        return _t.RowsMany(ends=ends, columns=self._columns(rows))


class MapFunction(_Function):
    """A stateless map or filter over a batch of records.

    Implement `map(self, inputs)`. Return either a dict {output name: list
    of values}, one value per input row (every row kept), or a pair
    `(rows, columns)` where `rows` lists the indices of the input rows kept,
    in order, and `columns` has one value per kept row. An output named like
    an input replaces it in the record; the record's other fields are kept.
    """

    _kind = _t.FunctionKind.MAP

    def map(self, inputs):
        raise NotImplementedError(f"{type(self).__name__} does not implement map")

    def _map(self, events, mapped_type):
        result = self.map(self._inputs(events))
        if isinstance(result, tuple):
            rows, columns = result
            rows = list(rows)
        else:
            rows, columns = list(range(len(events.timestamps))), result
        outputs = type(self).outputs
        missing = [n for n in outputs if n not in columns]
        if missing:
            raise FunctionError(f"map returned no column for output(s) {', '.join(missing)}")
        cols = [_COLUMNS[ty](list(columns[n])) for n, ty in outputs.items()]
        return mapped_type(rows=rows, columns=cols)


class AggregateFunction(_Function):
    """An incremental aggregate: the host keeps each window's accumulator
    (and checkpoints it), so the function never sees a whole window.

    Implement `create_accumulator(self)` (a fresh accumulator: any value
    JSON can hold), `add(self, acc, inputs)` and `merge(self, a, b)` (each
    returns the new accumulator), and `get_result(self, acc, key, window)`
    (the window's output rows, as `WindowFunction.apply` returns them).
    Accumulators are stored as JSON, which keeps floats exact. Set
    `state_version` and implement `migrate(self, acc, from_version)` when
    the accumulator's shape changes. The batched calls are built from these.
    """

    _kind = _t.FunctionKind.AGGREGATE
    #: The version of the accumulator's layout.
    state_version = 0

    def create_accumulator(self):
        raise NotImplementedError(f"{type(self).__name__} does not implement create_accumulator")

    def add(self, acc, inputs):
        raise NotImplementedError(f"{type(self).__name__} does not implement add")

    def merge(self, a, b):
        raise NotImplementedError(f"{type(self).__name__} does not implement merge")

    def get_result(self, acc, key, window):
        raise NotImplementedError(f"{type(self).__name__} does not implement get_result")

    def migrate(self, acc, from_version):
        raise FunctionError(f"{type(self).name} has no state version {from_version} to migrate from")

    def _descriptor(self):
        d = super()._descriptor()
        d.state_version = type(self).state_version
        return d

    @staticmethod
    def _encode(acc):
        return _json.dumps(acc, separators=(",", ":"), sort_keys=True).encode()

    @staticmethod
    def _decode(data):
        try:
            return _json.loads(bytes(data))
        except ValueError as e:
            raise FunctionError(f"an accumulator is not this function's: {e}")

    def _split(self, accumulators):
        data, out, start = accumulators.bytes, [], 0
        for end in accumulators.ends:
            out.append(data[start:end])
            start = end
        return out

    def _join(self, accs):
        data, ends = bytearray(), []
        for acc in accs:
            data += self._encode(acc)
            ends.append(len(data))
        return _t.Accumulators(bytes=bytes(data), ends=ends)

    def _rows(self, acc, key, window):
        rows = list(self.get_result(acc, key.value, window))
        return _t.Rows(len=len(rows), columns=self._columns(rows))

    def _add_many(self, accumulators, ends, events):
        accs = self._split(accumulators)
        if len(accs) != len(ends):
            raise FunctionError("one end per accumulator")
        out, start = [], 0
        for acc, end in zip(accs, ends):
            out.append(self.add(self._decode(acc), self._inputs(events, start, end)))
            start = end
        return self._join(out)

    def _get_results(self, keys, windows, ranges, accumulators):
        accs = self._split(accumulators)
        rows, ends = [], []
        for key, window, r in zip(keys, windows, ranges):
            # A window is the merge of its panes' accumulators, in time order.
            acc = self.create_accumulator()
            for i in range(r.start, r.end):
                acc = self.merge(acc, self._decode(accs[i]))
            rows.extend(self.get_result(acc, key.value, window))
            ends.append(len(rows))
        return _t.RowsMany(ends=ends, columns=self._columns(rows))


def _param_values(params):
    return {p.name: p.value.value for p in params}


def _guarded(call):
    """Runs a call, turning `FunctionError` into the contract's error."""
    try:
        return call()
    except FunctionError as e:
        raise _Err(str(e))


def _find(module, base):
    found = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, base) and v is not base and v.__module__ == module.__name__
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise TypeError(
            f"module {module.__name__} must define exactly one subclass of {base.__name__} (found: {names})"
        )
    return found[0]()


def exports(module, world):
    """The classes componentize-py exports for `world`, delegating to the
    one function class `module` defines. weir's build writes the module
    that calls this; function authors do not."""
    from wit_world import exports as _x

    base = {
        "window-function": WindowFunction,
        "map-function": MapFunction,
        "aggregate-function": AggregateFunction,
    }.get(world)
    if base is None:
        raise TypeError(f"weir_guest does not support the {world} world")
    function = _find(module, base)

    class Plugin(_x.Plugin):
        def describe(self):
            return function._descriptor()

        def configure(self, params):
            _guarded(lambda: function.configure(_param_values(params)))

    if world == "window-function":

        class Window(_x.Window):
            def apply(self, key, window, events):
                return _guarded(lambda: function._apply(key, window, events))

            def apply_many(self, keys, windows, ranges, events):
                return _guarded(lambda: function._apply_many(keys, windows, ranges, events))

        return {"Plugin": Plugin, "Window": Window}

    if world == "aggregate-function":
        enc, dec = function._encode, function._decode

        class Aggregate(_x.Aggregate):
            def create_accumulator(self):
                return enc(function.create_accumulator())

            def add(self, accumulator, events):
                return _guarded(lambda: enc(function.add(dec(accumulator), function._inputs(events))))

            def merge(self, a, b):
                return _guarded(lambda: enc(function.merge(dec(a), dec(b))))

            def get_result(self, accumulator, key, window):
                return _guarded(lambda: function._rows(dec(accumulator), key, window))

            def add_many(self, accumulators, ends, events):
                return _guarded(lambda: function._add_many(accumulators, ends, events))

            def get_results(self, keys, windows, ranges, accumulators):
                return _guarded(lambda: function._get_results(keys, windows, ranges, accumulators))

            def migrate(self, accumulator, from_version):
                return _guarded(lambda: enc(function.migrate(dec(accumulator), from_version)))

        return {"Plugin": Plugin, "Aggregate": Aggregate}

    from wit_world.exports import map as _map

    class Map(_x.Map):
        def map(self, events):
            return _guarded(lambda: function._map(events, _map.Mapped))

    return {"Plugin": Plugin, "Map": Map}
