"""How far apart two audio ranges may lie and still be read in one request, from an origin that
answers one range a request (S3, Google Cloud Storage, Azure): a cost model, not a fixed gap.

Reading the bytes between two ranges (video, dropped as they come) costs their transfer on one of the
requests in flight and our CPU to take them in; asking for the second range in a request of its own
costs a round trip, shared by the requests in flight, and our CPU for a request. With W requests in
flight, an origin `latency` seconds away sending `rate` bytes a second on each connection, neighbours
are joined while

    gap * (1 / (W * rate) + byte CPU)  <  latency / W + request CPU

so that a file whose audio lies between short runs of video, from a near origin, is read whole in
large spans, and one with long runs of video, or a far origin with slow connections, by its audio
ranges. The latency and rate are the origin's as measured on this file's first requests (the probe's
latency, then each span's time to its first bytes and its bytes a second after), and what was last
measured of the route for the next file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Seconds of our CPU a one-range request costs (the request, the answer, the cut), and a byte read
# through (the socket, the client, the cutter), by what asks the origin (scripts/bench 3e, evening of
# 2026-12-07: 6.15 s of CPU for the 18,001 requests of the 10-minute MP4 by ranges, 0.47 s for its 457 MB
# read whole): h11 (a plain HTTP origin reached directly: addon/h11_pool.py), else httpx (TLS, an
# upstream proxy; 29-41 s for the same requests, 1.0-1.3 s for the same bytes, in mitmdump, the relay
# and the cut included).
H11_CPU = (0.00034, 1.0e-9)
HTTPX_CPU = (0.0016, 2.5e-9)
FIRST_RATE = 50e6  # bytes a second a connection is taken to bring before one is measured
MEASURED_FROM = 256 << 10  # bytes of an answer from which its rate is a measure (less: its latency only)
WEIGHT = 0.3  # of a new measure in the running one
# For measurement only (scripts/bench): "ranges" reads by the plan's ranges, "whole" in spans of
# the most a request asks for, whatever the model says.
FORCED = os.environ.get("AUDIO_ONLY_SPANS", "")


@dataclass
class OriginSpeed:
    """What one route's origin was last measured at."""
    latency: float  # seconds from a request to its first bytes
    rate: float = FIRST_RATE  # bytes a second on one connection, after the first bytes
    cpu: tuple[float, float] = HTTPX_CPU  # our CPU a request and a byte (H11_CPU or HTTPX_CPU)

    def observe(self, latency: float, size: int, transfer: float) -> None:
        """A request's time to its first bytes, and its `size` bytes' time after them."""
        self.latency += WEIGHT * (max(latency, 0.0) - self.latency)
        if size >= MEASURED_FROM and transfer > 0:
            self.rate += WEIGHT * (size / transfer - self.rate)

    def join_gap(self, in_flight: int, most: int) -> int:
        """The widest gap between two ranges read in one request (at most `most`, a request's span)."""
        if FORCED == "ranges":
            return 0
        if FORCED == "whole":
            return most
        request_cpu, byte_cpu = self.cpu
        per_request = self.latency / in_flight + request_cpu
        per_byte = 1 / (in_flight * max(self.rate, 1.0)) + byte_cpu
        return min(most, int(per_request / per_byte))


def speed_of(speeds: dict, route, probe_latency: float, cpu: tuple[float, float] = HTTPX_CPU) -> OriginSpeed:
    """The route's speed as last measured (a new one from the probe's latency at first), our CPU's
    costs being `cpu`."""
    if (speed := speeds.get(route)) is None:
        speed = speeds[route] = OriginSpeed(probe_latency, cpu=cpu)
    return speed
