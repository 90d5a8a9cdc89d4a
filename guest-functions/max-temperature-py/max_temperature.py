"""MaxTemperature as a window function, in Python: the maximum temperature
and the number of readings in each window. The same output as the Rust
`max-temperature` guest.

Build it with:

    weir plugin build guest-functions/max-temperature-py/max_temperature.py \
        --world window-function -o max_temperature_py.wasm
"""

from weir_guest import WindowFunction


class MaxTemperatureWindowFunction(WindowFunction):
    name = "max-temperature-py"
    version = "0.1.0"
    description = "Maximum temperature and reading count per window (Python)"
    inputs = {"temperature": "f64"}
    outputs = {"max_temperature": "f64", "count": "i64"}

    def apply(self, key, window, inputs):
        temperatures = inputs.f64("temperature")
        if not temperatures:
            return []
        return [(max(temperatures), len(temperatures))]
