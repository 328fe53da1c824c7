"""Prometheus remote write 1.0 with the standard library only.

A `prompb.WriteRequest` encoded by hand (protobuf wire format) and wrapped in
the snappy block format using literal elements only: valid snappy that any
decoder accepts, just not smaller. Enough for a load generator and tests;
no protobuf or snappy package is needed, so it runs in the loadgen image and
on any machine with Python 3.
"""

from __future__ import annotations

import math
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass, field

# prompb.MetricMetadata.MetricType
METRIC_TYPES = {
    "counter": 1,
    "gauge": 2,
    "histogram": 3,
    "gaugehistogram": 4,
    "summary": 5,
    "info": 6,
    "stateset": 7,
}


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 as two's complement, ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _field_string(number: int, text: str) -> bytes:
    return _field_bytes(number, text.encode("utf-8"))


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_double(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", value)


@dataclass
class Series:
    """One series: labels (`__name__` included) and (ms, value) samples."""

    labels: dict[str, str]
    samples: list[tuple[int, float]] = field(default_factory=list)


def encode_write_request(
    series: list[Series], metadata: list[tuple[str, str, str]] = ()
) -> bytes:
    """The protobuf bytes of a WriteRequest.

    `metadata` holds (metric family, type, help) triples.
    """
    out = bytearray()
    for s in series:
        ts = bytearray()
        for name in sorted(s.labels):
            label = _field_string(1, name) + _field_string(2, s.labels[name])
            ts += _field_bytes(1, label)
        for t, v in s.samples:
            ts += _field_bytes(2, _field_double(1, v) + _field_varint(2, t))
        out += _field_bytes(1, bytes(ts))
    for family, kind, help_text in metadata:
        md = (
            _field_varint(1, METRIC_TYPES.get(kind, 0))
            + _field_string(2, family)
            + _field_string(4, help_text)
        )
        out += _field_bytes(3, md)
    return bytes(out)


def snappy_block(data: bytes) -> bytes:
    """`data` in the snappy block format, as literal elements only."""
    out = bytearray(_varint(len(data)))
    for start in range(0, len(data), 65536):
        chunk = data[start : start + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + struct.pack("<H", n)
        out += chunk
    return bytes(out)


STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def push(
    url: str,
    series: list[Series],
    tenant: str | None = None,
    metadata: list[tuple[str, str, str]] = (),
    timeout: float = 10.0,
) -> tuple[int, str]:
    """POSTs one remote-write request; returns (HTTP status, body text)."""
    body = snappy_block(encode_write_request(series, metadata))
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
        "User-Agent": "strata-loadgen/1",
    }
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
