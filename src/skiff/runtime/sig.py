"""The signal functions without the signal module, whose Signals enum costs 5 ms.

The type checker sees the signal module; at run time the C module `_signal`
provides the same functions and constants.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as signal
else:
    import _signal as signal

__all__ = ["signal"]
