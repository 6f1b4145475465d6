"""`python -m bench --preset positions`: the position-keeping order types and what they cost, a
part each, beside the engine's other phases (`bench.__main__` runs them as phases).

- `stops`: 100,000 waiting stops, brackets and trailing stops, none near the market; the trigger
  engine's CPU while nothing triggers and the rows written, then 600 crossed at once.
- `twap`: TWAP parents on the real stack; how close to its due time each slice starts
  (target: p99 within one slot, 400 ms).
- `export`: a million fills seeded with SQL, exported over HTTP as CSV; how long it takes and
  how much the API process grows meanwhile (targets: < 60 s, < 100 MB).

Each part returns its figures and its `targets` rows (target, figure, verdict, note), which the
report lists with the others. Further parts join PARTS and the preset (bench/plan.py).
"""

from __future__ import annotations

from bench.positions.export import export_fills
from bench.positions.stops import positions as stops
from bench.positions.twap import twap_slices

PARTS = {"stops": stops, "twap": twap_slices, "export": export_fills}
