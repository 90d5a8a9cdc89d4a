"""A Python window function that misbehaves on purpose, for the tests of
the sandbox: parameter `mode` picks how.

- "raise": raises an exception the function does not catch (a trap);
- "refuse": fails the window with `FunctionError` (a returned error);
- "spin": loops forever (the deadline stops it);
- "allocate": allocates without bound (the memory limit stops it);
- anything else: behaves, returning the window's event count.
"""

from weir_guest import FunctionError, Param, WindowFunction


class Hostile(WindowFunction):
    name = "hostile-py"
    description = "Misbehaves as its mode parameter says"
    inputs = {"temperature": "f64"}
    outputs = {"count": "i64"}
    params = [Param("mode", "string", required=True, description="raise, refuse, spin or allocate")]

    def apply(self, key, window, inputs):
        mode = self.params_values["mode"]
        if mode == "raise":
            readings = {}
            return [(readings["missing-sensor"],)]
        if mode == "refuse":
            raise FunctionError(f"refusing window {window.start} of key {key}")
        if mode == "spin":
            n = 0
            while True:
                n += 1
        if mode == "allocate":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        return [(len(inputs),)]
