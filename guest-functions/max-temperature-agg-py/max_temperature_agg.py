"""MaxTemperature as an incremental aggregate, in Python: the host keeps a
(max, count) accumulator per window pane and merges them. The same output
as the Rust `max-temperature-agg` guest.

Build it with:

    weir plugin build guest-functions/max-temperature-agg-py/max_temperature_agg.py \
        --world aggregate-function -o max_temperature_agg_py.wasm
"""

from weir_guest import AggregateFunction


class MaxTemperatureAggregate(AggregateFunction):
    name = "max-temperature-agg-py"
    version = "0.1.0"
    description = "Maximum temperature and reading count per window, incrementally (Python)"
    inputs = {"temperature": "f64"}
    outputs = {"max_temperature": "f64", "count": "i64"}

    def create_accumulator(self):
        # [max, count]; no max before the first reading.
        return [None, 0]

    def add(self, acc, inputs):
        temperatures = inputs.f64("temperature")
        if not temperatures:
            return acc
        top = max(temperatures)
        return [top if acc[0] is None else max(acc[0], top), acc[1] + len(temperatures)]

    def merge(self, a, b):
        if a[0] is None:
            return b
        if b[0] is None:
            return a
        return [max(a[0], b[0]), a[1] + b[1]]

    def get_result(self, acc, key, window):
        if acc[1] == 0:
            return []
        return [(acc[0], acc[1])]
