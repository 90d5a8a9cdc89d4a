"""Kelvin to Celsius as a map function, in Python: each record comes out
unchanged except for `temperature`, which becomes `temperature - 273.15`.
The same output as the Rust `kelvin-to-celsius` guest.

Build it with:

    weir plugin build guest-functions/kelvin-to-celsius-py/kelvin_to_celsius.py \
        --world map-function -o kelvin_to_celsius_py.wasm
"""

from weir_guest import MapFunction

# 0 °C in kelvin.
ZERO_CELSIUS_IN_KELVIN = 273.15


class KelvinToCelsius(MapFunction):
    name = "kelvin-to-celsius-py"
    version = "0.1.0"
    description = "Converts temperature from kelvin to degrees Celsius (Python)"
    inputs = {"temperature": "f64"}
    outputs = {"temperature": "f64"}

    def map(self, inputs):
        return {"temperature": [k - ZERO_CELSIUS_IN_KELVIN for k in inputs.f64("temperature")]}
