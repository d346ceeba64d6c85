"""Synthetic event logs with planted fraud rings, honest lookalikes and messy data.

The generator first builds a population: fraud rings of five kinds, honest contributors who
*look* suspicious (households, campuses, carrier NAT users, café customers, VPN users, broken
clients) and plain honest contributors. Every contributor gets a small menu of *channels* -- a
device (or a range of devices) used from an IP (or a range of IPs), with a weight -- and all
events are then drawn at once with numpy, each event picking one channel of its contributor.
Identifiers stay integer codes until the end, when they are rendered to strings with pyarrow,
messed up on a seeded share of rows, and written batch by batch.

The population, the events and the mess come from three independent random streams spawned
from one seed, so changing a messiness rate never changes who is in which ring or which events
happen: a messy file and a clean file of the same seed hold the same events.

Modules, in the order ``generator.generate`` uses them: ``scenario`` (the knobs, columns and
values), ``population`` (rings, lookalikes and everyone's channels), ``events``, ``mess``,
``render`` (identifier strings), ``cells`` (timestamps and messy cells) and ``write`` (the
files).
"""

from ringfinder.synth.generator import generate
from ringfinder.synth.scenario import (
    BAD_TIMESTAMPS,
    BENIGN_ROLES,
    DEVICE_PLACEHOLDERS,
    EVENT_COLUMNS,
    EVENT_TYPES,
    IP_PLACEHOLDERS,
    LABEL_COLUMNS,
    RING_TYPES,
    GenerateResult,
    Scenario,
)

__all__ = [
    "BAD_TIMESTAMPS",
    "BENIGN_ROLES",
    "DEVICE_PLACEHOLDERS",
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "IP_PLACEHOLDERS",
    "LABEL_COLUMNS",
    "RING_TYPES",
    "GenerateResult",
    "Scenario",
    "generate",
]
