"""The pure control policy and dispatch: (snapshot, state, config, operator, prices) -> Plan.

No I/O anywhere in this package. The live loop and the offline replay call the same functions:
`decide` once per cycle, threading the returned ControllerState into the next call.
"""

from agent.control.compose import decide
from agent.control.dispatch import Dispatch, dispatch
from agent.control.prices import Prices
from agent.control.reserve import reserve_floor_pct
from agent.control.state import ControllerState, initial_state

__all__ = [
    "ControllerState",
    "Dispatch",
    "Prices",
    "decide",
    "dispatch",
    "initial_state",
    "reserve_floor_pct",
]
