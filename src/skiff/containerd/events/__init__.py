"""skiff-containerd's event exchange: what services and shims publish and
what `ctr events` (or skiffd) subscribes to."""

from skiff.containerd.events.exchange import Envelope, Exchange, Subscription
from skiff.containerd.events.filters import parse_filters

__all__ = ["Envelope", "Exchange", "Subscription", "parse_filters"]
