"""The compiled capture reader on hostile input (issue 17): truncated and mutated records. Every
outcome must be a result or a CaptureError (one line) -- never a crash, a hang or another exception.
The reader runs in this process, so a memory error would take pytest down with it."""
from __future__ import annotations

import struct

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collide.scan import scan
from collide.scan._reader import CaptureError, Reader
from collide.scan.capture import CaptureInputError
from tests.scan_pcaps import ACK, SYN, Conversation, pcap_bytes, pcapng_bytes

_c = Conversation()
_c.connection(1.0, 40000, 2.0)
_c.connection(1.5, 40001, 2.0, server_first=True)
_c.up(2.0, 40000, SYN, 99)
_c.down(2.0001, 40000, ACK, 5002, 1002)
PACKETS = _c.sorted()
SEEDS = {
    "pcap": pcap_bytes(PACKETS),
    "pcap-sll2-ns-be": pcap_bytes(PACKETS, 276, nanoseconds=True, big_endian=True),
    "pcapng": pcapng_bytes(PACKETS, 1, 6, direction=True),
    "pcapng-sll-be": pcapng_bytes(PACKETS, 113, 9, big_endian=True),
    "pcap-v6": pcap_bytes([(1.0, b"\x60" + b"\0" * 5 + b"\x2c\x40" + b"\x20\x01\x0d\xb8" * 8
                            + b"\0" * 8 + b"\x00\x06" + b"\0" * 6)]),     # a hop-by-hop header
}
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _read_all(path) -> int:
    try:
        r = Reader(path, chunk=7)
    except CaptureError as exc:
        assert "\n" not in str(exc)
        return -1
    n = 0
    try:
        while (c := r.read()) is not None:
            n += c["ts"].size
            assert all(v.size == c["ts"].size for v in c.values())
    except CaptureError as exc:
        assert "\n" not in str(exc)
        return -1
    assert r.tcp == n and r.packets >= 0
    return n


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), cut=st.integers(min_value=0, max_value=4000))
def test_truncated_anywhere(tmp_path_factory, name, cut):
    data = SEEDS[name]
    p = tmp_path_factory.mktemp("t") / "cut.cap"
    p.write_bytes(data[:min(cut, len(data))])
    n = _read_all(str(p))
    assert n <= len(PACKETS)


@pytest.mark.slow
@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)),
       edits=st.lists(st.tuples(st.integers(min_value=0, max_value=4000),
                                st.integers(min_value=0, max_value=255)), min_size=1, max_size=12))
def test_mutated_bytes(tmp_path_factory, name, edits):
    data = bytearray(SEEDS[name])
    for pos, val in edits:
        data[pos % len(data)] = val
    p = tmp_path_factory.mktemp("m") / "mut.cap"
    p.write_bytes(bytes(data))
    _read_all(str(p))
    # the whole scan too: a result or a one-line input error
    try:
        scan([str(p)])
    except CaptureInputError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(caplen=st.integers(min_value=0, max_value=80), payload=st.binary(min_size=0, max_size=80),
       linktype=st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276]))
def test_random_records_of_every_link_type(tmp_path_factory, caplen, payload, linktype):
    """Records whose bytes are random, with any captured length, under each link type."""
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    rec = payload[:caplen]
    body = struct.pack("<IIII", 1, 0, len(rec), max(len(rec), caplen)) + rec
    p = tmp_path_factory.mktemp("r") / "rand.pcap"
    p.write_bytes(head + body * 3)
    assert _read_all(str(p)) in (-1, 0, 3)
